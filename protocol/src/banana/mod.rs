//! Banana: the framing layer. Bytes ⇄ [`Element`] trees.
//!
//! An element is `[prefix: base-128 little-endian, bytes < 0x80][type byte ≥ 0x80][body]`.
//! The decoder is streaming ([`Decoder::decode`] returns `Ok(None)` for "need more
//! bytes"), keeps its own explicit stack of open lists instead of recursing, and checks
//! every [`Limits`](crate::Limits) bound as soon as a header declares a size. It reads
//! an expression into a flat tape first; [`Decoder::decode_ref`] hands that out as an
//! [`ElementRef`] without building a tree.

mod decode;
mod encode;
mod error;
pub mod negotiation;
mod scan;
mod tape;
pub(crate) mod view;
mod vocab;

pub use decode::Decoder;
pub use encode::{encode, encode_to_vec, EncodeError};
pub use error::{DecodeError, DecodeErrorKind};
pub use tape::{ElementRef, Items};
pub use vocab::Word;

use crate::Integer;
use bytes::Bytes;

/// Type bytes, as Twisted names them (public for tools that write raw headers).
pub mod ty {
    /// A list: the header holds its element count.
    pub const LIST: u8 = 0x80;
    /// A non-negative integer: the header holds its value.
    pub const INT: u8 = 0x81;
    /// A byte string: the header holds its length.
    pub const STRING: u8 = 0x82;
    /// A negative integer: the header holds its magnitude.
    pub const NEG: u8 = 0x83;
    /// A float: eight big-endian bytes follow the type byte.
    pub const FLOAT: u8 = 0x84;
    /// A large non-negative integer (Python 2 `long`).
    pub const LONGINT: u8 = 0x85;
    /// A large negative integer.
    pub const LONGNEG: u8 = 0x86;
    /// A vocabulary token (pb dialect): the header holds its number.
    pub const VOCAB: u8 = 0x87;
}

/// The two dialects Twisted knows. `Pb` adds the vocabulary tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// Plain banana: every byte string is a STRING element. Used until negotiation ends.
    #[default]
    None,
    /// Byte strings equal to a vocabulary word travel as VOCAB tokens.
    Pb,
}

impl Dialect {
    /// The name sent during negotiation.
    pub fn name(self) -> &'static [u8] {
        match self {
            Dialect::None => b"none",
            Dialect::Pb => b"pb",
        }
    }

    /// The dialect with this negotiation name.
    pub fn from_name(name: &[u8]) -> Option<Dialect> {
        match name {
            b"none" => Some(Dialect::None),
            b"pb" => Some(Dialect::Pb),
            _ => None,
        }
    }
}

/// One banana element. Lists own their children; byte strings are zero-copy slices of
/// the receive buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    /// LIST: a sequence of elements (a jelly form, a PB message, ...).
    List(Vec<Element>),
    /// INT, NEG, LONGINT or LONGNEG; the encoder picks the type from the value the way
    /// Twisted does.
    Int(Integer),
    /// FLOAT: an IEEE-754 double, kept bit-for-bit (NaN payloads included).
    Float(f64),
    /// STRING.
    Bytes(Bytes),
    /// VOCAB (dialect `pb` only): means exactly the word's bytes.
    Vocab(Word),
}

impl Element {
    /// The bytes of a STRING or VOCAB element: the two are interchangeable for meaning.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Element::Bytes(b) => Some(b),
            Element::Vocab(w) => Some(w.as_bytes()),
            _ => None,
        }
    }

    /// A byte string as Twisted's encoder sends it in `dialect`: a VOCAB token when
    /// `pb` is active and the bytes are a vocabulary word, a STRING otherwise.
    pub fn string(bytes: impl Into<Bytes>, dialect: Dialect) -> Element {
        let bytes = bytes.into();
        match dialect {
            Dialect::Pb => match Word::lookup(&bytes) {
                Some(w) => Element::Vocab(w),
                None => Element::Bytes(bytes),
            },
            Dialect::None => Element::Bytes(bytes),
        }
    }

    /// An integer element.
    pub fn int(v: impl Into<Integer>) -> Element {
        Element::Int(v.into())
    }

    /// Equality that treats a VOCAB token and the STRING of the same bytes as equal,
    /// as every receiver does; NaN floats compare by bits.
    pub fn same_meaning(&self, other: &Element) -> bool {
        match (self, other) {
            (Element::List(a), Element::List(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_meaning(y))
            }
            (Element::Float(a), Element::Float(b)) => a.to_bits() == b.to_bits(),
            (Element::Int(a), Element::Int(b)) => a == b,
            _ => match (self.as_bytes(), other.as_bytes()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }
}

/// Bit-exact equality, distinguishing VOCAB from STRING and comparing floats by bits:
/// what "re-encodes to the same bytes" needs.
pub fn exactly_equal(a: &Element, b: &Element) -> bool {
    match (a, b) {
        (Element::List(x), Element::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| exactly_equal(p, q))
        }
        (Element::Float(x), Element::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}
