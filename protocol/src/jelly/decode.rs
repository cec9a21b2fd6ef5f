//! Elements → values, under PB's security rules.

use super::tag::Tag;
use super::{Copyable, Value};
use crate::banana::view::View;
use crate::banana::{Element, ElementRef};
use crate::{Integer, DEPTH_CEILING};
use bytes::Bytes;
use bytestring::ByteString;
use std::collections::HashSet;
use std::fmt;

/// What a peer may send as a copyable instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// Qualified class names accepted as `(b'class.name' state)`.
    pub allowed_classes: Vec<Bytes>,
}

impl Default for Security {
    /// What Twisted's PB registers by default that buildbot uses: `CopyableFailure`.
    fn default() -> Self {
        Security {
            allowed_classes: vec![Bytes::from_static(super::COPYABLE_FAILURE.as_bytes())],
        }
    }
}

/// Why a jelly expression was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JellyErrorKind {
    /// A form PB's security forbids: class, module, function, method, instance,
    /// persistent, cache forms, or a class tag that is not allowed.
    Forbidden,
    /// A known tag with the wrong shape.
    Malformed,
    /// A `unicode` payload that is not UTF-8.
    InvalidUtf8,
    /// A `dereference` to an id no `reference` introduced.
    UnknownDereference,
    /// Two `reference`s with the same id.
    DuplicateReference,
    /// Nesting beyond the depth ceiling.
    TooDeep,
    /// A tag that is no jelly form at all.
    UnknownTag,
}

impl JellyErrorKind {
    /// The snake-case name used in fixtures and messages.
    pub fn name(self) -> &'static str {
        match self {
            JellyErrorKind::Forbidden => "forbidden",
            JellyErrorKind::Malformed => "malformed",
            JellyErrorKind::InvalidUtf8 => "invalid_utf8",
            JellyErrorKind::UnknownDereference => "unknown_dereference",
            JellyErrorKind::DuplicateReference => "duplicate_reference",
            JellyErrorKind::TooDeep => "too_deep",
            JellyErrorKind::UnknownTag => "unknown_tag",
        }
    }
}

/// A rejected jelly expression, with the form that was at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub struct JellyError {
    /// What was wrong.
    pub kind: JellyErrorKind,
    /// The tag or form at fault, e.g. `"class"` or `"dictionary pair"`.
    pub context: &'static str,
}

impl fmt::Display for JellyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind.name(), self.context)
    }
}

fn err(kind: JellyErrorKind, context: &'static str) -> JellyError {
    JellyError { kind, context }
}

/// Decodes one jelly expression with the default [`Security`]. Reference ids are
/// scoped to this call, as Twisted scopes them to one `unjelly()`.
pub fn decode(element: &Element) -> Result<Value, JellyError> {
    decode_with(element, &Security::default())
}

/// Decodes one jelly expression, accepting the copyable classes `security` allows.
pub fn decode_with(element: &Element, security: &Security) -> Result<Value, JellyError> {
    decode_view(element, security)
}

/// [`decode_with`] reading the expression in place, from a decoder's tape.
pub fn decode_ref(element: ElementRef<'_>, security: &Security) -> Result<Value, JellyError> {
    decode_view(element, security)
}

pub(crate) fn decode_view<'a>(
    element: impl View<'a>,
    security: &Security,
) -> Result<Value, JellyError> {
    let mut d = Unjelly {
        security,
        references: None,
    };
    d.value(element, 0)
}

struct Unjelly<'a> {
    security: &'a Security,
    /// Reference ids introduced so far (including ones still being decoded, so a
    /// cycle's inner `dereference` resolves). Made at the first `reference`: most
    /// expressions have none.
    references: Option<HashSet<i64>>,
}

impl Unjelly<'_> {
    fn value<'e, E: View<'e>>(&mut self, e: E, depth: usize) -> Result<Value, JellyError> {
        if depth > DEPTH_CEILING {
            return Err(err(JellyErrorKind::TooDeep, "nesting"));
        }
        if let Some(items) = e.items() {
            return self.tagged::<E>(items, depth);
        }
        if let Some(b) = e.to_bytes() {
            return Ok(Value::Bytes(b));
        }
        if let Some(f) = e.float() {
            return Ok(Value::Float(f));
        }
        Ok(Value::Int(e.int().unwrap_or(Integer::Small(0))))
    }

    fn seq<'e, E: View<'e>>(
        &mut self,
        items: impl ExactSizeIterator<Item = E>,
        depth: usize,
    ) -> Result<Vec<Value>, JellyError> {
        let mut out = Vec::with_capacity(items.len());
        for e in items {
            out.push(self.value(e, depth + 1)?);
        }
        Ok(out)
    }

    fn tagged<'e, E: View<'e>>(
        &mut self,
        mut rest: E::Items,
        depth: usize,
    ) -> Result<Value, JellyError> {
        let Some(tag) = rest.next() else {
            return Err(err(JellyErrorKind::Malformed, "empty list"));
        };
        let (kind, tag) = match (tag.vocab(), tag.string()) {
            (Some(w), _) => (Tag::of_word(w), w.as_bytes()),
            (None, Some(b)) => (Tag::of_bytes(b), b),
            (None, None) => return Err(err(JellyErrorKind::Malformed, "tag is not a string")),
        };
        use JellyErrorKind::*;
        Ok(match kind {
            Tag::None => {
                exact(rest.len(), 0, "None")?;
                Value::None
            }
            Tag::Boolean => match single(rest, "boolean")?.as_bytes() {
                Some(b"true") => Value::Bool(true),
                Some(b"false") => Value::Bool(false),
                _ => return Err(err(Malformed, "boolean")),
            },
            Tag::Unicode => {
                let text = single(rest, "unicode")?;
                if let Some(w) = text.vocab() {
                    Value::Text(ByteString::from_static(
                        std::str::from_utf8(w.as_bytes()).unwrap_or_default(),
                    ))
                } else if text.string().is_some() {
                    match ByteString::try_from(text.to_bytes().unwrap_or_default()) {
                        Ok(s) => Value::Text(s),
                        Err(_) => return Err(err(InvalidUtf8, "unicode")),
                    }
                } else {
                    return Err(err(Malformed, "unicode"));
                }
            }
            Tag::List => Value::List(self.seq(rest, depth)?),
            Tag::Tuple => Value::Tuple(self.seq(rest, depth)?),
            Tag::Set => Value::Set(self.seq(rest, depth)?),
            Tag::FrozenSet => Value::FrozenSet(self.seq(rest, depth)?),
            Tag::Dictionary => {
                let mut pairs = Vec::with_capacity(rest.len());
                for pair in rest {
                    match pair.items() {
                        Some(mut kv) if kv.len() == 2 => {
                            let (Some(k), Some(v)) = (kv.next(), kv.next()) else {
                                return Err(err(Malformed, "dictionary pair"));
                            };
                            let k = self.value(k, depth + 2)?;
                            let v = self.value(v, depth + 2)?;
                            pairs.push((k, v));
                        }
                        _ => return Err(err(Malformed, "dictionary pair")),
                    }
                }
                Value::Dict(pairs)
            }
            Tag::Reference => match (rest.len(), rest.next(), rest.next()) {
                (2, Some(id), Some(inner)) => {
                    let id = int_field(id, "reference")?;
                    if !self.references.get_or_insert_with(HashSet::new).insert(id) {
                        return Err(err(DuplicateReference, "reference"));
                    }
                    Value::Reference(id, Box::new(self.value(inner, depth + 1)?))
                }
                _ => return Err(err(Malformed, "reference")),
            },
            Tag::Dereference => {
                let id = int_field(single(rest, "dereference")?, "dereference")?;
                if !self.references.as_ref().is_some_and(|r| r.contains(&id)) {
                    return Err(err(UnknownDereference, "dereference"));
                }
                Value::Dereference(id)
            }
            Tag::Remote => Value::Remote(int_field(single(rest, "remote")?, "remote")?),
            Tag::Local => Value::Local(int_field(single(rest, "local")?, "local")?),
            Tag::Unpersistable => Value::Unpersistable(bytes_field(
                single(rest, "unpersistable")?,
                "unpersistable",
            )?),
            Tag::DateTime => Value::DateTime(numbers(rest, 7, "datetime")?),
            Tag::Date => Value::Date(numbers(rest, 3, "date")?),
            Tag::Time => Value::Time(numbers(rest, 4, "time")?),
            Tag::TimeDelta => Value::TimeDelta(numbers(rest, 3, "timedelta")?),
            Tag::Decimal => match (rest.len(), rest.next(), rest.next()) {
                (2, Some(digits), Some(exponent)) => match (digits.int(), exponent.int()) {
                    (Some(digits), Some(exponent)) => Value::Decimal { digits, exponent },
                    _ => return Err(err(Malformed, "decimal")),
                },
                _ => return Err(err(Malformed, "decimal")),
            },
            Tag::Forbidden(what) => return Err(err(Forbidden, what)),
            Tag::Class => {
                let class = tag;
                if !self
                    .security
                    .allowed_classes
                    .iter()
                    .any(|c| c.as_ref() == class)
                {
                    return Err(err(Forbidden, "class not allowed"));
                }
                let state = single(rest, "copyable instance")?;
                let state = self.value(state, depth + 1)?;
                Value::Copyable(Box::new(Copyable {
                    class: Bytes::copy_from_slice(class),
                    state,
                }))
            }
            Tag::Unknown => return Err(err(UnknownTag, "unknown tag")),
        })
    }
}

fn exact(len: usize, n: usize, what: &'static str) -> Result<(), JellyError> {
    if len == n {
        Ok(())
    } else {
        Err(err(JellyErrorKind::Malformed, what))
    }
}

/// The one item left in `rest`.
fn single<I: ExactSizeIterator>(mut rest: I, what: &'static str) -> Result<I::Item, JellyError> {
    match (rest.len(), rest.next()) {
        (1, Some(one)) => Ok(one),
        _ => Err(err(JellyErrorKind::Malformed, what)),
    }
}

fn int_field<'e>(e: impl View<'e>, what: &'static str) -> Result<i64, JellyError> {
    e.as_i64().ok_or(err(JellyErrorKind::Malformed, what))
}

fn bytes_field<'e>(e: impl View<'e>, what: &'static str) -> Result<Bytes, JellyError> {
    e.to_bytes().ok_or(err(JellyErrorKind::Malformed, what))
}

/// A space-separated list of `count` decimal integers, as the date and time forms are.
fn numbers<'e, E: View<'e>>(
    rest: impl ExactSizeIterator<Item = E>,
    count: usize,
    what: &'static str,
) -> Result<Bytes, JellyError> {
    let b = bytes_field(single(rest, what)?, what)?;
    let ok = std::str::from_utf8(&b)
        .ok()
        .map(|s| {
            let parts: Vec<&str> = s.split(' ').collect();
            parts.len() == count && parts.iter().all(|p| p.parse::<Integer>().is_ok())
        })
        .unwrap_or(false);
    if ok {
        Ok(b)
    } else {
        Err(err(JellyErrorKind::Malformed, what))
    }
}
