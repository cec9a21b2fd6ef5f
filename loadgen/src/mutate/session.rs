//! A logged-in worker connection for one mutation case: the real login and attach
//! handshake first, so the mutated bytes reach the server's logged-in code paths.

use crate::info;
use crate::link::{self, text, Inbox, Incoming, Link, LinkError, Reply};
use pbwire::jelly::{Failure, Value};
use pbwire::pb::{Call, ObjectId};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};

/// A worker that has attached.
#[derive(Debug)]
pub struct Attached {
    pub link: Link,
    pub inbox: Inbox,
    /// The server's object for this worker (it answers `keepalive`).
    pub avatar: i64,
    /// This side's mind.
    pub mind: i64,
    /// This side's builder objects, if the server listed any.
    pub builders: Vec<i64>,
}

/// How an attach attempt failed.
#[derive(Debug)]
pub enum AttachError {
    Link(LinkError),
    Refused(String),
    Timeout,
}

impl std::fmt::Display for AttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachError::Link(e) => write!(f, "{e}"),
            AttachError::Refused(why) => write!(f, "login refused: {why}"),
            AttachError::Timeout => f.write_str("login timed out"),
        }
    }
}

impl From<LinkError> for AttachError {
    fn from(e: LinkError) -> Self {
        AttachError::Link(e)
    }
}

/// Connects and logs in as `name`, answering the server's attach calls, within `limit`.
pub async fn attach(
    addr: SocketAddr,
    name: &str,
    password: &str,
    limit: Duration,
) -> Result<Attached, AttachError> {
    let deadline = Instant::now() + limit;
    let (link, mut inbox) = timeout_at(deadline, link::connect(addr))
        .await
        .map_err(|_| AttachError::Timeout)??;
    let mind = link.export()?;
    let mut builders = Vec::new();
    let login = link
        .call(
            ObjectId::Root,
            "login",
            vec![Value::bytes(name.as_bytes().to_vec())],
            vec![],
        )
        .await?;
    let reply = pump(&link, &mut inbox, mind, &mut builders, login, deadline).await?;
    let reply = reply.map_err(|f| AttachError::Refused(describe(&f)))?;
    let (challenge, challenger) = match reply.as_seq() {
        Some([c, Value::Remote(id)]) => (c.as_bytes().unwrap_or_default().to_vec(), *id),
        _ => return Err(AttachError::Refused(format!("odd login answer {reply:?}"))),
    };
    let response = pbwire::login::response(password.as_bytes(), &challenge);
    let respond = link
        .call(
            ObjectId::Id(challenger),
            "respond",
            vec![Value::bytes(response.to_vec()), Value::Remote(mind)],
            vec![],
        )
        .await?;
    let reply = pump(&link, &mut inbox, mind, &mut builders, respond, deadline).await?;
    match reply {
        Ok(Value::Remote(avatar)) => Ok(Attached {
            link,
            inbox,
            avatar,
            mind,
            builders,
        }),
        Ok(other) => Err(AttachError::Refused(format!("respond answered {other:?}"))),
        Err(f) => Err(AttachError::Refused(describe(&f))),
    }
}

/// Answers the server's calls until `reply` arrives.
async fn pump(
    link: &Link,
    inbox: &mut Inbox,
    mind: i64,
    builders: &mut Vec<i64>,
    mut reply: oneshot::Receiver<Reply>,
    deadline: Instant,
) -> Result<Reply, AttachError> {
    loop {
        tokio::select! {
            r = &mut reply => return r.map_err(|_| AttachError::Link(LinkError::Closed)),
            incoming = timeout_at(deadline, inbox.next()) => match incoming {
                Err(_) => return Err(AttachError::Timeout),
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(None)) => return Err(AttachError::Link(LinkError::Closed)),
                Ok(Ok(Some(Incoming::Call(call)))) => answer(link, mind, builders, call).await?,
                Ok(Ok(Some(Incoming::Decref))) => {}
            },
        }
    }
}

/// The minimal worker: the handshake calls, and `None` for anything else asked.
pub async fn answer(
    link: &Link,
    mind: i64,
    builders: &mut Vec<i64>,
    call: Call,
) -> Result<(), LinkError> {
    if !call.answer_required {
        return Ok(());
    }
    let method = String::from_utf8_lossy(&call.method).into_owned();
    let value = match (call.object, method.as_str()) {
        (ObjectId::Id(id), "getWorkerInfo") if id == mind => info::worker_info("mutator"),
        (ObjectId::Id(id), "getCommands") if id == mind => info::commands(),
        (ObjectId::Id(id), "getVersion") if id == mind => text(info::VERSION),
        (ObjectId::Id(id), "setBuilderList") if id == mind => {
            let mut pairs = Vec::new();
            let listed = call.args.first().and_then(Value::as_seq).unwrap_or(&[]);
            for pair in listed {
                if let Some(n) = pair.as_seq().and_then(|p| p.first()) {
                    let id = link.export()?;
                    builders.push(id);
                    pairs.push((n.clone(), Value::Remote(id)));
                }
            }
            Value::Dict(pairs)
        }
        _ => Value::None,
    };
    link.answer(call.request_id, value).await
}

fn describe(f: &Value) -> String {
    match Failure::from_value(f) {
        Some(f) => format!("{}: {}", f.type_name, f.value),
        None => format!("{f:?}"),
    }
}
