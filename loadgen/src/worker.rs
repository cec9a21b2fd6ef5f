//! One simulated buildbot worker: logs in, answers the master's calls on its mind and
//! builder objects the way buildbot-worker 4.3.0 does, runs commands through
//! [`command`](crate::command), and reconnects like a real worker when the
//! connection is refused or lost.

use crate::command::{self, Behaviour, Command, Event};
use crate::driver;
use crate::link::{self, text, Incoming, Link, LinkError};
use crate::stats::Stats;
use pbfuzz::persona;
use pbwire::jelly::{Failure, Value};
use pbwire::pb::{Call, Message, ObjectId};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// What all simulated workers share.
#[derive(Debug)]
pub struct Config {
    pub master: SocketAddr,
    pub password: String,
    pub behaviour: Arc<Behaviour>,
    pub keepalive: Duration,
    pub reconnect: bool,
    /// Force builds back to back through this URL template, until the instant.
    /// Force URL, until when, and the pause between builds.
    pub drive: Option<(String, Instant, Duration)>,
    pub verbose: bool,
}

/// Why a session ended.
enum End {
    /// The master closed the connection, or called `shutdown()`.
    Closed,
    /// The master refused the login in the retryable way.
    Refused,
    /// The driver finished its time; nothing more to do.
    Done,
}

/// Runs one simulated worker until its driver is done or, without a driver, forever
/// (the caller aborts it).
pub async fn run(name: String, config: Arc<Config>, stats: Arc<Stats>) {
    let mut attached_once = false;
    let mut delay = Duration::from_millis(100);
    loop {
        let outcome = session(&name, &config, &stats, &mut attached_once).await;
        match outcome {
            Ok(End::Done) => return,
            Ok(End::Closed) => {}
            Ok(End::Refused) => stats.error("login refused", &name),
            Err(e) => stats.error(error_kind(&e), format!("{name}: {e}")),
        }
        if !config.reconnect {
            return;
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(2));
    }
}

fn error_kind(e: &LinkError) -> &'static str {
    match e {
        LinkError::Io(_) => "io",
        LinkError::Closed => "closed",
        LinkError::Protocol(_) => "protocol",
        LinkError::Local(_) => "local",
    }
}

/// The per-connection state the dispatcher keeps.
struct Worker {
    name: String,
    link: Link,
    /// This side's mind object (the `respond` argument).
    mind: i64,
    config: Arc<Config>,
    stats: Arc<Stats>,
    /// Builder name → this side's object id for it.
    builders: BTreeMap<String, i64>,
    /// Builder object id → the interrupt of the command running on it.
    running: HashMap<i64, oneshot::Sender<()>>,
    /// Where command starts and completions go when builds are being driven.
    events: Option<mpsc::UnboundedSender<Event>>,
    tasks: JoinSet<Result<End, LinkError>>,
}

async fn session(
    name: &str,
    config: &Arc<Config>,
    stats: &Arc<Stats>,
    attached_once: &mut bool,
) -> Result<End, LinkError> {
    let (link, mut inbox) = link::connect(config.master).await?;
    let mind = link.export()?;
    let mut w = Worker {
        name: name.to_owned(),
        link: link.clone(),
        mind,
        config: config.clone(),
        stats: stats.clone(),
        builders: BTreeMap::new(),
        running: HashMap::new(),
        events: None,
        tasks: JoinSet::new(),
    };
    let (login_tx, mut login_rx) = oneshot::channel();
    let password = config.password.clone();
    let who = name.to_owned();
    w.tasks.spawn(async move {
        let r = login(&link, &who, &password, mind).await;
        let refused = matches!(r, Ok(None));
        let _ = login_tx.send(r);
        Ok(if refused { End::Refused } else { End::Closed })
    });
    let mut logged_in = false;
    loop {
        tokio::select! {
            incoming = inbox.next() => match incoming? {
                Some(Incoming::Call(call)) => w.dispatch(call).await?,
                Some(Incoming::Decref) => {}
                None => return Ok(End::Closed),
            },
            r = &mut login_rx, if !logged_in => {
                logged_in = true;
                match r.map_err(|_| LinkError::Closed)?? {
                    None => return Ok(End::Refused),
                    Some(avatar) => {
                        if !*attached_once {
                            *attached_once = true;
                            stats.first_attach();
                        }
                        if w.config.verbose {
                            eprintln!("{{\"event\":\"attached\",\"worker\":\"{name}\",\"t\":{}}}", stats.elapsed());
                        }
                        w.after_attach(avatar);
                    }
                }
            },
            Some(done) = w.tasks.join_next() => match done {
                Ok(Ok(End::Closed)) => {}
                Ok(Ok(end)) => return Ok(end),
                Ok(Err(e)) => return Err(e),
                Err(e) if e.is_panic() => stats.error("task panicked", e),
                Err(_) => {}
            },
        }
    }
}

/// The login on the root object: `login(name)` → (challenge, challenger), then
/// `respond(MD5(MD5(pw) ‖ challenge), mind)` → the avatar. `Ok(None)` when the master
/// refuses in the way that makes real workers retry (UnauthorizedLogin).
async fn login(
    link: &Link,
    name: &str,
    password: &str,
    mind: i64,
) -> Result<Option<i64>, LinkError> {
    let reply = link
        .call(
            ObjectId::Root,
            "login",
            vec![Value::bytes(name.as_bytes().to_vec())],
            vec![],
        )
        .await?
        .await
        .map_err(|_| LinkError::Closed)?
        .map_err(|f| LinkError::Protocol(format!("login refused: {}", describe(&f))))?;
    let (challenge, challenger) = match reply.as_seq() {
        Some([c, Value::Remote(id)]) => match c.as_bytes() {
            Some(c) => (c.to_vec(), *id),
            None => return Err(LinkError::Protocol("challenge is not bytes".into())),
        },
        _ => return Err(LinkError::Protocol(format!("bad login answer {reply:?}"))),
    };
    let response = pbwire::login::response(password.as_bytes(), &challenge);
    let answer = link
        .call(
            ObjectId::Id(challenger),
            "respond",
            vec![Value::bytes(response.to_vec()), Value::Remote(mind)],
            vec![],
        )
        .await?;
    // The worker drops its challenger reference once it has responded.
    link.send(&Message::Decref(challenger)).await?;
    match answer.await.map_err(|_| LinkError::Closed)? {
        Ok(Value::Remote(avatar)) => Ok(Some(avatar)),
        Ok(other) => Err(LinkError::Protocol(format!("respond answered {other:?}"))),
        Err(f) => match Failure::from_value(&f) {
            Some(f) if f.check("twisted.cred.error.UnauthorizedLogin") => Ok(None),
            _ => Err(LinkError::Protocol(format!(
                "respond failed: {}",
                describe(&f)
            ))),
        },
    }
}

/// A failure's type and text, or the raw value when it is not a failure.
fn describe(f: &Value) -> String {
    match Failure::from_value(f) {
        Some(f) => format!("{}: {}", f.type_name, f.value),
        None => format!("{f:?}"),
    }
}

impl Worker {
    /// Starts the keepalive calls and the build driver, as configured.
    fn after_attach(&mut self, avatar: i64) {
        if !self.config.keepalive.is_zero() {
            let link = self.link.clone();
            let every = self.config.keepalive;
            self.tasks.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    link.call(ObjectId::Id(avatar), "keepalive", vec![], vec![])
                        .await?;
                }
            });
        }
        if let Some((url, until, pause)) = &self.config.drive {
            let (tx, rx) = mpsc::unbounded_channel();
            self.events = Some(tx);
            match self.builders.keys().next() {
                Some(builder) => {
                    let url = url.replace("{builder}", builder);
                    let stats = self.stats.clone();
                    let (until, pause) = (*until, *pause);
                    self.tasks.spawn(async move {
                        driver::drive(url, until, pause, rx, &stats).await;
                        // Stay attached: the master may still be finishing the last
                        // build, and a disconnect would turn it into a retry.
                        stats.drivers_done.fetch_add(1, Ordering::SeqCst);
                        Ok(End::Closed)
                    });
                }
                None => {
                    self.stats.error("no builder to drive", &self.name);
                    self.stats.drivers_done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// Answers one call from the master.
    async fn dispatch(&mut self, call: Call) -> Result<(), LinkError> {
        let id = call.request_id;
        let reply_needed = call.answer_required;
        if !self.link.is_exported(call.object) {
            return self
                .reply_error(
                    reply_needed,
                    id,
                    "twisted.spread.pb.Error",
                    "Invalid Object ID",
                )
                .await;
        }
        let method = String::from_utf8_lossy(&call.method).into_owned();
        let result = match call.object {
            ObjectId::Id(id) if id == self.mind => self.mind_call(&method, &call.args).await?,
            ObjectId::Id(builder) => self.builder_call(builder, &method, call.args).await?,
            ObjectId::Root => None,
        };
        match result {
            Some(value) if reply_needed => self.link.answer(id, value).await,
            Some(_) => Ok(()),
            None => {
                let text = format!("No such method: remote_{method}");
                self.reply_error(
                    reply_needed,
                    id,
                    "twisted.spread.flavors.NoSuchMethod",
                    &text,
                )
                .await
            }
        }
    }

    async fn reply_error(
        &self,
        needed: bool,
        id: i64,
        type_name: &str,
        text: &str,
    ) -> Result<(), LinkError> {
        if needed {
            self.link.fail(id, type_name, text).await
        } else {
            Ok(())
        }
    }

    /// The mind ("bot"): `None` for an unknown method.
    async fn mind_call(
        &mut self,
        method: &str,
        args: &[Value],
    ) -> Result<Option<Value>, LinkError> {
        Ok(Some(match method {
            "print" => Value::None,
            "getWorkerInfo" => persona::worker_info(&self.name, "pbmaster-loadgen"),
            "getCommands" => persona::worker_commands(),
            "getVersion" => text(persona::WORKER_VERSION),
            "setBuilderList" => self.set_builder_list(args)?,
            "shutdown" => {
                // A real worker stops its reactor shortly after answering.
                let link = self.link.clone();
                self.tasks.spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    drop(link);
                    Ok(End::Done)
                });
                Value::None
            }
            _ => return Ok(None),
        }))
    }

    /// `setBuilderList([(name, builddir), ...])` → `{name: (remote id)}`. A builder
    /// listed again keeps its object, as the real worker keeps its WorkerForBuilder.
    fn set_builder_list(&mut self, args: &[Value]) -> Result<Value, LinkError> {
        let listed: Vec<String> = args
            .first()
            .and_then(Value::as_seq)
            .unwrap_or(&[])
            .iter()
            .filter_map(|pair| {
                pair.as_seq()
                    .and_then(|p| p.first())
                    .and_then(|n| n.as_str_lossy())
                    .map(|n| n.into_owned())
            })
            .collect();
        self.builders.retain(|name, _| listed.contains(name));
        let mut answer = Vec::with_capacity(listed.len());
        for name in listed {
            let id = match self.builders.get(&name) {
                Some(&id) if self.link.export_again(id) => id,
                _ => self.link.export()?,
            };
            self.builders.insert(name.clone(), id);
            answer.push((text(&name), Value::Remote(id)));
        }
        Ok(Value::Dict(answer))
    }

    /// A builder object (WorkerForBuilder): `None` for an unknown method.
    async fn builder_call(
        &mut self,
        builder: i64,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Option<Value>, LinkError> {
        Ok(Some(match method {
            "print" | "startBuild" | "setMaster" => Value::None,
            "startCommand" => {
                let (object, name) = match args.as_slice() {
                    [Value::Remote(object), _id, name, ..] => (
                        *object,
                        name.as_str_lossy()
                            .map(|n| n.into_owned())
                            .unwrap_or_default(),
                    ),
                    _ => {
                        self.stats.error("bad startCommand", format!("{args:?}"));
                        return Ok(Some(Value::None));
                    }
                };
                self.start_command(builder, object, name);
                Value::None
            }
            "interruptCommand" => {
                if let Some(stop) = self.running.remove(&builder) {
                    let _ = stop.send(());
                }
                Value::None
            }
            _ => return Ok(None),
        }))
    }

    /// Runs a command in the background; a new one on a busy builder interrupts the
    /// old one ("leftover command"), as the real worker does.
    fn start_command(&mut self, builder: i64, object: i64, name: String) {
        self.stats.commands_started.fetch_add(1, Ordering::Relaxed);
        if let Some(events) = &self.events {
            let _ = events.send(Event::Started(Instant::now()));
        }
        let (stop, interrupt) = oneshot::channel();
        if let Some(old) = self.running.insert(builder, stop) {
            let _ = old.send(());
        }
        let cmd = Command {
            object,
            name,
            interrupt,
        };
        let link = self.link.clone();
        let behaviour = self.config.behaviour.clone();
        let stats = self.stats.clone();
        let events = self.events.clone();
        self.tasks.spawn(async move {
            command::run(link, cmd, behaviour, stats, events).await?;
            Ok(End::Closed)
        });
    }
}
