//! Elements → values, under PB's security rules.

use super::{Copyable, Value};
use crate::banana::Element;
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
    let mut d = Unjelly {
        security,
        references: HashSet::new(),
    };
    d.value(element, 0)
}

struct Unjelly<'a> {
    security: &'a Security,
    /// Reference ids introduced so far (including ones still being decoded, so a
    /// cycle's inner `dereference` resolves).
    references: HashSet<i64>,
}

impl Unjelly<'_> {
    fn value(&mut self, e: &Element, depth: usize) -> Result<Value, JellyError> {
        if depth > DEPTH_CEILING {
            return Err(err(JellyErrorKind::TooDeep, "nesting"));
        }
        match e {
            Element::Int(i) => Ok(Value::Int(i.clone())),
            Element::Float(f) => Ok(Value::Float(*f)),
            Element::Bytes(b) => Ok(Value::Bytes(b.clone())),
            Element::Vocab(w) => Ok(Value::Bytes(Bytes::from_static(w.as_bytes()))),
            Element::List(items) => self.tagged(items, depth),
        }
    }

    fn seq(&mut self, items: &[Element], depth: usize) -> Result<Vec<Value>, JellyError> {
        items.iter().map(|e| self.value(e, depth + 1)).collect()
    }

    fn tagged(&mut self, items: &[Element], depth: usize) -> Result<Value, JellyError> {
        let Some((tag, rest)) = items.split_first() else {
            return Err(err(JellyErrorKind::Malformed, "empty list"));
        };
        let Some(tag) = tag.as_bytes() else {
            return Err(err(JellyErrorKind::Malformed, "tag is not a string"));
        };
        use JellyErrorKind::*;
        Ok(match tag {
            b"None" => {
                exact(rest, 0, "None")?;
                Value::None
            }
            b"boolean" => match rest {
                [b] if b.as_bytes() == Some(b"true") => Value::Bool(true),
                [b] if b.as_bytes() == Some(b"false") => Value::Bool(false),
                _ => return Err(err(Malformed, "boolean")),
            },
            b"unicode" => match rest {
                [Element::Bytes(b)] => match ByteString::try_from(b.clone()) {
                    Ok(s) => Value::Text(s),
                    Err(_) => return Err(err(InvalidUtf8, "unicode")),
                },
                [Element::Vocab(w)] => Value::Text(ByteString::from_static(
                    std::str::from_utf8(w.as_bytes()).unwrap_or_default(),
                )),
                _ => return Err(err(Malformed, "unicode")),
            },
            b"list" => Value::List(self.seq(rest, depth)?),
            b"tuple" => Value::Tuple(self.seq(rest, depth)?),
            b"set" => Value::Set(self.seq(rest, depth)?),
            b"frozenset" => Value::FrozenSet(self.seq(rest, depth)?),
            b"dictionary" => {
                let mut pairs = Vec::with_capacity(rest.len());
                for pair in rest {
                    match pair {
                        Element::List(kv) if kv.len() == 2 => {
                            let k = self.value(&kv[0], depth + 2)?;
                            let v = self.value(&kv[1], depth + 2)?;
                            pairs.push((k, v));
                        }
                        _ => return Err(err(Malformed, "dictionary pair")),
                    }
                }
                Value::Dict(pairs)
            }
            b"reference" => match rest {
                [id, inner] => {
                    let id = int_field(id, "reference")?;
                    if !self.references.insert(id) {
                        return Err(err(DuplicateReference, "reference"));
                    }
                    Value::Reference(id, Box::new(self.value(inner, depth + 1)?))
                }
                _ => return Err(err(Malformed, "reference")),
            },
            b"dereference" => {
                let id = int_field(single(rest, "dereference")?, "dereference")?;
                if !self.references.contains(&id) {
                    return Err(err(UnknownDereference, "dereference"));
                }
                Value::Dereference(id)
            }
            b"remote" => Value::Remote(int_field(single(rest, "remote")?, "remote")?),
            b"local" => Value::Local(int_field(single(rest, "local")?, "local")?),
            b"unpersistable" => Value::Unpersistable(bytes_field(
                single(rest, "unpersistable")?,
                "unpersistable",
            )?),
            b"datetime" => Value::DateTime(numbers(rest, 7, "datetime")?),
            b"date" => Value::Date(numbers(rest, 3, "date")?),
            b"time" => Value::Time(numbers(rest, 4, "time")?),
            b"timedelta" => Value::TimeDelta(numbers(rest, 3, "timedelta")?),
            b"decimal" => match rest {
                [Element::Int(digits), Element::Int(exponent)] => Value::Decimal {
                    digits: digits.clone(),
                    exponent: exponent.clone(),
                },
                _ => return Err(err(Malformed, "decimal")),
            },
            b"class" => return Err(err(Forbidden, "class")),
            b"module" => return Err(err(Forbidden, "module")),
            b"function" => return Err(err(Forbidden, "function")),
            b"method" => return Err(err(Forbidden, "method")),
            b"instance" => return Err(err(Forbidden, "instance")),
            b"persistent" => return Err(err(Forbidden, "persistent")),
            b"cached" | b"lcache" | b"cache" | b"copy" => {
                return Err(err(Forbidden, "cache or copy form"))
            }
            class if class.contains(&b'.') => {
                if !self
                    .security
                    .allowed_classes
                    .iter()
                    .any(|c| c.as_ref() == class)
                {
                    return Err(err(Forbidden, "class not allowed"));
                }
                let [state] = rest else {
                    return Err(err(Malformed, "copyable instance"));
                };
                let state = self.value(state, depth + 1)?;
                Value::Copyable(Box::new(Copyable {
                    class: Bytes::copy_from_slice(class),
                    state,
                }))
            }
            _ => return Err(err(UnknownTag, "unknown tag")),
        })
    }
}

fn exact(rest: &[Element], n: usize, what: &'static str) -> Result<(), JellyError> {
    if rest.len() == n {
        Ok(())
    } else {
        Err(err(JellyErrorKind::Malformed, what))
    }
}

fn single<'e>(rest: &'e [Element], what: &'static str) -> Result<&'e Element, JellyError> {
    match rest {
        [one] => Ok(one),
        _ => Err(err(JellyErrorKind::Malformed, what)),
    }
}

fn int_field(e: &Element, what: &'static str) -> Result<i64, JellyError> {
    match e {
        Element::Int(i) => i.to_i64().ok_or(err(JellyErrorKind::Malformed, what)),
        _ => Err(err(JellyErrorKind::Malformed, what)),
    }
}

fn bytes_field(e: &Element, what: &'static str) -> Result<Bytes, JellyError> {
    match e {
        Element::Bytes(b) => Ok(b.clone()),
        Element::Vocab(w) => Ok(Bytes::from_static(w.as_bytes())),
        _ => Err(err(JellyErrorKind::Malformed, what)),
    }
}

/// A space-separated list of `count` decimal integers, as the date and time forms are.
fn numbers(rest: &[Element], count: usize, what: &'static str) -> Result<Bytes, JellyError> {
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
