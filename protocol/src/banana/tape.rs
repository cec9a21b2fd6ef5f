//! A decoded expression kept flat: one [`Node`] per element, in wire order, over the
//! expression's bytes. Reading it allocates nothing; building an owned [`Element`]
//! tree from it is a separate, optional step.

use super::{Element, Word};
use crate::Integer;
use bytes::Bytes;
use std::fmt;

/// One element of a flat expression. Offsets are into the expression's bytes, which
/// the decoder caps at 4 GiB, so they fit `u32` and a node fits 16 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Node {
    /// `len` elements follow; the list and all its descendants are `span` nodes.
    List {
        len: u32,
        span: u32,
    },
    /// An integer of at most 9 base-128 digits (63 bits): decoded while scanning.
    Int(i64),
    /// A longer integer: its digits, decoded on demand.
    BigInt {
        negative: bool,
        start: u32,
        end: u32,
    },
    Float(f64),
    /// A STRING's body.
    Bytes {
        start: u32,
        end: u32,
    },
    Vocab(Word),
}

impl Node {
    /// Nodes taken by this element and its descendants.
    fn span(&self) -> usize {
        match *self {
            Node::List { span, .. } => span as usize,
            _ => 1,
        }
    }
}

/// A borrowed element of a decoded expression (see
/// [`Decoder::decode_ref`](super::Decoder::decode_ref)): the same information as an
/// [`Element`], read in place. Byte strings borrow the expression's bytes;
/// [`to_bytes`](Self::to_bytes) turns one into a zero-copy [`Bytes`].
#[derive(Clone, Copy)]
pub struct ElementRef<'a> {
    bytes: &'a Bytes,
    /// This element first, then its descendants.
    nodes: &'a [Node],
}

impl<'a> ElementRef<'a> {
    /// The element whose nodes start `nodes`. `nodes` must be a whole subtree as the
    /// scanner wrote it, over `bytes`.
    pub(crate) fn new(bytes: &'a Bytes, nodes: &'a [Node]) -> ElementRef<'a> {
        ElementRef { bytes, nodes }
    }

    #[inline]
    fn node(&self) -> Node {
        // A subtree is never empty; an impossible empty one reads as an empty list.
        self.nodes
            .first()
            .copied()
            .unwrap_or(Node::List { len: 0, span: 1 })
    }

    #[inline]
    fn slice(&self, start: u32, end: u32) -> &'a [u8] {
        self.bytes
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The items of a LIST.
    #[inline]
    pub fn as_list(&self) -> Option<Items<'a>> {
        match self.node() {
            Node::List { len, span } => Some(Items {
                bytes: self.bytes,
                rest: self.nodes.get(1..span as usize).unwrap_or_default(),
                len: len as usize,
            }),
            _ => None,
        }
    }

    /// The bytes of a STRING or VOCAB element: the two are interchangeable for meaning.
    #[inline]
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.node() {
            Node::Bytes { start, end } => Some(self.slice(start, end)),
            Node::Vocab(w) => Some(w.as_bytes()),
            _ => None,
        }
    }

    /// [`as_bytes`](Self::as_bytes) as a [`Bytes`] sharing the receive buffer.
    #[inline]
    pub fn to_bytes(&self) -> Option<Bytes> {
        match self.node() {
            Node::Bytes { start, end } => Some(self.bytes.slice(start as usize..end as usize)),
            Node::Vocab(w) => Some(Bytes::from_static(w.as_bytes())),
            _ => None,
        }
    }

    /// True for a STRING (not a VOCAB token).
    pub fn is_string(&self) -> bool {
        matches!(self.node(), Node::Bytes { .. })
    }

    /// A STRING's bytes.
    #[inline]
    pub(crate) fn as_string(&self) -> Option<&'a [u8]> {
        match self.node() {
            Node::Bytes { start, end } => Some(self.slice(start, end)),
            _ => None,
        }
    }

    /// The word of a VOCAB element.
    #[inline]
    pub fn vocab(&self) -> Option<Word> {
        match self.node() {
            Node::Vocab(w) => Some(w),
            _ => None,
        }
    }

    /// The value of an INT, NEG, LONGINT or LONGNEG element.
    #[inline]
    pub fn as_int(&self) -> Option<Integer> {
        match self.node() {
            Node::Int(v) => Some(Integer::Small(v)),
            Node::BigInt {
                negative,
                start,
                end,
            } => Some(Integer::from_base128(negative, self.slice(start, end))),
            _ => None,
        }
    }

    /// An integer element's value, if it fits an `i64`.
    #[inline]
    pub fn as_i64(&self) -> Option<i64> {
        match self.node() {
            Node::Int(v) => Some(v),
            Node::BigInt { .. } => self.as_int()?.to_i64(),
            _ => None,
        }
    }

    /// The value of a FLOAT element.
    #[inline]
    pub fn as_float(&self) -> Option<f64> {
        match self.node() {
            Node::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The element as an owned tree. Built without recursion: lists are closed on an
    /// explicit stack, each allocated once at its exact length.
    pub fn to_element(&self) -> Element {
        let span = self.node().span().min(self.nodes.len());
        // Lists still being filled: items left to come, and the items so far.
        let mut open: Vec<(u32, Vec<Element>)> = Vec::new();
        for (i, node) in self.nodes[..span].iter().enumerate() {
            let mut element = match *node {
                Node::List { len: 0, .. } => Element::List(Vec::new()),
                Node::List { len, .. } => {
                    open.push((len, Vec::with_capacity(len as usize)));
                    continue;
                }
                Node::Int(v) => Element::Int(Integer::Small(v)),
                Node::Float(f) => Element::Float(f),
                Node::Vocab(w) => Element::Vocab(w),
                Node::Bytes { start, end } => {
                    Element::Bytes(self.bytes.slice(start as usize..end as usize))
                }
                Node::BigInt { .. } => {
                    let one = ElementRef::new(self.bytes, &self.nodes[i..=i]);
                    Element::Int(one.as_int().unwrap_or(Integer::Small(0)))
                }
            };
            loop {
                let Some((left, items)) = open.last_mut() else {
                    return element;
                };
                items.push(element);
                *left -= 1;
                if *left > 0 {
                    break;
                }
                element = match open.pop() {
                    Some((_, items)) => Element::List(items),
                    None => break,
                };
            }
        }
        // Only a subtree cut short gets here; return what was built.
        open.into_iter()
            .rev()
            .fold(None, |inner: Option<Element>, (_, mut items)| {
                items.extend(inner);
                Some(Element::List(items))
            })
            .unwrap_or(Element::List(Vec::new()))
    }
}

impl fmt::Debug for ElementRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::notation::to_string(&self.to_element()))
    }
}

/// The items of a list, in order.
#[derive(Clone)]
pub struct Items<'a> {
    bytes: &'a Bytes,
    /// The nodes of the items not yet returned.
    rest: &'a [Node],
    len: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = ElementRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<ElementRef<'a>> {
        let span = self.rest.first()?.span().min(self.rest.len());
        let (nodes, rest) = self.rest.split_at(span);
        self.rest = rest;
        self.len = self.len.saturating_sub(1);
        Some(ElementRef::new(self.bytes, nodes))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl ExactSizeIterator for Items<'_> {}

impl fmt::Debug for Items<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::banana::{Decoder, Dialect, Element, Word};
    use crate::{Integer, Limits};
    use bytes::BytesMut;

    #[test]
    fn reads_every_kind_in_place() {
        // (b'hi' 5 -3 (None) 1.5 <2**63> <5 padded to ten digits>)
        let mut wire = vec![0x07, 0x80, 0x02, 0x82, b'h', b'i', 0x05, 0x81, 0x03, 0x83];
        wire.extend([0x01, 0x80, 0x01, 0x87, 0x84, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
        wire.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x85]);
        wire.extend([0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81]);
        let mut d = Decoder::new(Limits::default());
        d.set_dialect(Dialect::Pb);
        let mut buf = BytesMut::from(&wire[..]);
        let e = d.decode_ref(&mut buf).unwrap().unwrap();
        let items: Vec<_> = e.as_list().unwrap().collect();
        assert_eq!(items.len(), 7);
        assert_eq!(items[0].as_bytes(), Some(&b"hi"[..]));
        assert_eq!(&items[0].to_bytes().unwrap()[..], b"hi");
        assert!(items[0].is_string());
        assert_eq!((items[1].as_i64(), items[2].as_i64()), (Some(5), Some(-3)));
        let none: Vec<_> = items[3].as_list().unwrap().collect();
        assert_eq!(none[0].vocab(), Word::lookup(b"None"));
        assert_eq!(none[0].as_bytes(), Some(&b"None"[..]));
        assert_eq!(items[4].as_float(), Some(1.5));
        assert_eq!(
            items[5].as_int(),
            Some("9223372036854775808".parse().unwrap())
        );
        assert_eq!(items[5].as_i64(), None);
        assert_eq!(items[6].as_int(), Some(Integer::Small(5)));
        assert_eq!(items[6].as_i64(), Some(5));
        assert_eq!(items[0].as_list().map(|i| i.len()), None);
        let tree = e.to_element();
        let mut again = Decoder::new(Limits::default());
        again.set_dialect(Dialect::Pb);
        let expected = again
            .decode(&mut BytesMut::from(&wire[..]))
            .unwrap()
            .unwrap();
        assert_eq!(tree, expected);
        assert!(matches!(&tree, Element::List(items) if items.len() == 7));
    }

    #[test]
    fn skips_nested_lists_between_siblings() {
        // (1 (2 (3)) () 4)
        let wire = [
            0x04, 0x80, 0x01, 0x81, 0x02, 0x80, 0x02, 0x81, 0x01, 0x80, 0x03, 0x81, 0x80, 0x04,
            0x81,
        ];
        let mut d = Decoder::new(Limits::default());
        let mut buf = BytesMut::from(&wire[..]);
        let e = d.decode_ref(&mut buf).unwrap().unwrap();
        let items: Vec<_> = e.as_list().unwrap().collect();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].as_i64(), Some(1));
        assert_eq!(items[1].as_list().unwrap().len(), 2);
        assert_eq!(items[2].as_list().unwrap().len(), 0);
        assert_eq!(items[3].as_i64(), Some(4));
        assert_eq!(
            crate::notation::to_string(&e.to_element()),
            "(1 (2 (3)) () 4)"
        );
        assert_eq!(d.consumed(), wire.len() as u64);
    }

    #[test]
    fn resumes_in_place_across_pieces() {
        let wire = [
            0x02, 0x80, 0x05, 0x82, b'h', b'e', b'l', b'l', b'o', 0x07, 0x81,
        ];
        let mut d = Decoder::new(Limits::default());
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = d.decode_ref(&mut buf).unwrap().map(|e| e.to_element());
            assert_eq!(got.is_some(), i == wire.len() - 1);
            assert_eq!(d.in_expression(), (1..wire.len() - 1).contains(&i));
        }
        assert!(buf.is_empty());
        assert_eq!(d.consumed(), wire.len() as u64);
    }
}
