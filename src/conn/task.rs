//! The connection task: reads elements, dispatches PB messages, writes answers and
//! calls. Misbehaviour closes this connection only, with the reason logged.

use super::failures::{no_such_method, pb_error, unauthorized};
use super::handle::{CallError, ConnHandle, ObjectCall, Request};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use pbwire::banana::{self, negotiation, Dialect, Element};
use pbwire::codec::BananaCodec;
use pbwire::jelly::{Failure, FailureStyle, Security, Value};
use pbwire::pb::{self, Call, Message, ObjectId, Session};
use pbwire::{login, Limits};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};
use tokio_util::codec::FramedRead;
use tracing::{debug, info};

/// Where passwords come from; `None` for an unknown name.
pub trait Auth: Send + Sync + std::fmt::Debug {
    /// The password and role of a login name; `None` for an unknown name.
    fn lookup(&self, name: &str) -> Option<(Vec<u8>, Role)>;
}

/// What a login name is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A build worker: attached through the handshake before its login is answered.
    Worker,
    /// A change source (`buildbot sendchange`): may only call `addChange`.
    ChangeSource,
}

/// An object of ours that answers the peer's calls itself, synchronously (a file
/// writer or reader of a transfer step).
pub trait LocalObject: Send + Sync + std::fmt::Debug {
    fn call(&mut self, method: &str, args: &[Value]) -> Result<Value, Failure>;
}

/// Bounds and timers of every connection.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    pub limits: Limits,
    /// Between the master's keepalive calls once a worker has logged in.
    pub keepalive_interval: Duration,
    /// How long the peer may stay silent after a keepalive call.
    pub keepalive_timeout: Duration,
    /// Objects handed out at once (Twisted's broker allows 1024).
    pub max_objects: usize,
    /// Calls to the peer awaiting answers.
    pub max_pending: usize,
    /// Refused requests (e.g. over the object limit) before the connection is closed.
    pub max_violations: u32,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            limits: Limits {
                max_message_bytes: 4 << 20,
                max_message_elements: 1 << 18,
                ..Limits::default()
            },
            keepalive_interval: Duration::from_secs(300),
            keepalive_timeout: Duration::from_secs(60),
            max_objects: 1024,
            max_pending: 4096,
            max_violations: 3,
        }
    }
}

/// What a connection tells the master.
#[derive(Debug)]
pub enum ConnEvent {
    /// A worker proved its password. The master attaches it, then answers
    /// `respond_request` with `(remote avatar)` (or refuses it).
    LoggedIn {
        conn: ConnHandle,
        name: String,
        mind: Option<i64>,
        respond_request: i64,
        avatar: i64,
    },
    /// The worker asked for a graceful shutdown (`perspective.shutdown()`).
    ShutdownRequested { conn_id: u64 },
    /// A change source called `addChange(change)`; the master answers `request_id`
    /// once the change is stored.
    Change {
        conn: ConnHandle,
        request_id: i64,
        change: Value,
    },
    /// The connection is gone.
    Closed { conn_id: u64, reason: String },
}

/// Runs one connection until it closes.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    config: Arc<ConnConfig>,
    auth: Arc<dyn Auth>,
    events: mpsc::Sender<ConnEvent>,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel(256);
    let handle = ConnHandle { id, peer, tx };
    let mut conn = Conn {
        handle: handle.clone(),
        // A small initial buffer: most messages are small, and idle connections are many.
        reader: FramedRead::with_capacity(read, BananaCodec::new(config.limits), 1024),
        writer: write,
        out: BytesMut::new(),
        session: Session::new(config.max_pending, config.max_objects),
        objects: HashMap::new(),
        pending: HashMap::new(),
        style: FailureStyle::Python3,
        negotiated: false,
        login: LoginState::None,
        mind: None,
        violations: 0,
        security: Security::default(),
        config,
        auth,
        events,
    };
    let reason = conn.run(rx).await;
    info!(peer = %peer, worker = conn.login.name().unwrap_or("-"), "connection closed: {reason}");
    let _ = conn.writer.shutdown().await;
    let _ = conn
        .events
        .send(ConnEvent::Closed {
            conn_id: id,
            reason,
        })
        .await;
}

#[derive(Debug)]
enum Local {
    /// A login attempt: the challenge sent for `name`.
    Challenger { challenge: [u8; 16], name: String },
    /// The logged-in worker's perspective.
    Avatar,
    /// A logged-in change source's perspective.
    ChangeAvatar,
    /// An object that answers calls itself.
    Object(Box<dyn LocalObject>),
    /// An object owned by another task.
    Sink(mpsc::Sender<ObjectCall>),
}

#[derive(Debug)]
enum LoginState {
    None,
    /// `respond` accepted; the master is attaching the worker.
    Pending(String),
    Done(String),
}

impl LoginState {
    fn name(&self) -> Option<&str> {
        match self {
            LoginState::None => None,
            LoginState::Pending(n) | LoginState::Done(n) => Some(n),
        }
    }
}

struct Conn {
    handle: ConnHandle,
    reader: FramedRead<tokio::net::tcp::OwnedReadHalf, BananaCodec>,
    writer: OwnedWriteHalf,
    out: BytesMut,
    session: Session,
    objects: HashMap<i64, Local>,
    pending: HashMap<i64, oneshot::Sender<Result<Value, CallError>>>,
    style: FailureStyle,
    negotiated: bool,
    login: LoginState,
    /// The worker's bot (the `respond` argument), for keepalive calls.
    mind: Option<i64>,
    violations: u32,
    security: Security,
    config: Arc<ConnConfig>,
    auth: Arc<dyn Auth>,
    events: mpsc::Sender<ConnEvent>,
}

/// Why the connection must close.
type Close = String;

impl Conn {
    async fn run(&mut self, mut rx: mpsc::Receiver<Request>) -> String {
        if let Err(e) = self.send_element(&negotiation::offer()).await {
            return e;
        }
        let mut keepalive = tokio::time::interval(self.config.keepalive_interval);
        keepalive.tick().await;
        let never: Sleep = tokio::time::sleep(Duration::from_secs(u32::MAX as u64));
        tokio::pin!(never);
        let mut silent_since: Option<Instant> = None;
        loop {
            let deadline = silent_since.map(|t| t + self.config.keepalive_timeout);
            if let Some(d) = deadline {
                never.as_mut().reset(d);
            }
            tokio::select! {
                frame = self.reader.next() => {
                    silent_since = None;
                    let result = match frame {
                        None => Err("peer closed the connection".to_owned()),
                        Some(Err(e)) => Err(format!("bad input: {e}")),
                        Some(Ok(element)) => self.on_element(element).await,
                    };
                    if let Err(why) = result {
                        return why;
                    }
                }
                request = rx.recv() => {
                    let Some(request) = request else { return "master dropped the connection".into() };
                    if let Err(why) = self.on_request(request).await {
                        return why;
                    }
                }
                _ = keepalive.tick() => {
                    if let Some(mind) = self.mind_for_keepalive() {
                        let (reply, _ignored) = oneshot::channel();
                        let kwargs = vec![(Value::text("message"), Value::text("keepalive"))];
                        if let Err(why) = self.call(mind, Bytes::from_static(b"print"), vec![], kwargs, reply).await {
                            return why;
                        }
                        silent_since.get_or_insert_with(Instant::now);
                    }
                }
                _ = &mut never, if deadline.is_some() => {
                    return format!("no answer to a keepalive within {:?}", self.config.keepalive_timeout);
                }
            }
        }
    }

    fn mind_for_keepalive(&self) -> Option<i64> {
        match self.login {
            LoginState::Done(_) => self.mind,
            _ => None,
        }
    }

    async fn on_element(&mut self, element: Element) -> Result<(), Close> {
        if !self.negotiated {
            let dialect = negotiation::accept(&element).map_err(|e| format!("negotiation: {e}"))?;
            self.reader.decoder_mut().set_dialect(dialect);
            self.negotiated = true;
            return self.send(&Message::Version(pb::PROTOCOL_VERSION)).await;
        }
        let message =
            pb::decode(&element, &self.security).map_err(|e| format!("bad message: {e}"))?;
        match self.session.receive(&message) {
            Err(pb::SessionErrorKind::VersionMismatch) => {
                return Err("peer speaks another PB version".into())
            }
            Err(pb::SessionErrorKind::UnknownRequest)
            | Err(pb::SessionErrorKind::UnknownObject)
                if !matches!(message, Message::Call(_)) =>
            {
                // Twisted would drop the connection; a stray answer or decref harms nothing.
                debug!(peer = %self.handle.peer, "ignoring {message:?}: not known to this connection");
                return Ok(());
            }
            Ok(true) => {
                if let Message::Decref(id) = message {
                    self.objects.remove(&id);
                }
                return Ok(());
            }
            _ => {}
        }
        match message {
            Message::Call(call) => self.on_call(call).await,
            Message::Answer { request_id, value } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Ok(value));
                }
                Ok(())
            }
            Message::Error {
                request_id,
                failure,
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let f = Failure::from_value(&failure).unwrap_or_else(|| Failure {
                        type_name: "unknown".into(),
                        value: failure
                            .as_str_lossy()
                            .map(|s| s.into_owned())
                            .unwrap_or_default(),
                        ..Failure::default()
                    });
                    let _ = reply.send(Err(CallError::Remote(f)));
                }
                Ok(())
            }
            Message::Version(_) => Ok(()),
            Message::CacheCall(call) => {
                self.refuse(&call, pb_error("this master holds no caches"))
                    .await
            }
            other => {
                debug!(peer = %self.handle.peer, "ignoring {other:?}");
                Ok(())
            }
        }
    }

    async fn on_call(&mut self, call: Call) -> Result<(), Close> {
        let method = String::from_utf8_lossy(&call.method).into_owned();
        let local = match call.object {
            ObjectId::Root => None,
            ObjectId::Id(id) => match self.objects.get(&id) {
                Some(local) => Some((id, local)),
                None => return self.refuse(&call, pb_error("Invalid Object ID")).await,
            },
        };
        match local {
            None => match method.as_str() {
                "login" => self.login_call(&call).await,
                _ => self.refuse(&call, no_such_method(&method)).await,
            },
            Some((id, Local::Challenger { .. })) if method == "respond" => {
                self.respond(&call, id).await
            }
            Some((_, Local::Avatar)) if method == "keepalive" => {
                self.reply(&call, Ok(Value::None)).await
            }
            Some((_, Local::Avatar)) if method == "shutdown" => {
                let _ = self
                    .events
                    .send(ConnEvent::ShutdownRequested {
                        conn_id: self.handle.id,
                    })
                    .await;
                self.reply(&call, Ok(Value::None)).await
            }
            Some((_, Local::ChangeAvatar)) if method == "addChange" => {
                let Some(change) = call.args.first().cloned() else {
                    return self
                        .refuse(&call, pb_error("addChange needs a change"))
                        .await;
                };
                let event = ConnEvent::Change {
                    conn: self.handle.clone(),
                    request_id: call.request_id,
                    change,
                };
                self.events
                    .send(event)
                    .await
                    .map_err(|_| "master is gone".to_owned())
            }
            Some((id, Local::Object(_))) => {
                let Some(Local::Object(object)) = self.objects.get_mut(&id) else {
                    return Ok(());
                };
                let result = object.call(&method, &call.args);
                self.reply(&call, result).await
            }
            Some((_, Local::Sink(tx))) => {
                let tx = tx.clone();
                let answer = if method == "update" {
                    Value::int(0)
                } else {
                    Value::None
                };
                // Waiting here pushes back on a worker that sends faster than the
                // owner consumes. A gone owner (a late update) is not the worker's fault.
                let _ = tx
                    .send(ObjectCall {
                        method,
                        args: call.args.clone(),
                    })
                    .await;
                self.reply(&call, Ok(answer)).await
            }
            Some(_) => self.refuse(&call, no_such_method(&method)).await,
        }
    }

    /// `root.login(name)` → `(challenge, challenger)`.
    async fn login_call(&mut self, call: &Call) -> Result<(), Close> {
        let Some(name) = call
            .args
            .first()
            .and_then(Value::as_str_lossy)
            .map(|s| s.into_owned())
        else {
            return self.refuse(call, pb_error("login needs a user name")).await;
        };
        let mut challenge = [0u8; 16];
        if getrandom::fill(&mut challenge).is_err() {
            return Err("no randomness for a login challenge".into());
        }
        let Ok(id) = self.session.export_new() else {
            return self.violation(call, "too many objects").await;
        };
        self.objects.insert(
            id,
            Local::Challenger {
                challenge: login::challenge(challenge),
                name,
            },
        );
        let answer = Value::Tuple(vec![
            Value::Bytes(Bytes::copy_from_slice(&challenge)),
            Value::Remote(id),
        ]);
        self.reply(call, Ok(answer)).await
    }

    /// `challenger.respond(response, mind)`: check the password, then let the master
    /// attach the worker; it answers this call when done.
    async fn respond(&mut self, call: &Call, challenger: i64) -> Result<(), Close> {
        let Some(Local::Challenger { challenge, name }) = self.objects.remove(&challenger) else {
            return self.refuse(call, pb_error("Invalid Object ID")).await;
        };
        // One respond per challenge.
        self.session.forget(challenger);
        if !matches!(self.login, LoginState::None) {
            return self.refuse(call, pb_error("already logged in")).await;
        }
        let response = call
            .args
            .first()
            .and_then(Value::as_bytes)
            .unwrap_or_default();
        let role = match self.auth.lookup(&name) {
            Some((pw, role)) if login::verify(&pw, &challenge, response) => role,
            _ => {
                info!(peer = %self.handle.peer, worker = %name, "login refused: unknown worker or wrong password");
                return self.refuse(call, unauthorized("")).await;
            }
        };
        if role == Role::ChangeSource {
            let Ok(avatar) = self.session.export_new() else {
                return self.violation(call, "too many objects").await;
            };
            self.objects.insert(avatar, Local::ChangeAvatar);
            self.login = LoginState::Done(name);
            return self.reply(call, Ok(Value::Remote(avatar))).await;
        }
        let mind = match call.args.get(1) {
            Some(Value::Remote(id)) => Some(*id),
            _ => None,
        };
        let Ok(avatar) = self.session.export_new() else {
            return self.violation(call, "too many objects").await;
        };
        self.objects.insert(avatar, Local::Avatar);
        self.mind = mind;
        self.login = LoginState::Pending(name.clone());
        let event = ConnEvent::LoggedIn {
            conn: self.handle.clone(),
            name,
            mind,
            respond_request: call.request_id,
            avatar,
        };
        self.events
            .send(event)
            .await
            .map_err(|_| "master is gone".to_owned())
    }

    async fn on_request(&mut self, request: Request) -> Result<(), Close> {
        match request {
            Request::Call(call) => {
                let c = *call;
                self.call(c.object, c.method, c.args, c.kwargs, c.reply)
                    .await
            }
            Request::ExportObject { object, reply } => {
                let id = self.session.export_new().ok();
                if let Some(id) = id {
                    self.objects.insert(id, Local::Object(object));
                }
                let _ = reply.send(id);
                Ok(())
            }
            Request::Export { sink, reply } => {
                let id = self.session.export_new().ok();
                if let Some(id) = id {
                    self.objects.insert(id, Local::Sink(sink));
                }
                let _ = reply.send(id);
                Ok(())
            }
            Request::Unexport(id) => {
                self.objects.remove(&id);
                self.session.forget(id);
                Ok(())
            }
            Request::Answer { request_id, result } => {
                if let LoginState::Pending(name) = &self.login {
                    // The only answer the master sends for us: the respond to a login.
                    self.login = match result.as_ref() {
                        Ok(_) => LoginState::Done(name.clone()),
                        Err(_) => LoginState::None,
                    };
                }
                self.send_reply(request_id, *result).await
            }
            Request::SetFailureStyle(style) => {
                self.style = style;
                Ok(())
            }
            Request::Close(why) => Err(why),
        }
    }

    async fn call(
        &mut self,
        object: i64,
        method: Bytes,
        args: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
        reply: oneshot::Sender<Result<Value, CallError>>,
    ) -> Result<(), Close> {
        let Ok(request_id) = self.session.next_request(true) else {
            let _ = reply.send(Err(CallError::ConnectionLost));
            return Err("too many calls awaiting answers".into());
        };
        self.pending.insert(request_id, reply);
        let call = Call {
            request_id,
            object: ObjectId::Id(object),
            method,
            answer_required: true,
            args,
            kwargs,
        };
        self.send(&Message::Call(call)).await
    }

    async fn reply(&mut self, call: &Call, result: Result<Value, Failure>) -> Result<(), Close> {
        if !call.answer_required {
            return Ok(());
        }
        self.send_reply(call.request_id, result).await
    }

    async fn send_reply(
        &mut self,
        request_id: i64,
        result: Result<Value, Failure>,
    ) -> Result<(), Close> {
        let message = match result {
            Ok(value) => Message::Answer { request_id, value },
            Err(f) => Message::Error {
                request_id,
                failure: f.to_value(self.style),
            },
        };
        self.send(&message).await
    }

    async fn refuse(&mut self, call: &Call, failure: Failure) -> Result<(), Close> {
        debug!(peer = %self.handle.peer, "refusing call to {:?}: {}", String::from_utf8_lossy(&call.method), failure.value);
        self.reply(call, Err(failure)).await
    }

    /// A refused request that counts against the peer; too many close the connection.
    async fn violation(&mut self, call: &Call, what: &str) -> Result<(), Close> {
        self.violations += 1;
        if self.violations > self.config.max_violations {
            return Err(format!("{what}, {} times", self.violations));
        }
        self.refuse(call, pb_error(what)).await
    }

    async fn send(&mut self, message: &Message) -> Result<(), Close> {
        let element =
            pb::encode(message, Dialect::Pb).map_err(|e| format!("cannot encode: {e}"))?;
        self.send_element(&element).await
    }

    async fn send_element(&mut self, element: &Element) -> Result<(), Close> {
        self.out.clear();
        banana::encode(element, &mut self.out).map_err(|e| format!("cannot encode: {e}"))?;
        self.writer
            .write_all(&self.out)
            .await
            .map_err(|e| format!("write failed: {e}"))
    }
}
