//! Refused logins, remembered per address and per name, so that each further refusal
//! is answered later than the one before: guessing passwords slows to a crawl, while
//! a worker with the right password is checked and accepted at once, whatever the
//! count. Memory is bounded: entries are forgotten after a quiet while, and the
//! oldest go first when too many are kept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The wait before the second refusal in a row; it doubles with each one after.
const BASE: Duration = Duration::from_millis(100);
/// The longest wait before a refusal.
const MAX: Duration = Duration::from_secs(10);
/// A key with no refusal for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Keys kept at most (addresses and names together).
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Name(String),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    refusals: u32,
    last: Instant,
}

/// Shared by every connection of a listener.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl LoginThrottle {
    /// Records a refused login of `name` from `address` at `now`; returns how long to
    /// wait before answering it, and how many refusals in a row the address has had.
    pub fn refused(&self, address: IpAddr, name: &str, now: Instant) -> (Duration, u32) {
        let mut entries = self.lock();
        let by_address = bump(&mut entries, Key::Address(address), now);
        let by_name = bump(&mut entries, Key::Name(truncated(name)), now);
        if entries.len() > MAX_KEYS {
            evict(&mut entries, now);
        }
        (delay(by_address.max(by_name)), by_address)
    }

    /// A login of `name` was accepted: its name starts afresh (not its address, which
    /// an attacker may share with a worker).
    pub fn accepted(&self, name: &str) {
        self.lock().remove(&Key::Name(truncated(name)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counts one more refusal for `key`; returns the refusals in a row.
fn bump(entries: &mut HashMap<Key, Entry>, key: Key, now: Instant) -> u32 {
    let entry = entries.entry(key).or_insert(Entry {
        refusals: 0,
        last: now,
    });
    if now.saturating_duration_since(entry.last) > FORGET_AFTER {
        entry.refusals = 0;
    }
    entry.refusals = entry.refusals.saturating_add(1);
    entry.last = now;
    entry.refusals
}

/// No wait for a first refusal (a typo); then `BASE`, doubling, up to `MAX`.
fn delay(refusals: u32) -> Duration {
    match refusals {
        0 | 1 => Duration::ZERO,
        n => BASE.saturating_mul(1 << (n - 2).min(16)).min(MAX),
    }
}

/// Drops entries past their quiet while; if still too many, the least recent half.
fn evict(entries: &mut HashMap<Key, Entry>, now: Instant) {
    entries.retain(|_, e| now.saturating_duration_since(e.last) <= FORGET_AFTER);
    if entries.len() > MAX_KEYS {
        let mut by_age: Vec<(Instant, Key)> =
            entries.iter().map(|(k, e)| (e.last, k.clone())).collect();
        by_age.sort_by_key(|(last, _)| *last);
        for (_, key) in by_age.into_iter().take(entries.len() - MAX_KEYS / 2) {
            entries.remove(&key);
        }
    }
}

/// A peer-chosen name as a key: bounded, so that names cannot fill memory.
fn truncated(name: &str) -> String {
    name.chars().take(128).collect()
}

/// A peer-chosen string as it may appear in a log: at most 64 characters, control
/// characters and quotes escaped.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn refusals_wait_longer_each_time_up_to_a_bound() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let waits: Vec<Duration> = (0..12).map(|_| t.refused(addr(1), "w1", now).0).collect();
        assert_eq!(waits[0], Duration::ZERO, "a typo costs nothing");
        assert_eq!(waits[1], BASE);
        assert_eq!(waits[2], BASE * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), MAX);
    }

    #[test]
    fn the_address_and_the_name_are_counted_apart() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for n in 0..5u8 {
            t.refused(addr(n), "w1", now);
        }
        // A new address guessing the same name waits for the name's count.
        assert_eq!(t.refused(addr(9), "w1", now).0, BASE * 16);
        // The same address guessing another name waits for the address's count.
        for _ in 0..3 {
            t.refused(addr(7), &format!("x{}", 0), now);
        }
        assert_eq!(t.refused(addr(7), "fresh", now), (BASE * 4, 4));
    }

    #[test]
    fn an_accepted_login_clears_its_name_and_quiet_keys_start_afresh() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..4 {
            t.refused(addr(1), "w1", now);
        }
        t.accepted("w1");
        let later = now + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(t.refused(addr(2), "w1", now).0, Duration::ZERO);
        assert_eq!(t.refused(addr(1), "w2", later), (Duration::ZERO, 1));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_names() {
        let t = LoginThrottle::default();
        let mut now = Instant::now();
        for n in 0..(3 * MAX_KEYS) {
            now += Duration::from_micros(1);
            t.refused(addr(1), &format!("name-{n}"), now);
        }
        assert!(t.lock().len() <= MAX_KEYS + 1);
        assert!(
            t.refused(addr(1), "again", now).1 > 1,
            "the busy address is kept"
        );
    }

    #[test]
    fn printable_strings_are_short_and_escaped() {
        assert_eq!(printable("w1"), "w1");
        assert_eq!(printable("a\nb\x1b[31m\""), "a\\nb\\u{1b}[31m\\\"");
        let long = "x".repeat(500);
        assert_eq!(printable(&long).chars().count(), 65);
    }
}
