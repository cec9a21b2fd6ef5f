//! Jelly type tags, recognised once per form: by index for a VOCAB token, by length
//! and bytes for a STRING.

use crate::banana::Word;

/// What a list's first element says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    None,
    Boolean,
    Unicode,
    List,
    Tuple,
    Set,
    FrozenSet,
    Dictionary,
    Reference,
    Dereference,
    Remote,
    Local,
    Unpersistable,
    DateTime,
    Date,
    Time,
    TimeDelta,
    Decimal,
    /// A form PB's security refuses, named for the error.
    Forbidden(&'static str),
    /// A qualified class name: a copyable instance, if the class is allowed.
    Class,
    Unknown,
}

impl Tag {
    /// The tag a VOCAB token stands for: the same as its word's bytes.
    pub(super) fn of_word(w: Word) -> Tag {
        match w.index() {
            1 => Tag::None,
            2 => Tag::Forbidden("class"),
            3 => Tag::Dereference,
            4 => Tag::Reference,
            5 => Tag::Dictionary,
            6 => Tag::Forbidden("function"),
            7 => Tag::Forbidden("instance"),
            8 => Tag::List,
            9 => Tag::Forbidden("module"),
            10 => Tag::Forbidden("persistent"),
            11 => Tag::Tuple,
            12 => Tag::Unpersistable,
            13 | 14 | 15 | 18 => Tag::Forbidden("cache or copy form"),
            16 => Tag::Remote,
            17 => Tag::Local,
            _ => Tag::Unknown,
        }
    }

    /// The tag a STRING spells.
    pub(super) fn of_bytes(tag: &[u8]) -> Tag {
        let known = match tag.len() {
            4 => match tag {
                b"None" => Tag::None,
                b"list" => Tag::List,
                b"date" => Tag::Date,
                b"time" => Tag::Time,
                b"copy" => Tag::Forbidden("cache or copy form"),
                _ => Tag::Unknown,
            },
            5 => match tag {
                b"tuple" => Tag::Tuple,
                b"local" => Tag::Local,
                b"class" => Tag::Forbidden("class"),
                b"cache" => Tag::Forbidden("cache or copy form"),
                _ => Tag::Unknown,
            },
            6 => match tag {
                b"remote" => Tag::Remote,
                b"module" => Tag::Forbidden("module"),
                b"method" => Tag::Forbidden("method"),
                b"cached" | b"lcache" => Tag::Forbidden("cache or copy form"),
                _ => Tag::Unknown,
            },
            7 => match tag {
                b"unicode" => Tag::Unicode,
                b"boolean" => Tag::Boolean,
                b"decimal" => Tag::Decimal,
                _ => Tag::Unknown,
            },
            3 if tag == b"set" => Tag::Set,
            8 => match tag {
                b"datetime" => Tag::DateTime,
                b"function" => Tag::Forbidden("function"),
                b"instance" => Tag::Forbidden("instance"),
                _ => Tag::Unknown,
            },
            9 => match tag {
                b"frozenset" => Tag::FrozenSet,
                b"reference" => Tag::Reference,
                b"timedelta" => Tag::TimeDelta,
                _ => Tag::Unknown,
            },
            10 => match tag {
                b"dictionary" => Tag::Dictionary,
                b"persistent" => Tag::Forbidden("persistent"),
                _ => Tag::Unknown,
            },
            11 if tag == b"dereference" => Tag::Dereference,
            13 if tag == b"unpersistable" => Tag::Unpersistable,
            _ => Tag::Unknown,
        };
        match known {
            Tag::Unknown if tag.contains(&b'.') => Tag::Class,
            known => known,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_strings_name_the_same_tags() {
        for w in Word::all() {
            assert_eq!(Tag::of_word(w), Tag::of_bytes(w.as_bytes()), "{w:?}");
        }
        assert_eq!(Tag::of_bytes(b"unicode"), Tag::Unicode);
        assert_eq!(Tag::of_bytes(b"frozenset"), Tag::FrozenSet);
        assert_eq!(Tag::of_bytes(b"a.b"), Tag::Class);
        assert_eq!(Tag::of_bytes(b"version"), Tag::Unknown);
    }
}
