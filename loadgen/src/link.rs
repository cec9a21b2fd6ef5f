//! One PB connection from the client side: dialect negotiation, `version`, and the
//! request bookkeeping the simulated worker needs. Every
//! byte read is untrusted: anything malformed ends the connection with an error value,
//! never a panic.

use bytes::{Bytes, BytesMut};
use pbwire::banana::{self, negotiation, Decoder, Dialect, Element};
use pbwire::jelly::{Failure, FailureStyle, Security, Value};
use pbwire::pb::{self, Call, Message, ObjectId, Session, PROTOCOL_VERSION};
use pbwire::Limits;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// How a connection failed.
#[derive(Debug, Clone)]
pub enum LinkError {
    Io(String),
    /// The peer closed the connection.
    Closed,
    /// The peer sent bytes or messages that break the protocol.
    Protocol(String),
    /// This side could not encode or register what it wanted to send.
    Local(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Io(e) => write!(f, "io: {e}"),
            LinkError::Closed => f.write_str("connection closed by peer"),
            LinkError::Protocol(e) => write!(f, "protocol: {e}"),
            LinkError::Local(e) => write!(f, "local: {e}"),
        }
    }
}

/// The result of a call: the answer, or the failure the peer sent.
pub type Reply = Result<Value, Value>;

/// Requests this side sent and objects it exported; shared by every task that sends
/// on the connection.
#[derive(Debug)]
struct State {
    session: Session,
    waiters: HashMap<i64, oneshot::Sender<Reply>>,
}

/// The sending half: cheap to clone, usable from any task.
#[derive(Debug, Clone)]
pub struct Link {
    tx: mpsc::Sender<Bytes>,
    state: Arc<Mutex<State>>,
}

/// The receiving half: yields the peer's calls; settles answers to this side's calls.
#[derive(Debug)]
pub struct Inbox {
    read: OwnedReadHalf,
    decoder: Decoder,
    buf: BytesMut,
    state: Arc<Mutex<State>>,
    security: Security,
}

/// Messages queued for the writer per connection before senders wait: enough to keep
/// the socket busy, small enough that 10,000 idle connections cost little.
const WRITE_QUEUE: usize = 32;

/// How long to wait for the server's dialect offer. A connection whose final
/// handshake ACK the server dropped (accept queue full) looks established here but
/// never gets an offer; only a timeout and a new connection recover it.
const OFFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects, negotiates the `pb` dialect and sends `(version 6)`. The peer's version
/// is checked when it arrives, by [`Inbox::next`].
pub async fn connect(addr: SocketAddr) -> Result<(Link, Inbox), LinkError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| LinkError::Io(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let state = Arc::new(Mutex::new(State {
        // Twisted allows 1024 live objects per broker; a worker exports a handful.
        session: Session::new(1 << 20, 1024),
        waiters: HashMap::new(),
    }));
    let mut inbox = Inbox {
        read,
        decoder: Decoder::new(Limits::default()),
        buf: BytesMut::with_capacity(4096),
        state: state.clone(),
        security: Security::default(),
    };
    let offer = tokio::time::timeout(OFFER_TIMEOUT, inbox.element())
        .await
        .map_err(|_| LinkError::Io("no dialect offer within 10 s".into()))??;
    let dialect = negotiation::choose(&offer)
        .map_err(|e| LinkError::Protocol(format!("dialect offer: {e}")))?;
    inbox.decoder.set_dialect(dialect);
    if dialect != Dialect::Pb {
        return Err(LinkError::Protocol("server does not offer pb".into()));
    }
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    tokio::spawn(write_loop(write, rx));
    let link = Link { tx, state };
    link.send_element(&negotiation::choice(dialect)).await?;
    link.send(&Message::Version(PROTOCOL_VERSION)).await?;
    Ok((link, inbox))
}

/// Writes queued messages until every [`Link`] is dropped or the socket fails.
async fn write_loop(mut write: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

impl Link {
    /// Queues encoded bytes.
    async fn send_raw(&self, bytes: Bytes) -> Result<(), LinkError> {
        self.tx.send(bytes).await.map_err(|_| LinkError::Closed)
    }

    pub async fn send_element(&self, e: &Element) -> Result<(), LinkError> {
        let bytes = banana::encode_to_vec(e).map_err(|e| LinkError::Local(e.to_string()))?;
        self.send_raw(Bytes::from(bytes)).await
    }

    pub async fn send(&self, m: &Message) -> Result<(), LinkError> {
        let e = pb::encode(m, Dialect::Pb).map_err(|e| LinkError::Local(e.to_string()))?;
        self.send_element(&e).await
    }

    /// Calls `method` on the peer's `object`; the receiver gets the answer or failure
    /// (or is dropped if the connection ends first).
    pub async fn call(
        &self,
        object: ObjectId,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
    ) -> Result<oneshot::Receiver<Reply>, LinkError> {
        let (tx, rx) = oneshot::channel();
        let request_id = {
            let mut s = self.lock();
            let id = s
                .session
                .next_request(true)
                .map_err(|e| LinkError::Local(e.to_string()))?;
            s.waiters.insert(id, tx);
            id
        };
        let call = Call {
            request_id,
            object,
            method: Bytes::copy_from_slice(method.as_bytes()),
            answer_required: true,
            args,
            kwargs,
        };
        self.send(&Message::Call(call)).await?;
        Ok(rx)
    }

    pub async fn answer(&self, request_id: i64, value: Value) -> Result<(), LinkError> {
        self.send(&Message::Answer { request_id, value }).await
    }

    /// Answers a call with a failure shaped for a Python 3 master.
    pub async fn fail(
        &self,
        request_id: i64,
        type_name: &str,
        text: &str,
    ) -> Result<(), LinkError> {
        let failure = Failure {
            type_name: type_name.to_owned(),
            value: text.to_owned(),
            parents: vec![
                type_name.to_owned(),
                "twisted.spread.pb.Error".into(),
                "builtins.Exception".into(),
                "builtins.BaseException".into(),
                "builtins.object".into(),
            ],
            traceback: None,
        };
        let failure = failure.to_value(FailureStyle::Python3);
        self.send(&Message::Error {
            request_id,
            failure,
        })
        .await
    }

    /// Registers a new local object (the mind, a builder) to send as `(remote id)`.
    pub fn export(&self) -> Result<i64, LinkError> {
        self.lock()
            .session
            .export_new()
            .map_err(|e| LinkError::Local(e.to_string()))
    }

    /// Counts one more `(remote id)` sent for an object already exported.
    pub fn export_again(&self, id: i64) -> bool {
        self.lock().session.export_again(id)
    }

    /// Whether the peer may call `object` (known locally and not released).
    pub fn is_exported(&self, object: ObjectId) -> bool {
        self.lock().session.is_exported(object)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// A poisoned lock only means another task panicked mid-update; the bookkeeping is
/// still usable for a load generator.
fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the peer sent that the caller has to handle.
#[derive(Debug)]
pub enum Incoming {
    /// A call on one of this side's objects (or the root).
    Call(Call),
    /// The peer released one of this side's objects.
    Decref,
}

impl Inbox {
    /// The next call from the peer, settling answers and errors on the way.
    /// `Ok(None)`: the peer closed the connection cleanly between messages.
    pub async fn next(&mut self) -> Result<Option<Incoming>, LinkError> {
        loop {
            let element = match self.element().await {
                Ok(e) => e,
                Err(LinkError::Closed) if !self.decoder.in_expression() && self.buf.is_empty() => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            let message = pb::decode(&element, &self.security)
                .map_err(|e| LinkError::Protocol(e.to_string()))?;
            let mut state = lock(&self.state);
            // Unknown answers and decrefs are tolerated (logged by the caller's
            // counters), as the protocol reference advises; a version mismatch is not.
            let known = state.session.receive(&message);
            match message {
                Message::Version(v) if v != PROTOCOL_VERSION => {
                    return Err(LinkError::Protocol(format!("peer speaks PB version {v}")));
                }
                Message::Answer { request_id, value } => {
                    if let Some(w) = state.waiters.remove(&request_id) {
                        let _ = w.send(Ok(value));
                    }
                }
                Message::Error {
                    request_id,
                    failure,
                } => {
                    if let Some(w) = state.waiters.remove(&request_id) {
                        let _ = w.send(Err(failure));
                    }
                }
                Message::Decref(_) if known.is_ok() => return Ok(Some(Incoming::Decref)),
                Message::Call(call) => return Ok(Some(Incoming::Call(call))),
                _ => {}
            }
        }
    }

    /// The next top-level banana element.
    async fn element(&mut self) -> Result<Element, LinkError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(e)) => return Ok(e),
                Ok(None) => {}
                Err(e) => return Err(LinkError::Protocol(e.to_string())),
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            match self.read.read_buf(&mut self.buf).await {
                Ok(0) => return Err(LinkError::Closed),
                Ok(_) => {}
                Err(e) => return Err(LinkError::Io(e.to_string())),
            }
        }
    }
}

/// A text value, as a Python 3 worker sends `str`.
pub fn text(s: &str) -> Value {
    Value::text(s)
}
