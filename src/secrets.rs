//! Secrets for `%(secret:NAME)s`: read once at start from a folder (one file per
//! secret) and the environment, and redacted wherever build output is kept — log
//! bytes as they stream in, property values, step reasons — so a secret reaches the
//! worker that needs it and nothing else: not the database, the API or the logs.

use crate::config::{valid_secret_name, SecretsConfig};
use memchr::memmem;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Shorter secrets would redact ordinary text (and be guessable anyway).
pub const MIN_LEN: usize = 4;

/// The master's secrets by name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    values: BTreeMap<String, String>,
    /// (value, replacement), longest value first, so a secret that contains another
    /// is replaced whole.
    patterns: Vec<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: a Debug print must not leak what it is meant to hide.
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Secrets {
    /// Reads every secret `config` names: each regular file in `dir` (its name the
    /// secret's, its trailing newline dropped) and each variable in `env`.
    pub fn load(config: &SecretsConfig) -> Result<Secrets, String> {
        let mut values = BTreeMap::new();
        if let Some(dir) = &config.dir {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("secrets folder {}: {e}", dir.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("secrets folder {}: {e}", dir.display()))?;
                let path = entry.path();
                // Not through a link: the folder's files are the secrets.
                let kind = entry
                    .file_type()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !kind.is_file() || name.starts_with('.') {
                    continue;
                }
                if !valid_secret_name(&name) {
                    return Err(format!(
                        "secrets folder {}: {name:?} is not a secret name (letters, digits, \
                         '_', '-' and '.')",
                        dir.display()
                    ));
                }
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read secret {}: {e}", path.display()))?;
                values.insert(name, text.trim_end_matches(['\n', '\r']).to_owned());
            }
        }
        for (name, var) in &config.env {
            let value = std::env::var(var)
                .map_err(|_| format!("secret {name}: environment variable {var} is not set"))?;
            values.insert(name.clone(), value);
        }
        Secrets::from_values(values)
    }

    /// Secrets from name → value; each value must be at least [`MIN_LEN`] bytes.
    pub fn from_values(values: BTreeMap<String, String>) -> Result<Secrets, String> {
        for (name, value) in &values {
            if value.len() < MIN_LEN {
                return Err(format!(
                    "secret {name} is shorter than {MIN_LEN} characters: it could not be \
                     told apart from ordinary output to hide it"
                ));
            }
        }
        let mut patterns: Vec<(Vec<u8>, Vec<u8>)> = values
            .iter()
            .map(|(name, value)| {
                let shown = format!("<secret:{name}>");
                (value.as_bytes().to_vec(), shown.into_bytes())
            })
            .collect();
        patterns.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(Secrets { values, patterns })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret replaced by `<secret:NAME>`.
    pub fn redact_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.redact(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Whole secrets (valid UTF-8) were swapped for ASCII: still UTF-8.
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    /// `bytes` with every secret replaced by `<secret:NAME>`.
    pub fn redact<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let found = self.matches(bytes);
        if found.is_empty() {
            return Cow::Borrowed(bytes);
        }
        Cow::Owned(self.replace(bytes, &found))
    }

    /// A JSON value with every string in it redacted.
    pub fn redact_json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.redact_str(&s).into_owned()),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.redact_str(&k).into_owned(), self.redact_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// Non-overlapping occurrences as (start, pattern index), leftmost first; where
    /// two start together the longer wins.
    fn matches(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut all = self.matches_all(bytes);
        // Pattern indexes run longest first, so ties on start keep the longer.
        all.sort_unstable();
        let mut kept = Vec::with_capacity(all.len());
        let mut free_from = 0;
        for (at, i) in all {
            if at >= free_from {
                free_from = at + self.patterns[i].0.len();
                kept.push((at, i));
            }
        }
        kept
    }

    /// Every occurrence of every secret, as (start, pattern index), unordered.
    fn matches_all(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut all: Vec<(usize, usize)> = Vec::new();
        for (i, (value, _)) in self.patterns.iter().enumerate() {
            all.extend(memmem::find_iter(bytes, value).map(|at| (at, i)));
        }
        all
    }

    fn replace(&self, bytes: &[u8], found: &[(usize, usize)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut from = 0;
        for &(at, i) in found {
            let (value, shown) = &self.patterns[i];
            out.extend_from_slice(&bytes[from..at]);
            out.extend_from_slice(shown);
            from = at + value.len();
        }
        out.extend_from_slice(&bytes[from..]);
        out
    }

    /// Whether `tail` is the start of some secret longer than it: more bytes could
    /// still make it one.
    fn could_grow(&self, tail: &[u8]) -> bool {
        self.patterns
            .iter()
            .any(|(value, _)| value.len() > tail.len() && value.starts_with(tail))
    }

    /// Where to stop in `bytes` when more may follow, and the occurrences before
    /// that: the whole-text choice (leftmost, then longest) is final at a position
    /// only if no longer secret could still start there.
    fn decided(&self, bytes: &[u8]) -> (usize, Vec<(usize, usize)>) {
        let longest = self.patterns.first().map_or(0, |p| p.0.len());
        let mut starts = self.matches_all(bytes);
        let open_from = bytes.len().saturating_sub(longest - 1);
        starts.extend(
            (open_from..bytes.len())
                .filter(|&q| self.could_grow(&bytes[q..]))
                .map(|q| (q, usize::MAX)),
        );
        starts.sort_unstable();
        let mut kept = Vec::new();
        let mut free_from = 0;
        for (at, i) in starts {
            if at < free_from {
                continue;
            }
            if i == usize::MAX || self.could_grow(&bytes[at..]) {
                return (at, kept);
            }
            free_from = at + self.patterns[i].0.len();
            kept.push((at, i));
        }
        (bytes.len(), kept)
    }
}

/// Redacts one stream that arrives in pieces: a secret split across two pieces is
/// still caught, by holding back a piece's tail while it could be a secret's start.
#[derive(Debug, Default)]
pub struct RedactStream {
    held: Vec<u8>,
}

impl RedactStream {
    /// What of `piece` (after anything held back) can be written now, redacted.
    pub fn push<'a>(&mut self, secrets: &Secrets, piece: &'a [u8]) -> Cow<'a, [u8]> {
        if secrets.is_empty() {
            return Cow::Borrowed(piece);
        }
        let mut bytes = std::mem::take(&mut self.held);
        bytes.extend_from_slice(piece);
        let (ready, found) = secrets.decided(&bytes);
        self.held = bytes[ready..].to_vec();
        Cow::Owned(secrets.replace(&bytes[..ready], &found))
    }

    /// What is still held back, redacted: the stream has ended.
    pub fn finish(&mut self, secrets: &Secrets) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        secrets.redact(&held).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        Secrets::from_values(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn every_occurrence_is_replaced_and_the_longer_secret_wins() {
        let s = secrets(&[("short", "abcd"), ("long", "abcdefgh")]);
        assert_eq!(
            s.redact_str("x abcdefgh y abcd z abcdabcd"),
            "x <secret:long> y <secret:short> z <secret:short><secret:short>"
        );
        assert!(matches!(s.redact_str("nothing here"), Cow::Borrowed(_)));
        assert_eq!(
            s.redact_json(serde_json::json!({"k": ["abcd", 1], "abcdefgh": null})),
            serde_json::json!({"k": ["<secret:short>", 1], "<secret:long>": null})
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Secrets::from_values([("k".to_string(), "abc".to_string())].into()).is_err());
    }

    #[test]
    fn debug_shows_names_only() {
        let s = secrets(&[("token", "hunter2hunter2")]);
        assert_eq!(format!("{s:?}"), r#"{"token"}"#);
    }

    /// Every way of cutting `text` in pieces streams to the same redacted whole.
    fn streamed(s: &Secrets, pieces: &[&[u8]]) -> Vec<u8> {
        let mut stream = RedactStream::default();
        let mut out = Vec::new();
        for p in pieces {
            out.extend_from_slice(&stream.push(s, p));
        }
        out.extend(stream.finish(s));
        out
    }

    #[test]
    fn a_secret_split_across_pieces_is_caught_at_every_cut() {
        let s = secrets(&[("a", "abab"), ("t", "tok3n-value"), ("t2", "tok3")]);
        let text = b"xx abab tok3n-value ababab tok3n tok3n-valu";
        let whole = s.redact(text).into_owned();
        assert_eq!(
            String::from_utf8_lossy(&whole),
            "xx <secret:a> <secret:t> <secret:a>ab <secret:t2>n <secret:t2>n-valu"
        );
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let pieces: [&[u8]; 3] = [&text[..i], &text[i..j], &text[j..]];
                assert_eq!(streamed(&s, &pieces), whole, "cut at {i}, {j}");
            }
        }
    }

    #[test]
    fn without_secrets_a_stream_passes_through() {
        let s = Secrets::default();
        let mut stream = RedactStream::default();
        assert!(matches!(stream.push(&s, b"abc"), Cow::Borrowed(_)));
        assert!(stream.finish(&s).is_empty());
    }
}
