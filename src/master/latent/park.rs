//! `idle_action = "stop"`: an idle instance is stopped and kept (its disk warm)
//! rather than terminated, and started again, with fresh one-time credentials in its
//! user data, before any new instance is launched. Kept ones are `parked`: recorded
//! like any live instance (so restarts and sweeps know them), not under
//! `max_instances` but at most `max_stopped`, the oldest terminated first past it.

use super::Phase;
use crate::latent::credentials::Credentials;
use crate::master::effect::{Effect, WatchStart};
use crate::master::Master;
use tokio::sync::watch;
use tracing::{info, warn};

impl Master {
    fn parked_count(&self, pool: &str) -> usize {
        self.pools.get(pool).map_or(0, |p| {
            p.instances
                .values()
                .filter(|i| matches!(i.phase, Phase::Parked | Phase::Parking))
                .count()
        })
    }

    /// Whether this idle instance is stopped and kept rather than terminated: the
    /// pool keeps stopped ones and has room, its driver can, and it is not due for
    /// replacement.
    pub(super) fn may_park(&self, pool: &str, id: i64) -> bool {
        let Some(p) = self.pools.get(pool) else {
            return false;
        };
        let has_id = p.instances.get(&id).is_some_and(|i| i.cloud_id.is_some());
        has_id
            && p.config.max_stopped > self.parked_count(pool)
            && p.driver.can_stop()
            && !self.draining
            && self.worn_out(pool, id).is_none()
    }

    /// Stops the idle instance to keep it: its worker goes, its credentials with it.
    pub(super) fn park(&mut self, pool: &str, id: i64, why: &str) {
        let Some((name, cloud_id)) = self
            .pools
            .get(pool)
            .and_then(|p| p.instances.get(&id))
            .and_then(|i| Some((i.name.clone(), i.cloud_id.clone()?)))
        else {
            return;
        };
        self.transition(pool, id, Phase::Parking, Some(why));
        self.effect(Effect::RevokeCredentials { name: name.clone() });
        self.close_worker(&name);
        let driver = self.pools[pool].driver.clone();
        self.effect(Effect::Park {
            driver,
            cloud_id,
            report: (pool.to_owned(), id),
        });
    }

    pub(super) fn parked(&mut self, pool: &str, id: i64) {
        if self.phase_of(pool, id) == Some(Phase::Parking) {
            self.transition(pool, id, Phase::Parked, None);
            self.trim_parked(pool);
        }
    }

    pub(super) fn park_failed(&mut self, pool: &str, id: i64, why: &str) {
        if self.phase_of(pool, id) == Some(Phase::Parking) {
            warn!(
                pool,
                "cannot stop an idle instance to keep it ({why}); terminating it"
            );
            self.stop_instance(pool, id, &format!("cannot stop it to keep it: {why}"));
        }
    }

    /// Terminates the oldest parked instances past `max_stopped` (after a restart
    /// with a smaller bound, or `idle_action` no longer `stop`).
    pub(super) fn trim_parked(&mut self, pool: &str) {
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        let mut parked: Vec<(f64, i64)> = p
            .instances
            .values()
            .filter(|i| i.phase == Phase::Parked)
            .map(|i| (i.since, i.id))
            .collect();
        let keep = p.config.max_stopped;
        parked.sort_by(|a, b| a.0.total_cmp(&b.0));
        let excess = parked.len().saturating_sub(keep);
        for (_, id) in parked.into_iter().take(excess) {
            self.stop_instance(
                pool,
                id,
                &format!("more stopped instances than max_stopped = {keep}"),
            );
        }
    }

    /// Starts the most recently parked instance of the pool again, with a new
    /// one-time password in its user data; whether there was one.
    pub(super) fn resume_parked(&mut self, pool: &str) -> bool {
        let Some(p) = self.pools.get(pool) else {
            return false;
        };
        let Some((id, name, cloud_id)) = p
            .instances
            .values()
            .filter(|i| i.phase == Phase::Parked)
            .max_by(|a, b| a.since.total_cmp(&b.since))
            .and_then(|i| Some((i.id, i.name.clone(), i.cloud_id.clone()?)))
        else {
            return false;
        };
        let password = match Credentials::generate() {
            Ok(p) => p,
            Err(e) => {
                warn!(pool, "cannot start a stopped instance again: {e}");
                return false;
            }
        };
        if let Err(e) = self.store.set_instance_password(id, &password) {
            warn!(pool, instance = %name, "cannot record its new password: {e}");
            return false;
        }
        let user_data = self.user_data(pool, &name, &password);
        let Some(p) = self.pools.get_mut(pool) else {
            return false;
        };
        p.passwords.insert(id, password);
        let (phase_tx, phase_rx) = watch::channel(Phase::Parked);
        p.phases.insert(id, phase_tx);
        info!(pool, instance = %name, cloud_id, "starting a stopped instance again");
        self.transition(pool, id, Phase::Launching, Some("started again"));
        let start = WatchStart::Resume {
            cloud_id,
            user_data,
        };
        let watch = self.instance_watch(pool, id, start, phase_rx);
        self.effect(Effect::Watch(Box::new(watch)));
        true
    }

    /// A parked instance from before a restart, found again in the cloud: kept.
    pub(super) fn keep_parked(
        &mut self,
        pool: &str,
        row: &crate::store::latent::InstanceRow,
        cloud_id: &str,
    ) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let mut i = crate::model::Instance::new(row.id, pool, &row.name, row.since);
        i.cloud_id = Some(cloud_id.to_owned());
        i.phase = Phase::Parked;
        i.born = row.transitions.first().map_or(row.since, |t| t.1);
        i.uses = row.uses;
        i.placement = row.placement.clone();
        i.market = row.market.clone();
        i.price_per_hour = row.accounting.price_per_hour;
        info!(pool, instance = %row.name, cloud_id, "kept a stopped instance from before the restart");
        p.instances.insert(row.id, i);
        self.workers.insert(
            row.name.clone(),
            crate::master::WorkerSlot::new(p.config.max_builds),
        );
    }
}
