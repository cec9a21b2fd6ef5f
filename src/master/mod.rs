//! The coordinator: one state machine that owns who is attached, what is queued and
//! what runs. Connections, builds, timers and the API send it messages over one
//! bounded channel, so dispatch decisions never race each other.
//!
//! [`Master::handle`] takes a message and the time, updates the state, writes to the
//! store, and returns [`Effect`]s: calls to send, builds to start, timers, instances
//! to launch or end, answers. It starts no task and reads no clock. The runtime
//! ([`runtime::Coordinator`]) wraps each wake-up in one store transaction and carries
//! out the effects only once it is committed (the durability rule: nothing is acted
//! on that a restart would forget).

mod admission;
mod apply;
mod auth;
mod builds;
mod changes;
pub mod cluster;
pub mod effect;
mod latent;
mod queue;
pub mod reconfig;
mod runtime;
#[cfg(test)]
mod tests;

pub use auth::ConfigAuth;
pub use cluster::Membership;
pub use effect::Effect;
pub use reconfig::Diff;
pub use runtime::{BuildSettings, Coordinator};

use crate::changes::{NewChange, Source};
use crate::config::{BuilderConfig, Config};
use crate::conn::{ConnEvent, ConnHandle};
use crate::runner::BuildOutcome;
use crate::scheduler::SchedulerSet;
use crate::store::{RequestRow, Store, StoreError};
use crate::worker::Attached;
use effect::ConnOp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tracing::info;

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
    /// What a git poller found: its changes (oldest first) and the heads it saw, to
    /// store together; answered with the number of changes stored.
    /// `seen` is the heads the poll started from: the poll is stored only if the
    /// database still has them (another master may poll the same repository);
    /// answered `None` if it did not.
    Polled {
        poller: String,
        seen: Option<BTreeMap<String, String>>,
        heads: BTreeMap<String, String>,
        changes: Vec<NewChange>,
        reply: oneshot::Sender<Result<Option<usize>, Refusal>>,
    },
    /// The scheduler timer: something may be due.
    SchedulerWake,
    /// The data folder's file system has less free space than `[limits]
    /// min_free_disk` (`Some`, why), or has enough again (`None`).
    DiskLow(Option<String>),
    /// A new config, checked, with what it changes: applied at once (answered with
    /// what was done), or refused as a whole (answered with why) with nothing changed.
    Reconfig {
        config: Arc<Config>,
        diff: Arc<Diff>,
        reply: oneshot::Sender<Result<(), Vec<String>>>,
    },
    /// A worker's objects for the builder list it was sent again (see
    /// [`Effect::SetBuilders`]).
    BuildersListed {
        worker: String,
        conn_id: u64,
        generation: u64,
        listed: Result<BTreeMap<String, i64>, String>,
    },
    /// From the other masters of the installation (see [`cluster`]).
    Cluster(cluster::ClusterMsg),
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
    /// Removed from the config while building: no new builds, and disconnected
    /// once its last one ends.
    removed: bool,
    /// The (builder, directory) list the worker was last sent.
    listed: Vec<(String, String)>,
    /// Counts lists sent, so that only the answer to the newest is taken.
    generation: u64,
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
            removed: false,
            listed: Vec::new(),
            generation: 0,
        }
    }
}

#[derive(Debug)]
struct Running {
    stop: watch::Sender<Option<String>>,
    /// Queued again if the build ends in `retry`.
    request: Arc<RequestRow>,
    /// The build's number, for reports of its end.
    number: i64,
    /// Its worker, and its builder as it was when it started (a reconfiguration
    /// may have changed or removed it since).
    worker: String,
    builder: Arc<BuilderConfig>,
}

/// The coordinator's state.
#[derive(Debug)]
pub struct Master {
    /// The coordinator's own connection (see [`Store::own_connection`]).
    store: Store,
    builders: BTreeMap<String, Arc<BuilderConfig>>,
    workers: BTreeMap<String, WorkerSlot>,
    /// Requests neither complete nor being built (the store has them too).
    queue: queue::Queue,
    running: HashMap<i64, Running>,
    conns: HashMap<u64, String>,
    draining: bool,
    /// This wake-up acknowledges something stored (a forced request, a change): the
    /// runtime syncs the store to disk before the answer goes out.
    acknowledges: bool,
    /// Why no build may start now (the disk is almost full), if so.
    disk_low: Option<String>,
    schedulers: SchedulerSet,
    /// Latent pools by name, with their instances.
    pools: BTreeMap<String, latent::Pool>,
    /// Where latent instances reach the master unless their pool says otherwise.
    master_address: String,
    /// The store's id, which tags cloud instances (drivers of new pools need it).
    master_id: String,
    /// Answered once no latent instance is left, when the master stops.
    stopped_reply: Option<oneshot::Sender<()>>,
    /// `[[reporter]]`: told of builds through the store's outbox.
    reporters: Arc<Vec<crate::config::ReporterConfig>>,
    /// Hidden from what workers report about themselves before it is stored.
    secrets: Arc<crate::secrets::Secrets>,
    /// One copy of each command table attached workers share.
    command_tables: crate::worker::CommandTables,
    /// The current wake-up's time (wall-clock seconds), set by [`Master::handle`].
    now: f64,
    /// The current wake-up's effects, in order.
    out: Vec<Effect>,
    /// What changed, for open pages: sent once the wake-up is committed.
    notices: Vec<crate::events::Event>,
    /// This master's name when it shares its database with others.
    membership: Option<cluster::Membership>,
    /// Requests the wake-up queued, which the other masters should hear of.
    queued_now: Vec<i64>,
    /// Whether the wake-up armed a retry of claims another master held.
    claim_retry: bool,
}

impl Master {
    /// The coordinator for `config`, with the requests the store has queued (call
    /// after [`Store::recover`], so requests of interrupted builds are among them).
    /// `master_id` is the store's: cloud instances are tagged with it.
    pub fn new(config: &Config, store: &Store, master_id: &str) -> Result<Master, String> {
        let store = store
            .own_connection()
            .map_err(|e| format!("cannot open the database: {e}"))?;
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
            master_address: config.master.pb_listen.replace("0.0.0.0", "127.0.0.1"),
            master_id: master_id.to_owned(),
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
            draining: false,
            disk_low: None,
            acknowledges: false,
            schedulers: SchedulerSet::from_config(&config.schedulers),
            secrets: Arc::default(),
            command_tables: Default::default(),
            reporters: Arc::new(config.reporters.clone()),
            now: 0.0,
            out: Vec::new(),
            notices: Vec::new(),
            membership: None,
            queued_now: Vec::new(),
            claim_retry: false,
        })
    }

    /// A master that shares its database with others, as `membership`.
    pub fn with_membership(mut self, membership: Option<cluster::Membership>) -> Master {
        self.membership = membership;
        self
    }

    /// The first wake-up: each pool reconciled with what its cloud runs (`clouds`,
    /// see `latent/reconcile.rs`), its sweep started, the schedulers' state reloaded (anything
    /// overdue fires), and a dispatch of what is queued.
    pub fn start(&mut self, clouds: Vec<(String, latent::CloudView)>, now: f64) -> Vec<Effect> {
        self.now = now;
        self.reconcile(clouds);
        self.start_sweeps();
        self.start_schedulers();
        self.dispatch();
        std::mem::take(&mut self.out)
    }

    /// Acts on one message at `now` (wall-clock seconds); returns what to do.
    pub fn handle(&mut self, msg: Msg, now: f64) -> Vec<Effect> {
        self.now = now;
        match msg {
            Msg::Conn(ConnEvent::LoggedIn { conn, name, mind }) => self.logged_in(conn, name, mind),
            Msg::Conn(ConnEvent::ShutdownRequested { conn_id }) => self.shutdown_requested(conn_id),
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
                let result = self.accept_change(*change, source);
                self.reply(move || {
                    let _ = reply.send(result);
                });
            }
            Msg::Polled {
                poller,
                seen,
                heads,
                changes,
                reply,
            } => {
                let result = self.accept_poll(&poller, seen.as_ref(), &heads, &changes);
                self.reply(move || {
                    let _ = reply.send(result);
                });
            }
            Msg::SchedulerWake => self.scheduler_wake(),
            Msg::DiskLow(why) => self.disk_low(why),
            // Handled by the runtime.
            Msg::Cluster(m) => self.cluster(m),
            Msg::Exit => {}
            Msg::Admitted {
                name,
                conn,
                outcome,
            } => self.admitted(name, conn, outcome),
            Msg::Latent(msg) => self.handle_latent(msg),
            Msg::StopInstances { reply } => self.stop_all_instances(reply),
            Msg::Pools { reply } => {
                let status = self.pool_status();
                self.reply(move || {
                    let _ = reply.send(status);
                });
            }
            Msg::BuildDone {
                build_id,
                worker,
                builder,
                outcome,
            } => self.build_done(build_id, &worker, &builder, outcome),
            Msg::Force {
                builder,
                reason,
                properties,
                reply,
            } => {
                let result = self.force(builder, reason, properties);
                self.reply(move || {
                    let _ = reply.send(result);
                });
                self.dispatch();
            }
            Msg::Stop {
                build_id,
                why,
                reply,
            } => {
                let found =
                    self.stop_build(build_id, why.clone()) || self.stop_elsewhere(build_id, &why);
                self.reply(move || {
                    let _ = reply.send(found);
                });
            }
            Msg::Drain { grace } => self.drain(grace),
            Msg::Reconfig {
                config,
                diff,
                reply,
            } => {
                let result = self.reconfigure(&config, &diff);
                self.reply(move || {
                    let _ = reply.send(result);
                });
            }
            Msg::BuildersListed {
                worker,
                conn_id,
                generation,
                listed,
            } => self.builders_listed(&worker, conn_id, generation, listed),
            Msg::StopAll { why } => {
                let ids: Vec<i64> = self.running.keys().copied().collect();
                for id in ids {
                    self.stop_build(id, why.clone());
                }
            }
        }
        self.notify_cluster();
        std::mem::take(&mut self.out)
    }

    /// What changed in the wake-up just handled (and forgets).
    pub fn take_notices(&mut self) -> Vec<crate::events::Event> {
        std::mem::take(&mut self.notices)
    }

    fn notify(&mut self, event: crate::events::Event) {
        self.notices.push(event);
    }

    /// Whether the wake-up just handled acknowledges something stored (and forgets).
    pub fn take_acknowledges(&mut self) -> bool {
        std::mem::take(&mut self.acknowledges)
    }

    /// Draining, and nothing runs any more.
    pub fn drained(&self) -> bool {
        self.draining && self.running.is_empty()
    }

    fn effect(&mut self, effect: Effect) {
        self.out.push(effect);
    }

    fn reply(&mut self, send: impl FnOnce() + Send + 'static) {
        self.effect(Effect::Reply(effect::Reply::new(send)));
    }

    fn conn_op(&mut self, conn: &ConnHandle, op: ConnOp) {
        self.effect(Effect::Conn {
            conn: conn.clone(),
            op,
        });
    }
}
