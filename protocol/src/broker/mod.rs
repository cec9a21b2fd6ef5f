//! One PB connection as a state machine, sans IO: bytes in, bytes and events out.
//!
//! A [`Broker`] is the whole state of one side of a connection: the dialect
//! negotiation, the PB version exchange, the login (a listener serves the cred
//! challenge/response on its root object; a connector performs it), the object table,
//! the calls awaiting answers in both directions, and the connection's timers (a
//! deadline for the login, keepalive probes and dead-peer detection). It never touches
//! a socket or a clock: the caller owns both.
//!
//! # Calling order
//!
//! 1. Feed what the socket delivered: [`handle_input`](Broker::handle_input) (or read
//!    straight into [`receive_buffer`](Broker::receive_buffer) and call
//!    [`handle_received`](Broker::handle_received)), [`handle_eof`](Broker::handle_eof)
//!    when the peer closed its end, and [`handle_timeout`](Broker::handle_timeout)
//!    once the instant from [`poll_timeout`](Broker::poll_timeout) has passed.
//! 2. Act: [`call`](Broker::call), [`answer`](Broker::answer),
//!    [`export`](Broker::export), [`accept_login`](Broker::accept_login), ...
//! 3. Drain [`poll_event`](Broker::poll_event) until `None`, then
//!    [`poll_transmit`](Broker::poll_transmit) and write what it gives, in order.
//! 4. Sleep until the next input or [`poll_timeout`](Broker::poll_timeout).
//!
//! Once [`phase`](Broker::phase) is [`Phase::Closing`] (an [`Event::Closed`] says
//! why), write what `poll_transmit` still gives, then close the socket.
//!
//! Misbehaviour never panics and never grows state without bound: a malformed or
//! oversized message closes the connection ([`CloseReason`] says which rule or bound),
//! a call to an unknown object or method is refused with the error Twisted sends, and
//! refusals that are the peer's fault are counted and bounded too.

mod config;
mod event;
mod login;
#[cfg(test)]
mod tests;

pub use config::{BrokerConfig, Entropy, Keepalive, Side};
pub use event::{
    BrokerError, CloseReason, Deadline, Event, Limit, LoginAttempt, LoginId, Phase, Violation,
};

use crate::banana::{self, negotiation, Decoder, Dialect, Element};
use crate::jelly::{Failure, FailureStyle, Security, Value};
use crate::pb::failures::{no_such_method, pb_error};
use crate::pb::{self, Call, Message, ObjectId, Session, SessionErrorKind};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// A top-level expression, taken from the decoder before acting on it.
enum Input {
    /// The dialect offer or choice.
    Negotiation(Element),
    /// Anything after it.
    Message(Result<Message, pb::PbError>),
}

/// One side of one PB connection. See the [module docs](self) for the calling order.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    phase: Phase,
    decoder: Decoder,
    received: BytesMut,
    dialect: Dialect,
    security: Security,
    style: FailureStyle,
    session: Session,
    transmit: BytesMut,
    events: VecDeque<Event>,
    /// Requests of the broker's own (login steps, probes) whose answers it consumes.
    internal: HashMap<i64, login::Internal>,
    login: login::LoginState,
    violations: u32,
    timers: Timers,
    entropy: config::Source,
}

/// The instants at which the broker must act, and what it needs to compute them.
#[derive(Debug, Default)]
struct Timers {
    login_deadline: Option<Instant>,
    /// The peer's mind, probed once logged in.
    mind: Option<i64>,
    next_probe: Option<Instant>,
    /// When the first probe since the peer's last input went out.
    silent_since: Option<Instant>,
}

impl Broker {
    /// A broker for a connection that begins `now`. A listener queues its dialect
    /// offer at once; `entropy` makes login challenges (a connector never uses it).
    pub fn new(config: BrokerConfig, now: Instant, entropy: impl Entropy + 'static) -> Broker {
        let mut broker = Broker {
            decoder: Decoder::new(config.limits),
            received: BytesMut::new(),
            phase: Phase::Dialect,
            dialect: Dialect::None,
            security: Security::default(),
            style: FailureStyle::Python3,
            session: Session::new(config.max_pending, config.max_objects),
            transmit: BytesMut::new(),
            events: VecDeque::new(),
            internal: HashMap::new(),
            login: login::LoginState::default(),
            violations: 0,
            timers: Timers::default(),
            entropy: config::Source(Box::new(entropy)),
            config,
        };
        if broker.config.side == Side::Listener {
            broker.timers.login_deadline = broker.config.login_timeout.map(|t| now + t);
            broker.send_element(&negotiation::offer());
        }
        broker
    }

    /// Where the connection stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Which end of the connection this broker is.
    pub fn side(&self) -> Side {
        self.config.side
    }

    /// Copyable classes the peer may send (default: `CopyableFailure` only).
    pub fn set_security(&mut self, security: Security) {
        self.security = security;
    }

    /// Shapes the failures this side sends for the peer's Python generation.
    pub fn set_failure_style(&mut self, style: FailureStyle) {
        self.style = style;
    }

    /// Calls to the peer still awaiting answers.
    pub fn pending_calls(&self) -> usize {
        self.session.pending()
    }

    // ----- input -----

    /// Takes bytes the peer sent.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.phase != Phase::Closing {
            self.received.extend_from_slice(data);
        }
        self.handle_received(now);
    }

    /// The buffer a driver may read into directly (then call
    /// [`handle_received`](Self::handle_received)), saving a copy. It holds at most
    /// one incomplete top-level expression (bounded by
    /// [`Limits::max_message_bytes`](crate::Limits::max_message_bytes)): every
    /// complete one is consumed at once.
    pub fn receive_buffer(&mut self) -> &mut BytesMut {
        &mut self.received
    }

    /// Processes what was added to [`receive_buffer`](Self::receive_buffer).
    pub fn handle_received(&mut self, now: Instant) {
        if self.phase == Phase::Closing {
            self.received.clear();
            return;
        }
        if !self.received.is_empty() {
            self.timers.silent_since = None;
        }
        while self.phase != Phase::Closing {
            // Messages are read in place; only the negotiation needs a tree.
            let negotiating = self.phase == Phase::Dialect;
            let input = match self.decoder.decode_ref(&mut self.received) {
                Ok(Some(e)) if negotiating => Input::Negotiation(e.to_element()),
                Ok(Some(e)) => Input::Message(pb::decode_ref(e, &self.security)),
                Ok(None) => break,
                Err(e) => {
                    self.close_with(CloseReason::decoding(e));
                    break;
                }
            };
            match input {
                Input::Negotiation(element) => self.negotiate(&element),
                Input::Message(message) => self.on_message(message, now),
            }
        }
    }

    /// The peer closed its end: cleanly between messages, or a violation inside one.
    pub fn handle_eof(&mut self) {
        if self.phase == Phase::Closing {
            return;
        }
        match self.decoder.finish(&self.received) {
            Ok(()) => self.close_with(CloseReason::PeerClosed),
            Err(e) => self.close_with(CloseReason::decoding(e)),
        }
    }

    /// Acts on every timer due at `now`: the login deadline, a dead peer, a probe.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Closing {
            return;
        }
        if self.login_deadline().is_some_and(|d| d <= now) {
            return self.close_with(CloseReason::Deadline(Deadline::Login));
        }
        let Some(keepalive) = &self.config.keepalive else {
            return;
        };
        if let Some(since) = self.timers.silent_since {
            if since + keepalive.timeout <= now {
                return self.close_with(CloseReason::Deadline(Deadline::Keepalive));
            }
        }
        if let (Some(due), Some(mind)) = (self.timers.next_probe, self.timers.mind) {
            if due <= now {
                self.timers.next_probe = Some(now + keepalive.interval);
                self.timers.silent_since.get_or_insert(now);
                let (method, kwargs) = (keepalive.method.clone(), keepalive.kwargs.clone());
                if let Ok(id) = self.call(ObjectId::Id(mind), method, vec![], kwargs) {
                    self.internal.insert(id, login::Internal::Probe);
                }
            }
        }
    }

    // ----- output -----

    /// The next event, in the order things happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Everything queued for the peer, as one chunk, or `None` when nothing is.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        // Taken whole: a split would leave the rest of its allocation pinned here.
        (!self.transmit.is_empty()).then(|| std::mem::take(&mut self.transmit).freeze())
    }

    /// Gives back the space kept between messages for reuse: the receive buffer if
    /// it is empty, the decoder's, pending events'. A driver calls it when the
    /// connection turns quiet, so thousands of idle connections stay small.
    pub fn release_memory(&mut self) {
        if self.received.is_empty() {
            self.received = BytesMut::new();
        }
        self.decoder.release_memory();
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closing {
            return None;
        }
        let dead = match (&self.config.keepalive, self.timers.silent_since) {
            (Some(k), Some(since)) => Some(since + k.timeout),
            _ => None,
        };
        let probe = self.timers.mind.and(self.timers.next_probe);
        [self.login_deadline(), dead, probe]
            .into_iter()
            .flatten()
            .min()
    }

    /// The login deadline, paused while the application decides on a login: its
    /// own checks (a worker's attach handshake) have their own timeouts.
    fn login_deadline(&self) -> Option<Instant> {
        self.timers
            .login_deadline
            .filter(|_| !self.login.is_deciding())
    }

    // ----- the application's requests -----

    /// Calls `method` on the peer's `object`; the answer arrives as
    /// [`Event::Answer`] with the returned request id. Too many unanswered calls close
    /// the connection.
    pub fn call(
        &mut self,
        object: ObjectId,
        method: impl Into<Bytes>,
        args: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
    ) -> Result<i64, BrokerError> {
        self.check_open()?;
        let Ok(request_id) = self.session.next_request(true) else {
            let n = self.session.pending();
            self.close_with(CloseReason::Limit(Limit::PendingCalls(n)));
            return Err(BrokerError::Closed);
        };
        let call = Call {
            request_id,
            object,
            method: method.into(),
            answer_required: true,
            args,
            kwargs,
        };
        if let Err(e) = self.send(&Message::Call(call)) {
            self.session.abandon(request_id);
            return Err(e);
        }
        Ok(request_id)
    }

    /// Reserves the next request id for a message the application encodes and writes
    /// itself (a test client's hand-made or malformed call), without queuing anything:
    /// the peer's answer to it then arrives as [`Event::Answer`] like a call's.
    pub fn reserve_request(&mut self) -> Result<i64, BrokerError> {
        self.check_open()?;
        self.session
            .next_request(true)
            .map_err(|_| BrokerError::Misuse("too many calls awaiting answers"))
    }

    /// Answers the peer's call `request_id` (only for calls with `answer_required`).
    pub fn answer(
        &mut self,
        request_id: i64,
        result: Result<Value, Failure>,
    ) -> Result<(), BrokerError> {
        self.check_open()?;
        let message = match result {
            Ok(value) => Message::Answer { request_id, value },
            Err(f) => Message::Error {
                request_id,
                failure: f.to_value(self.style),
            },
        };
        self.send(&message)
    }

    /// Registers a new object of the application's, to be sent as `Value::Remote(id)`;
    /// the peer's calls to it arrive as [`Event::Call`]. Allowed before the dialect is
    /// chosen, so that a connector can export its mind and log in with it at once.
    pub fn export(&mut self) -> Result<i64, BrokerError> {
        if self.phase == Phase::Closing {
            return Err(BrokerError::Closed);
        }
        self.session
            .export_unsent()
            .map_err(|_| BrokerError::TooManyObjects)
    }

    /// Stops serving an object; later calls to it are refused.
    pub fn unexport(&mut self, id: i64) {
        self.session.forget(id);
    }

    /// Closes the connection for a reason of this side's.
    pub fn close(&mut self, why: impl Into<String>) {
        if self.phase != Phase::Closing {
            self.close_with(CloseReason::Local(why.into()));
        }
    }

    // ----- internals -----

    fn check_open(&self) -> Result<(), BrokerError> {
        match self.phase {
            Phase::Closing => Err(BrokerError::Closed),
            Phase::Dialect => Err(BrokerError::Misuse("the dialect is not chosen yet")),
            _ => Ok(()),
        }
    }

    fn close_with(&mut self, reason: CloseReason) {
        self.phase = Phase::Closing;
        self.received.clear();
        self.internal.clear();
        self.events.push_back(Event::Closed(reason));
    }

    fn on_message(&mut self, message: Result<Message, pb::PbError>, now: Instant) {
        let message = match message {
            Ok(m) => m,
            Err(e) => return self.close_with(CloseReason::Violation(Violation::Message(e))),
        };
        match self.session.receive(&message) {
            Err(SessionErrorKind::VersionMismatch) => {
                let v = match message {
                    Message::Version(v) => v,
                    _ => 0,
                };
                return self.close_with(CloseReason::Violation(Violation::Version(v)));
            }
            Err(SessionErrorKind::UnknownObject) if matches!(message, Message::Call(_)) => {
                if let Message::Call(call) = &message {
                    self.refuse(call, pb_error("Invalid Object ID"));
                }
                return;
            }
            // Twisted drops the connection here; a stray answer or decref harms nothing.
            Err(_) => return,
            Ok(true) => {
                if let Message::Decref(id) = message {
                    self.on_released(id);
                }
                return;
            }
            Ok(false) => {}
        }
        match message {
            Message::Call(call) => self.on_call(call, now),
            Message::Answer { request_id, value } => self.on_answer(request_id, Ok(value)),
            Message::Error {
                request_id,
                failure,
            } => {
                let failure = Failure::from_value(&failure).unwrap_or_else(|| Failure {
                    type_name: "unknown".into(),
                    value: failure
                        .as_str_lossy()
                        .map(|s| s.into_owned())
                        .unwrap_or_default(),
                    ..Failure::default()
                });
                self.on_answer(request_id, Err(failure))
            }
            Message::CacheCall(call) => self.refuse(&call, pb_error("no caches are served here")),
            // Versions were checked above; cache bookkeeping concerns no one here.
            _ => {}
        }
    }

    fn negotiate(&mut self, element: &Element) {
        let chosen = match self.config.side {
            Side::Listener => negotiation::accept(element),
            Side::Connector => negotiation::choose(element),
        };
        let dialect = match chosen {
            Ok(d) => d,
            Err(e) => return self.close_with(CloseReason::Violation(Violation::Negotiation(e))),
        };
        if self.config.side == Side::Connector {
            self.send_element(&negotiation::choice(dialect));
        }
        self.dialect = dialect;
        self.decoder.set_dialect(dialect);
        self.phase = Phase::LoginPending;
        // Failing to encode a constant message cannot happen; if it did, the
        // connection is closed by `send`.
        let _ = self.send(&Message::Version(pb::PROTOCOL_VERSION));
        self.after_negotiation();
    }

    fn on_call(&mut self, call: Call, now: Instant) {
        if self.serve_login(&call, now) {
            return;
        }
        self.events.push_back(Event::Call(call));
    }

    fn on_answer(&mut self, request_id: i64, result: Result<Value, Failure>) {
        if let Some(internal) = self.internal.remove(&request_id) {
            return self.on_internal_answer(internal, result);
        }
        self.events.push_back(Event::Answer { request_id, result });
    }

    fn on_released(&mut self, id: i64) {
        if !self.forget_challenge(id) {
            self.events.push_back(Event::Released(id));
        }
    }

    /// Answers a call of the peer's with a failure, if it wants an answer.
    fn refuse(&mut self, call: &Call, failure: Failure) {
        if call.answer_required {
            let _ = self.answer(call.request_id, Err(failure));
        }
    }

    /// A refusal that counts against the peer; past `max_violations` it closes.
    fn violation(&mut self, call: &Call, what: &str) {
        self.violations += 1;
        if self.violations > self.config.max_violations {
            return self.close_with(CloseReason::Limit(Limit::Violations(self.violations)));
        }
        self.refuse(call, pb_error(what));
    }

    fn refuse_method(&mut self, call: &Call) {
        let method = String::from_utf8_lossy(&call.method).into_owned();
        self.refuse(call, no_such_method(&method));
    }

    /// Queues one message and counts the references to this side's objects it hands
    /// out; nothing is queued or counted if it cannot be sent.
    fn send(&mut self, message: &Message) -> Result<(), BrokerError> {
        let element = pb::encode(message, self.dialect).map_err(BrokerError::Encode)?;
        let start = self.transmit.len();
        if !self.send_element(&element) {
            return Err(BrokerError::Misuse("a value over the peer's size limits"));
        }
        let remotes = remotes_in(message);
        if !remotes.is_empty() && self.session.count_sent(&remotes).is_err() {
            self.transmit.truncate(start);
            return Err(BrokerError::TooManyObjects);
        }
        Ok(())
    }

    /// Queues one element; false (with nothing queued) if it cannot be encoded.
    fn send_element(&mut self, element: &Element) -> bool {
        let start = self.transmit.len();
        if banana::encode(element, &mut self.transmit).is_err() {
            self.transmit.truncate(start);
            return false;
        }
        true
    }
}

/// Every `(remote id)` in a message, once per occurrence.
fn remotes_in(message: &Message) -> Vec<i64> {
    let mut stack: Vec<&Value> = match message {
        Message::Call(call) | Message::CacheCall(call) => call
            .args
            .iter()
            .chain(call.kwargs.iter().flat_map(|(k, v)| [k, v]))
            .collect(),
        Message::Answer { value, .. } => vec![value],
        Message::Error { failure, .. } => vec![failure],
        _ => vec![],
    };
    let mut ids = vec![];
    while let Some(value) = stack.pop() {
        match value {
            Value::Remote(id) => ids.push(*id),
            Value::List(items)
            | Value::Tuple(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => stack.extend(items),
            Value::Dict(pairs) => stack.extend(pairs.iter().flat_map(|(k, v)| [k, v])),
            Value::Reference(_, inner) => stack.push(inner),
            Value::Copyable(c) => stack.push(&c.state),
            _ => {}
        }
    }
    ids
}
