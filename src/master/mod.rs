//! The coordinator: one task that owns who is attached, what is queued and what runs.
//! Connections, builds and the API talk to it over one bounded channel, so dispatch
//! decisions never race each other.
//!
//! It calls the store synchronously, on its own task, and acts only once a call has
//! returned (the durability rule): `add_request` (force), `start_build` (dispatch),
//! `finish_build` (a build's end, with its last step's), `request` (queuing stored
//! requests), the `worker_*` records (attach, detach); in `changes.rs` `add_change`,
//! `record_fires` and the schedulers' state; in `latent.rs` and `latent/reconcile.rs`
//! `add_instance`, `record_phase`, `instance_count`, `live_instances` and
//! `fail_request`. Each is one transaction; moving them off the runtime's threads
//! would keep this task's order by awaiting each before acting.

mod admission;
mod auth;
mod changes;
mod latent;
mod queue;

pub use auth::ConfigAuth;

use crate::changes::{NewChange, Source};
use crate::config::{BuilderConfig, Config};
use crate::conn::{ConnEvent, ConnHandle};
use crate::latent::credentials::Credentials;
use crate::runner::{initial_properties, run_build, BuildJob, BuildOutcome};
use crate::scheduler::SchedulerSet;
use crate::store::{now, RequestRow, Store, StoreError};
use crate::worker::Attached;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Why the coordinator did not do what the API asked.
#[derive(Debug)]
pub enum Refusal {
    /// The request itself cannot be met (an unknown builder, a master shutting down).
    Invalid(String),
    /// The store failed; nothing was done.
    Store(StoreError),
}

/// Messages to the coordinator.
#[derive(Debug)]
pub enum Msg {
    Conn(ConnEvent),
    /// A login's admission ended (see [`admission`]).
    Admitted {
        name: String,
        conn: ConnHandle,
        outcome: admission::Outcome,
    },
    BuildDone {
        build_id: i64,
        worker: String,
        builder: String,
        outcome: BuildOutcome,
    },
    Force {
        builder: String,
        reason: String,
        properties: serde_json::Value,
        reply: oneshot::Sender<Result<i64, Refusal>>,
    },
    Stop {
        build_id: i64,
        why: String,
        reply: oneshot::Sender<bool>,
    },
    Drain {
        grace: Duration,
    },
    StopAll {
        why: String,
    },
    /// Latent instances: cloud calls, timers.
    Latent(latent::LatentMsg),
    /// Each latent pool's state: instances by phase, and why requests wait if they do.
    Pools {
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// Stop every latent instance (the master is stopping); answered once all are gone.
    StopInstances {
        reply: oneshot::Sender<()>,
    },
    /// A change from the HTTP API; answered with its id once stored.
    NewChange {
        change: Box<NewChange>,
        source: Source,
        reply: oneshot::Sender<Result<i64, Refusal>>,
    },
    /// The scheduler timer: something may be due.
    SchedulerWake,
    /// The master is stopping: the coordinator returns (its tasks are waited for
    /// by whoever started it).
    Exit,
}

#[derive(Debug)]
struct WorkerSlot {
    max_builds: usize,
    attached: Option<Attached>,
    busy: usize,
    /// Builders with a build on this worker: a worker runs one command per builder
    /// object, so one build per builder at a time.
    busy_builders: BTreeSet<String>,
    /// The worker asked to shut down; it gets no new builds.
    graceful: bool,
}

impl WorkerSlot {
    /// A worker not attached yet, running up to `max_builds` builds once it is.
    fn new(max_builds: usize) -> WorkerSlot {
        WorkerSlot {
            max_builds,
            attached: None,
            busy: 0,
            busy_builders: BTreeSet::new(),
            graceful: false,
        }
    }
}

#[derive(Debug)]
struct Running {
    stop: watch::Sender<Option<String>>,
    /// Queued again if the build ends in `retry`.
    request: Arc<RequestRow>,
}

/// The coordinator's state.
#[derive(Debug)]
pub struct Master {
    store: Store,
    builders: BTreeMap<String, Arc<BuilderConfig>>,
    workers: BTreeMap<String, WorkerSlot>,
    /// Requests neither complete nor being built (the store has them too).
    queue: queue::Queue,
    running: HashMap<i64, Running>,
    conns: HashMap<u64, String>,
    tx: mpsc::Sender<Msg>,
    command_ids: Arc<AtomicU64>,
    rpc_timeout: Duration,
    /// Relative master-side transfer paths resolve against this (the data folder).
    files_dir: Arc<std::path::PathBuf>,
    draining: bool,
    /// Fires when draining and nothing runs any more.
    idle: Option<oneshot::Sender<()>>,
    schedulers: SchedulerSet,
    /// Latent pools by name, with their instances.
    pools: BTreeMap<String, latent::Pool>,
    /// The instances' one-time credentials (shared with every connection's auth).
    credentials: Arc<Credentials>,
    /// Where latent instances reach the master unless their pool says otherwise.
    master_address: String,
    /// Answered once no latent instance is left, when the master stops.
    stopped_reply: Option<oneshot::Sender<()>>,
    /// The schedulers' next wake-up, for the timer task.
    wake: watch::Sender<Option<f64>>,
    /// Every task the coordinator starts (builds, handshakes, timers, cloud calls), so
    /// that stopping can wait for them.
    tasks: TaskTracker,
}

/// How long attach calls and pings may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(60);

impl Master {
    /// The coordinator for `config`, with the requests the store has queued (call
    /// after [`Store::recover`], so requests of interrupted builds are among them).
    /// `master_id` is the store's: cloud instances are tagged with it.
    pub fn new(
        config: &Config,
        store: Store,
        tx: mpsc::Sender<Msg>,
        credentials: Arc<Credentials>,
        master_id: &str,
    ) -> Result<Master, String> {
        let queued = store
            .queued_requests()
            .map_err(|e| format!("cannot read the queue: {e}"))?;
        let queue = queue::Queue::from_rows(queued);
        if queue.len() > 0 {
            info!("{} request(s) queued", queue.len());
        }
        Ok(Master {
            queue,
            pools: latent::pools(config, master_id),
            credentials,
            master_address: config.master.pb_listen.replace("0.0.0.0", "127.0.0.1"),
            stopped_reply: None,
            store,
            builders: config
                .builders
                .iter()
                .map(|b| (b.name.clone(), Arc::new(b.clone())))
                .collect(),
            workers: config
                .workers
                .iter()
                .map(|w| (w.name.clone(), WorkerSlot::new(w.max_builds)))
                .collect(),
            running: HashMap::new(),
            conns: HashMap::new(),
            tx,
            command_ids: Arc::new(AtomicU64::new(0)),
            rpc_timeout: RPC_TIMEOUT,
            files_dir: Arc::new(config.master.data_dir.clone()),
            draining: false,
            idle: None,
            schedulers: SchedulerSet::from_config(&config.schedulers),
            wake: watch::Sender::new(None),
            tasks: TaskTracker::new(),
        })
    }

    /// Sends `msg` to the coordinator after `delay`, unless it has stopped by then.
    fn send_after(&self, delay: Duration, msg: Msg) {
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => { let _ = tx.send(msg).await; }
                _ = tx.closed() => {}
            }
        });
    }

    /// The tracker of the coordinator's tasks.
    pub fn tasks(&self) -> TaskTracker {
        self.tasks.clone()
    }

    /// Runs until the channel closes or a drain completes; returns when idle.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Msg>, idle: oneshot::Sender<()>) {
        self.idle = Some(idle);
        self.recover_latent().await;
        self.start_sweeps();
        self.start_schedulers();
        self.dispatch();
        while let Some(msg) = rx.recv().await {
            if matches!(msg, Msg::Exit) {
                break;
            }
            self.handle(msg);
            if self.draining && self.running.is_empty() {
                if let Some(idle) = self.idle.take() {
                    let _ = idle.send(());
                }
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Conn(ConnEvent::LoggedIn { conn, name, mind }) => self.logged_in(conn, name, mind),
            Msg::Conn(ConnEvent::ShutdownRequested { conn_id }) => {
                if let Some(slot) = self
                    .conns
                    .get(&conn_id)
                    .and_then(|n| self.workers.get_mut(n))
                {
                    slot.graceful = true;
                    self.maybe_shut_down(conn_id);
                }
            }
            Msg::Conn(ConnEvent::Closed { conn_id, reason }) => self.closed(conn_id, &reason),
            Msg::Conn(ConnEvent::Change {
                conn,
                request_id,
                change,
            }) => self.pb_change(conn, request_id, &change),
            Msg::NewChange {
                change,
                source,
                reply,
            } => {
                let _ = reply.send(self.accept_change(*change, source));
            }
            Msg::SchedulerWake => self.scheduler_wake(),
            // Handled by the run loop.
            Msg::Exit => {}
            Msg::Admitted {
                name,
                conn,
                outcome,
            } => self.admitted(name, conn, outcome),
            Msg::Latent(msg) => self.handle_latent(msg),
            Msg::StopInstances { reply } => self.stop_all_instances(reply),
            Msg::Pools { reply } => {
                let _ = reply.send(self.pool_status());
            }
            Msg::BuildDone {
                build_id,
                worker,
                builder,
                mut outcome,
            } => {
                if self.draining && outcome.result == crate::model::BuildResult::Cancelled {
                    // Interrupted by the shutdown, not by a user: run it again later.
                    outcome.result = crate::model::BuildResult::Retry;
                }
                let running = self.running.remove(&build_id);
                match self.store.finish_build(
                    build_id,
                    &outcome.writes,
                    outcome.result,
                    outcome.reason.as_deref(),
                ) {
                    Ok(()) if outcome.result == crate::model::BuildResult::Retry => {
                        if let Some(r) = running {
                            self.queue.push(r.request);
                        }
                    }
                    Ok(()) => {}
                    // The store still has the build running: after a restart it is
                    // closed as retry and its request runs again.
                    Err(e) => warn!(build = build_id, "cannot record the build's end: {e}"),
                }
                info!(build = build_id, worker = %worker, result = %outcome.result, "build finished");
                let mut conn_id = None;
                if let Some(slot) = self.workers.get_mut(&worker) {
                    slot.busy = slot.busy.saturating_sub(1);
                    slot.busy_builders.remove(&builder);
                    conn_id = slot.attached.as_ref().map(|a| a.conn.id);
                }
                self.instance_build_done(&worker);
                if let Some(id) = conn_id {
                    self.maybe_shut_down(id);
                }
                self.dispatch();
            }
            Msg::Force {
                builder,
                reason,
                properties,
                reply,
            } => {
                let result = if !self.builders.contains_key(&builder) {
                    Err(Refusal::Invalid(format!("no builder {builder:?}")))
                } else if self.draining {
                    Err(Refusal::Invalid("the master is shutting down".into()))
                } else {
                    let submitted_at = now();
                    match self.store.add_request(&builder, &reason, &properties) {
                        Ok(id) => {
                            self.queue.push(Arc::new(RequestRow {
                                id,
                                builder,
                                reason,
                                properties,
                                submitted_at,
                                result: None,
                                complete: false,
                            }));
                            Ok(id)
                        }
                        Err(e) => Err(Refusal::Store(e)),
                    }
                };
                let _ = reply.send(result);
                self.dispatch();
            }
            Msg::Stop {
                build_id,
                why,
                reply,
            } => {
                let found = self
                    .running
                    .get(&build_id)
                    .map(|r| r.stop.send(Some(why)))
                    .is_some();
                let _ = reply.send(found);
            }
            Msg::Drain { grace } => {
                info!(
                    "draining: no new builds; {} running get {grace:?}",
                    self.running.len()
                );
                self.draining = true;
                let why = "master shutting down".into();
                self.send_after(grace, Msg::StopAll { why });
            }
            Msg::StopAll { why } => {
                for r in self.running.values() {
                    let _ = r.stop.send(Some(why.clone()));
                }
            }
        }
    }

    fn closed(&mut self, conn_id: u64, reason: &str) {
        let Some(name) = self.conns.remove(&conn_id) else {
            return;
        };
        let Some(slot) = self.workers.get_mut(&name) else {
            return;
        };
        if slot.attached.as_ref().is_some_and(|a| a.conn.id == conn_id) {
            info!(worker = %name, "worker detached: {reason}");
            slot.attached = None;
            slot.graceful = false;
            let _ = self.store.worker_disconnected(&name);
            self.instance_lost(&name, &format!("worker disconnected: {reason}"));
        } else if slot.attached.is_none() {
            // A login that never finished attaching.
            let _ = self.store.worker_disconnected(&name);
            self.instance_lost(
                &name,
                &format!("worker disconnected while attaching: {reason}"),
            );
        }
    }

    /// A graceful worker with nothing running is told to shut down.
    fn maybe_shut_down(&mut self, conn_id: u64) {
        let Some(slot) = self.conns.get(&conn_id).and_then(|n| self.workers.get(n)) else {
            return;
        };
        let Some(worker) = &slot.attached else { return };
        if slot.graceful && slot.busy == 0 {
            let (conn, mind) = (worker.conn.clone(), worker.mind);
            self.tasks.spawn(async move {
                let _ = conn.call(mind, "shutdown", vec![], vec![]).await;
            });
        }
    }

    /// Queues requests the store has just committed (made by changes or schedulers).
    fn enqueue_stored(&mut self, ids: &[i64]) {
        for &id in ids {
            match self.store.request(id) {
                Ok(Some(r)) => self.queue.push(Arc::new(r)),
                Ok(None) => warn!(request = id, "a new request is not in the store"),
                Err(e) => {
                    warn!(
                        request = id,
                        "cannot read a new request (it runs after a restart): {e}"
                    )
                }
            }
        }
    }

    /// Starts every queued request that has a free worker, oldest first.
    fn dispatch(&mut self) {
        if self.draining {
            return;
        }
        let mut demand: BTreeMap<String, usize> = BTreeMap::new();
        let mut pass = self.queue.pass();
        while let Some(request) = pass.next(&self.queue) {
            let Some(builder) = self.builders.get(&request.builder).cloned() else {
                pass.skip_builder();
                continue;
            };
            let candidate = self
                .candidate_names(&builder)
                .into_iter()
                .filter_map(|name| {
                    let slot = self.workers.get(&name)?;
                    let attached = slot.attached.as_ref()?;
                    let wfb = *attached.builders.get(&builder.name)?;
                    let free =
                        slot.busy < slot.max_builds && !slot.busy_builders.contains(&builder.name);
                    let open = self.instance_takes_builds(&name);
                    (free && open && !slot.graceful && !attached.conn.is_closed())
                        .then_some((slot.busy, name, wfb))
                })
                .min();
            let Some((_, worker, wfb)) = candidate else {
                // Nobody free, for this request nor (starting builds only takes
                // workers) for the builder's later ones: a latent pool serving the
                // builder may start an instance for each of them.
                let mut waiting = None;
                for pool in builder
                    .workers
                    .iter()
                    .filter(|w| self.pools.contains_key(*w))
                {
                    let n = *waiting.get_or_insert_with(|| {
                        self.queue.waiting_from(&request.builder, request.id)
                    });
                    *demand.entry(pool.clone()).or_default() += n;
                }
                pass.skip_builder();
                continue;
            };
            self.instance_build_started(&worker);
            let build = match self
                .store
                .start_build(request.id, &request.builder, &worker)
            {
                Ok(b) => b,
                Err(e) => return warn!("cannot record a build: {e}"),
            };
            self.queue.take(&request.builder, request.id);
            let Some(slot) = self.workers.get_mut(&worker) else {
                continue;
            };
            let Some(attached) = slot.attached.clone() else {
                continue;
            };
            slot.busy += 1;
            slot.busy_builders.insert(request.builder.clone());
            let (stop, stop_rx) = watch::channel(None);
            self.running.insert(
                build.id,
                Running {
                    stop,
                    request: request.clone(),
                },
            );
            info!(build = build.id, builder = %request.builder, worker = %worker, "build started");
            let properties =
                initial_properties(&builder, &request.properties, build.number, &worker);
            let job = BuildJob {
                properties,
                files_dir: self.files_dir.clone(),
                store: self.store.clone(),
                build,
                builder,
                worker: attached,
                wfb,
                stop: stop_rx,
                command_ids: self.command_ids.clone(),
                rpc_timeout: self.rpc_timeout,
            };
            let (tx, build_id, builder) = (self.tx.clone(), job.build.id, request.builder.clone());
            self.tasks.spawn(async move {
                let outcome = run_build(job).await;
                let _ = tx
                    .send(Msg::BuildDone {
                        build_id,
                        worker,
                        builder,
                        outcome,
                    })
                    .await;
            });
        }
        self.plan_pools(&demand);
    }

    /// The worker names that may run `builder`: configured workers, and the instances
    /// of the latent pools it names.
    fn candidate_names(&self, builder: &BuilderConfig) -> Vec<String> {
        let mut names = Vec::new();
        for w in &builder.workers {
            match self.pools.get(w) {
                Some(pool) => names.extend(pool.instances.values().map(|i| i.name.clone())),
                None => names.push(w.clone()),
            }
        }
        names
    }
}
