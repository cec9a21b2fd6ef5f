//! Whether a webhook delivery is taken: GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of
//! the raw body under the shared secret) and GitLab's `X-Gitlab-Token` (the secret
//! itself), both compared in constant time; then the deliveries already taken, so that
//! a replayed one is refused.
//!
//! Taken deliveries are remembered in memory only — the last [`REMEMBERED`], none older
//! than [`REMEMBER_FOR`] — so a replay is caught within that window and not across a
//! restart of the master.

use crate::config::HookAuth;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

type HmacSha256 = Hmac<Sha256>;

/// How many deliveries each hook remembers.
pub const REMEMBERED: usize = 10_000;
/// How long a delivery is remembered.
pub const REMEMBER_FOR: Duration = Duration::from_secs(24 * 3600);
/// Longest delivery id (GitHub's and GitLab's are 36-character UUIDs).
pub const MAX_DELIVERY_ID: usize = 128;

fn hmac(key: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length: a longer one is hashed, a shorter one padded.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac
}

/// Checks an `X-Hub-Signature-256` value, `sha256=` and 64 hex digits, against the
/// HMAC-SHA256 of the raw `body` under `secret`, in constant time. Answers the MAC,
/// which names the body; the error says what was wrong, never what was expected.
pub fn github_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&[u8]>,
) -> Result<[u8; 32], &'static str> {
    let header = header.ok_or("no X-Hub-Signature-256 header")?;
    let tag = header
        .strip_prefix(b"sha256=")
        .and_then(hex32)
        .ok_or("X-Hub-Signature-256 is not sha256=<64 hex digits>")?;
    hmac(secret, body)
        .verify_slice(&tag)
        .map_err(|_| "wrong X-Hub-Signature-256")?;
    Ok(tag)
}

/// Checks an `X-Gitlab-Token` value against `secret` in constant time: the two are
/// compared as HMACs under the secret, so neither the content nor the length of the
/// secret shows in the time taken.
pub fn gitlab_token(secret: &[u8], header: Option<&[u8]>) -> Result<(), &'static str> {
    let given = header.ok_or("no X-Gitlab-Token header")?;
    let expected = hmac(secret, secret).finalize().into_bytes();
    hmac(secret, given)
        .verify_slice(&expected)
        .map_err(|_| "wrong X-Gitlab-Token")
}

/// 64 hex digits (either case) as 32 bytes.
fn hex32(text: &[u8]) -> Option<[u8; 32]> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// A delivery id header: 1 to [`MAX_DELIVERY_ID`] printable ASCII characters.
pub fn delivery_id(raw: &[u8]) -> Result<String, &'static str> {
    if raw.is_empty() || raw.len() > MAX_DELIVERY_ID || !raw.iter().all(|b| b.is_ascii_graphic()) {
        return Err("the delivery id is not 1 to 128 printable characters");
    }
    Ok(String::from_utf8_lossy(raw).into_owned())
}

/// What a delivery is known by: an id header (its name and value), or (GitHub, signed)
/// the MAC of its body, so a captured delivery sent again under a new id is caught too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeliveryKey {
    Id(&'static str, String),
    Body([u8; 32]),
}

impl fmt::Display for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryKey::Id(header, id) => write!(f, "{header} {id:?}"),
            DeliveryKey::Body(_) => f.write_str("a delivery with this body"),
        }
    }
}

/// The deliveries taken lately: at most `max`, none older than `keep`.
#[derive(Debug)]
pub struct Replays {
    keep: Duration,
    max: usize,
    /// Each key with the number of the delivery that recorded it.
    seen: HashMap<DeliveryKey, u64>,
    /// Deliveries oldest first: number, time, keys. A forgotten delivery stays here
    /// until it is old; its keys are gone from `seen` (or belong to a later number).
    order: VecDeque<(u64, Instant, Vec<DeliveryKey>)>,
    next: u64,
}

impl Default for Replays {
    fn default() -> Replays {
        Replays::new(REMEMBER_FOR, REMEMBERED)
    }
}

impl Replays {
    pub fn new(keep: Duration, max: usize) -> Replays {
        Replays {
            keep,
            max: max.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }

    /// Records a delivery's keys at `now`, unless one of them is remembered: then
    /// nothing is recorded and the error is that key.
    pub fn record(&mut self, keys: &[DeliveryKey], now: Instant) -> Result<(), DeliveryKey> {
        self.expire(now);
        if let Some(seen) = keys.iter().find(|k| self.seen.contains_key(*k)) {
            return Err(seen.clone());
        }
        if keys.is_empty() {
            return Ok(());
        }
        while self.order.len() >= self.max {
            self.drop_oldest();
        }
        let number = self.next;
        self.next += 1;
        for k in keys {
            self.seen.insert(k.clone(), number);
        }
        self.order.push_back((number, now, keys.to_vec()));
        Ok(())
    }

    /// Forgets the keys of a delivery that was not taken after all (it may come again).
    pub fn forget(&mut self, keys: &[DeliveryKey]) {
        for k in keys {
            self.seen.remove(k);
        }
    }

    /// How many keys are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, at, _)| now.saturating_duration_since(*at) >= self.keep)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((number, _, keys)) = self.order.pop_front() {
            for k in keys {
                if self.seen.get(&k) == Some(&number) {
                    self.seen.remove(&k);
                }
            }
        }
    }
}

/// A secret as read, shown nowhere.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One hook's state in a running master: its secret once read, and the deliveries it
/// has taken.
#[derive(Debug, Default)]
pub struct Gate {
    /// The secret, with the generation of the config it was read under.
    secret: Mutex<Option<(u64, Secret)>>,
    replays: Mutex<Replays>,
}

impl Gate {
    /// The secret of `auth` (`None` when insecure), read at the first delivery and
    /// kept while the config's `generation` stays; a failed read is tried again at
    /// the next one.
    pub fn secret(&self, auth: &HookAuth, generation: u64) -> Result<Option<Secret>, String> {
        if matches!(auth, HookAuth::Insecure) {
            return Ok(None);
        }
        let mut cached = self.secret.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((read_under, secret)) = &*cached {
            if *read_under == generation {
                return Ok(Some(secret.clone()));
            }
        }
        let Some(text) = auth.secret()? else {
            return Ok(None);
        };
        let secret = Secret(Arc::from(text.into_bytes()));
        *cached = Some((generation, secret.clone()));
        Ok(Some(secret))
    }

    /// Records a delivery now; the error is the key already remembered.
    pub fn record(&self, keys: &[DeliveryKey]) -> Result<(), DeliveryKey> {
        self.replays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(keys, Instant::now())
    }

    /// Forgets a delivery that was recorded but not taken.
    pub fn forget(&self, keys: &[DeliveryKey]) {
        self.replays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    /// GitHub's documented example, also computed with Python's hmac module.
    const SIGNATURE: &[u8] =
        b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn a_kept_secret_is_read_again_under_a_new_config() {
        let file = std::env::temp_dir().join(format!("pbmaster-gate-{}", std::process::id()));
        std::fs::write(&file, "first").unwrap();
        let text = format!(
            "[master]\ndata_dir = 'd'\n[hooks.github]\nsecret_file = '{}'\n",
            file.display()
        );
        let config = crate::config::parse(&text).unwrap();
        let auth = config.hooks.github.expect("hook");
        let gate = Gate::default();
        let read = |generation| gate.secret(&auth, generation).unwrap().unwrap();
        assert_eq!(read(0).bytes(), b"first");
        std::fs::write(&file, "second").unwrap();
        assert_eq!(read(0).bytes(), b"first", "kept while the config stays");
        assert_eq!(
            read(1).bytes(),
            b"second",
            "read again after a reconfiguration"
        );
        std::fs::remove_file(&file).ok();
    }

    #[test]
    fn github_signature_matches_the_known_vector() {
        let mac = github_signature(SECRET, BODY, Some(SIGNATURE)).unwrap();
        assert_eq!(mac[..4], [0x75, 0x71, 0x07, 0xea]);
        let upper = SIGNATURE.to_ascii_uppercase();
        let upper = [b"sha256=", &upper[7..]].concat();
        assert!(github_signature(SECRET, BODY, Some(&upper)).is_ok());
    }

    #[test]
    fn github_signature_refuses_missing_malformed_and_wrong() {
        assert!(github_signature(SECRET, BODY, None)
            .unwrap_err()
            .contains("no X-Hub"));
        let malformed: [&[u8]; 5] = [
            b"",
            b"757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            b"sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            b"sha256=757107ea",
            b"sha256=z57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ];
        for m in malformed {
            assert!(
                github_signature(SECRET, BODY, Some(m))
                    .unwrap_err()
                    .contains("not sha256="),
                "{}",
                String::from_utf8_lossy(m)
            );
        }
        let wrong = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18";
        assert_eq!(
            github_signature(SECRET, BODY, Some(wrong)),
            Err("wrong X-Hub-Signature-256")
        );
        // The same signature over another body, or under another secret.
        assert!(github_signature(SECRET, b"Hello, World?", Some(SIGNATURE)).is_err());
        assert!(github_signature(b"another", BODY, Some(SIGNATURE)).is_err());
    }

    #[test]
    fn gitlab_token_must_equal_the_secret() {
        assert!(gitlab_token(b"tok", Some(b"tok")).is_ok());
        for wrong in [&b"tok "[..], b"to", b"", b"TOK", b"tokk"] {
            assert_eq!(
                gitlab_token(b"tok", Some(wrong)),
                Err("wrong X-Gitlab-Token")
            );
        }
        assert_eq!(gitlab_token(b"tok", None), Err("no X-Gitlab-Token header"));
    }

    #[test]
    fn delivery_ids_are_bounded() {
        assert_eq!(
            delivery_id(b"72d3162e-cc78-11e3-81ab-4c9367dc0958").unwrap(),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        assert!(delivery_id(b"").is_err());
        assert!(delivery_id(b"a b").is_err());
        assert!(delivery_id(&[b'a'; MAX_DELIVERY_ID + 1]).is_err());
        assert!(delivery_id(&[b'a'; MAX_DELIVERY_ID]).is_ok());
    }

    fn id(s: &str) -> DeliveryKey {
        DeliveryKey::Id("X-GitHub-Delivery", s.to_owned())
    }

    #[test]
    fn replays_are_refused_within_the_window() {
        let t0 = Instant::now();
        let mut r = Replays::new(Duration::from_secs(60), 100);
        r.record(&[id("a"), DeliveryKey::Body([1; 32])], t0)
            .unwrap();
        assert_eq!(r.record(&[id("a")], t0), Err(id("a")));
        // The same body under a new id is the same delivery.
        assert_eq!(
            r.record(&[id("b"), DeliveryKey::Body([1; 32])], t0),
            Err(DeliveryKey::Body([1; 32]))
        );
        // Refused deliveries record nothing.
        r.record(&[id("b")], t0).unwrap();
        // After the window the id is taken again.
        let later = t0 + Duration::from_secs(61);
        r.record(&[id("a")], later).unwrap();
        assert_eq!(r.len(), 1, "b expired, a recorded again");
    }

    #[test]
    fn replays_keep_a_bounded_number() {
        let t0 = Instant::now();
        let mut r = Replays::new(Duration::from_secs(3600), 3);
        for i in 0..10 {
            r.record(&[id(&i.to_string())], t0).unwrap();
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.order.len(), 3);
        r.record(&[id("9")], t0).unwrap_err();
        r.record(&[id("0")], t0).unwrap();
    }

    #[test]
    fn forgotten_deliveries_may_come_again() {
        let t0 = Instant::now();
        let mut r = Replays::new(Duration::from_secs(60), 2);
        r.record(&[id("a")], t0).unwrap();
        r.forget(&[id("a")]);
        r.record(&[id("a")], t0).unwrap();
        // The stale first record is dropped without dropping the second.
        r.record(&[id("b")], t0).unwrap();
        assert_eq!(r.record(&[id("a")], t0), Err(id("a")));
        r.record(&[id("c")], t0).unwrap();
        assert_eq!(r.len(), 2, "{r:?}");
    }
}
