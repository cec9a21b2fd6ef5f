//! Failed authentications per client address. A few are free; after that each one
//! makes the client wait longer (1 s, doubling up to 5 minutes) before any token it
//! sends is checked again, answered 429 meanwhile. A client is forgotten after 10
//! quiet minutes, and at most [`MAX_CLIENTS`] are remembered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row that cost nothing: a mistyped token, a rotated one.
const FREE: u32 = 5;
/// The wait after the first failure beyond the free ones; it doubles with each.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait: guessing stays bounded at one try per this, per client.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// A client this long without a failure starts afresh.
const FORGET: Duration = Duration::from_secs(600);
/// Clients remembered at once; beyond it, the quietest is forgotten first.
pub const MAX_CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

impl Entry {
    fn until(&self) -> Instant {
        self.last + wait_after(self.failures)
    }
}

/// The wait imposed after `failures` failures.
fn wait_after(failures: u32) -> Duration {
    match failures.checked_sub(FREE) {
        None => Duration::ZERO,
        Some(beyond) => FIRST_WAIT
            .checked_mul(1u32 << beyond.min(16))
            .map_or(MAX_WAIT, |w| w.min(MAX_WAIT)),
    }
}

/// Failed authentications by client.
#[derive(Debug, Default)]
pub struct Throttle {
    clients: Mutex<HashMap<IpAddr, Entry>>,
}

/// One client: an IPv6 address stands for its /64, which one host usually holds whole.
fn client(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl Throttle {
    /// How long `ip` must still wait before a token it sends is checked, if at all.
    pub fn wait(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let until = clients.get(&client(ip))?.until();
        (until > now).then(|| until - now)
    }

    /// Records a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let key = client(ip);
        if !clients.contains_key(&key) && clients.len() >= MAX_CLIENTS {
            clients.retain(|_, e| now.saturating_duration_since(e.last) < FORGET);
            if clients.len() >= MAX_CLIENTS {
                let quietest = clients.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k);
                if let Some(k) = quietest {
                    clients.remove(&k);
                }
            }
        }
        let entry = clients.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) >= FORGET {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn lets_a_few_failures_pass_then_waits_longer_each_time() {
        let t = Throttle::default();
        let start = Instant::now();
        for _ in 0..FREE - 1 {
            t.failed(A, start);
            assert_eq!(t.wait(A, start), None);
        }
        t.failed(A, start);
        assert_eq!(t.wait(A, start), Some(FIRST_WAIT));
        assert_eq!(t.wait(B, start), None, "other clients are not held");
        let later = start + FIRST_WAIT;
        assert_eq!(t.wait(A, later), None);
        t.failed(A, later);
        assert_eq!(t.wait(A, later), Some(2 * FIRST_WAIT));
        for _ in 0..40 {
            t.failed(A, later);
        }
        assert_eq!(t.wait(A, later), Some(MAX_WAIT));
        let quiet = later + FORGET;
        assert_eq!(t.wait(A, quiet), None);
        t.failed(A, quiet);
        assert_eq!(t.wait(A, quiet), None, "forgotten after a quiet spell");
    }

    #[test]
    fn counts_an_ipv6_slash_64_as_one_client() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..FREE {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            t.failed(ip, now);
        }
        let other: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(t.wait(other, now).is_some());
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(t.wait(elsewhere, now).is_none());
    }

    #[test]
    fn remembers_a_bounded_number_of_clients() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            let ip = IpAddr::V4((0x0a00_0000 + i).into());
            t.failed(ip, now + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(t.len(), MAX_CLIENTS);
        for _ in 0..FREE {
            t.failed(A, now);
        }
        assert_eq!(t.len(), MAX_CLIENTS);
        assert!(t.wait(A, now).is_some());
    }
}
