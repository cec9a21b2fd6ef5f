//! One way to read an element, whether an owned [`Element`] or an [`ElementRef`] on a
//! decoder's tape, so that jelly and PB decode both through the same code. Each
//! accessor returns a small value: results are not moved around in large enums.

use super::{Element, ElementRef, Items, Word};
use crate::Integer;
use bytes::Bytes;

/// An element as jelly and PB read it.
pub(crate) trait View<'a>: Copy {
    type Items: ExactSizeIterator<Item = Self>;

    /// A LIST's items.
    fn items(self) -> Option<Self::Items>;

    /// A STRING's bytes (not a VOCAB's).
    fn string(self) -> Option<&'a [u8]>;

    fn vocab(self) -> Option<Word>;

    /// An INT, NEG, LONGINT or LONGNEG's value.
    fn int(self) -> Option<Integer>;

    /// [`int`](Self::int), if it fits an `i64`.
    fn as_i64(self) -> Option<i64>;

    fn float(self) -> Option<f64>;

    /// A STRING's or VOCAB's bytes, owned; a STRING's without copying.
    fn to_bytes(self) -> Option<Bytes>;

    /// The bytes of a STRING or VOCAB.
    fn as_bytes(self) -> Option<&'a [u8]> {
        match self.vocab() {
            Some(w) => Some(w.as_bytes()),
            None => self.string(),
        }
    }
}

impl<'a> View<'a> for &'a Element {
    type Items = std::slice::Iter<'a, Element>;

    fn items(self) -> Option<Self::Items> {
        match self {
            Element::List(items) => Some(items.iter()),
            _ => None,
        }
    }

    fn string(self) -> Option<&'a [u8]> {
        match self {
            Element::Bytes(b) => Some(b),
            _ => None,
        }
    }

    fn vocab(self) -> Option<Word> {
        match self {
            Element::Vocab(w) => Some(*w),
            _ => None,
        }
    }

    fn int(self) -> Option<Integer> {
        match self {
            Element::Int(i) => Some(i.clone()),
            _ => None,
        }
    }

    fn as_i64(self) -> Option<i64> {
        match self {
            Element::Int(i) => i.to_i64(),
            _ => None,
        }
    }

    fn float(self) -> Option<f64> {
        match self {
            Element::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn to_bytes(self) -> Option<Bytes> {
        match self {
            Element::Bytes(b) => Some(b.clone()),
            Element::Vocab(w) => Some(Bytes::from_static(w.as_bytes())),
            _ => None,
        }
    }
}

impl<'a> View<'a> for ElementRef<'a> {
    type Items = Items<'a>;

    #[inline]
    fn items(self) -> Option<Items<'a>> {
        self.as_list()
    }

    #[inline]
    fn string(self) -> Option<&'a [u8]> {
        self.as_string()
    }

    #[inline]
    fn vocab(self) -> Option<Word> {
        ElementRef::vocab(&self)
    }

    #[inline]
    fn int(self) -> Option<Integer> {
        self.as_int()
    }

    #[inline]
    fn as_i64(self) -> Option<i64> {
        ElementRef::as_i64(&self)
    }

    #[inline]
    fn float(self) -> Option<f64> {
        self.as_float()
    }

    #[inline]
    fn to_bytes(self) -> Option<Bytes> {
        ElementRef::to_bytes(&self)
    }

    #[inline]
    fn as_bytes(self) -> Option<&'a [u8]> {
        ElementRef::as_bytes(&self)
    }
}
