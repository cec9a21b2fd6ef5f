//! What a broker reports: its phase, its events, and why it closed.

use crate::banana::negotiation::NegotiationError;
use crate::banana::{DecodeError, DecodeErrorKind};
use crate::jelly::{Failure, JellyEncodeError, Value};
use crate::login;
use crate::pb::{Call, PbError};
use bytes::Bytes;
use std::fmt;

/// Where a connection stands. Every connection goes forward through these, never back,
/// except that a refused login returns a listener to `LoginPending`. Non-exhaustive:
/// later versions may tell finer steps apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for the dialect: the listener for the peer's choice, the connector for
    /// the listener's offer.
    Dialect,
    /// Dialect chosen, nobody logged in yet (a login may be under way).
    LoginPending,
    /// The login was accepted.
    LoggedIn,
    /// Closed: nothing more is read; what is queued may still be transmitted.
    Closing,
}

/// Identifies a login attempt a listener reported, until it is accepted or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginId(pub(super) i64);

/// A peer that answered a login challenge: the application checks the password and
/// calls [`Broker::accept_login`](super::Broker::accept_login) or
/// [`Broker::refuse_login`](super::Broker::refuse_login).
#[derive(Clone, PartialEq, Eq)]
pub struct LoginAttempt {
    /// The attempt, to name in `accept_login` or `refuse_login`.
    pub id: LoginId,
    /// The name the peer asked to log in as (bounded by `max_login_name`).
    pub name: Bytes,
    /// The peer's object passed with the login (its "mind"), if any.
    pub mind: Option<i64>,
    pub(super) challenge: [u8; login::DIGEST_LEN],
    pub(super) response: Bytes,
}

impl LoginAttempt {
    /// Whether the peer's response proves knowledge of `password`.
    pub fn verify(&self, password: &[u8]) -> bool {
        login::verify(password, &self.challenge, &self.response)
    }

    /// The name as text, lossily.
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

impl fmt::Debug for LoginAttempt {
    /// Leaves out the challenge and response: they would let a reader of a log try
    /// passwords offline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("mind", &self.mind)
            .finish_non_exhaustive()
    }
}

/// What happened on the connection, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// (Listener) a peer proved or failed to prove a password: decide.
    Login(LoginAttempt),
    /// (Connector) the login was accepted; the listener's avatar is this object.
    LoggedIn {
        /// The avatar's object id, to [`call`](super::Broker::call) with
        /// [`ObjectId::Id`](crate::pb::ObjectId::Id).
        avatar: i64,
    },
    /// (Connector) the login was refused.
    LoginRefused(Failure),
    /// The peer called one of the application's objects (or the root, for a method the
    /// broker does not serve). Answer with [`Broker::answer`](super::Broker::answer)
    /// when `answer_required`.
    Call(Call),
    /// The answer to one of the application's calls: a value, or the peer's failure.
    Answer {
        /// The id [`call`](super::Broker::call) returned.
        request_id: i64,
        /// The returned value, or the failure the peer raised.
        result: Result<Value, Failure>,
    },
    /// The peer dropped its last reference to an application object. Every
    /// `Value::Remote` sent counts as one reference (Twisted releases each one on its
    /// own); sending the object again serves it again, as Twisted does.
    Released(i64),
    /// The connection closed; the broker takes no more input.
    Closed(CloseReason),
}

/// Why a connection closed, naming who caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer broke a rule of the protocol.
    Violation(Violation),
    /// The peer reached one of this side's bounds.
    Limit(Limit),
    /// A timer ran out.
    Deadline(Deadline),
    /// The peer closed its end cleanly, between messages.
    PeerClosed,
    /// This side closed it, for the reason given.
    Local(String),
}

/// The rule a peer broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// Malformed banana (including input that ended inside an element).
    Banana(DecodeError),
    /// A dialect offer or choice that does not follow the rules.
    Negotiation(NegotiationError),
    /// A top-level expression that is no valid PB message (or forbidden jelly).
    Message(PbError),
    /// The peer speaks another PB version.
    Version(i64),
}

/// The bound a peer reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// A decoder limit (string, list, nesting, message size, ...).
    Decoder(DecodeError),
    /// Too many requests refused for the peer's fault (objects, challenges, ...).
    Violations(u32),
    /// Too many refused logins.
    LoginFailures(u32),
    /// Too many of this side's calls left unanswered.
    PendingCalls(usize),
}

/// The timer that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deadline {
    /// No login within `login_timeout`.
    Login,
    /// Silent for `keepalive.timeout` after a probe.
    Keepalive,
}

impl CloseReason {
    /// Whether the peer caused it (a violation or a limit), as opposed to a timer, a
    /// clean close or this side's choice.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, CloseReason::Violation(_) | CloseReason::Limit(_))
    }

    /// The reason for a decoder error: a limit, or malformed input.
    pub(super) fn decoding(e: DecodeError) -> CloseReason {
        match e.kind {
            DecodeErrorKind::PrefixTooLong
            | DecodeErrorKind::StringTooLong
            | DecodeErrorKind::ListTooLong
            | DecodeErrorKind::NestingTooDeep
            | DecodeErrorKind::MessageTooLarge
            | DecodeErrorKind::TooManyElements => CloseReason::Limit(Limit::Decoder(e)),
            _ => CloseReason::Violation(Violation::Banana(e)),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Violation(v) => match v {
                Violation::Banana(e) => write!(f, "bad input: {e}"),
                Violation::Negotiation(e) => write!(f, "negotiation: {e}"),
                Violation::Message(e) => write!(f, "bad message: {e}"),
                Violation::Version(v) => write!(f, "peer speaks PB version {v}"),
            },
            CloseReason::Limit(l) => match l {
                Limit::Decoder(e) => write!(f, "over a limit: {e}"),
                Limit::Violations(n) => write!(f, "{n} refused requests"),
                Limit::LoginFailures(n) => write!(f, "{n} refused logins"),
                Limit::PendingCalls(n) => write!(f, "{n} calls left unanswered"),
            },
            CloseReason::Deadline(Deadline::Login) => f.write_str("no login in time"),
            CloseReason::Deadline(Deadline::Keepalive) => {
                f.write_str("no answer to a keepalive in time")
            }
            CloseReason::PeerClosed => f.write_str("peer closed the connection"),
            CloseReason::Local(why) => f.write_str(why),
        }
    }
}

/// Why the application's request to the broker was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The connection is closing.
    #[error("the connection is closed")]
    Closed,
    /// The object table is full.
    #[error("too many objects handed out")]
    TooManyObjects,
    /// The value cannot be sent.
    #[error("cannot encode: {0}")]
    Encode(JellyEncodeError),
    /// No such login attempt is waiting for a decision.
    #[error("no such login attempt")]
    UnknownLogin,
    /// The call is not one this side may make in this phase or role.
    #[error("{0}")]
    Misuse(&'static str),
}
