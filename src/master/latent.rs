//! Latent pools in the coordinator: starting instances for the queue's demand, moving
//! each through its phases (every move recorded), timing each phase out, stopping
//! idle ones. All of it runs on the coordinator's task, so the decision to drain an
//! idle instance and the dispatch of a build to it can never interleave.

use super::effect::{Effect, InstanceWatch, WatchStart};
use super::{Master, WorkerSlot};
use crate::config::{Config, IdleStop, LatentDriver, LatentPoolConfig};
use crate::latent::credentials::Credentials;
use crate::latent::driver::{Driver, LaunchSpec, OwnedInstance};
use crate::latent::local::LocalDriver;
use crate::latent::plan::{plan, PoolLimits, Seat};
use crate::model::boot_script::BootVars;
use crate::model::{Instance, Phase};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod interrupt;
mod lost;
mod park;
mod phases;
mod reconcile;
mod recycle;
pub use interrupt::INTERRUPTED;
pub use reconcile::CloudView;
pub(super) mod watcher;

/// A pool and its live instances.
#[derive(Debug)]
pub struct Pool {
    config: LatentPoolConfig,
    driver: Arc<dyn Driver>,
    pub(super) instances: BTreeMap<i64, Instance>,
    /// Each instance's password, activated when it may connect.
    passwords: HashMap<i64, String>,
    /// Tells each instance's watcher task the phase it is in.
    phases: HashMap<i64, watch::Sender<Phase>>,
    /// Substantiations that failed in a row; past three the pool is quarantined.
    failures: u32,
    quarantine_until: f64,
    /// Why demand waits, if it does (shown in the log).
    waiting: Option<String>,
    /// Failed substantiations charged to each waiting build request.
    charged: HashMap<i64, u32>,
    /// The newest failure, for the pool's status.
    last_failure: Option<String>,
    /// Terminations that failed in a row, by instance (for the back-off).
    terminate_failures: HashMap<i64, u32>,
    /// Instances whose launch call has not answered: one stopped meanwhile may still
    /// come to exist, so it is ended once the answer names it.
    launching: HashSet<i64>,
    /// Why the cloud ended instances under their builds, by worker name, until
    /// those builds have ended.
    interrupted: HashMap<String, String>,
    /// Build requests requeued after an interruption ended their build, waiting for
    /// the on-demand instance started for them (`on_interruption = "on-demand"`).
    on_demand_for: HashSet<i64>,
    /// Ends the pool's sweep task when the pool goes away with a reconfiguration.
    sweep_stop: CancellationToken,
}

/// Events from instance tasks and timers.
#[derive(Debug)]
pub enum LatentMsg {
    Launched {
        pool: String,
        id: i64,
        cloud_id: String,
        /// Where the driver put it, when it had choices.
        placement: Option<String>,
        /// The market it runs on, for clouds that have markets.
        market: Option<String>,
    },
    LaunchFailed {
        pool: String,
        id: i64,
        why: String,
        /// The cloud refused outright (another try would fail the same way).
        permanent: bool,
        /// The cloud's error code, if it gave one.
        code: Option<String>,
    },
    Running {
        pool: String,
        id: i64,
    },
    Gone {
        pool: String,
        id: i64,
        why: String,
    },
    /// The cloud has announced it will end the instance (a spot interruption
    /// notice); it still runs.
    Ending {
        pool: String,
        id: i64,
        why: String,
    },
    /// A phase's time ran out, if the instance is still in it since `since`.
    Deadline {
        pool: String,
        id: i64,
        phase: Phase,
        since: f64,
        limit: u64,
    },
    /// The idle time ran out, if the instance is still idle since `since`.
    IdleCheck {
        pool: String,
        id: i64,
        since: f64,
    },
    Terminated {
        pool: String,
        id: i64,
    },
    /// The driver could not end the instance: it is still there, and counted.
    TerminateFailed {
        pool: String,
        id: i64,
        why: String,
    },
    /// Time to try ending the instance again.
    RetryTerminate {
        pool: String,
        id: i64,
    },
    /// The instance may have reached its `max_age`.
    Retire {
        pool: String,
        id: i64,
    },
    /// The instance is stopped and kept (`idle_action = "stop"`).
    Parked {
        pool: String,
        id: i64,
    },
    /// Stopping it to keep it failed: it is terminated instead.
    ParkFailed {
        pool: String,
        id: i64,
        why: String,
    },
    /// A pool's quarantine is over: look at the demand again.
    QuarantineOver,
    /// What the cloud has under this master's tag for a pool, from a periodic sweep.
    Swept {
        pool: String,
        owned: Vec<OwnedInstance>,
    },
}

/// Failures in a row before a pool is quarantined.
const QUARANTINE_AFTER: u32 = 3;

/// The pools of a config, each with its driver; `master_id` tags cloud instances.
pub fn pools(config: &Config, master_id: &str) -> BTreeMap<String, Pool> {
    config
        .latent_pools
        .iter()
        .map(|p| (p.name.clone(), Pool::new(config, p, master_id)))
        .collect()
}

impl Pool {
    /// A pool without instances, with the driver its config names.
    pub(super) fn new(config: &Config, p: &LatentPoolConfig, master_id: &str) -> Pool {
        Pool {
            config: p.clone(),
            driver: driver_for(config, p, master_id),
            instances: BTreeMap::new(),
            passwords: HashMap::new(),
            phases: HashMap::new(),
            failures: 0,
            quarantine_until: 0.0,
            waiting: None,
            charged: HashMap::new(),
            last_failure: None,
            terminate_failures: HashMap::new(),
            launching: HashSet::new(),
            interrupted: HashMap::new(),
            on_demand_for: HashSet::new(),
            sweep_stop: CancellationToken::new(),
        }
    }

    /// Takes a changed config (same driver): new launches and decisions follow it.
    pub(super) fn set_config(&mut self, config: LatentPoolConfig) {
        self.config = config;
    }

    /// Whether the pool has instances in memory (live, stopping or parked).
    pub(super) fn has_instances(&self) -> bool {
        !self.instances.is_empty()
    }

    /// Ends the pool's periodic sweep (the pool is removed or replaced).
    pub(super) fn stop_sweep(&self) {
        self.sweep_stop.cancel();
    }
}

/// The driver a pool names (the config check has refused unknown ones).
fn driver_for(config: &Config, pool: &LatentPoolConfig, master_id: &str) -> Arc<dyn Driver> {
    let _ = master_id;
    match &pool.driver {
        LatentDriver::Local { pass_env, .. } => {
            let dir = config.master.data_dir.join("latent").join(&pool.name);
            Arc::new(LocalDriver::new(dir, pass_env.clone()))
        }
        #[cfg(feature = "ec2")]
        LatentDriver::Ec2(settings) => Arc::new(crate::latent::ec2::Ec2Driver::new(
            (**settings).clone(),
            master_id,
            &pool.name,
        )),
        #[cfg(feature = "docker")]
        LatentDriver::Docker(settings) => Arc::new(crate::latent::docker::DockerDriver::new(
            (**settings).clone(),
            master_id,
            &pool.name,
        )),
    }
}

impl Master {
    /// The pool and id of the instance whose worker name is `name`.
    pub(super) fn instance_named(&self, name: &str) -> Option<(String, i64)> {
        self.pools.iter().find_map(|(pool, p)| {
            p.instances
                .values()
                .find(|i| i.name == name)
                .map(|i| (pool.clone(), i.id))
        })
    }

    /// Whether `name` may get a build now: any configured worker, or an instance in a
    /// phase that takes builds (never one draining or stopping).
    pub(super) fn instance_takes_builds(&self, name: &str) -> bool {
        match self.instance_named(name) {
            Some((pool, id)) => self.pools[&pool].instances[&id].phase.takes_builds(),
            None => true,
        }
    }

    pub(super) fn instance_build_started(&mut self, name: &str) {
        if let Some((pool, id)) = self.instance_named(name) {
            if let Some(i) = self
                .pools
                .get_mut(&pool)
                .and_then(|p| p.instances.get_mut(&id))
            {
                i.builds += 1;
                i.uses += 1;
            }
            self.transition(&pool, id, Phase::Building, None);
            // Its last build under max_uses (or past max_age): it takes no more.
            self.retire_if_worn(&pool, id);
        }
    }

    pub(super) fn instance_build_done(&mut self, name: &str) {
        let Some((pool, id)) = self.instance_named(name) else {
            return;
        };
        let Some(p) = self.pools.get_mut(&pool) else {
            return;
        };
        let idle_stop = p.config.idle_stop;
        let Some(i) = p.instances.get_mut(&id) else {
            return;
        };
        i.builds = i.builds.saturating_sub(1);
        if i.builds > 0 {
            return;
        }
        match i.phase {
            Phase::Building => {}
            Phase::Draining => {
                let why = self
                    .worn_out(&pool, id)
                    .unwrap_or_else(|| "drained".to_owned());
                return self.stop_instance(&pool, id, &why);
            }
            _ => return,
        }
        self.transition(&pool, id, Phase::Idle, None);
        if self.retire_if_worn(&pool, id) {
            return;
        }
        match idle_stop {
            IdleStop::AfterEachBuild => {
                self.idle_stop(&pool, id, "no build waiting (build_wait_timeout = 0)")
            }
            IdleStop::After(seconds) => self.arm_idle_check(pool, id, seconds),
            IdleStop::Never => {}
        }
    }

    /// Stops the instance if it is still without a build (`ready` or `idle`, in the
    /// same phase as now) after `seconds`.
    fn arm_idle_check(&mut self, pool: String, id: i64, seconds: u64) {
        let since = self.pools[&pool].instances[&id].since;
        self.after(
            Duration::from_secs(seconds),
            LatentMsg::IdleCheck { pool, id, since },
        );
    }

    pub(super) fn instance_logged_in(&mut self, name: &str) {
        let Some((pool, id)) = self.instance_named(name) else {
            return;
        };
        if self.pools[&pool].instances[&id].phase == Phase::Connecting {
            self.transition(&pool, id, Phase::Attaching, None);
            let limit = self.pools[&pool].config.attach_timeout;
            self.deadline(&pool, id, limit);
        }
    }

    pub(super) fn instance_attached(&mut self, name: &str) {
        let Some((pool, id)) = self.instance_named(name) else {
            return;
        };
        if self.pools[&pool].instances[&id].phase == Phase::Attaching {
            self.transition(&pool, id, Phase::Ready, None);
            let born = self.pools[&pool].instances[&id].born;
            crate::metrics::metrics()
                .latent
                .ready(&pool, self.now - born);
            if let Some(p) = self.pools.get_mut(&pool) {
                p.failures = 0;
            }
            if self.retire_if_worn(&pool, id) {
                return;
            }
            // An instance that no build takes (another worker took the request, or
            // more started than were needed) stops like an idle one. The check runs
            // after the dispatch that follows attaching.
            let seconds = match self.pools[&pool].config.idle_stop {
                IdleStop::AfterEachBuild => 0,
                IdleStop::After(seconds) => seconds,
                IdleStop::Never => return,
            };
            self.arm_idle_check(pool, id, seconds);
        }
    }

    /// The instance's connection is gone, or its attach failed.
    pub(super) fn instance_lost(&mut self, name: &str, why: &str) {
        let Some((pool, id)) = self.instance_named(name) else {
            return;
        };
        let phase = self.pools[&pool].instances[&id].phase;
        if matches!(phase, Phase::Parking | Phase::Parked) {
            // Its worker goes with the machine it runs on: expected.
        } else if phase.is_starting() {
            self.fail_instance(&pool, id, why);
        } else if phase.is_live() && phase != Phase::Stopping {
            self.stop_instance(&pool, id, why);
        }
    }

    /// Starts what each pool's demand (requests waiting, by builder) asks for, under
    /// its cap.
    pub(super) fn plan_pools(&mut self, demand: &BTreeMap<String, BTreeMap<String, usize>>) {
        let t = self.now;
        let names: Vec<String> = self.pools.keys().cloned().collect();
        let none = BTreeMap::new();
        for name in names {
            let p = &self.pools[&name];
            let limits = PoolLimits {
                max_instances: p.config.max_instances,
                max_builds: p.config.max_builds,
                min_instances: p.config.min_instances,
            };
            let blocked = (p.quarantine_until > t).then(|| {
                format!(
                    "{} failures in a row, until {:.0}s from now",
                    p.failures,
                    p.quarantine_until - t
                )
            });
            let seats: Vec<Seat> = p
                .instances
                .values()
                .map(|i| Seat {
                    // Failed but not yet confirmed gone: still there, still counted.
                    phase: if i.phase.is_live() {
                        i.phase
                    } else {
                        Phase::Stopping
                    },
                    busy: self
                        .workers
                        .get(&i.name)
                        .map(|w| w.busy_builders.clone())
                        .unwrap_or_default(),
                })
                .collect();
            let decision = plan(
                limits,
                &seats,
                demand.get(&name).unwrap_or(&none),
                blocked.as_deref(),
            );
            if decision.waiting != self.pools[&name].waiting {
                if let Some(why) = &decision.waiting {
                    info!(pool = %name, "requests wait: {why}");
                }
            }
            if let Some(p) = self.pools.get_mut(&name) {
                p.waiting = decision.waiting;
            }
            for _ in 0..decision.start {
                // A stopped instance kept for this starts faster than a new one.
                if !self.resume_parked(&name) {
                    self.start_instance(&name);
                }
            }
        }
    }

    /// Records the intent, then launches: nothing reaches the cloud that the database
    /// does not know about.
    fn start_instance(&mut self, pool: &str) {
        let serial = self.store.instance_count().unwrap_or(0) + 1;
        let name = format!("{pool}-{serial}");
        let token = match Credentials::generate() {
            Ok(t) => format!("{name}-{}", &t[..12]),
            Err(e) => return warn!(pool, "cannot start an instance: {e}"),
        };
        let password = match Credentials::generate() {
            Ok(p) => p,
            Err(e) => return warn!(pool, "cannot start an instance: {e}"),
        };
        let id = match self.store.add_instance(pool, &name, &token, &password) {
            Ok(id) => id,
            Err(e) => return warn!(pool, "cannot record an instance: {e}"),
        };
        let user_data = self.user_data(pool, &name, &password);
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let mut instance = Instance::new(id, pool, &name, self.now);
        instance.price_per_hour = p.config.price_for(None);
        // One request an interruption sent back gets this instance, on demand (one
        // that ended meanwhile, cancelled or failed, no longer asks for it).
        let queue = &self.queue;
        p.on_demand_for.retain(|r| queue.contains(*r));
        let on_demand = match p.on_demand_for.iter().next().copied() {
            Some(request) => p.on_demand_for.remove(&request),
            None => false,
        };
        p.instances.insert(id, instance);
        p.passwords.insert(id, password);
        p.launching.insert(id);
        let (phase_tx, phase_rx) = watch::channel(Phase::Requested);
        p.phases.insert(id, phase_tx);
        self.workers
            .insert(name.clone(), WorkerSlot::new(p.config.max_builds));
        info!(pool, instance = %name, "starting an instance");
        self.transition(pool, id, Phase::Launching, None);
        let spec = LaunchSpec {
            name,
            pool: pool.to_owned(),
            user_data,
            client_token: token,
            on_demand,
        };
        let watch = self.instance_watch(pool, id, WatchStart::Launch(spec), phase_rx);
        self.effect(Effect::Watch(Box::new(watch)));
        self.arm_retirement(pool, id);
    }

    /// The pool's boot script for the instance `name` with its one-time `password`.
    fn user_data(&self, pool: &str, name: &str, password: &str) -> String {
        let Some(p) = self.pools.get(pool) else {
            return String::new();
        };
        let address = p
            .config
            .master_address
            .clone()
            .unwrap_or_else(|| self.master_address.clone());
        let (host, port) = address
            .rsplit_once(':')
            .unwrap_or((address.as_str(), "9989"));
        let vars = BootVars {
            master: address.clone(),
            master_host: host.to_owned(),
            master_port: port.to_owned(),
            name: name.to_owned(),
            password: password.to_owned(),
            pool: pool.to_owned(),
            venv: p
                .config
                .driver
                .venv()
                .map(|v| v.display().to_string())
                .unwrap_or_default(),
        };
        p.config.boot_script.render(&vars)
    }

    /// What the runtime needs to launch (or adopt) an instance and watch it start.
    fn instance_watch(
        &self,
        pool: &str,
        id: i64,
        start: WatchStart,
        phase: watch::Receiver<Phase>,
    ) -> InstanceWatch {
        let p = &self.pools[pool];
        InstanceWatch {
            driver: p.driver.clone(),
            pool: pool.to_owned(),
            id,
            start,
            launch_timeout: Duration::from_secs(p.config.launch_timeout),
            poll: Duration::from_secs(p.config.poll_interval.max(1)),
            phase,
        }
    }

    pub(super) fn handle_latent(&mut self, msg: LatentMsg) {
        match msg {
            LatentMsg::Launched {
                pool,
                id,
                cloud_id,
                placement,
                market,
            } => {
                let Some(p) = self.pools.get_mut(&pool) else {
                    return;
                };
                p.launching.remove(&id);
                let price = p.config.price_for(placement.as_deref());
                let Some(i) = p.instances.get_mut(&id) else {
                    return;
                };
                i.cloud_id = Some(cloud_id.clone());
                if market.is_some() {
                    i.market = market;
                }
                if placement.is_some() {
                    i.price_per_hour = price;
                    i.placement = placement;
                }
                if i.phase == Phase::Launching {
                    self.transition(&pool, id, Phase::Booting, Some(&cloud_id));
                    let limit = self.pools[&pool].config.boot_timeout;
                    self.deadline(&pool, id, limit);
                } else {
                    // Stopped while launching: the new instance must go too.
                    if let Err(e) = self
                        .store
                        .record_phase(i, Some("launched after its stop; terminating"))
                    {
                        warn!(pool = %pool, instance = %i.name, "cannot record the cloud id: {e}");
                    }
                    self.terminate(&pool, id);
                }
            }
            LatentMsg::LaunchFailed { pool, id, .. }
                if self.phase_of(&pool, id) == Some(Phase::Stopping)
                    && self.pools[&pool].instances[&id].cloud_id.is_some() =>
            {
                // A stopped instance that was being started again: its termination,
                // already asked for, reports its end.
                if let Some(p) = self.pools.get_mut(&pool) {
                    p.launching.remove(&id);
                }
            }
            LatentMsg::LaunchFailed { pool, id, .. }
                if self.phase_of(&pool, id) == Some(Phase::Stopping) =>
            {
                // Stopped while launching, and nothing was made: it has ended.
                if let Some(p) = self.pools.get_mut(&pool) {
                    p.launching.remove(&id);
                }
                self.transition(&pool, id, Phase::Stopped, Some("its launch failed"));
                self.forget(&pool, id);
                self.answer_when_no_instance();
            }
            LatentMsg::LaunchFailed {
                pool,
                id,
                why,
                permanent,
                code,
            } => {
                if let Some(p) = self.pools.get_mut(&pool) {
                    p.launching.remove(&id);
                }
                let reason = code.unwrap_or_else(|| "launching".to_owned());
                self.fail_instance_as(&pool, id, &why, permanent, &reason)
            }
            LatentMsg::Running { pool, id } => {
                if self.phase_of(&pool, id) == Some(Phase::Booting) {
                    self.transition(&pool, id, Phase::Connecting, None);
                    let p = &self.pools[&pool];
                    let (name, password, limit) = (
                        p.instances[&id].name.clone(),
                        p.passwords.get(&id).cloned().unwrap_or_default(),
                        p.config.missing_timeout,
                    );
                    self.effect(Effect::ActivateCredentials { name, password });
                    self.deadline(&pool, id, limit);
                }
            }
            LatentMsg::Gone { pool, id, why } => {
                if self.phase_of(&pool, id).is_some_and(|p| p.is_starting()) {
                    self.fail_instance(&pool, id, &format!("the instance went away: {why}"));
                } else {
                    self.interrupted(&pool, id, &why);
                }
            }
            LatentMsg::Ending { pool, id, why } => {
                let why = format!("has an interruption notice: {why}");
                if self.phase_of(&pool, id).is_some_and(|p| p.is_starting()) {
                    self.fail_instance(&pool, id, &format!("the instance {why}"));
                } else {
                    self.interrupted(&pool, id, &why);
                }
            }
            LatentMsg::Deadline {
                pool,
                id,
                phase,
                since,
                limit,
            } => {
                let still = self
                    .pools
                    .get(&pool)
                    .and_then(|p| p.instances.get(&id))
                    .is_some_and(|i| i.phase == phase && i.since == since);
                if still {
                    self.fail_instance(&pool, id, &format!("{phase} took longer than {limit} s"));
                }
            }
            LatentMsg::IdleCheck { pool, id, since } => {
                let still = self
                    .pools
                    .get(&pool)
                    .and_then(|p| p.instances.get(&id))
                    .is_some_and(|i| {
                        matches!(i.phase, Phase::Idle | Phase::Ready) && i.since == since
                    });
                if still {
                    self.idle_stop(&pool, id, "idle time over");
                }
            }
            LatentMsg::Retire { pool, id } => {
                self.retire_if_worn(&pool, id);
            }
            LatentMsg::QuarantineOver => {}
            LatentMsg::Parked { pool, id } => self.parked(&pool, id),
            LatentMsg::ParkFailed { pool, id, why } => self.park_failed(&pool, id, &why),
            LatentMsg::Swept { pool, owned } => self.sweep(&pool, owned),
            LatentMsg::TerminateFailed { pool, id, why } => self.terminate_failed(&pool, id, &why),
            LatentMsg::RetryTerminate { pool, id } => {
                if self
                    .pools
                    .get(&pool)
                    .is_some_and(|p| p.instances.contains_key(&id))
                {
                    self.terminate(&pool, id);
                }
            }
            LatentMsg::Terminated { pool, id } => {
                if let Some(p) = self.pools.get_mut(&pool) {
                    p.terminate_failures.remove(&id);
                }
                if self.phase_of(&pool, id) == Some(Phase::Stopping) {
                    self.transition(&pool, id, Phase::Stopped, None);
                }
                self.forget(&pool, id);
                self.answer_when_no_instance();
            }
        }
        self.dispatch();
    }

    /// Each pool: its driver and cap, its live instances by phase, why requests wait
    /// (cap reached, quarantine) and its newest failure.
    pub(super) fn pool_status(&self) -> serde_json::Value {
        let t = self.now;
        let pools: Vec<serde_json::Value> = self
            .pools
            .iter()
            .map(|(name, p)| {
                let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
                for i in p.instances.values().filter(|i| i.phase.is_live()) {
                    *phases.entry(i.phase.name()).or_default() += 1;
                }
                serde_json::json!({
                    "name": name,
                    "driver": p.config.driver.name(),
                    "max_instances": p.config.max_instances,
                    "max_stopped": p.config.max_stopped,
                    "live": phases.values().sum::<usize>(),
                    "phases": phases,
                    "waiting": p.waiting,
                    "failures_in_a_row": p.failures,
                    "quarantined_for": (p.quarantine_until > t).then(|| (p.quarantine_until - t).ceil()),
                    "last_failure": p.last_failure,
                })
            })
            .collect();
        serde_json::json!(pools)
    }

    /// The master is stopping: every live instance is stopped; `reply` fires when the
    /// last one is gone, so no instance outlives the master.
    pub(super) fn stop_all_instances(&mut self, reply: tokio::sync::oneshot::Sender<()>) {
        self.stopped_reply = Some(reply);
        let live: Vec<(String, i64)> = self
            .pools
            .iter()
            .flat_map(|(name, p)| {
                p.instances
                    .values()
                    .filter(|i| i.phase.is_live())
                    .map(move |i| (name.clone(), i.id))
            })
            .collect();
        for (pool, id) in live {
            if self.phase_of(&pool, id) != Some(Phase::Stopping) {
                self.stop_instance(&pool, id, "master shutting down");
            }
        }
        self.answer_when_no_instance();
    }

    /// Answers the stopping master once no instance is left, not even a failed one
    /// whose termination is not confirmed yet.
    fn answer_when_no_instance(&mut self) {
        if self.pools.values().all(|p| p.instances.is_empty()) {
            if let Some(reply) = self.stopped_reply.take() {
                self.reply(move || {
                    let _ = reply.send(());
                });
            }
        }
    }
}
