//! The streaming banana decoder.

use super::{ty, whole, DecodeError, DecodeErrorKind, Dialect, Element, Word};
use crate::{Integer, Limits};
use bytes::{Buf, BytesMut};
use nom::bytes::streaming::take_while_m_n;
use nom::number::streaming::{be_f64, u8 as type_byte};
use nom::{IResult, Parser};

/// Decodes a banana byte stream into top-level [`Element`]s.
///
/// Feed it the receive buffer with [`decode`](Decoder::decode); it consumes complete
/// elements from the front and keeps partially received lists on an explicit stack, so
/// no byte is parsed twice except the few bytes of a header whose body has not
/// arrived. After an error the decoder stays failed: the stream cannot be
/// resynchronised, and the connection should be closed.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    dialect: Dialect,
    /// Lists whose elements are still arriving, innermost last.
    open: Vec<OpenList>,
    /// Bytes consumed since the stream began: the offset of `buf[0]`.
    consumed: u64,
    /// Offset of the top-level expression being decoded (or last returned).
    expression_start: u64,
    expression_bytes: usize,
    expression_elements: usize,
    failed: Option<DecodeError>,
    /// Scratch space of the whole-expression fast path.
    scan_stack: Vec<u64>,
    scan_tape: Vec<whole::Header>,
}

#[derive(Debug)]
struct OpenList {
    remaining: usize,
    items: Vec<Element>,
}

/// A parsed element header: the prefix digits and the type byte.
struct Header<'a> {
    prefix: &'a [u8],
    type_byte: u8,
}

impl Header<'_> {
    fn len(&self) -> usize {
        self.prefix.len() + 1
    }

    /// The prefix as a count or length, saturating: anything that large is over every
    /// limit anyway.
    fn value(&self) -> u64 {
        let mut v: u64 = 0;
        for &d in self.prefix.iter().rev() {
            v = match v.checked_mul(128) {
                Some(x) => x | u64::from(d),
                None => return u64::MAX,
            };
        }
        v
    }
}

/// Up to `max_prefix + 1` bytes below 0x80, then a type byte. Returning more than
/// `max_prefix` digits tells the caller the prefix is too long.
fn header(input: &[u8], max_prefix: usize) -> IResult<&[u8], Header<'_>> {
    // A streaming parser waits for one byte past a full-length run; a run already over
    // the limit must fail now, before more is buffered.
    if input.len() > max_prefix && input[..=max_prefix].iter().all(|&b| b < 0x80) {
        return Ok((
            input,
            Header {
                prefix: &input[..=max_prefix],
                type_byte: 0,
            },
        ));
    }
    let (rest, prefix) = take_while_m_n(0, max_prefix + 1, |b| b < 0x80).parse(input)?;
    if prefix.len() > max_prefix {
        return Ok((
            rest,
            Header {
                prefix,
                type_byte: 0,
            },
        ));
    }
    let (rest, type_byte) = type_byte(rest)?;
    Ok((rest, Header { prefix, type_byte }))
}

/// Allocation for a list is grown as elements arrive, never sized by the peer's count
/// beyond this.
pub(super) const INITIAL_LIST_CAPACITY: usize = 16;

impl Decoder {
    /// A decoder in dialect `none`, as every connection starts.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            dialect: Dialect::None,
            open: Vec::new(),
            consumed: 0,
            expression_start: 0,
            expression_bytes: 0,
            expression_elements: 0,
            failed: None,
            scan_stack: Vec::new(),
            scan_tape: Vec::new(),
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
        !self.open.is_empty()
    }

    /// Decodes the next complete top-level expression from the front of `buf`.
    ///
    /// `Ok(None)`: more bytes are needed (everything usable has been consumed).
    /// `Err`: the stream is corrupt or over a limit; the decoder stays failed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Element>, DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.decode_inner(buf) {
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
            ok => ok,
        }
    }

    /// Reports input that ended inside an expression, at end of stream.
    pub fn finish(&mut self, buf: &BytesMut) -> Result<(), DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !buf.is_empty() || self.in_expression() {
            let offset = if self.in_expression() {
                self.expression_start
            } else {
                self.consumed
            };
            let e = DecodeError {
                kind: DecodeErrorKind::Truncated,
                offset,
            };
            self.failed = Some(e);
            return Err(e);
        }
        Ok(())
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Element>, DecodeError> {
        if self.open.is_empty() {
            if let Some(done) = self.decode_whole(buf) {
                return done.map(Some);
            }
        }
        loop {
            let offset = self.consumed;
            let fail = |kind| DecodeError { kind, offset };
            let (rest, h) = match header(&buf[..], self.limits.max_prefix_len) {
                Ok(parsed) => parsed,
                Err(nom::Err::Incomplete(_)) => return Ok(None),
                // The header parser only ever asks for more input.
                Err(_) => return Ok(None),
            };
            if h.prefix.len() > self.limits.max_prefix_len {
                return Err(fail(DecodeErrorKind::PrefixTooLong));
            }
            let starting = self.open.is_empty();
            let (bytes_so_far, elements_so_far) = if starting {
                (0, 0)
            } else {
                (self.expression_bytes, self.expression_elements)
            };
            if elements_so_far >= self.limits.max_message_elements {
                return Err(fail(DecodeErrorKind::TooManyElements));
            }
            // Bytes of the element that are known from its header; a STRING or FLOAT body
            // is added below, before waiting for it.
            let mut element_len = h.len();
            let mut body_len = 0usize;
            match h.type_byte {
                ty::LIST => {
                    if h.value() > self.limits.max_list_len as u64 {
                        return Err(fail(DecodeErrorKind::ListTooLong));
                    }
                    if self.open.len() >= self.limits.depth() {
                        return Err(fail(DecodeErrorKind::NestingTooDeep));
                    }
                }
                ty::STRING => {
                    let len = h.value();
                    if len > self.limits.max_string_len as u64 {
                        return Err(fail(DecodeErrorKind::StringTooLong));
                    }
                    body_len = len as usize;
                }
                ty::FLOAT => body_len = 8,
                ty::INT | ty::NEG | ty::LONGINT | ty::LONGNEG => {}
                ty::VOCAB => {
                    if self.dialect != Dialect::Pb {
                        return Err(fail(DecodeErrorKind::VocabInPlainDialect));
                    }
                    if Word::from_index(h.value()).is_none() {
                        return Err(fail(DecodeErrorKind::UnknownVocab));
                    }
                }
                other => return Err(fail(DecodeErrorKind::UnknownType(other))),
            }
            element_len += body_len;
            if bytes_so_far.saturating_add(element_len) > self.limits.max_message_bytes {
                return Err(fail(DecodeErrorKind::MessageTooLarge));
            }
            if rest.len() < body_len {
                return Ok(None);
            }
            // Everything is checked and present: build the element and consume it.
            let element = match h.type_byte {
                ty::LIST => {
                    let count = h.value() as usize;
                    if count > 0 {
                        self.advance(buf, element_len, starting, bytes_so_far, elements_so_far);
                        self.open.push(OpenList {
                            remaining: count,
                            items: Vec::with_capacity(count.min(INITIAL_LIST_CAPACITY)),
                        });
                        continue;
                    }
                    Element::List(Vec::new())
                }
                ty::INT | ty::LONGINT => Element::Int(Integer::from_base128(false, h.prefix)),
                ty::NEG | ty::LONGNEG => Element::Int(Integer::from_base128(true, h.prefix)),
                ty::FLOAT => {
                    let parsed: IResult<&[u8], f64> = be_f64(rest);
                    match parsed {
                        Ok((_, f)) => Element::Float(f),
                        Err(_) => return Ok(None),
                    }
                }
                ty::VOCAB => match Word::from_index(h.value()) {
                    Some(w) => Element::Vocab(w),
                    None => return Err(fail(DecodeErrorKind::UnknownVocab)),
                },
                _ => {
                    // STRING: split the body off the buffer without copying.
                    let header_len = h.len();
                    self.advance(buf, header_len, starting, bytes_so_far, elements_so_far);
                    let body = buf.split_to(body_len).freeze();
                    self.consumed += body_len as u64;
                    self.expression_bytes += body_len;
                    if let Some(done) = self.complete(Element::Bytes(body)) {
                        return Ok(Some(done));
                    }
                    continue;
                }
            };
            self.advance(buf, element_len, starting, bytes_so_far, elements_so_far);
            if let Some(done) = self.complete(element) {
                return Ok(Some(done));
            }
        }
    }

    /// The fast path: a whole, valid expression at the front of `buf`, consumed at
    /// once. `None` leaves everything to the incremental path.
    fn decode_whole(&mut self, buf: &mut BytesMut) -> Option<Result<Element, DecodeError>> {
        let (len, elements) = whole::scan(
            &buf[..],
            &self.limits,
            self.dialect,
            &mut self.scan_stack,
            &mut self.scan_tape,
        )?;
        let start = self.consumed;
        let bytes = buf.split_to(len).freeze();
        self.expression_start = start;
        self.consumed += len as u64;
        self.expression_bytes = len;
        self.expression_elements = elements;
        Some(whole::build(&bytes, &self.scan_tape).ok_or(DecodeError {
            // Unreachable: `build` accepts whatever `scan` accepted.
            kind: DecodeErrorKind::Truncated,
            offset: start,
        }))
    }

    /// Consumes `len` bytes of the current element and counts it.
    fn advance(
        &mut self,
        buf: &mut BytesMut,
        len: usize,
        starting: bool,
        bytes: usize,
        elements: usize,
    ) {
        if starting {
            self.expression_start = self.consumed;
        }
        buf.advance(len);
        self.consumed += len as u64;
        self.expression_bytes = bytes + len;
        self.expression_elements = elements + 1;
    }

    /// Adds a finished element to the innermost open list, closing every list that it
    /// completes. Returns the top-level expression once there is one.
    fn complete(&mut self, mut element: Element) -> Option<Element> {
        loop {
            let Some(top) = self.open.last_mut() else {
                return Some(element);
            };
            top.items.push(element);
            top.remaining -= 1;
            if top.remaining > 0 {
                return None;
            }
            let done = self.open.pop()?;
            element = Element::List(done.items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
