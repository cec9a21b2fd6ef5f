//! The coordinator's runtime: takes messages one at a time, lets [`Master::handle`]
//! decide inside one store transaction, commits, then carries out the effects. All of
//! the I/O the coordinator causes starts here, as tasks of one [`TaskTracker`].
//!
//! In the master it runs on a thread of its own ([`Coordinator::spawn`]), so the
//! store's blocking calls never hold up a connection's task; tests run it as a task
//! ([`Coordinator::run_inline`]) under tokio's paused clock.

use super::effect::{Admission, BuildStart, ConnOp, Effect, InstanceWatch};
use super::latent::{watcher, CloudView, LatentMsg};
use super::{admission, Master, Msg};
use crate::config::Limits;
use crate::events::Events;
use crate::latent::credentials::Credentials;
use crate::latent::driver::Driver;
use crate::runner::{run_build, BuildJob};
use crate::scheduler::timer;
use crate::secrets::Secrets;
use crate::store::{now, Store};
use crate::worker::{set_builder_list, Attached};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

/// How long attach calls and pings may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// The coordinator with what it needs to act: its channel, its tasks, and the shared
/// pieces its effects use.
#[derive(Debug)]
pub struct Coordinator {
    master: Master,
    exec: Executor,
    clock: Clock,
}

/// Carries out effects.
#[derive(Debug)]
struct Executor {
    tx: mpsc::Sender<Msg>,
    tasks: TaskTracker,
    credentials: Arc<Credentials>,
    wake: watch::Sender<Option<f64>>,
    /// The store builds record their steps in (the shared connection).
    store: Store,
    settings: Arc<BuildSettings>,
    command_ids: Arc<AtomicU64>,
    rpc_timeout: Duration,
    /// Wakes the reporters' delivery task (see [`crate::reporters::Outbox`]).
    reports: Arc<Notify>,
}

/// What builds run with besides their job: where master-side paths resolve, the
/// secrets, and the limits.
#[derive(Debug)]
pub struct BuildSettings {
    /// The data folder (master-side transfer paths resolve in its `files` folder).
    pub data_dir: PathBuf,
    pub secrets: Arc<Secrets>,
    pub limits: Limits,
    /// Where builds and the coordinator tell open pages what changed.
    pub events: Events,
}

/// How often the free space of the data folder's file system is looked at.
const DISK_CHECK: Duration = Duration::from_secs(5);

/// Wall-clock seconds that advance with tokio's clock (so a paused clock in tests
/// moves them too, and they never go backwards).
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall: f64,
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            wall: now(),
            start: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> f64 {
        self.wall + self.start.elapsed().as_secs_f64()
    }
}

impl Coordinator {
    /// `store` is shared with builds and the API; the coordinator opens a connection
    /// of its own on the same database for its wake-up transactions.
    pub fn new(
        mut master: Master,
        store: &Store,
        tx: mpsc::Sender<Msg>,
        credentials: Arc<Credentials>,
        settings: BuildSettings,
    ) -> Coordinator {
        master.secrets = settings.secrets.clone();
        Coordinator {
            master,
            exec: Executor {
                tx,
                tasks: TaskTracker::new(),
                credentials,
                wake: watch::Sender::new(None),
                store: store.clone(),
                settings: Arc::new(settings),
                command_ids: Arc::new(AtomicU64::new(0)),
                rpc_timeout: RPC_TIMEOUT,
                reports: Arc::new(Notify::new()),
            },
            clock: Clock::new(),
        }
    }

    /// What the delivery task of the reporters waits on: notified once reports
    /// are committed to the outbox.
    pub fn reports_wake(&self) -> Arc<Notify> {
        self.exec.reports.clone()
    }

    /// The tracker of every task the coordinator's effects start, so that stopping
    /// can wait for them.
    pub fn tasks(&self) -> TaskTracker {
        self.exec.tasks.clone()
    }

    /// Runs on a thread of its own until [`Msg::Exit`] or the channel closes; `idle`
    /// fires once a drain finds nothing running. The returned future ends with it.
    pub async fn spawn(mut self, rx: mpsc::Receiver<Msg>, idle: oneshot::Sender<()>) {
        let clouds = clouds(self.master.pool_drivers()).await;
        self.exec.watch_disk();
        // A blocking-pool thread keeps the runtime's context (its effects spawn tasks).
        let serving = tokio::task::spawn_blocking(move || {
            let mut idle = Some(idle);
            self.wake_up(Wake::Start(clouds), &mut idle);
            let mut rx = rx;
            while let Some(first) = rx.blocking_recv() {
                let (batch, exit) = with_waiting(first, &mut rx);
                self.wake_up(Wake::Msgs(batch), &mut idle);
                if exit {
                    break;
                }
            }
        });
        if let Err(e) = serving.await {
            error!("the coordinator stopped: {e}");
        }
    }

    /// Runs as a task (for tests under a paused clock).
    pub async fn run_inline(mut self, mut rx: mpsc::Receiver<Msg>, idle: oneshot::Sender<()>) {
        let clouds = clouds(self.master.pool_drivers()).await;
        let mut idle = Some(idle);
        self.wake_up(Wake::Start(clouds), &mut idle);
        while let Some(first) = rx.recv().await {
            let (batch, exit) = with_waiting(first, &mut rx);
            self.wake_up(Wake::Msgs(batch), &mut idle);
            if exit {
                break;
            }
        }
    }

    /// One wake-up: decide on each message, commit once, act.
    fn wake_up(&mut self, wake: Wake, idle: &mut Option<oneshot::Sender<()>>) {
        let now = self.clock.now();
        if let Err(e) = self.master.store.begin() {
            // Each write then commits on its own.
            warn!("cannot open the wake-up's transaction: {e}");
        }
        let effects = match wake {
            Wake::Msgs(msgs) => {
                let mut effects = Vec::new();
                for msg in msgs {
                    effects.extend(self.master.handle(msg, now));
                }
                effects
            }
            Wake::Start(clouds) => self.master.start(clouds, now),
        };
        if let Err(e) = self.master.store.commit() {
            // What was decided stands in memory; the store lacks it until the next
            // write of the same rows, and a restart redoes what it lost.
            error!("cannot commit the coordinator's writes: {e}");
        }
        // After the commit: a page reading on a notice finds what it was told.
        for event in self.master.take_notices() {
            self.exec.settings.events.send(event);
        }
        // What acknowledges something stored waits until it is on disk. A build's
        // start need not: its first calls change nothing on the worker, and its
        // steps are recorded after this commit.
        if self.master.take_acknowledges() {
            let (builds, rest): (Vec<_>, Vec<_>) = effects
                .into_iter()
                .partition(|e| matches!(e, Effect::RunBuild(_)));
            builds.into_iter().for_each(|e| self.exec.execute(e));
            if let Err(e) = self.master.store.sync() {
                error!("cannot sync the database to disk: {e}");
            }
            rest.into_iter().for_each(|e| self.exec.execute(e));
        } else {
            effects.into_iter().for_each(|e| self.exec.execute(e));
        }
        if self.master.drained() {
            if let Some(idle) = idle.take() {
                let _ = idle.send(());
            }
        }
    }
}

/// What each pool's cloud runs for this master, for the first wake-up to
/// reconcile with what the store recorded.
async fn clouds(drivers: Vec<(String, Arc<dyn Driver>)>) -> Vec<(String, CloudView)> {
    let mut clouds = Vec::new();
    for (pool, driver) in drivers {
        let cloud = match driver.owned().await {
            Ok(c) => c,
            Err(e) => {
                warn!(pool = %pool, "cannot list the pool's instances ({e}); terminating the recorded ones");
                None
            }
        };
        clouds.push((pool, cloud));
    }
    clouds
}

/// Bytes an unprivileged user may still write on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Why the coordinator wakes up.
enum Wake {
    /// The first time, with what the clouds run.
    Start(Vec<(String, CloudView)>),
    /// Messages that were waiting together, in order.
    Msgs(Vec<Msg>),
}

/// Most messages one wake-up takes: a burst (200 workers forcing builds at once)
/// costs one commit per this many, while the first message's answer waits for at
/// most this many others.
const BATCH: usize = 64;

/// `first` and the messages already waiting behind it, up to [`BATCH`] and up to an
/// [`Msg::Exit`] (not included); whether one came.
fn with_waiting(first: Msg, rx: &mut mpsc::Receiver<Msg>) -> (Vec<Msg>, bool) {
    let mut batch = Vec::new();
    let mut next = Some(first);
    while let Some(msg) = next.take() {
        if matches!(msg, Msg::Exit) {
            return (batch, true);
        }
        batch.push(msg);
        if batch.len() < BATCH {
            next = rx.try_recv().ok();
        }
    }
    (batch, false)
}

impl Executor {
    fn execute(&self, effect: Effect) {
        match effect {
            Effect::Conn { conn, op } => {
                self.tasks.spawn(async move {
                    match op {
                        ConnOp::Call { mind, method } => {
                            let _ = conn.call(mind, method, vec![], vec![]).await;
                        }
                        ConnOp::Answer { request_id, answer } => {
                            conn.answer(request_id, answer).await
                        }
                        ConnOp::AcceptLogin { style } => {
                            conn.set_failure_style(style).await;
                            conn.accept_login().await;
                        }
                        ConnOp::RefuseLogin(failure) => conn.refuse_login(failure).await,
                        ConnOp::Close(why) => conn.close(&why).await,
                    }
                });
            }
            Effect::Admit(admission) => self.admit(*admission),
            Effect::RunBuild(start) => self.run_build(*start),
            Effect::StopBuild { signal, why } => {
                let _ = signal.send(Some(why));
            }
            Effect::Timer { after, msg } => {
                let tx = self.tx.clone();
                self.tasks.spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(after) => { let _ = tx.send(*msg).await; }
                        _ = tx.closed() => {}
                    }
                });
            }
            Effect::Watch(watch) => self.watch(*watch),
            Effect::Terminate {
                driver,
                cloud_id,
                report,
            } => {
                let tx = self.tx.clone();
                self.tasks.spawn(async move {
                    let mut failed = None;
                    if let Some(cloud_id) = cloud_id {
                        if let Err(e) = driver.terminate(&cloud_id).await {
                            warn!("terminate {cloud_id}: {e}");
                            failed = Some(e.to_string());
                        }
                    }
                    if let Some((pool, id)) = report {
                        let msg = match failed {
                            Some(why) => LatentMsg::TerminateFailed { pool, id, why },
                            None => LatentMsg::Terminated { pool, id },
                        };
                        let _ = tx.send(Msg::Latent(msg)).await;
                    }
                });
            }
            Effect::Park {
                driver,
                cloud_id,
                report: (pool, id),
            } => {
                let tx = self.tx.clone();
                self.tasks.spawn(async move {
                    let msg = match driver.stop(&cloud_id).await {
                        Ok(()) => LatentMsg::Parked { pool, id },
                        Err(e) => LatentMsg::ParkFailed {
                            pool,
                            id,
                            why: e.to_string(),
                        },
                    };
                    let _ = tx.send(Msg::Latent(msg)).await;
                });
            }
            Effect::EndLaunch {
                driver,
                client_token,
                report: (pool, id),
            } => {
                let tx = self.tx.clone();
                self.tasks.spawn(async move {
                    let msg = match driver.end_launch(&client_token).await {
                        Ok(()) => LatentMsg::Terminated { pool, id },
                        Err(e) => LatentMsg::TerminateFailed {
                            pool,
                            id,
                            why: e.to_string(),
                        },
                    };
                    let _ = tx.send(Msg::Latent(msg)).await;
                });
            }
            Effect::Sweep {
                driver,
                pool,
                every,
                stop,
            } => self.sweep(driver, pool, every, stop),
            Effect::SetBuilders {
                worker,
                attached,
                builders,
                generation,
            } => self.set_builders(worker, attached, builders, generation),
            Effect::ActivateCredentials { name, password } => {
                self.credentials.activate(&name, &password)
            }
            Effect::RevokeCredentials { name } => self.credentials.revoke(&name),
            Effect::WakeAt(at) => {
                if self.wake.receiver_count() == 0 {
                    let (tx, wake) = (self.tx.clone(), self.wake.subscribe());
                    self.tasks
                        .spawn(timer::run(wake, tx, || Msg::SchedulerWake));
                }
                self.wake.send_replace(at);
            }
            Effect::Deliver => self.reports.notify_one(),
            Effect::Reply(reply) => reply.send(),
        }
    }

    fn admit(&self, a: Admission) {
        let (tx, timeout) = (self.tx.clone(), self.rpc_timeout);
        self.tasks.spawn(async move {
            let outcome = admission::admit(a.old, &a.conn, a.mind, &a.builders, timeout).await;
            let msg = Msg::Admitted {
                name: a.name,
                conn: a.conn,
                outcome,
            };
            let _ = tx.send(msg).await;
        });
    }

    fn run_build(&self, start: BuildStart) {
        let worker = start.worker_name;
        let builder = start.builder.name.clone();
        let build_id = start.build.id;
        let job = BuildJob {
            store: self.store.clone(),
            build: start.build,
            builder: start.builder,
            worker: start.worker,
            wfb: start.wfb,
            properties: start.properties,
            stop: start.stop,
            command_ids: self.command_ids.clone(),
            rpc_timeout: self.rpc_timeout,
            files_dir: Arc::new(self.settings.data_dir.clone()),
            secrets: self.settings.secrets.clone(),
            limits: self.settings.limits,
            events: self.settings.events.clone(),
            recording: None,
        };
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            let outcome = run_build(job).await;
            let msg = Msg::BuildDone {
                build_id,
                worker,
                builder,
                outcome,
            };
            let _ = tx.send(msg).await;
        });
    }

    /// Tells the coordinator when free space in the data folder crosses
    /// `min_free_disk` (0: never looked at).
    fn watch_disk(&self) {
        let floor = self.settings.limits.min_free_disk;
        if floor == 0 {
            return;
        }
        let (tx, dir) = (self.tx.clone(), self.settings.data_dir.clone());
        self.tasks.spawn(async move {
            let mut low = false;
            loop {
                let probe = dir.clone();
                let free = tokio::task::spawn_blocking(move || free_bytes(&probe)).await;
                match free {
                    Ok(Ok(free)) if (free < floor) != low => {
                        low = free < floor;
                        let why = low.then(|| {
                            format!(
                                "the data folder's disk has {} MiB free, under min_free_disk ({} MiB)",
                                free >> 20,
                                floor >> 20
                            )
                        });
                        if tx.send(Msg::DiskLow(why)).await.is_err() {
                            return;
                        }
                    }
                    Ok(Err(e)) => warn!("cannot read the free space of {}: {e}", dir.display()),
                    _ => {}
                }
                tokio::select! {
                    _ = tokio::time::sleep(DISK_CHECK) => {}
                    _ = tx.closed() => return,
                }
            }
        });
    }

    fn watch(&self, watch: InstanceWatch) {
        self.tasks.spawn(watcher::run(watch, self.tx.clone()));
    }

    /// Sends the list and reports the worker's objects for its builders.
    fn set_builders(
        &self,
        worker: String,
        attached: Attached,
        builders: Vec<(String, String)>,
        generation: u64,
    ) {
        let (tx, timeout) = (self.tx.clone(), self.rpc_timeout);
        self.tasks.spawn(async move {
            let listed = set_builder_list(&attached.conn, attached.mind, &builders, timeout)
                .await
                .map_err(|e| e.to_string());
            let msg = Msg::BuildersListed {
                worker,
                conn_id: attached.conn.id,
                generation,
                listed,
            };
            let _ = tx.send(msg).await;
        });
    }

    fn sweep(
        &self,
        driver: Arc<dyn Driver>,
        pool: String,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = tx.closed() => return,
                    _ = stop.cancelled() => return,
                }
                match driver.owned().await {
                    Ok(Some(owned)) => {
                        let msg = Msg::Latent(LatentMsg::Swept {
                            pool: pool.clone(),
                            owned,
                        });
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => warn!(pool = %pool, "sweep: cannot list instances: {e}"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wake() -> Msg {
        Msg::SchedulerWake
    }

    #[test]
    fn a_wake_up_takes_what_waits_up_to_a_batch_and_stops_at_exit() {
        let (tx, mut rx) = mpsc::channel(256);
        for _ in 0..(BATCH + 5) {
            tx.try_send(wake()).unwrap();
        }
        let first = rx.try_recv().unwrap();
        let (batch, exit) = with_waiting(first, &mut rx);
        assert_eq!((batch.len(), exit), (BATCH, false));
        tx.try_send(Msg::Exit).unwrap();
        tx.try_send(wake()).unwrap();
        let first = rx.try_recv().unwrap();
        let (batch, exit) = with_waiting(first, &mut rx);
        assert_eq!((batch.len(), exit), (5, true), "the rest, then exit");
        let (batch, exit) = with_waiting(Msg::Exit, &mut rx);
        assert_eq!((batch.len(), exit), (0, true));
    }
}
