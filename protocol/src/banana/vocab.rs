//! The `pb` dialect's vocabulary: 31 byte strings sent as one-byte tokens.

/// Index 1..=31 into the `pb` vocabulary. Index 0 is unused, as in Twisted.
const WORDS: [&[u8]; 32] = [
    b"",
    b"None",
    b"class",
    b"dereference",
    b"reference",
    b"dictionary",
    b"function",
    b"instance",
    b"list",
    b"module",
    b"persistent",
    b"tuple",
    b"unpersistable",
    b"copy",
    b"cache",
    b"cached",
    b"remote",
    b"local",
    b"lcache",
    b"version",
    b"login",
    b"password",
    b"challenge",
    b"logged_in",
    b"not_logged_in",
    b"cachemessage",
    b"message",
    b"answer",
    b"error",
    b"decref",
    b"decache",
    b"uncache",
];

/// A word of the `pb` vocabulary, sent as `<index> 0x87`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Word(u8);

impl Word {
    /// The word with this wire index, if there is one.
    pub fn from_index(index: u64) -> Option<Word> {
        match index {
            1..=31 => Some(Word(index as u8)),
            _ => None,
        }
    }

    /// The word equal to these bytes, if any: what Twisted compresses in dialect `pb`.
    pub fn lookup(bytes: &[u8]) -> Option<Word> {
        // Words are 4..=13 bytes long; skip the scan for anything else (most payloads).
        if !(4..=13).contains(&bytes.len()) {
            return None;
        }
        WORDS
            .iter()
            .position(|w| *w == bytes)
            .filter(|&i| i > 0)
            .map(|i| Word(i as u8))
    }

    /// The wire index.
    pub fn index(self) -> u8 {
        self.0
    }

    /// The word's bytes; a VOCAB token means exactly these bytes.
    pub fn as_bytes(self) -> &'static [u8] {
        WORDS[usize::from(self.0)]
    }

    /// Every word, in index order.
    pub fn all() -> impl Iterator<Item = Word> {
        (1..=31u8).map(Word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_one_words_round_trip() {
        assert_eq!(Word::all().count(), 31);
        for w in Word::all() {
            assert_eq!(Word::lookup(w.as_bytes()), Some(w));
        }
        assert_eq!(Word::lookup(b"login").map(Word::index), Some(20));
        assert_eq!(Word::lookup(b"message").map(Word::index), Some(26));
        assert_eq!(Word::lookup(b"unicode"), None);
        assert_eq!(Word::lookup(b""), None);
        assert_eq!(Word::from_index(0), None);
        assert_eq!(Word::from_index(32), None);
    }
}
