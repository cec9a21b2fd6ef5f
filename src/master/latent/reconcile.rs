//! Reconciling pools with their clouds: after a restart (adopt what both know,
//! terminate what only the cloud has under this master's tag) and periodically while
//! running (terminate what no live instance accounts for).

use super::WorkerSlot;
use crate::latent::driver::{Driver, OwnedInstance};
use crate::master::effect::{Effect, WatchStart};
use crate::master::Master;
use crate::model::{Instance, Phase};
use crate::store::latent::InstanceRow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// What a pool's cloud said it runs for this master, or `None` if it cannot list.
pub type CloudView = Option<Vec<OwnedInstance>>;

impl Master {
    /// Each pool's name and driver, for the runtime to ask what its cloud runs.
    pub(in crate::master) fn pool_drivers(&self) -> Vec<(String, Arc<dyn Driver>)> {
        self.pools
            .iter()
            .map(|(name, p)| (name.clone(), p.driver.clone()))
            .collect()
    }

    /// After a restart, each pool is reconciled with its cloud: an instance both the
    /// database and the cloud know is adopted (its worker may log in again with the
    /// same one-time credentials); one the cloud has under this master's tag but the
    /// database does not know is terminated; one that cannot be adopted is stopped
    /// (recorded as stopping first, so a crash meanwhile leaves it to the next
    /// start). A driver that cannot list gets every recorded instance stopped.
    pub(in crate::master) fn reconcile(&mut self, clouds: Vec<(String, CloudView)>) {
        let live = match self.store.live_instances() {
            Ok(l) => l,
            Err(e) => return warn!("cannot read latent instances: {e}"),
        };
        for (pool, cloud) in clouds {
            let Some(driver) = self.pools.get(&pool).map(|p| p.driver.clone()) else {
                continue;
            };
            let rows = live.iter().filter(|r| r.pool == pool);
            let Some(cloud) = cloud else {
                for row in rows {
                    self.stop_recorded(row, row.cloud_id.as_deref());
                }
                continue;
            };
            let mut claimed = BTreeSet::new();
            for row in rows {
                let found = cloud.iter().find(|c| {
                    c.name.as_deref() == Some(row.name.as_str())
                        || Some(&c.cloud_id) == row.cloud_id.as_ref()
                });
                match (found, &row.password) {
                    (Some(c), _) if row.phase == Phase::Parked => {
                        claimed.insert(c.cloud_id.clone());
                        self.keep_parked(&pool, row, &c.cloud_id);
                    }
                    (Some(c), Some(password)) if row.phase != Phase::Parking => {
                        claimed.insert(c.cloud_id.clone());
                        self.adopt(&pool, row, &c.cloud_id, password);
                    }
                    (Some(c), _) => {
                        claimed.insert(c.cloud_id.clone());
                        self.stop_recorded(row, Some(&c.cloud_id));
                    }
                    (None, _) => self.record_stopped(row, "gone while the master was down"),
                }
            }
            self.trim_parked(&pool);
            for c in cloud.iter().filter(|c| !claimed.contains(&c.cloud_id)) {
                warn!(pool = %pool, cloud_id = %c.cloud_id, "terminating an instance of this master that the database does not know");
                self.effect(Effect::Terminate {
                    driver: driver.clone(),
                    cloud_id: Some(c.cloud_id.clone()),
                    report: None,
                });
            }
        }
    }

    /// Starts each pool's periodic sweep (a no-op for drivers that cannot list).
    pub(in crate::master) fn start_sweeps(&mut self) {
        let all: Vec<String> = self.pools.keys().cloned().collect();
        self.start_sweeps_of(&all);
    }

    /// Starts the sweeps of the named pools (new ones, after a reconfiguration).
    pub(in crate::master) fn start_sweeps_of(&mut self, names: &[String]) {
        let sweeps: Vec<Effect> = self
            .pools
            .iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(name, p)| Effect::Sweep {
                driver: p.driver.clone(),
                pool: name.clone(),
                every: Duration::from_secs(p.config.sweep_interval.max(1)),
                stop: p.sweep_stop.clone(),
            })
            .collect();
        self.out.extend(sweeps);
    }

    /// Terminates what the cloud has under this master's tag that no live instance
    /// accounts for (by cloud id, or by name while its launch answer is on its way): a
    /// duplicate from a launch that failed ambiguously, or one that outlived its stop.
    /// Only with evidence that it is this master's own: every launch is recorded
    /// first, so a name the database never recorded was launched by someone else
    /// sharing the tag, and is left alone; and a twin of a live instance whose worker
    /// is attached may be the one attached, so it waits until that instance has ended.
    pub(in crate::master) fn sweep(&mut self, pool: &str, owned: Vec<OwnedInstance>) {
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        let accounted = |o: &OwnedInstance| {
            p.instances.values().any(|i| {
                i.phase.is_live()
                    && (i.cloud_id.as_deref() == Some(o.cloud_id.as_str())
                        || (i.cloud_id.is_none() && o.name.as_deref() == Some(i.name.as_str())))
            })
        };
        let twin_attached = |name: &str| {
            p.instances.values().any(|i| {
                i.phase.is_live()
                    && i.name == name
                    && self.workers.get(name).is_some_and(|w| w.attached.is_some())
            })
        };
        let mut strays = Vec::new();
        for o in owned.into_iter().filter(|o| !accounted(o)) {
            let name = o.name.as_deref().unwrap_or("?");
            if !matches!(self.store.instance_pool(name), Ok(Some(_))) {
                warn!(pool, cloud_id = %o.cloud_id, name, "sweep: leaving an instance tagged with this master's id that it never launched");
                continue;
            }
            if twin_attached(name) {
                continue;
            }
            warn!(pool, cloud_id = %o.cloud_id, name, "sweep: terminating an instance no live instance accounts for");
            strays.push(Effect::Terminate {
                driver: p.driver.clone(),
                cloud_id: Some(o.cloud_id),
                report: None,
            });
        }
        self.out.extend(strays);
    }

    fn record_stopped(&mut self, row: &InstanceRow, why: &str) {
        let mut i = Instance::new(row.id, &row.pool, &row.name, self.now);
        i.cloud_id = row.cloud_id.clone();
        i.phase = Phase::Stopping;
        let _ = i.advance(Phase::Stopped, self.now);
        let _ = self.store.record_phase(&i, Some(why));
        info!(pool = %row.pool, instance = %row.name, "{why}");
    }

    /// A recorded instance that cannot be adopted: held as stopping until its
    /// termination is reported, like any instance being stopped.
    fn stop_recorded(&mut self, row: &InstanceRow, cloud_id: Option<&str>) {
        self.stop_recorded_because(row, cloud_id, "terminated after a master restart");
    }

    /// Ends an instance another master launched and left when it was taken over:
    /// by its launch token where the driver finds instances that way (a local
    /// process group carries it), by its cloud id else.
    pub(in crate::master) fn adopt_to_end(&mut self, row: &InstanceRow) {
        let Some(p) = self.pools.get(&row.pool) else {
            return;
        };
        let cloud_id = if p.driver.ends_by_token() {
            None
        } else {
            row.cloud_id.clone()
        };
        let why = "terminated: its master was taken over";
        self.stop_recorded_because(row, cloud_id.as_deref(), why);
    }

    fn stop_recorded_because(&mut self, row: &InstanceRow, cloud_id: Option<&str>, why: &str) {
        let Some(p) = self.pools.get_mut(&row.pool) else {
            return;
        };
        let mut i = Instance::new(row.id, &row.pool, &row.name, self.now);
        i.cloud_id = cloud_id.map(str::to_owned);
        i.phase = Phase::Stopping;
        if let Err(e) = self.store.record_phase(&i, Some(why)) {
            warn!(pool = %row.pool, instance = %row.name, "cannot record the stop: {e}");
        }
        info!(pool = %row.pool, instance = %row.name, "{why}");
        p.instances.insert(row.id, i);
        if cloud_id.is_none() {
            // Its launch may have started without its id recorded: the driver looks
            // for it by the launch's token.
            let driver = p.driver.clone();
            return self.effect(Effect::EndLaunch {
                driver,
                client_token: row.client_token.clone(),
                report: (row.pool.clone(), row.id),
            });
        }
        self.terminate(&row.pool, row.id);
    }

    /// Takes an instance from before the restart back: booting again from the
    /// master's view, so it goes through connecting and attaching with every timeout.
    fn adopt(&mut self, pool: &str, row: &InstanceRow, cloud_id: &str, password: &str) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let mut i = Instance::new(row.id, pool, &row.name, self.now);
        i.cloud_id = Some(cloud_id.to_owned());
        i.phase = Phase::Booting;
        i.born = row.transitions.first().map_or(row.since, |t| t.1);
        // Builds it ran count toward `max_uses` after the restart too.
        i.uses = row.uses;
        i.placement = row.placement.clone();
        i.market = row.market.clone();
        i.price_per_hour = row.accounting.price_per_hour;
        if let Err(e) = self
            .store
            .record_phase(&i, Some("adopted after a master restart"))
        {
            warn!(pool, instance = %row.name, "cannot record the adoption: {e}");
        }
        info!(pool, instance = %row.name, cloud_id, "adopted an instance from before the restart");
        p.instances.insert(row.id, i);
        p.passwords.insert(row.id, password.to_owned());
        let (phase_tx, phase_rx) = watch::channel(Phase::Booting);
        p.phases.insert(row.id, phase_tx);
        self.workers
            .insert(row.name.clone(), WorkerSlot::new(p.config.max_builds));
        let limit = p.config.boot_timeout;
        let start = WatchStart::Adopt(cloud_id.to_owned());
        let watch = self.instance_watch(pool, row.id, start, phase_rx);
        self.effect(Effect::Watch(Box::new(watch)));
        self.deadline(pool, row.id, limit);
        self.arm_retirement(pool, row.id);
    }
}
