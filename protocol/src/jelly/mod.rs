//! Jelly: Twisted's object serialization on top of banana. [`Element`]s ⇄ [`Value`]s.
//!
//! Every non-atomic value is a list whose first element is a type tag. Decoding applies
//! PB's security rules: classes, modules, functions, methods, arbitrary instances and
//! persistent ids are refused; copyable instances only for classes in
//! [`Security::allowed_classes`] (by default Twisted's `CopyableFailure`).
//!
//! Shared references are kept as they travel — `Reference(id, value)` and
//! `Dereference(id)` nodes — rather than expanded: expansion lets a few bytes name an
//! exponential amount of data, and keeping them makes re-encoding exact.

mod decode;
mod encode;
mod failure;
mod tag;

pub(crate) use decode::decode_view;
pub use decode::{decode, decode_ref, decode_with, JellyError, JellyErrorKind, Security};
pub use encode::{encode, JellyEncodeError};
pub use failure::{Failure, FailureStyle};

use crate::Integer;
use bytes::Bytes;
use bytestring::ByteString;
use std::borrow::Cow;

#[allow(unused_imports)]
use crate::banana::Element;

/// Qualified class name of Twisted's failure copy.
pub const COPYABLE_FAILURE: &str = "twisted.spread.pb.CopyableFailure";

/// A value as jelly carries it.
///
/// Non-exhaustive: jelly forms PB refuses today (caches, for one) may become values
/// later, so matches need a wildcard arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// `(None)`.
    None,
    /// `(b'boolean' b'true')` / `(b'boolean' b'false')`.
    Bool(bool),
    /// A bare INT, NEG, LONGINT or LONGNEG.
    Int(Integer),
    /// A bare FLOAT.
    Float(f64),
    /// A bare STRING (or VOCAB): Python 3 `bytes`, Python 2 `str`.
    Bytes(Bytes),
    /// `(b'unicode' <utf-8>)`: Python 3 `str`, Python 2 `unicode`.
    Text(ByteString),
    /// `(list ...)`: a Python `list`.
    List(Vec<Value>),
    /// `(tuple ...)`: a Python `tuple` (how PB carries a call's positional arguments).
    Tuple(Vec<Value>),
    /// `(dictionary (k v) ...)`, in wire order.
    Dict(Vec<(Value, Value)>),
    /// `(set ...)`, in wire order.
    Set(Vec<Value>),
    /// `(frozenset ...)`, in wire order.
    FrozenSet(Vec<Value>),
    /// `(reference id value)`: the first occurrence of a shared object.
    Reference(i64, Box<Value>),
    /// `(dereference id)`: a later occurrence of the object `Reference(id, _)` introduced.
    Dereference(i64),
    /// `(remote luid)`: an object owned by the sender.
    Remote(i64),
    /// `(local luid)`: one of the receiver's own objects, sent back.
    Local(i64),
    /// `(b'pkg.mod.Class' state)`: a copyable instance of an allowed class.
    Copyable(Box<Copyable>),
    /// `(unpersistable b'reason')`: something the sender could not serialize.
    Unpersistable(Bytes),
    /// `(b'datetime' b'Y M D h m s us')`, kept as sent.
    DateTime(Bytes),
    /// `(b'date' b'Y M D')`.
    Date(Bytes),
    /// `(b'time' b'h m s us')`.
    Time(Bytes),
    /// `(b'timedelta' b'days seconds us')`.
    TimeDelta(Bytes),
    /// `(b'decimal' digits exponent)`: digits × 10^exponent.
    Decimal {
        /// The significand, with its sign.
        digits: Integer,
        /// The power of ten.
        exponent: Integer,
    },
}

/// A copyable instance: its class name (the type tag) and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Copyable {
    /// The qualified class name, e.g. `twisted.spread.pb.CopyableFailure`.
    pub class: Bytes,
    /// What the instance's `getStateToCopy` returned (usually a dictionary).
    pub state: Value,
}

impl Value {
    /// Text from a Python 3 peer (`Text`) or a Python 2 one (`Bytes`): both carry
    /// strings, and keys and values may come in either form. Bytes that are not UTF-8
    /// are shown with replacement characters.
    pub fn as_str_lossy(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Text(t) => Some(Cow::Borrowed(t)),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b)),
            _ => None,
        }
    }

    /// The raw bytes of a string value, whichever form it came in.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Text(t) => Some(t.as_bytes()),
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// True when this is a string (either form) equal to `s`.
    pub fn is_str(&self, s: &str) -> bool {
        self.as_bytes() == Some(s.as_bytes())
    }

    /// The value under `key` in a dictionary whose keys may be bytes or text.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => pairs.iter().find(|(k, _)| k.is_str(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The items of a list or tuple.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// An integer that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i.to_i64(),
            _ => None,
        }
    }

    /// Text, as Python 3 `str`.
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(ByteString::from(s.into()))
    }

    /// Bytes, as Python 3 `bytes`.
    pub fn bytes(b: impl Into<Bytes>) -> Value {
        Value::Bytes(b.into())
    }

    /// An integer, of any size banana carries.
    pub fn int(i: impl Into<Integer>) -> Value {
        Value::Int(i.into())
    }
}
