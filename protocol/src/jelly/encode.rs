//! Values → elements, as Twisted's `jelly()` writes them.

use super::Value;
use crate::banana::{Dialect, Element};
use crate::DEPTH_CEILING;
use bytes::Bytes;

/// A value that cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JellyEncodeError {
    /// Nesting deeper than [`DEPTH_CEILING`], which no receiver would accept.
    #[error("value nested deeper than {DEPTH_CEILING}")]
    TooDeep,
}

/// Encodes `value` for a stream in `dialect`: in `pb`, every byte string equal to a
/// vocabulary word becomes a VOCAB token, wherever it appears, as Twisted does.
pub fn encode(value: &Value, dialect: Dialect) -> Result<Element, JellyEncodeError> {
    Jelly { dialect }.element(value, 0)
}

struct Jelly {
    dialect: Dialect,
}

impl Jelly {
    fn s(&self, b: &'static [u8]) -> Element {
        Element::string(Bytes::from_static(b), self.dialect)
    }

    fn tagged(&self, tag: &'static [u8], mut rest: Vec<Element>) -> Element {
        rest.insert(0, self.s(tag));
        Element::List(rest)
    }

    fn seq(
        &self,
        tag: &'static [u8],
        items: &[Value],
        depth: usize,
    ) -> Result<Element, JellyEncodeError> {
        let mut out = Vec::with_capacity(items.len() + 1);
        out.push(self.s(tag));
        for v in items {
            out.push(self.element(v, depth + 1)?);
        }
        Ok(Element::List(out))
    }

    fn element(&self, value: &Value, depth: usize) -> Result<Element, JellyEncodeError> {
        if depth > DEPTH_CEILING {
            return Err(JellyEncodeError::TooDeep);
        }
        Ok(match value {
            Value::None => self.tagged(b"None", vec![]),
            Value::Bool(b) => self.tagged(
                b"boolean",
                vec![self.s(if *b { b"true" } else { b"false" })],
            ),
            Value::Int(i) => Element::Int(i.clone()),
            Value::Float(f) => Element::Float(*f),
            Value::Bytes(b) => Element::string(b.clone(), self.dialect),
            Value::Text(t) => self.tagged(
                b"unicode",
                vec![Element::string(t.as_bytes().clone(), self.dialect)],
            ),
            Value::List(items) => self.seq(b"list", items, depth)?,
            Value::Tuple(items) => self.seq(b"tuple", items, depth)?,
            Value::Set(items) => self.seq(b"set", items, depth)?,
            Value::FrozenSet(items) => self.seq(b"frozenset", items, depth)?,
            Value::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len() + 1);
                out.push(self.s(b"dictionary"));
                for (k, v) in pairs {
                    out.push(Element::List(vec![
                        self.element(k, depth + 2)?,
                        self.element(v, depth + 2)?,
                    ]));
                }
                Element::List(out)
            }
            Value::Reference(id, inner) => self.tagged(
                b"reference",
                vec![Element::int(*id), self.element(inner, depth + 1)?],
            ),
            Value::Dereference(id) => self.tagged(b"dereference", vec![Element::int(*id)]),
            Value::Remote(id) => self.tagged(b"remote", vec![Element::int(*id)]),
            Value::Local(id) => self.tagged(b"local", vec![Element::int(*id)]),
            Value::Copyable(c) => Element::List(vec![
                Element::string(c.class.clone(), self.dialect),
                self.element(&c.state, depth + 1)?,
            ]),
            Value::Unpersistable(reason) => self.tagged(
                b"unpersistable",
                vec![Element::string(reason.clone(), self.dialect)],
            ),
            Value::DateTime(b) => self.tagged(b"datetime", vec![Element::Bytes(b.clone())]),
            Value::Date(b) => self.tagged(b"date", vec![Element::Bytes(b.clone())]),
            Value::Time(b) => self.tagged(b"time", vec![Element::Bytes(b.clone())]),
            Value::TimeDelta(b) => self.tagged(b"timedelta", vec![Element::Bytes(b.clone())]),
            Value::Decimal { digits, exponent } => self.tagged(
                b"decimal",
                vec![Element::Int(digits.clone()), Element::Int(exponent.clone())],
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::banana::encode_to_vec;
    use crate::jelly::decode;

    fn hex(v: &Value, d: Dialect) -> String {
        encode_to_vec(&encode(v, d).unwrap())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn writes_twisted_forms() {
        assert_eq!(hex(&Value::None, Dialect::Pb), "01800187");
        assert_eq!(hex(&Value::Tuple(vec![]), Dialect::Pb), "01800b87");
        assert_eq!(hex(&Value::Dict(vec![]), Dialect::Pb), "01800587");
        // kw key "message" is compressed inside the unicode form.
        assert_eq!(
            hex(&Value::text("message"), Dialect::Pb),
            "02800782756e69636f64651a87"
        );
    }

    #[test]
    fn round_trips_through_decode() {
        let v = Value::Tuple(vec![
            Value::Bool(true),
            Value::text("héllo"),
            Value::bytes(&b"raw\xff"[..]),
            Value::Dict(vec![(
                Value::text("k"),
                Value::List(vec![Value::int(1), Value::Float(2.5)]),
            )]),
            Value::Reference(1, Box::new(Value::Tuple(vec![]))),
            Value::Dereference(1),
            Value::Remote(3),
        ]);
        for d in [Dialect::None, Dialect::Pb] {
            assert_eq!(decode(&encode(&v, d).unwrap()).unwrap(), v);
        }
    }
}
