//! Typed PB messages, decoded from and encoded to banana elements.

use crate::banana::view::View;
use crate::banana::{Dialect, Element, ElementRef};
use crate::jelly::{self, JellyEncodeError, JellyError, Security, Value};
use bytes::Bytes;
use std::fmt;

/// The object a call is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectId {
    /// The root object, addressed by the byte string `root` (never by 0).
    Root,
    /// An object the receiver registered, by its id (1, 2, ...).
    Id(i64),
}

/// A remote method call (`message`) or a call on a cache (`cachemessage`).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The caller's counter; the answer or error carries it back.
    pub request_id: i64,
    /// The object called.
    pub object: ObjectId,
    /// Method name without its `remote_`/`perspective_` prefix.
    pub method: Bytes,
    /// False for fire-and-forget calls: the receiver sends nothing back.
    pub answer_required: bool,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments; keys are bytes (Python 2 senders) or text (Python 3).
    pub kwargs: Vec<(Value, Value)>,
}

/// One PB message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `(version N)`, once per side at connection start.
    Version(i64),
    /// `(message id object method answer? args kw)`.
    Call(Call),
    /// `(cachemessage ...)`: a call addressed to a cache id.
    CacheCall(Call),
    /// `(answer id value)`.
    Answer {
        /// The request answered.
        request_id: i64,
        /// What the method returned.
        value: Value,
    },
    /// `(error id failure)`: usually a `CopyableFailure`, sometimes a plain string.
    Error {
        /// The request that failed.
        request_id: i64,
        /// The failure as sent; [`Failure::from_value`](crate::jelly::Failure::from_value)
        /// reads a `CopyableFailure`.
        failure: Value,
    },
    /// `(decref luid)`: the sender dropped one reference to the receiver's object.
    Decref(i64),
    /// `(decache luid)`: the sender dropped one cache.
    Decache(i64),
    /// `(uncache luid)`: the owner says the cache id may be forgotten.
    Uncache(i64),
    /// `(b'didNotUnderstand' name)`: reply to an unknown top-level message name.
    DidNotUnderstand(Bytes),
}

/// Why a top-level expression is not a valid PB message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PbErrorKind {
    /// The expression is not a list starting with a name.
    NotAList,
    /// A name no PB message has.
    UnknownMessage,
    /// The right name with the wrong number of fields.
    WrongArity,
    /// A field of the wrong type (e.g. a non-integer request id).
    BadField,
    /// The arguments, keywords, result or failure failed to unjelly.
    Jelly(JellyError),
}

impl PbErrorKind {
    /// The snake-case name used in fixtures and messages (a jelly error's own name).
    pub fn name(self) -> &'static str {
        match self {
            PbErrorKind::NotAList => "not_a_list",
            PbErrorKind::UnknownMessage => "unknown_message",
            PbErrorKind::WrongArity => "wrong_arity",
            PbErrorKind::BadField => "bad_field",
            PbErrorKind::Jelly(e) => e.kind.name(),
        }
    }
}

/// A rejected message, with the field at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct PbError {
    /// What was wrong.
    pub kind: PbErrorKind,
    /// The message or field at fault, e.g. `"request id"` or `"arguments"`.
    pub context: &'static str,
}

impl fmt::Display for PbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PbErrorKind::Jelly(e) => write!(f, "{}: {e}", self.context),
            k => write!(f, "{} ({})", k.name(), self.context),
        }
    }
}

fn err(kind: PbErrorKind, context: &'static str) -> PbError {
    PbError { kind, context }
}

fn jelly_err(context: &'static str) -> impl Fn(JellyError) -> PbError {
    move |e| err(PbErrorKind::Jelly(e), context)
}

/// Decodes a top-level expression into a message. `security` says which copyable
/// classes arguments and results may contain.
pub fn decode(element: &Element, security: &Security) -> Result<Message, PbError> {
    decode_view(element, security)
}

/// [`decode`] reading the expression in place, as
/// [`Decoder::decode_ref`](crate::banana::Decoder::decode_ref) returns it: no element
/// tree is built.
pub fn decode_ref(element: ElementRef<'_>, security: &Security) -> Result<Message, PbError> {
    decode_view(element, security)
}

fn decode_view<'a, E: View<'a>>(element: E, security: &Security) -> Result<Message, PbError> {
    let Some(mut fields) = element.items() else {
        return Err(err(PbErrorKind::NotAList, "message"));
    };
    let Some(name) = fields.next() else {
        return Err(err(PbErrorKind::NotAList, "empty message"));
    };
    let Some(name) = name.as_bytes() else {
        return Err(err(PbErrorKind::NotAList, "message name"));
    };
    let count = fields.len();
    let arity = |n: usize, what: &'static str| {
        if count == n {
            Ok(())
        } else {
            Err(err(PbErrorKind::WrongArity, what))
        }
    };
    let value = |e: E, what: &'static str| jelly::decode_view(e, security).map_err(jelly_err(what));
    // The arity is checked first, so every field is there.
    let mut field = || fields.next().ok_or(err(PbErrorKind::WrongArity, "message"));
    Ok(match name {
        b"version" => {
            arity(1, "version")?;
            Message::Version(int(field()?, "version")?)
        }
        b"message" | b"cachemessage" => {
            arity(6, "message")?;
            let (request_id, object, method, answer, args, kwargs) =
                (field()?, field()?, field()?, field()?, field()?, field()?);
            let object = if object.int().is_some() {
                ObjectId::Id(
                    object
                        .as_i64()
                        .ok_or(err(PbErrorKind::BadField, "object id"))?,
                )
            } else if object.as_bytes() == Some(b"root") {
                ObjectId::Root
            } else {
                return Err(err(PbErrorKind::BadField, "object id"));
            };
            let method = method
                .to_bytes()
                .ok_or(err(PbErrorKind::BadField, "method name"))?;
            let args = match value(args, "arguments")? {
                Value::Tuple(v) | Value::List(v) => v,
                _ => return Err(err(PbErrorKind::BadField, "arguments")),
            };
            let kwargs = match value(kwargs, "keywords")? {
                Value::Dict(v) => v,
                Value::None => Vec::new(),
                _ => return Err(err(PbErrorKind::BadField, "keywords")),
            };
            let call = Call {
                request_id: int(request_id, "request id")?,
                object,
                method,
                answer_required: int(answer, "answer required")? != 0,
                args,
                kwargs,
            };
            if name == b"message" {
                Message::Call(call)
            } else {
                Message::CacheCall(call)
            }
        }
        b"answer" => {
            arity(2, "answer")?;
            let (request_id, answer) = (field()?, field()?);
            Message::Answer {
                request_id: int(request_id, "request id")?,
                value: value(answer, "answer")?,
            }
        }
        b"error" => {
            arity(2, "error")?;
            let (request_id, failure) = (field()?, field()?);
            Message::Error {
                request_id: int(request_id, "request id")?,
                failure: value(failure, "failure")?,
            }
        }
        b"decref" => {
            arity(1, "decref")?;
            Message::Decref(int(field()?, "decref")?)
        }
        b"decache" => {
            arity(1, "decache")?;
            Message::Decache(int(field()?, "decache")?)
        }
        b"uncache" => {
            arity(1, "uncache")?;
            Message::Uncache(int(field()?, "uncache")?)
        }
        b"didNotUnderstand" => {
            arity(1, "didNotUnderstand")?;
            match field()?.as_bytes() {
                Some(b) => Message::DidNotUnderstand(Bytes::copy_from_slice(b)),
                None => return Err(err(PbErrorKind::BadField, "didNotUnderstand")),
            }
        }
        _ => return Err(err(PbErrorKind::UnknownMessage, "message name")),
    })
}

fn int<'a>(e: impl View<'a>, what: &'static str) -> Result<i64, PbError> {
    e.as_i64().ok_or(err(PbErrorKind::BadField, what))
}

/// Encodes a message as Twisted's broker writes it in `dialect`.
pub fn encode(message: &Message, dialect: Dialect) -> Result<Element, JellyEncodeError> {
    let s = |b: &'static [u8]| Element::string(Bytes::from_static(b), dialect);
    let v = |value: &Value| jelly::encode(value, dialect);
    Ok(Element::List(match message {
        Message::Version(n) => vec![s(b"version"), Element::int(*n)],
        Message::Call(c) | Message::CacheCall(c) => {
            let name = if matches!(message, Message::Call(_)) {
                s(b"message")
            } else {
                s(b"cachemessage")
            };
            let object = match c.object {
                ObjectId::Root => Element::Bytes(Bytes::from_static(b"root")),
                ObjectId::Id(id) => Element::int(id),
            };
            vec![
                name,
                Element::int(c.request_id),
                object,
                Element::string(c.method.clone(), dialect),
                Element::int(i64::from(c.answer_required)),
                v(&Value::Tuple(c.args.clone()))?,
                v(&Value::Dict(c.kwargs.clone()))?,
            ]
        }
        Message::Answer { request_id, value } => {
            vec![s(b"answer"), Element::int(*request_id), v(value)?]
        }
        Message::Error {
            request_id,
            failure,
        } => vec![s(b"error"), Element::int(*request_id), v(failure)?],
        Message::Decref(id) => vec![s(b"decref"), Element::int(*id)],
        Message::Decache(id) => vec![s(b"decache"), Element::int(*id)],
        Message::Uncache(id) => vec![s(b"uncache"), Element::int(*id)],
        Message::DidNotUnderstand(name) => {
            vec![
                Element::Bytes(Bytes::from_static(b"didNotUnderstand")),
                Element::string(name.clone(), dialect),
            ]
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::banana::{encode_to_vec, Decoder};
    use crate::Limits;
    use bytes::BytesMut;

    /// The first chunk a real buildbot-worker 4.3.0 sends after the dialect choice.
    const LOGIN: &[u8] = b"\x02\x80\x13\x87\x06\x81\x07\x80\x1a\x87\x01\x81\x04\x82root\x14\x87\x01\x81\x02\x80\x0b\x87\x02\x82w1\x01\x80\x05\x87";

    #[test]
    fn decodes_and_reencodes_a_worker_login() {
        let mut d = Decoder::new(Limits::default());
        d.set_dialect(Dialect::Pb);
        let mut buf = BytesMut::from(LOGIN);
        let sec = Security::default();
        let version = decode(&d.decode(&mut buf).unwrap().unwrap(), &sec).unwrap();
        assert_eq!(version, Message::Version(6));
        let login = decode(&d.decode(&mut buf).unwrap().unwrap(), &sec).unwrap();
        let Message::Call(call) = &login else {
            panic!("not a call: {login:?}")
        };
        assert_eq!(call.object, ObjectId::Root);
        assert_eq!(&call.method[..], b"login");
        assert_eq!(call.args, vec![Value::bytes(&b"w1"[..])]);
        let mut again = encode_to_vec(&encode(&version, Dialect::Pb).unwrap()).unwrap();
        again.extend(encode_to_vec(&encode(&login, Dialect::Pb).unwrap()).unwrap());
        assert_eq!(again, LOGIN);
    }

    #[test]
    fn rejects_bad_shapes() {
        let sec = Security::default();
        let name = |n: &'static [u8]| Element::Bytes(Bytes::from_static(n));
        assert_eq!(
            decode(&Element::int(1), &sec).unwrap_err().kind,
            PbErrorKind::NotAList
        );
        assert_eq!(
            decode(&Element::List(vec![name(b"bogus")]), &sec)
                .unwrap_err()
                .kind,
            PbErrorKind::UnknownMessage
        );
        assert_eq!(
            decode(&Element::List(vec![name(b"decref")]), &sec)
                .unwrap_err()
                .kind,
            PbErrorKind::WrongArity
        );
        assert_eq!(
            decode(&Element::List(vec![name(b"decref"), name(b"x")]), &sec)
                .unwrap_err()
                .kind,
            PbErrorKind::BadField
        );
        let class = Element::List(vec![name(b"class"), name(b"os.system")]);
        let e = decode(
            &Element::List(vec![name(b"answer"), Element::int(1), class]),
            &sec,
        )
        .unwrap_err();
        assert_eq!(e.kind.name(), "forbidden");
    }
}
