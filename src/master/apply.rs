//! The coordinator applying a reconfiguration ([`super::reconfig::Diff`]) without
//! dropping a worker or a build:
//!
//! - a removed builder's running builds finish (they hold its old definition); its
//!   queued requests end `cancelled`, saying why; workers keep it in their builder
//!   list until its builds on them have ended (a worker interrupts the command of a
//!   builder it is told to drop);
//! - an added or changed builder reaches attached workers through a new builder list,
//!   sent on the same connection;
//! - a removed worker gets no new build, and is disconnected once idle;
//! - schedulers are made again from the new config and the store's record of them,
//!   as at start;
//! - a latent pool is added, resized, retimed; removing it, or changing its driver,
//!   is refused while it has instances (they were started by its driver, and the
//!   master never leaves one behind).

use super::effect::{ConnOp, Effect};
use super::latent::Pool;
use super::reconfig::Diff;
use super::{Master, WorkerSlot};
use crate::config::Config;
use crate::model::BuildResult;
use crate::scheduler::SchedulerSet;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::{info, warn};

impl Master {
    /// Applies `config` (checked, with what needs a restart kept as running), whose
    /// difference from the running one is `diff`; or refuses it, changing nothing.
    pub(super) fn reconfigure(&mut self, config: &Config, diff: &Diff) -> Result<(), Vec<String>> {
        self.refuse_pool_changes(diff)?;
        self.apply_pools(config, diff);
        self.builders = config
            .builders
            .iter()
            .map(|b| (b.name.clone(), Arc::new(b.clone())))
            .collect();
        for name in &diff.builders.removed {
            self.cancel_queued(name);
        }
        self.apply_workers(config, diff);
        if !diff.schedulers.is_empty() {
            self.schedulers = SchedulerSet::from_config(&config.schedulers);
            self.start_schedulers();
        }
        self.reporters = Arc::new(config.reporters.clone());
        let names: Vec<String> = self.workers.keys().cloned().collect();
        for name in names {
            self.relist(&name);
        }
        info!("reconfigured: {}", diff.summary().join("; "));
        self.dispatch();
        Ok(())
    }

    /// Pools that cannot change now: removed, or with another driver, while they
    /// have instances.
    fn refuse_pool_changes(&self, diff: &Diff) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for (names, how) in [
            (&diff.latent_pools.removed, "removed"),
            (&diff.pool_drivers, "given another driver"),
        ] {
            for name in names {
                if let Some(p) = self.pools.get(name).filter(|p| p.has_instances()) {
                    errors.push(format!(
                        "latent pool {name:?} has {} instance(s): it can be {how} once they \
                         have ended",
                        p.instances.len()
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn apply_pools(&mut self, config: &Config, diff: &Diff) {
        for name in &diff.latent_pools.removed {
            if let Some(p) = self.pools.remove(name) {
                p.stop_sweep();
            }
        }
        let mut fresh = Vec::new();
        for p in &config.latent_pools {
            let replace =
                diff.latent_pools.added.contains(&p.name) || diff.pool_drivers.contains(&p.name);
            if replace {
                if let Some(old) = self.pools.remove(&p.name) {
                    old.stop_sweep();
                }
                let pool = Pool::new(config, p, &self.master_id);
                self.pools.insert(p.name.clone(), pool);
                fresh.push(p.name.clone());
            } else if let Some(pool) = self.pools.get_mut(&p.name) {
                pool.set_config(p.clone());
            }
        }
        self.start_sweeps_of(&fresh);
    }

    /// Queued requests of a removed builder end `cancelled`, each with a build
    /// record saying why (so the API shows it).
    fn cancel_queued(&mut self, builder: &str) {
        let reason = format!("builder {builder:?} was removed from the configuration");
        for request in self.queue.take_builder(builder) {
            self.cancel_request(&request, &reason);
        }
    }

    pub(super) fn cancel_request(&mut self, request: &crate::store::RequestRow, reason: &str) {
        info!(request = request.id, "build request cancelled: {reason}");
        match self.store.fail_request(
            request.id,
            &request.builder,
            "",
            BuildResult::Cancelled,
            reason,
        ) {
            Ok(build) => self.report_ended_request(&build, &request.properties, reason),
            Err(e) => warn!(
                request = request.id,
                "cannot record the cancelled request: {e}"
            ),
        }
    }

    fn apply_workers(&mut self, config: &Config, diff: &Diff) {
        for w in &config.workers {
            let slot = self
                .workers
                .entry(w.name.clone())
                .or_insert_with(|| WorkerSlot::new(w.max_builds));
            slot.max_builds = w.max_builds;
            slot.removed = false;
        }
        for name in &diff.workers.removed {
            let Some(slot) = self.workers.get_mut(name) else {
                continue;
            };
            if slot.busy > 0 {
                info!(worker = %name, "removed from the configuration: disconnected once its builds end");
                slot.removed = true;
            } else {
                self.drop_worker(name);
            }
        }
    }

    /// Forgets a removed worker, closing its connection if it has one.
    pub(super) fn drop_worker(&mut self, name: &str) {
        let Some(slot) = self.workers.remove(name) else {
            return;
        };
        if let Some(attached) = slot.attached {
            info!(worker = %name, "disconnecting: removed from the configuration");
            self.conns.remove(&attached.conn.id);
            let _ = self.store.worker_disconnected(name);
            self.notify(crate::events::Event::WorkerDetached {
                worker: name.to_owned(),
            });
            let why = "removed from the master's configuration".into();
            self.conn_op(&attached.conn, ConnOp::Close(why));
        }
    }

    /// The (builder, directory) list `name` should have: the builders that may run on
    /// it, and those with a build running on it (in the directory that build started
    /// in), by name.
    fn wanted_list(&self, name: &str) -> Vec<(String, String)> {
        let mut list: BTreeMap<String, String> = self.builders_of(name).into_iter().collect();
        for r in self.running.values().filter(|r| r.worker == name) {
            list.insert(r.builder.name.clone(), r.builder.builddir.clone());
        }
        list.into_iter().collect()
    }

    /// Sends an attached worker its builder list again if it changed. Builders no
    /// longer listed stop being dispatched to it at once.
    pub(super) fn relist(&mut self, name: &str) {
        let wanted = self.wanted_list(name);
        let Some(slot) = self.workers.get_mut(name) else {
            return;
        };
        let Some(attached) = slot.attached.as_mut() else {
            return;
        };
        let mut sorted = slot.listed.clone();
        sorted.sort();
        if sorted == wanted {
            return;
        }
        // Until the worker answers, only builders listed before and still wanted
        // (in the same directory) take builds.
        attached
            .builders
            .retain(|b, _| wanted.iter().any(|w| &w.0 == b && sorted.contains(w)));
        slot.generation += 1;
        slot.listed = wanted.clone();
        let effect = Effect::SetBuilders {
            worker: name.to_owned(),
            attached: attached.clone(),
            builders: wanted,
            generation: slot.generation,
        };
        self.effect(effect);
    }

    /// The worker answered a new builder list: its objects are what builds use.
    pub(super) fn builders_listed(
        &mut self,
        name: &str,
        conn_id: u64,
        generation: u64,
        listed: Result<BTreeMap<String, i64>, String>,
    ) {
        let Some(slot) = self.workers.get_mut(name) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        let Some(attached) = slot.attached.as_mut().filter(|a| a.conn.id == conn_id) else {
            return;
        };
        match listed {
            Ok(objects) => {
                info!(worker = %name, builders = objects.len(), "builder list updated");
                attached.builders = objects;
                self.dispatch();
            }
            Err(e) => warn!(worker = %name, "cannot update the worker's builder list: {e}"),
        }
    }

    /// After a build ended on `worker`: a builder removed or moved meanwhile
    /// (`listed_as_now` false) gets its list updated, and a removed worker with
    /// nothing left running is disconnected.
    pub(super) fn after_reconfigured_build(&mut self, worker: &str, listed_as_now: bool) {
        let idle_removed = self
            .workers
            .get(worker)
            .is_some_and(|s| s.removed && s.busy == 0);
        if idle_removed {
            self.drop_worker(worker);
        } else if !listed_as_now {
            self.relist(worker);
        }
    }
}
