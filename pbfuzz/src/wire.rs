//! Bytes for cases: pbwire's notation and encoder for everything that is well formed,
//! and the few byte-level pieces no encoder makes on purpose (bare headers, a scan of
//! where the headers are, so that a mutation can inflate one).

use pbwire::banana::{self, Element};
use pbwire::notation;

pub use pbwire::banana::ty::{FLOAT, INT, LIST, LONGINT, LONGNEG, NEG, STRING, VOCAB};

/// An element header: `n` as a base-128 little-endian prefix, then the type byte.
/// Made by hand because the cases need headers no valid element has (2^63, a list
/// whose elements never come).
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

/// The bytes of an element; an element that cannot be encoded (never the case for
/// the tables, which a test builds) gives nothing.
pub fn enc(e: &Element) -> Vec<u8> {
    banana::encode_to_vec(e).unwrap_or_default()
}

/// The bytes of every top-level expression in `text` (pbwire notation), in order.
pub fn from_notation(text: &str) -> Result<Vec<u8>, notation::ParseError> {
    let mut out = Vec::new();
    for e in notation::parse(text)? {
        out.extend(enc(&e));
    }
    Ok(out)
}

/// A byte string in notation (`b'...'`), for filling a template.
pub fn bytes_notation(bytes: &[u8]) -> String {
    notation::to_string(&Element::Bytes(bytes::Bytes::copy_from_slice(bytes)))
}

/// Where one element header sits in a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// First prefix byte.
    pub start: usize,
    /// The type byte.
    pub type_at: usize,
    pub ty: u8,
    /// The prefix's value (saturating).
    pub n: u64,
}

/// The headers of `bytes`, read as a banana stream from its start, up to the first
/// byte that is no valid header. STRING bodies are skipped (a header inside one is
/// data); a FLOAT's eight bytes too.
pub fn headers(bytes: &[u8]) -> Vec<Header> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let mut n: u64 = 0;
        let mut shift = 0u32;
        while at < bytes.len() && bytes[at] < 0x80 {
            if shift < 64 {
                n = n.saturating_add(u64::from(bytes[at]).checked_shl(shift).unwrap_or(0));
            }
            shift += 7;
            at += 1;
        }
        let Some(&ty) = bytes.get(at) else { break };
        if ty > VOCAB {
            break;
        }
        out.push(Header {
            start,
            type_at: at,
            ty,
            n,
        });
        at += 1;
        match ty {
            STRING => at = at.saturating_add(usize::try_from(n).unwrap_or(usize::MAX)),
            FLOAT => at = at.saturating_add(8),
            _ => {}
        }
    }
    out
}

/// A deterministic generator (xorshift64*): a seed names a run's random choices on
/// every platform and in every version that keeps this function.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_skip_string_bodies() {
        let bytes = from_notation("(message 1 b'\\x80\\x81' (list 300))").unwrap_or_default();
        let types: Vec<u8> = headers(&bytes).iter().map(|h| h.ty).collect();
        assert_eq!(types, vec![LIST, VOCAB, INT, STRING, LIST, VOCAB, INT]);
        let h = headers(&bytes)[6];
        assert_eq!((h.n, h.type_at - h.start), (300, 2));
    }

    #[test]
    fn header_matches_the_encoder() {
        assert_eq!(header(300, INT), enc(&Element::int(300)));
        assert_eq!(header(0, LIST), vec![0, LIST]);
    }
}
