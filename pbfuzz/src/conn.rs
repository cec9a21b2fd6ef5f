//! One connection to the target: pbwire's sans-IO broker (connector role) does the
//! protocol, logging in and answering the target's calls through the persona; the
//! fuzzer adds raw bytes to the same outgoing stream. One task owns the socket and
//! both directions, so a target that stops reading never stops this side from
//! reading (and seeing a close).

use crate::persona::Persona;
use crate::profile::{Call, Object, Profile};
use bytes::{Bytes, BytesMut};
use pbwire::banana::{Decoder, Dialect, Element};
use pbwire::broker::{Broker, BrokerConfig, CloseReason, Event, Phase, Side};
use pbwire::pb::ObjectId;
use pbwire::Limits;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Bytes per write when a piece is repeated: big enough to keep the socket busy,
/// small enough that a 64 MiB case holds one block in memory.
const WRITE_BLOCK: usize = 256 * 1024;

/// What the tap accepts from the target: far more than a broker should, since a
/// target may echo a case's oversized or deep values back.
const TAP_LIMITS: Limits = Limits {
    max_prefix_len: 64,
    max_string_len: 64 * 1024 * 1024,
    max_list_len: 64 * 1024 * 1024,
    max_depth: pbwire::DEPTH_CEILING,
    max_message_bytes: 256 * 1024 * 1024,
    max_message_elements: 1 << 26,
};

/// How a connection ended or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnError {
    /// Could not connect (refused, unreachable).
    Connect(String),
    /// The target closed the connection (or reset it).
    Closed(String),
    /// Nothing within the deadline.
    Timeout,
    /// The login was refused.
    Refused(String),
    /// The target sent bytes this side's broker could not take.
    Garbled(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Connect(e) => write!(f, "connect: {e}"),
            ConnError::Closed(e) => write!(f, "closed: {e}"),
            ConnError::Timeout => f.write_str("timed out"),
            ConnError::Refused(e) => write!(f, "login refused: {e}"),
            ConnError::Garbled(e) => write!(f, "unreadable reply: {e}"),
        }
    }
}

/// What one turn of the loop saw.
#[derive(Debug)]
pub enum Turn {
    /// Bytes went out or came in; look at [`Conn::events`].
    Progress,
    Closed(String),
    Timeout,
}

/// A logged-in (or at least negotiated) connection.
#[derive(Debug)]
pub struct Conn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    pub broker: Broker,
    persona: Persona,
    name: String,
    out: VecDeque<Bytes>,
    /// Bytes of `out`'s front already written.
    written: usize,
    /// Shut the sending side down once `out` is empty.
    shutdown_after: bool,
    write_closed: bool,
    /// Events the persona did not consume (answers, closes).
    pub events: VecDeque<Event>,
    pub mind: Option<i64>,
    /// The object `Object::Avatar` means (the login's answer).
    pub avatar: Option<i64>,
    /// Calls the target made on this side's objects.
    pub target_calls: u64,
    /// A second reader of the target's bytes that only looks for answers and errors:
    /// the broker stops reading at the first message it refuses (a target may answer
    /// a malformed call with a malformed answer), the tap reads on.
    tap: Decoder,
    tap_buf: BytesMut,
    /// The target's answers and errors, by request id, as the tap read them.
    pub replies: VecDeque<(i64, Element)>,
    /// Why the tap stopped reading, if it did.
    pub tap_error: Option<String>,
}

impl Conn {
    /// Connects, logs in as the profile says and runs its script, within `limit`.
    pub async fn open(profile: &Profile, limit: Duration) -> Result<Conn, ConnError> {
        let deadline = Instant::now() + limit;
        let stream = timeout_at(deadline, TcpStream::connect(profile.address))
            .await
            .map_err(|_| ConnError::Timeout)?
            .map_err(|e| ConnError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let now = std::time::Instant::now();
        // A connector never makes login challenges: it needs no randomness.
        let broker = Broker::new(BrokerConfig::new(Side::Connector), now, |_: &mut [u8]| {
            false
        });
        let mut conn = Conn {
            read,
            write,
            broker,
            persona: profile.persona,
            name: String::new(),
            out: VecDeque::new(),
            written: 0,
            shutdown_after: false,
            write_closed: false,
            events: VecDeque::new(),
            mind: None,
            avatar: None,
            target_calls: 0,
            tap: Decoder::new(TAP_LIMITS),
            tap_buf: BytesMut::with_capacity(64 * 1024),
            replies: VecDeque::new(),
            tap_error: None,
        };
        if let Some(login) = &profile.login {
            conn.name.clone_from(&login.username);
            let mind = if login.mind {
                Some(
                    conn.broker
                        .export()
                        .map_err(|e| ConnError::Garbled(e.to_string()))?,
                )
            } else {
                None
            };
            conn.mind = mind;
            conn.broker
                .login(
                    login.username.clone().into_bytes(),
                    login.password.as_bytes(),
                    mind,
                )
                .map_err(|e| ConnError::Garbled(e.to_string()))?;
            let avatar = conn
                .until(deadline, |e| match e {
                    Event::LoggedIn { avatar } => Some(Ok(*avatar)),
                    Event::LoginRefused(f) => Some(Err(ConnError::Refused(format!(
                        "{}: {}",
                        f.type_name, f.value
                    )))),
                    _ => None,
                })
                .await??;
            conn.avatar = Some(avatar);
        } else {
            while conn.broker.phase() == Phase::Dialect {
                conn.turn_checked(deadline).await?;
            }
        }
        for call in &profile.script {
            let object = conn.object(call.object);
            let id = conn
                .broker
                .call(
                    object,
                    call.method.clone().into_bytes(),
                    call.args.clone(),
                    vec![],
                )
                .map_err(|e| ConnError::Garbled(e.to_string()))?;
            conn.flush();
            conn.until(deadline, |e| match e {
                Event::Answer { request_id, .. } if *request_id == id => Some(()),
                _ => None,
            })
            .await?;
        }
        Ok(conn)
    }

    /// The wire id of a profile's object in this session.
    pub fn object(&self, o: Object) -> ObjectId {
        match (o, self.avatar) {
            (Object::Avatar, Some(a)) => ObjectId::Id(a),
            (Object::Id(id), _) => ObjectId::Id(id),
            _ => ObjectId::Root,
        }
    }

    /// The call as this session would send it, under `request_id`, as bytes.
    pub fn encode_call(&self, call: &Call, request_id: i64) -> Vec<u8> {
        let message = pbwire::pb::Message::Call(pbwire::pb::Call {
            request_id,
            object: self.object(call.object),
            method: Bytes::from(call.method.clone().into_bytes()),
            answer_required: true,
            args: call.args.clone(),
            kwargs: vec![],
        });
        pbwire::pb::encode(&message, pbwire::banana::Dialect::Pb)
            .map(|e| crate::wire::enc(&e))
            .unwrap_or_default()
    }

    /// Queues raw bytes, `repeat` times, after everything queued so far.
    pub fn queue(&mut self, bytes: &[u8], repeat: usize) {
        if bytes.is_empty() || repeat == 0 {
            return;
        }
        let per_block = (WRITE_BLOCK / bytes.len()).clamp(1, repeat);
        let block = Bytes::from(bytes.repeat(per_block));
        let mut left = repeat;
        while left > 0 {
            let n = left.min(per_block);
            self.out.push_back(if n == per_block {
                block.clone()
            } else {
                Bytes::from(bytes.repeat(n))
            });
            left -= n;
        }
    }

    /// Closes the sending side once everything queued is written.
    pub fn half_close(&mut self) {
        self.shutdown_after = true;
    }

    /// Whether everything queued has been written.
    pub fn sent(&self) -> bool {
        self.out.is_empty()
    }

    /// Moves what the broker queued to the outgoing stream.
    fn flush(&mut self) {
        while let Some(b) = self.broker.poll_transmit() {
            if !self.write_closed && !self.shutdown_after {
                self.out.push_back(b);
            }
        }
    }

    /// Turns until `pick` accepts an event (consumed), or the connection ends.
    pub async fn until<T>(
        &mut self,
        deadline: Instant,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T, ConnError> {
        loop {
            while let Some(e) = self.events.pop_front() {
                if let Some(t) = pick(&e) {
                    return Ok(t);
                }
                if let Event::Closed(reason) = e {
                    return Err(closed(&reason));
                }
            }
            self.turn_checked(deadline).await?;
        }
    }

    async fn turn_checked(&mut self, deadline: Instant) -> Result<(), ConnError> {
        match self.turn(deadline).await {
            Turn::Progress => Ok(()),
            Turn::Closed(why) => Err(ConnError::Closed(why)),
            Turn::Timeout => Err(ConnError::Timeout),
        }
    }

    /// Writes some of what is queued or reads some of what arrived, whichever the
    /// socket allows first; answers the target's calls on the way.
    pub async fn turn(&mut self, deadline: Instant) -> Turn {
        if self.out.is_empty() && self.shutdown_after && !self.write_closed {
            self.write_closed = true;
            let _ = self.write.shutdown().await;
        }
        if self.tap_buf.capacity() - self.tap_buf.len() < 4096 {
            self.tap_buf.reserve(64 * 1024);
        }
        let writing = !self.out.is_empty() && !self.write_closed;
        let front = self.out.front().cloned().unwrap_or_default();
        let written = self.written;
        tokio::select! {
            r = self.write.write(&front[written.min(front.len())..]), if writing => match r {
                Ok(n) => {
                    self.written += n;
                    if self.written >= front.len() {
                        self.out.pop_front();
                        self.written = 0;
                    }
                    Turn::Progress
                }
                // The target stopped reading for good; what it does next is still
                // worth seeing.
                Err(_) => {
                    self.out.clear();
                    self.write_closed = true;
                    Turn::Progress
                }
            },
            r = self.read.read_buf(&mut self.tap_buf) => match r {
                Ok(0) => {
                    self.broker.handle_eof();
                    self.take_events();
                    Turn::Closed("closed by the target".into())
                }
                Ok(n) => {
                    let fresh = &self.tap_buf[self.tap_buf.len() - n..];
                    self.broker.handle_input(fresh, std::time::Instant::now());
                    self.take_events();
                    self.read_tap();
                    Turn::Progress
                }
                Err(e) => Turn::Closed(e.to_string()),
            },
            _ = tokio::time::sleep_until(deadline) => Turn::Timeout,
        }
    }

    /// Takes the answers and errors out of what the tap has read.
    fn read_tap(&mut self) {
        if self.tap_error.is_some() {
            self.tap_buf.clear();
            return;
        }
        loop {
            match self.tap.decode(&mut self.tap_buf) {
                Ok(Some(e)) => {
                    // The first element is the dialect offer.
                    if self.tap.dialect() == Dialect::None {
                        self.tap.set_dialect(Dialect::Pb);
                        continue;
                    }
                    if let Some(id) = reply_id(&e) {
                        self.replies.push_back((id, e));
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.tap_error = Some(e.to_string());
                    self.tap_buf.clear();
                    return;
                }
            }
        }
    }

    /// Answers the target's calls; keeps every other event.
    fn take_events(&mut self) {
        while let Some(e) = self.broker.poll_event() {
            match e {
                Event::Call(call) => {
                    self.target_calls += 1;
                    if call.answer_required && !self.write_closed && !self.shutdown_after {
                        let broker = &mut self.broker;
                        let mut export = || broker.export().ok();
                        let value = self
                            .persona
                            .answer(&call, self.mind, &self.name, &mut export);
                        let _ = self.broker.answer(call.request_id, Ok(value));
                    }
                }
                other => self.events.push_back(other),
            }
        }
        self.flush();
    }
}

/// The request id of an `(answer ID ...)` or `(error ID ...)`.
fn reply_id(e: &Element) -> Option<i64> {
    let Element::List(items) = e else { return None };
    let kind = items.first()?.as_bytes()?;
    if kind != b"answer" && kind != b"error" {
        return None;
    }
    match items.get(1)? {
        Element::Int(i) => i.to_i64(),
        _ => None,
    }
}

fn closed(reason: &CloseReason) -> ConnError {
    match reason {
        CloseReason::PeerClosed => ConnError::Closed("closed by the target".into()),
        CloseReason::Violation(_) | CloseReason::Limit(_) => ConnError::Garbled(reason.to_string()),
        other => ConnError::Closed(other.to_string()),
    }
}
