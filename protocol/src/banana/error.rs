//! Decode errors, with the byte offset where the offending element starts.

use std::fmt;

/// Why a banana stream was rejected. Small and `Copy` so tests can assert it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// More prefix bytes than `Limits::max_prefix_len` before a type byte.
    PrefixTooLong,
    /// A type byte above 0x87.
    UnknownType(u8),
    /// A STRING longer than `Limits::max_string_len`.
    StringTooLong,
    /// A LIST longer than `Limits::max_list_len`.
    ListTooLong,
    /// A VOCAB token before the `pb` dialect was selected.
    VocabInPlainDialect,
    /// A VOCAB index outside 1..=31.
    UnknownVocab,
    /// Lists nested deeper than `Limits::max_depth`.
    NestingTooDeep,
    /// A top-level expression larger than `Limits::max_message_bytes`.
    MessageTooLarge,
    /// A top-level expression with more than `Limits::max_message_elements` elements.
    TooManyElements,
    /// The input ended inside an element (only reported at end of input).
    Truncated,
}

impl DecodeErrorKind {
    /// The snake-case name used in fixtures and messages.
    pub fn name(self) -> &'static str {
        match self {
            DecodeErrorKind::PrefixTooLong => "prefix_too_long",
            DecodeErrorKind::UnknownType(_) => "unknown_type",
            DecodeErrorKind::StringTooLong => "string_too_long",
            DecodeErrorKind::ListTooLong => "list_too_long",
            DecodeErrorKind::VocabInPlainDialect => "vocab_in_plain_dialect",
            DecodeErrorKind::UnknownVocab => "unknown_vocab",
            DecodeErrorKind::NestingTooDeep => "nesting_too_deep",
            DecodeErrorKind::MessageTooLarge => "message_too_large",
            DecodeErrorKind::TooManyElements => "too_many_elements",
            DecodeErrorKind::Truncated => "truncated",
        }
    }

    fn describe(self) -> String {
        match self {
            DecodeErrorKind::PrefixTooLong => "prefix longer than the limit".into(),
            DecodeErrorKind::UnknownType(t) => format!("unknown type byte 0x{t:02x}"),
            DecodeErrorKind::StringTooLong => "string longer than the limit".into(),
            DecodeErrorKind::ListTooLong => "list longer than the limit".into(),
            DecodeErrorKind::VocabInPlainDialect => {
                "vocabulary token before the pb dialect was chosen".into()
            }
            DecodeErrorKind::UnknownVocab => "unknown vocabulary index".into(),
            DecodeErrorKind::NestingTooDeep => "lists nested deeper than the limit".into(),
            DecodeErrorKind::MessageTooLarge => "message larger than the limit".into(),
            DecodeErrorKind::TooManyElements => "message has more elements than the limit".into(),
            DecodeErrorKind::Truncated => "input ends inside an element".into(),
        }
    }
}

/// A rejected stream: what was wrong and the offset of the element that was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// Byte offset, from the start of the stream, of the first byte of the rejected
    /// element (its first prefix byte).
    pub offset: u64,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offset {}: {} ({})",
            self.offset,
            self.kind.describe(),
            self.kind.name()
        )
    }
}
