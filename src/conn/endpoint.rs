//! The master's side of one connection: its objects (the worker's perspective, a
//! change source's, transfer readers and writers, remote commands' sinks), the
//! callers waiting on answers, and the login decision. It reacts to the broker's
//! events and carries out other tasks' requests on the broker.

use super::handle::{CallError, ConnHandle, ObjectCall, Request};
use super::throttle::{printable, LoginThrottle};
use pbwire::broker::{Broker, Event, LoginAttempt, LoginId};
use pbwire::jelly::{Failure, Value};
use pbwire::pb::failures::{no_such_method, pb_error, unauthorized};
use pbwire::pb::{Call, ObjectId};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

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

/// What a connection tells the master.
#[derive(Debug)]
pub enum ConnEvent {
    /// A worker proved its password. The master attaches it, then accepts the login
    /// ([`ConnHandle::accept_login`]) or refuses it.
    LoggedIn {
        conn: ConnHandle,
        name: String,
        mind: Option<i64>,
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

#[derive(Debug)]
enum Local {
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
enum Login {
    None,
    /// The password was right; the master is attaching the worker.
    Pending {
        name: String,
        id: LoginId,
    },
    Done(String),
}

#[derive(Debug)]
pub(super) struct Endpoint {
    pub(super) broker: Broker,
    handle: ConnHandle,
    objects: HashMap<i64, Local>,
    pending: HashMap<i64, oneshot::Sender<Result<Value, CallError>>>,
    login: Login,
    /// A refusal held back by the throttle, and when it is due.
    deferred_refusal: Option<(LoginId, Instant)>,
    auth: Arc<dyn Auth>,
    throttle: Arc<LoginThrottle>,
    events: mpsc::Sender<ConnEvent>,
}

impl Endpoint {
    pub(super) fn new(
        handle: ConnHandle,
        broker: Broker,
        auth: Arc<dyn Auth>,
        throttle: Arc<LoginThrottle>,
        events: mpsc::Sender<ConnEvent>,
    ) -> Endpoint {
        Endpoint {
            broker,
            handle,
            objects: HashMap::new(),
            pending: HashMap::new(),
            login: Login::None,
            deferred_refusal: None,
            auth,
            throttle,
            events,
        }
    }

    pub(super) fn login_name(&self) -> Option<&str> {
        match &self.login {
            Login::None => None,
            Login::Pending { name, .. } | Login::Done(name) => Some(name),
        }
    }

    /// Tells the master the connection is gone; callers still waiting get
    /// `ConnectionLost` as their reply senders drop.
    pub(super) async fn closed(self, reason: String) {
        let conn_id = self.handle.id;
        let _ = self
            .events
            .send(ConnEvent::Closed { conn_id, reason })
            .await;
    }

    pub(super) async fn on_event(&mut self, event: Event) {
        match event {
            Event::Login(attempt) => self.on_login(attempt).await,
            Event::Call(call) => self.on_call(call).await,
            Event::Answer { request_id, result } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(result.map_err(CallError::Remote));
                }
            }
            Event::Released(id) => {
                self.objects.remove(&id);
            }
            other => debug!(peer = %self.handle.peer, "ignoring {other:?}"),
        }
    }

    async fn on_login(&mut self, attempt: LoginAttempt) {
        let name = attempt.name_lossy();
        let role = match self.auth.lookup(&name) {
            Some((password, role)) if attempt.verify(&password) => role,
            _ => return self.refuse(attempt.id, &name),
        };
        self.throttle.accepted(&name);
        if role == Role::ChangeSource {
            if let Ok(avatar) = self.broker.accept_login(attempt.id, now()) {
                self.objects.insert(avatar, Local::ChangeAvatar);
                self.login = Login::Done(name);
            }
            return;
        }
        self.login = Login::Pending {
            name: name.clone(),
            id: attempt.id,
        };
        let event = ConnEvent::LoggedIn {
            conn: self.handle.clone(),
            name,
            mind: attempt.mind,
        };
        if self.events.send(event).await.is_err() {
            self.broker.close("master is gone");
        }
    }

    /// A wrong password or an unknown name: refused, later each time in a row.
    fn refuse(&mut self, id: LoginId, name: &str) {
        crate::metrics::metrics().login_failed();
        let (wait, in_a_row) = self.throttle.refused(self.handle.peer.ip(), name, now());
        if in_a_row.is_power_of_two() {
            info!(peer = %self.handle.peer, worker = %printable(name), refusals = in_a_row,
                  "login refused: unknown worker or wrong password");
        }
        if wait.is_zero() {
            let _ = self.broker.refuse_login(id, unauthorized(""));
        } else {
            self.deferred_refusal = Some((id, Instant::now() + wait));
        }
    }

    /// When a held-back refusal is due.
    pub(super) fn refusal_due(&self) -> Option<Instant> {
        self.deferred_refusal.map(|(_, at)| at)
    }

    /// Sends the held-back refusal.
    pub(super) fn send_deferred_refusal(&mut self) {
        if let Some((id, _)) = self.deferred_refusal.take() {
            let _ = self.broker.refuse_login(id, unauthorized(""));
        }
    }

    async fn on_call(&mut self, call: Call) {
        let method = String::from_utf8_lossy(&call.method).into_owned();
        let ObjectId::Id(id) = call.object else {
            return self.reply(&call, Err(no_such_method(&method)));
        };
        let result = match self.objects.get_mut(&id) {
            None => Err(pb_error("Invalid Object ID")),
            Some(Local::Avatar) if method == "keepalive" => Ok(Value::None),
            Some(Local::Avatar) if method == "shutdown" => {
                let conn_id = self.handle.id;
                let _ = self
                    .events
                    .send(ConnEvent::ShutdownRequested { conn_id })
                    .await;
                Ok(Value::None)
            }
            Some(Local::ChangeAvatar) if method == "addChange" => {
                let Some(change) = call.args.into_iter().next() else {
                    let failure = pb_error("addChange needs a change");
                    let _ = self.broker.answer(call.request_id, Err(failure));
                    return;
                };
                let event = ConnEvent::Change {
                    conn: self.handle.clone(),
                    request_id: call.request_id,
                    change,
                };
                if self.events.send(event).await.is_err() {
                    self.broker.close("master is gone");
                }
                return;
            }
            Some(Local::Object(object)) => object.call(&method, &call.args),
            Some(Local::Sink(sink)) => {
                let answer = if method == "update" {
                    Value::int(0)
                } else {
                    Value::None
                };
                // Waiting here pushes back on a worker that sends faster than the
                // owner consumes. A gone owner (a late update) is not the worker's fault.
                let sink = sink.clone();
                let args = call.args.clone();
                let _ = sink.send(ObjectCall { method, args }).await;
                Ok(answer)
            }
            Some(_) => Err(no_such_method(&method)),
        };
        self.reply(&call, result);
    }

    fn reply(&mut self, call: &Call, result: Result<Value, Failure>) {
        if let Err(f) = &result {
            let method = printable(&String::from_utf8_lossy(&call.method));
            debug!(peer = %self.handle.peer, "refusing call to {method}: {}", f.value);
        }
        if call.answer_required {
            let _ = self.broker.answer(call.request_id, result);
        }
    }

    pub(super) fn on_request(&mut self, request: Request) {
        match request {
            Request::Call(call) => {
                let c = *call;
                match self
                    .broker
                    .call(ObjectId::Id(c.object), c.method, c.args, c.kwargs)
                {
                    Ok(id) => {
                        self.pending.insert(id, c.reply);
                    }
                    Err(_) => {
                        let _ = c.reply.send(Err(CallError::ConnectionLost));
                    }
                }
            }
            Request::Export { sink, reply } => {
                let _ = reply.send(self.export(Local::Sink(sink)));
            }
            Request::ExportObject { object, reply } => {
                let _ = reply.send(self.export(Local::Object(object)));
            }
            Request::Unexport(id) => {
                self.objects.remove(&id);
                self.broker.unexport(id);
            }
            Request::Answer { request_id, result } => {
                let _ = self.broker.answer(request_id, *result);
            }
            Request::AcceptLogin => self.accept_login(),
            Request::RefuseLogin(failure) => {
                if let Login::Pending { id, .. } = std::mem::replace(&mut self.login, Login::None) {
                    let _ = self.broker.refuse_login(id, *failure);
                }
            }
            Request::SetFailureStyle(style) => self.broker.set_failure_style(style),
            Request::Close(why) => self.broker.close(why),
        }
    }

    fn export(&mut self, object: Local) -> Option<i64> {
        let id = self.broker.export().ok()?;
        self.objects.insert(id, object);
        Some(id)
    }

    fn accept_login(&mut self) {
        let Login::Pending { name, id } = std::mem::replace(&mut self.login, Login::None) else {
            return;
        };
        match self.broker.accept_login(id, now()) {
            Ok(avatar) => {
                self.objects.insert(avatar, Local::Avatar);
                self.login = Login::Done(name);
            }
            Err(e) => {
                warn!(peer = %self.handle.peer, worker = %name, "cannot accept the login: {e}");
                self.broker.close("cannot accept the login");
            }
        }
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}
