//! The banana encoder: exactly the bytes Twisted's encoder writes.

use super::{ty, Element};
use crate::integer::magnitude_bits;
use crate::Limits;
use bytes::{BufMut, BytesMut};

/// Why an element cannot be sent: a Twisted peer would reject it (or, for integers,
/// banana cannot represent it). Twisted's own encoder refuses the same things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A STRING over Twisted's 640 KiB `SIZE_LIMIT`.
    #[error("string longer than 640 KiB")]
    StringTooLong,
    /// A LIST over Twisted's 640 Ki-element `SIZE_LIMIT`.
    #[error("list longer than 640 Ki elements")]
    ListTooLong,
    /// An integer whose magnitude needs more than the 64-byte (448-bit) prefix.
    #[error("integer magnitude above 2^448 - 1")]
    IntegerTooLarge,
}

const PEER: Limits = Limits::TWISTED;

/// Appends the encoding of `element` to `out`. On error `out` may hold a partial
/// encoding; callers discard it.
pub fn encode(element: &Element, out: &mut BytesMut) -> Result<(), EncodeError> {
    // An explicit stack of sibling iterators: trees built by callers can be deep.
    let mut stack: Vec<std::slice::Iter<'_, Element>> = vec![std::slice::from_ref(element).iter()];
    while let Some(siblings) = stack.last_mut() {
        let Some(e) = siblings.next() else {
            stack.pop();
            continue;
        };
        match e {
            Element::List(items) => {
                if items.len() > PEER.max_list_len {
                    return Err(EncodeError::ListTooLong);
                }
                put_prefix(out, items.len() as u64);
                out.put_u8(ty::LIST);
                stack.push(items.iter());
            }
            Element::Int(i) => {
                if magnitude_bits(i) > 7 * PEER.max_prefix_len as u64 {
                    return Err(EncodeError::IntegerTooLarge);
                }
                out.put_slice(&i.magnitude_base128());
                out.put_u8(match (i.is_negative(), i.fits_short()) {
                    (false, true) => ty::INT,
                    (true, true) => ty::NEG,
                    (false, false) => ty::LONGINT,
                    (true, false) => ty::LONGNEG,
                });
            }
            Element::Float(f) => {
                out.put_u8(ty::FLOAT);
                out.put_u64(f.to_bits());
            }
            Element::Bytes(b) => {
                if b.len() > PEER.max_string_len {
                    return Err(EncodeError::StringTooLong);
                }
                put_prefix(out, b.len() as u64);
                out.put_u8(ty::STRING);
                out.put_slice(b);
            }
            Element::Vocab(w) => {
                put_prefix(out, u64::from(w.index()));
                out.put_u8(ty::VOCAB);
            }
        }
    }
    Ok(())
}

/// Encodes into a fresh vector.
pub fn encode_to_vec(element: &Element) -> Result<Vec<u8>, EncodeError> {
    let mut out = BytesMut::new();
    encode(element, &mut out)?;
    Ok(out.to_vec())
}

/// Base-128 little-endian digits; zero is written as one `00`, as Twisted does.
fn put_prefix(out: &mut BytesMut, mut v: u64) {
    loop {
        out.put_u8((v & 0x7f) as u8);
        v >>= 7;
        if v == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::banana::Word;
    use bytes::Bytes;

    fn hex(e: &Element) -> String {
        encode_to_vec(e)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn writes_twisted_integer_forms() {
        assert_eq!(hex(&Element::int(0)), "0081");
        assert_eq!(hex(&Element::int(128)), "000181");
        assert_eq!(hex(&Element::int((1 << 31) - 1)), "7f7f7f7f0781");
        assert_eq!(hex(&Element::int(1 << 31)), "000000000885");
        assert_eq!(hex(&Element::int(-(1 << 31))), "000000000883");
        assert_eq!(hex(&Element::int(-(1 << 31) - 1)), "010000000886");
        assert_eq!(
            hex(&Element::int(123456789123456789)),
            "153e41663a69265b0185"
        );
    }

    #[test]
    fn writes_floats_lists_strings_vocab() {
        assert_eq!(hex(&Element::Float(1.5)), "843ff8000000000000");
        assert_eq!(hex(&Element::List(vec![])), "0080");
        let nested = Element::List(vec![
            Element::int(1),
            Element::List(vec![Element::Bytes(Bytes::from_static(b"hello"))]),
        ]);
        assert_eq!(hex(&nested), "028001810180058268656c6c6f");
        assert_eq!(
            hex(&Element::Vocab(Word::lookup(b"login").unwrap())),
            "1487"
        );
    }

    #[test]
    fn refuses_what_twisted_refuses() {
        let big = Element::Bytes(Bytes::from(vec![0u8; 640 * 1024 + 1]));
        assert_eq!(encode_to_vec(&big), Err(EncodeError::StringTooLong));
        let ok = Element::Bytes(Bytes::from(vec![0u8; 640 * 1024]));
        assert!(encode_to_vec(&ok).is_ok());
        let huge: crate::Integer = "1".repeat(140).parse().unwrap();
        assert_eq!(
            encode_to_vec(&Element::Int(huge)),
            Err(EncodeError::IntegerTooLarge)
        );
    }
}
