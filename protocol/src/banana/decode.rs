//! The streaming banana decoder.

use super::scan::Scanner;
use super::tape::ElementRef;
use super::{DecodeError, DecodeErrorKind, Dialect, Element};
use crate::Limits;
use bytes::{Buf, Bytes, BytesMut};

/// Decodes a banana byte stream into top-level expressions.
///
/// Feed it the receive buffer with [`decode`](Decoder::decode) or
/// [`decode_ref`](Decoder::decode_ref). A complete expression is taken off the front
/// of the buffer at once; a partial one stays in the buffer (at most
/// [`Limits::max_message_bytes`]) while the decoder remembers how far it has read, so
/// no byte is parsed twice except the few bytes of a header whose body has not
/// arrived. Lists are tracked on an explicit stack, never by recursion. After an error
/// the decoder stays failed: the stream cannot be resynchronised, and the connection
/// should be closed.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    dialect: Dialect,
    scanner: Scanner,
    /// The bytes of the expression last returned; its tape is the scanner's.
    expression: Bytes,
    /// Whether `expression` and the tape are a returned expression, to be dropped
    /// on the next call.
    returned: bool,
    /// Bytes consumed since the stream began: the offset of `buf[0]`.
    consumed: u64,
    /// Offset of the top-level expression being decoded (or last returned).
    expression_start: u64,
    failed: Option<DecodeError>,
}

impl Decoder {
    /// A decoder in dialect `none`, as every connection starts.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            dialect: Dialect::None,
            scanner: Scanner::default(),
            expression: Bytes::new(),
            returned: false,
            consumed: 0,
            expression_start: 0,
            failed: None,
        }
    }

    /// Switches dialect, as both sides do once negotiation has picked one.
    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.dialect = dialect;
    }

    /// The dialect in force.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The bounds this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes consumed from the stream so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Stream offset of the first byte of the expression most recently returned (or
    /// being decoded).
    pub fn expression_start(&self) -> u64 {
        self.expression_start
    }

    /// Whether a top-level expression is partly decoded.
    pub fn in_expression(&self) -> bool {
        self.scanner.in_list()
    }

    /// Decodes the next complete top-level expression from the front of `buf` as an
    /// owned tree.
    ///
    /// `Ok(None)`: more bytes are needed (everything usable has been read).
    /// `Err`: the stream is corrupt or over a limit; the decoder stays failed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Element>, DecodeError> {
        Ok(self.decode_ref(buf)?.map(|e| e.to_element()))
    }

    /// Like [`decode`](Self::decode), without building a tree: the expression is read
    /// in place, valid until the next call. The cheaper way to decode; the PB layer
    /// reads messages from it directly ([`pb::decode_ref`](crate::pb::decode_ref)).
    pub fn decode_ref(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<ElementRef<'_>>, DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.returned {
            self.returned = false;
            self.expression = Bytes::new();
            self.scanner.reset();
        }
        self.expression_start = self.consumed;
        match self.scanner.run(&buf[..], &self.limits, self.dialect) {
            Ok(None) => Ok(None),
            Ok(Some(len)) => {
                // Most messages hold no string: those are dropped without sharing
                // the buffer.
                if self.scanner.refers_to_bytes() {
                    self.expression = buf.split_to(len).freeze();
                } else {
                    buf.advance(len);
                }
                self.consumed += len as u64;
                self.returned = true;
                Ok(Some(ElementRef::new(
                    &self.expression,
                    self.scanner.nodes(),
                )))
            }
            Err((kind, at)) => {
                let e = DecodeError {
                    kind,
                    offset: self.consumed + at as u64,
                };
                self.failed = Some(e);
                Err(e)
            }
        }
    }

    /// Forgets the expression last returned and gives back the space kept to decode
    /// the next one (an expression partly read keeps its progress).
    pub fn release_memory(&mut self) {
        if self.returned {
            self.returned = false;
            self.expression = Bytes::new();
            self.scanner.reset();
        }
        self.scanner.release();
    }

    /// Reports input that ended inside an expression, at end of stream.
    pub fn finish(&mut self, buf: &BytesMut) -> Result<(), DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !buf.is_empty() || self.in_expression() {
            let e = DecodeError {
                kind: DecodeErrorKind::Truncated,
                offset: self.consumed,
            };
            self.failed = Some(e);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Integer;

    fn decode_all(bytes: &[u8], dialect: Dialect) -> Result<Vec<Element>, DecodeError> {
        let mut d = Decoder::new(Limits::default());
        d.set_dialect(dialect);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(e) = d.decode(&mut buf)? {
            out.push(e);
        }
        d.finish(&buf)?;
        Ok(out)
    }

    fn kind(bytes: &[u8], dialect: Dialect) -> (DecodeErrorKind, u64) {
        let e = decode_all(bytes, dialect).unwrap_err();
        (e.kind, e.offset)
    }

    #[test]
    fn accepts_every_atom() {
        let got = decode_all(
            &[
                0x00, 0x81, 0x01, 0x83, 0x00, 0x01, 0x81, 0x84, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x02,
                0x82, b'h', b'i',
            ],
            Dialect::None,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Element::int(0),
                Element::int(-1),
                Element::int(128),
                Element::Float(1.5),
                Element::Bytes(Bytes::from_static(b"hi"))
            ]
        );
    }

    #[test]
    fn accepts_nested_lists_fed_byte_by_byte() {
        let wire = [
            0x02, 0x80, 0x01, 0x81, 0x01, 0x80, 0x05, 0x82, b'h', b'e', b'l', b'l', b'o',
        ];
        let mut d = Decoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            if let Some(e) = d.decode(&mut buf).unwrap() {
                out.push(e);
            }
        }
        assert_eq!(
            out,
            vec![Element::List(vec![
                Element::int(1),
                Element::List(vec![Element::Bytes(Bytes::from_static(b"hello"))])
            ])]
        );
        assert_eq!(d.consumed(), wire.len() as u64);
    }

    #[test]
    fn accepts_empty_prefix_as_zero() {
        assert_eq!(
            decode_all(&[0x80, 0x81], Dialect::None).unwrap(),
            vec![Element::List(vec![]), Element::int(0)]
        );
    }

    #[test]
    fn rejects_long_prefix_before_type_byte_arrives() {
        let mut d = Decoder::new(Limits::default());
        let mut buf = BytesMut::from(&[0x01u8; 64][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&[0x01]);
        assert_eq!(
            d.decode(&mut buf).unwrap_err().kind,
            DecodeErrorKind::PrefixTooLong
        );
    }

    #[test]
    fn accepts_sixty_four_byte_prefix() {
        let mut wire = vec![0x7f; 64];
        wire.push(0x85);
        let got = decode_all(&wire, Dialect::None).unwrap();
        assert!(matches!(&got[0], Element::Int(Integer::Big(_))));
    }

    #[test]
    fn rejects_oversize_string_from_its_header_alone() {
        // 655361 = 0x01 0x00 0x28 in base 128; no body follows, yet it is refused.
        let (k, off) = kind(&[0x00, 0x81, 0x01, 0x00, 0x28, 0x82], Dialect::None);
        assert_eq!((k, off), (DecodeErrorKind::StringTooLong, 2));
    }

    #[test]
    fn rejects_oversize_list() {
        assert_eq!(
            kind(&[0x01, 0x00, 0x28, 0x80], Dialect::None).0,
            DecodeErrorKind::ListTooLong
        );
    }

    #[test]
    fn rejects_unknown_type_and_vocab() {
        assert_eq!(
            kind(&[0x01, 0x88], Dialect::Pb).0,
            DecodeErrorKind::UnknownType(0x88)
        );
        assert_eq!(
            kind(&[0x01, 0x87], Dialect::None).0,
            DecodeErrorKind::VocabInPlainDialect
        );
        assert_eq!(
            kind(&[0x20, 0x87], Dialect::Pb).0,
            DecodeErrorKind::UnknownVocab
        );
        assert_eq!(kind(&[0x87], Dialect::Pb).0, DecodeErrorKind::UnknownVocab);
    }

    #[test]
    fn rejects_deep_nesting_without_recursing() {
        let wire = [0x01u8, 0x80].repeat(100_000);
        assert_eq!(
            kind(&wire, Dialect::None),
            (DecodeErrorKind::NestingTooDeep, 128)
        );
    }

    #[test]
    fn rejects_message_over_byte_limit_before_buffering_body() {
        let limits = Limits {
            max_message_bytes: 100,
            ..Limits::default()
        };
        let mut d = Decoder::new(limits);
        // A list of two strings; the second declares 90 bytes with none present.
        let mut buf = BytesMut::from(&[0x02, 0x80, 0x0a, 0x82][..]);
        buf.extend_from_slice(&[b'x'; 10]);
        buf.extend_from_slice(&[0x5a, 0x82]);
        assert_eq!(
            d.decode(&mut buf).unwrap_err().kind,
            DecodeErrorKind::MessageTooLarge
        );
    }

    #[test]
    fn rejects_too_many_elements() {
        let limits = Limits {
            max_message_elements: 3,
            ..Limits::default()
        };
        let mut d = Decoder::new(limits);
        let mut buf = BytesMut::from(&[0x05, 0x80, 0x81, 0x81, 0x81, 0x81, 0x81][..]);
        assert_eq!(
            d.decode(&mut buf).unwrap_err().kind,
            DecodeErrorKind::TooManyElements
        );
    }

    #[test]
    fn element_limits_are_per_expression() {
        let limits = Limits {
            max_message_elements: 3,
            ..Limits::default()
        };
        let mut d = Decoder::new(limits);
        let mut buf = BytesMut::from(&[0x02, 0x80, 0x81, 0x81, 0x02, 0x80, 0x81, 0x81][..]);
        assert!(d.decode(&mut buf).unwrap().is_some());
        assert!(d.decode(&mut buf).unwrap().is_some());
    }

    #[test]
    fn reports_truncation_at_end() {
        assert_eq!(
            kind(&[0x02, 0x80, 0x01, 0x81], Dialect::None),
            (DecodeErrorKind::Truncated, 0)
        );
        assert_eq!(
            kind(&[0x00, 0x81, 0x05, 0x82, b'a'], Dialect::None),
            (DecodeErrorKind::Truncated, 2)
        );
    }

    #[test]
    fn stays_failed_after_an_error() {
        let mut d = Decoder::new(Limits::default());
        let mut buf = BytesMut::from(&[0xff][..]);
        assert!(d.decode(&mut buf).is_err());
        let mut good = BytesMut::from(&[0x00, 0x81][..]);
        assert!(d.decode(&mut good).is_err());
    }
}
