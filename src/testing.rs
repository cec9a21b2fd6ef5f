//! The coordinator in process, without sockets or worker processes: a [`Harness`]
//! runs the real master (its queue, dispatch, build runner and SQLite store, in a
//! temporary folder) and [`ScriptedWorker`]s stand where connections would be,
//! answering the master's calls as a buildbot worker does. Tests run it under tokio's
//! paused clock, so timeouts and grace periods pass in no time and in order.
//!
//! What a scripted worker does not do is speak PB: the wire is covered by `pbwire`'s
//! own tests and by the end-to-end tests with real workers.

use crate::config;
use crate::conn::{ConnEvent, ConnHandle, ObjectCall, Request};
use crate::latent::credentials::Credentials;
use crate::master::{BuildSettings, Coordinator, Master, Msg, Refusal};
use crate::model::BuildResult;
use crate::store::{BuildRow, Store};
use pbwire::jelly::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// A running coordinator with its store.
#[derive(Debug)]
pub struct Harness {
    /// The config as given, for a restart.
    toml: String,
    master: mpsc::Sender<Msg>,
    store: Store,
    dir: Arc<TempDir>,
    next_conn: u64,
}

impl Harness {
    /// Starts a master from a TOML config whose `[master]` table names no
    /// `data_dir`: the harness gives it a new temporary folder.
    pub async fn start(toml: &str) -> Result<Harness, String> {
        Harness::start_in(toml, Arc::new(TempDir::new()?)).await
    }

    /// Stops this master abruptly (as a crash would: nothing is drained) and starts a
    /// new one on the same store.
    pub async fn restart(self) -> Result<Harness, String> {
        let (toml, dir) = (self.toml.clone(), self.dir.clone());
        drop(self);
        Harness::start_in(&toml, dir).await
    }

    async fn start_in(toml: &str, dir: Arc<TempDir>) -> Result<Harness, String> {
        // The config must name a data folder; the harness's own goes first.
        let with_dir = toml.replacen(
            "[master]",
            &format!("[master]\ndata_dir = {:?}", dir.path.display().to_string()),
            1,
        );
        let mut config = config::parse(&with_dir).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            lines.join("\n")
        })?;
        config.master.data_dir = dir.path.clone();
        let store = Store::open(&dir.path).map_err(|e| e.to_string())?;
        store.recover().map_err(|e| e.to_string())?;
        let master_id = store.master_id().map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(1024);
        let credentials = Arc::new(Credentials::default());
        let master = Master::new(&config, &store, &master_id)?;
        let settings = BuildSettings {
            data_dir: dir.path.clone(),
            secrets: Arc::default(),
            limits: config.limits,
            events: Default::default(),
        };
        let coordinator = Coordinator::new(master, &store, tx.clone(), credentials, settings);
        let (idle, _) = oneshot::channel();
        tokio::spawn(coordinator.run_inline(rx, idle));
        Ok(Harness {
            toml: toml.to_owned(),
            master: tx,
            store,
            dir,
            next_conn: 1,
        })
    }

    /// A worker `name` whose password checked out, as its connection reports it.
    pub async fn connect(&mut self, name: &str, behaviour: Behaviour) -> ScriptedWorker {
        let id = self.next_conn;
        self.next_conn += 1;
        let (tx, rx) = mpsc::channel(256);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000 + (id % 20000) as u16));
        let conn = ConnHandle { id, peer, tx };
        let (accepted_tx, accepted) = watch::channel(None);
        let state = Arc::new(WorkerState::default());
        let task = tokio::spawn(serve(
            rx,
            behaviour,
            accepted_tx,
            state.clone(),
            self.master.clone(),
            id,
        ));
        let event = ConnEvent::LoggedIn {
            conn,
            name: name.to_owned(),
            mind: Some(MIND),
        };
        let _ = self.master.send(Msg::Conn(event)).await;
        ScriptedWorker {
            conn_id: id,
            master: self.master.clone(),
            accepted,
            state,
            task,
        }
    }

    /// Queues a build of `builder`, as `pbmaster force` does; the request's id.
    pub async fn force(&self, builder: &str) -> Result<i64, String> {
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Force {
            builder: builder.to_owned(),
            reason: "forced by a test".into(),
            properties: serde_json::json!({}),
            reply,
        };
        self.master.send(msg).await.map_err(|_| "master gone")?;
        match answer.await.map_err(|_| "master gone")? {
            Ok(id) => Ok(id),
            Err(Refusal::Invalid(why)) => Err(why),
            Err(Refusal::Store(e)) => Err(e.to_string()),
        }
    }

    /// Tells the master to drain, as SIGTERM does.
    pub async fn drain(&self, grace: Duration) {
        let _ = self.master.send(Msg::Drain { grace }).await;
    }

    /// Waits until request `id` is complete, and returns its builds, oldest first.
    pub async fn finished(&self, id: i64) -> Vec<BuildRow> {
        loop {
            let request = self.store.request(id).ok().flatten();
            if request.is_some_and(|r| r.complete) {
                let mut builds = self.store.builds_of_request(id).unwrap_or_default();
                builds.sort_by_key(|b| b.id);
                return builds;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The store, for tests inside the crate that break it.
    #[cfg(test)]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The builds of request `id` so far, oldest first.
    pub fn builds(&self, id: i64) -> Vec<BuildRow> {
        let mut builds = self.store.builds_of_request(id).unwrap_or_default();
        builds.sort_by_key(|b| b.id);
        builds
    }

    /// The results of request `id`'s builds so far, oldest first.
    pub fn results(&self, id: i64) -> Vec<Option<BuildResult>> {
        self.builds(id).into_iter().map(|b| b.result).collect()
    }

    /// The bytes of a step's `stdio` log on one channel.
    pub fn log(&self, build: i64, step: i64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut after = 0;
        while let Ok(chunks) = self.store.log_chunks(build, step, "stdio", after) {
            let Some(last) = chunks.last() else { break };
            after = last.seq;
            for c in chunks {
                out.extend_from_slice(&c.data);
            }
        }
        out
    }
}

/// How often the harness looks at the store while it waits (on the paused clock).
const POLL: Duration = Duration::from_millis(10);

/// The object id a scripted worker gives its bot ("mind").
const MIND: i64 = 1;

/// What a scripted worker does with each command.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Written to stdout by every command.
    pub stdout: String,
    /// Every command's exit code.
    pub rc: i64,
    /// Commands never end on their own: the worker holds them until it is killed or
    /// the master interrupts them.
    pub hold: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            stdout: "ok\n".into(),
            rc: 0,
            hold: false,
        }
    }
}

/// What a scripted worker has seen.
#[derive(Debug, Default)]
struct WorkerState {
    /// Methods the master called, in order.
    calls: Mutex<Vec<String>>,
    /// Commands started and not ended.
    running: Mutex<HashMap<String, mpsc::Sender<ObjectCall>>>,
    /// The worker stopped answering: calls are held, never answered.
    hung: std::sync::atomic::AtomicBool,
}

/// A worker that answers the master's calls from a script; dropping it leaves the
/// connection as it is, [`kill`](ScriptedWorker::kill) closes it.
#[derive(Debug)]
pub struct ScriptedWorker {
    conn_id: u64,
    master: mpsc::Sender<Msg>,
    accepted: watch::Receiver<Option<bool>>,
    state: Arc<WorkerState>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedWorker {
    /// Waits until the master accepted (true) or refused (false) the login.
    pub async fn login_answer(&mut self) -> bool {
        loop {
            if let Some(answer) = *self.accepted.borrow_and_update() {
                return answer;
            }
            if self.accepted.changed().await.is_err() {
                return false;
            }
        }
    }

    /// The methods the master has called on this worker, in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state.calls).clone()
    }

    /// Waits until `n` commands run at once on this worker.
    pub async fn running(&self, n: usize) {
        while lock(&self.state.running).len() < n {
            tokio::time::sleep(POLL).await;
        }
    }

    /// The worker stops answering (a hung process or a silent network) while its
    /// connection stays open.
    pub fn hang(&self) {
        self.state.hung.store(true, Ordering::Relaxed);
    }

    /// The connection dies (a killed worker): the master is told it closed.
    pub async fn kill(self) {
        self.task.abort();
        let event = ConnEvent::Closed {
            conn_id: self.conn_id,
            reason: "killed by the test".into(),
        };
        let _ = self.master.send(Msg::Conn(event)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The scripted connection: answers every request the master's side makes of it.
async fn serve(
    mut requests: mpsc::Receiver<Request>,
    behaviour: Behaviour,
    accepted: watch::Sender<Option<bool>>,
    state: Arc<WorkerState>,
    master: mpsc::Sender<Msg>,
    conn_id: u64,
) {
    let next_id = AtomicU64::new(100);
    let mut sinks: HashMap<i64, mpsc::Sender<ObjectCall>> = HashMap::new();
    let mut unanswered = Vec::new();
    while let Some(request) = requests.recv().await {
        match request {
            Request::Call(call) if state.hung.load(Ordering::Relaxed) => unanswered.push(call),
            Request::Call(call) => {
                let call = *call;
                let method = String::from_utf8_lossy(&call.method).into_owned();
                lock(&state.calls).push(method.clone());
                let answer = match method.as_str() {
                    "getWorkerInfo" => Ok(worker_info()),
                    "setBuilderList" => Ok(builder_refs(&call.args, &next_id)),
                    "startCommand" => {
                        start_command(&call.args, &sinks, &behaviour, &state);
                        Ok(Value::None)
                    }
                    "interruptCommand" => {
                        interrupt(&call.args, &state);
                        Ok(Value::None)
                    }
                    _ => Ok(Value::None),
                };
                let _ = call.reply.send(answer);
            }
            Request::Export { sink, reply } => {
                let id = next_id.fetch_add(1, Ordering::Relaxed) as i64;
                sinks.insert(id, sink);
                let _ = reply.send(Some(id));
            }
            Request::ExportObject { reply, .. } => {
                let _ = reply.send(Some(next_id.fetch_add(1, Ordering::Relaxed) as i64));
            }
            Request::Unexport(id) => {
                sinks.remove(&id);
            }
            Request::AcceptLogin => {
                let _ = accepted.send(Some(true));
            }
            Request::RefuseLogin(_) => {
                let _ = accepted.send(Some(false));
            }
            Request::Answer { .. } | Request::SetFailureStyle(_) => {}
            Request::Close(why) => {
                let _ = accepted.send(Some(false));
                let _ = master
                    .send(Msg::Conn(ConnEvent::Closed {
                        conn_id,
                        reason: why,
                    }))
                    .await;
                return;
            }
        }
    }
}

fn worker_info() -> Value {
    let commands = [
        "shell",
        "uploadFile",
        "downloadFile",
        "mkdir",
        "rmdir",
        "stat",
    ]
    .iter()
    .map(|c| (Value::text(*c), Value::text("3.3")))
    .collect();
    Value::Dict(vec![
        (Value::text("version"), Value::text("scripted")),
        (Value::text("worker_commands"), Value::Dict(commands)),
    ])
}

/// `setBuilderList([(name, dir), ...])` → `{name: (remote id)}`.
fn builder_refs(args: &[Value], next_id: &AtomicU64) -> Value {
    let names = args.first().and_then(Value::as_seq).unwrap_or_default();
    let refs = names
        .iter()
        .filter_map(|pair| {
            pair.as_seq()?
                .first()?
                .as_str_lossy()
                .map(|n| n.into_owned())
        })
        .map(|name| {
            let id = next_id.fetch_add(1, Ordering::Relaxed) as i64;
            (Value::text(name), Value::Remote(id))
        })
        .collect();
    Value::Dict(refs)
}

/// `startCommand(remote, id, name, args)`: the command's output, exit code and
/// completion go to the object the master exported for it, unless it is held.
fn start_command(
    args: &[Value],
    sinks: &HashMap<i64, mpsc::Sender<ObjectCall>>,
    behaviour: &Behaviour,
    state: &Arc<WorkerState>,
) {
    let (Some(Value::Remote(object)), Some(id)) = (args.first(), args.get(1)) else {
        return;
    };
    let Some(sink) = sinks.get(object).cloned() else {
        return;
    };
    let id = id
        .as_str_lossy()
        .map(|s| s.into_owned())
        .unwrap_or_default();
    if behaviour.hold {
        lock(&state.running).insert(id, sink);
        return;
    }
    let (stdout, rc) = (behaviour.stdout.clone(), behaviour.rc);
    tokio::spawn(async move {
        let _ = sink.send(update("stdout", Value::text(stdout))).await;
        let _ = sink.send(update("rc", Value::int(rc))).await;
        let _ = sink.send(complete()).await;
    });
}

/// `interruptCommand(id, why)`: a held command ends as killed.
fn interrupt(args: &[Value], state: &Arc<WorkerState>) {
    let id = args
        .first()
        .and_then(Value::as_str_lossy)
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let Some(sink) = lock(&state.running).remove(&id) else {
        return;
    };
    tokio::spawn(async move {
        let _ = sink.send(update("rc", Value::int(-1))).await;
        let _ = sink.send(complete()).await;
    });
}

/// `update([({key: value}, 0)])`, as a worker sends it.
fn update(key: &str, value: Value) -> ObjectCall {
    let one = Value::Tuple(vec![
        Value::Dict(vec![(Value::text(key), value)]),
        Value::int(0),
    ]);
    ObjectCall {
        method: "update".into(),
        args: vec![Value::List(vec![one])],
    }
}

fn complete() -> ObjectCall {
    ObjectCall {
        method: "complete".into(),
        args: vec![Value::None],
    }
}

/// A folder under the system's temporary directory, removed when dropped.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<TempDir, String> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("pbmaster-harness-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
