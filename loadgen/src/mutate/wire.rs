//! Byte-level helpers for building valid and invalid PB messages by hand.

use bytes::Bytes;
use pbwire::banana::{self, Dialect, Element};

/// Banana type bytes.
pub const LIST: u8 = 0x80;
pub const INT: u8 = 0x81;
pub const STRING: u8 = 0x82;
pub const NEG: u8 = 0x83;
pub const FLOAT: u8 = 0x84;
pub const LONGINT: u8 = 0x85;
pub const VOCAB: u8 = 0x87;

/// An element header: `n` as a base-128 little-endian prefix, then the type byte.
pub fn header(mut n: u64, ty: u8) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        out.push((n & 0x7f) as u8);
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    out.push(ty);
    out
}

/// A byte string, sent as a vocabulary token when it is one (as Twisted does).
pub fn s(text: &str) -> Element {
    Element::string(Bytes::copy_from_slice(text.as_bytes()), Dialect::Pb)
}

/// A byte string that is never a vocabulary token.
pub fn raw(bytes: &[u8]) -> Element {
    Element::Bytes(Bytes::copy_from_slice(bytes))
}

pub fn int(v: i64) -> Element {
    Element::int(v)
}

pub fn list(items: Vec<Element>) -> Element {
    Element::List(items)
}

pub fn tuple(items: Vec<Element>) -> Element {
    let mut v = vec![s("tuple")];
    v.extend(items);
    list(v)
}

pub fn dict() -> Element {
    list(vec![s("dictionary")])
}

pub fn unicode(text: &str) -> Element {
    list(vec![raw(b"unicode"), raw(text.as_bytes())])
}

/// `(message id object method 1 args kw)`.
pub fn call(id: i64, object: Element, method: Element, args: Element, kw: Element) -> Element {
    list(vec![
        s("message"),
        int(id),
        object,
        method,
        int(1),
        args,
        kw,
    ])
}

/// The bytes of an element; elements here are always encodable, and an empty result
/// would only make a case send nothing.
pub fn enc(e: &Element) -> Vec<u8> {
    banana::encode_to_vec(e).unwrap_or_default()
}

/// A deterministic generator (xorshift64*) for the randomised cases.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}
