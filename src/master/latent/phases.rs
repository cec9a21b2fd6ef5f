//! An instance's moves: each phase change recorded and told to its watcher, failures
//! counted (a pool quarantined after three in a row, the waiting request charged),
//! stops, terminations and the timers that bound each phase.

use super::{LatentMsg, QUARANTINE_AFTER};
use crate::master::effect::{ConnOp, Effect};
use crate::master::Master;
use crate::model::Phase;
use std::time::Duration;
use tracing::{info, warn};

impl Master {
    pub(super) fn phase_of(&self, pool: &str, id: i64) -> Option<Phase> {
        self.pools
            .get(pool)
            .and_then(|p| p.instances.get(&id))
            .map(|i| i.phase)
    }

    /// Moves an instance, records the move, and tells its watcher.
    pub(super) fn transition(&mut self, pool: &str, id: i64, to: Phase, detail: Option<&str>) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let Some(i) = p.instances.get_mut(&id) else {
            return;
        };
        if i.phase == to && to != Phase::Building {
            return;
        }
        let (left, entered) = (i.phase, i.since);
        if let Err(e) = i.advance(to, self.now) {
            return warn!(pool, instance = %i.name, "{e}");
        }
        if left.before_ready() {
            crate::metrics::metrics()
                .latent
                .phase_left(pool, left.name(), self.now - entered);
        }
        if let Err(e) = self.store.record_phase(i, detail) {
            warn!(pool, instance = %i.name, "cannot record the transition: {e}");
        }
        info!(pool, instance = %i.name, phase = %to, "latent instance");
        if let Some(w) = p.phases.get(&id) {
            let _ = w.send(to);
        }
        self.notices.push(crate::events::Event::Instance {
            pool: pool.to_owned(),
            instance: id,
            phase: to.to_string(),
        });
    }

    /// Fails the instance in its current phase, counts the failure, and terminates
    /// whatever the cloud has of it.
    pub(super) fn fail_instance(&mut self, pool: &str, id: i64, why: &str) {
        let phase = self.phase_of(pool, id).map_or("", |p| p.name());
        self.fail_instance_as(pool, id, why, false, phase);
    }

    /// [`Self::fail_instance`]; `permanent` when the cloud refused the launch itself, so
    /// the waiting build fails at once rather than after more attempts. `reason` is
    /// the failure's label in the metrics (the cloud's code, or the phase).
    pub(super) fn fail_instance_as(
        &mut self,
        pool: &str,
        id: i64,
        why: &str,
        permanent: bool,
        reason: &str,
    ) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let Some(i) = p.instances.get_mut(&id) else {
            return;
        };
        if !i.phase.is_live() {
            return;
        }
        let t = self.now;
        crate::metrics::metrics().latent.failed(pool, reason);
        let _ = i.fail(why, t);
        let _ = self.store.record_phase(i, None);
        warn!(pool, instance = %i.name, "latent instance failed: {why}");
        if let Some(w) = p.phases.get(&id) {
            let _ = w.send(Phase::Failed);
        }
        p.failures += 1;
        let mut quarantine = None;
        if p.failures >= QUARANTINE_AFTER {
            let backoff = (10u64 << (p.failures - QUARANTINE_AFTER).min(9)).min(3600);
            p.quarantine_until = t + backoff as f64;
            quarantine = Some(Duration::from_secs(backoff));
        }
        let name = i.name.clone();
        let during = i.failure.as_ref().map_or(Phase::Requested, |(p, _)| *p);
        if let Some(backoff) = quarantine {
            // Nothing else may happen meanwhile to make the queue look at the pool again.
            self.after(
                backoff + Duration::from_millis(100),
                LatentMsg::QuarantineOver,
            );
        }
        self.effect(Effect::RevokeCredentials { name: name.clone() });
        self.close_worker(&name);
        self.terminate(pool, id);
        let reason = format!("latent instance {name} failed while {during}: {why}");
        if let Some(p) = self.pools.get_mut(pool) {
            p.last_failure = Some(reason.clone());
        }
        self.charge_failure(pool, &name, &reason, permanent);
    }

    /// A failed substantiation is charged to the oldest build request waiting for the
    /// pool; a request charged `substantiation_attempts` times (or once, for a
    /// permanent failure) gets a build that ends in `exception` with the failure's
    /// phase and reason, instead of waiting forever on a pool that cannot start.
    pub(super) fn charge_failure(
        &mut self,
        pool: &str,
        instance: &str,
        reason: &str,
        permanent: bool,
    ) {
        let mut waiting = Vec::new();
        let mut pass = self.queue.pass();
        while let Some(r) = pass.next(&self.queue) {
            let served = self
                .builders
                .get(&r.builder)
                .is_some_and(|b| b.workers.iter().any(|w| w == pool));
            if served {
                waiting.push(r);
            }
        }
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        p.charged
            .retain(|request, _| waiting.iter().any(|r| r.id == *request));
        // Failures are spread: the oldest of the least-charged requests bears this one.
        let Some(request) = waiting
            .iter()
            .min_by_key(|r| (p.charged.get(&r.id).copied().unwrap_or(0), r.id))
            .cloned()
        else {
            return;
        };
        let count = p.charged.entry(request.id).or_default();
        *count += 1;
        if !permanent && *count < p.config.substantiation_attempts {
            return;
        }
        p.charged.remove(&request.id);
        warn!(pool, request = request.id, "build request fails: {reason}");
        let ended = self.store.fail_request(
            request.id,
            &request.builder,
            instance,
            crate::model::BuildResult::Exception,
            reason,
        );
        match ended {
            Ok(build) => {
                self.queue.take(&request.builder, request.id);
                self.report_ended_request(&build, &request.properties, reason);
            }
            Err(e) => warn!(request = request.id, "cannot record the failed build: {e}"),
        }
    }

    /// Draining, then stopping: the instance takes no new build from here on.
    pub(super) fn stop_instance(&mut self, pool: &str, id: i64, why: &str) {
        if self
            .phase_of(pool, id)
            .is_some_and(|p| matches!(p, Phase::Ready | Phase::Idle))
        {
            self.transition(pool, id, Phase::Draining, Some(why));
        }
        self.transition(pool, id, Phase::Stopping, Some(why));
        let name = self.pools[pool]
            .instances
            .get(&id)
            .map(|i| i.name.clone())
            .unwrap_or_default();
        self.effect(Effect::RevokeCredentials { name: name.clone() });
        self.close_worker(&name);
        self.terminate(pool, id);
    }

    pub(super) fn close_worker(&mut self, name: &str) {
        if let Some(attached) = self.workers.get_mut(name).and_then(|s| s.attached.take()) {
            let why = "latent instance stopping".into();
            self.conn_op(&attached.conn, ConnOp::Close(why));
        }
    }

    /// Asks the driver to end the instance; reported back when done. One whose
    /// launch has not answered yet waits for the answer (see `LatentMsg::Launched`):
    /// without its cloud id there is nothing to end, and forgetting it would leak it.
    pub(super) fn terminate(&mut self, pool: &str, id: i64) {
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        let cloud_id = p.instances.get(&id).and_then(|i| i.cloud_id.clone());
        if cloud_id.is_none() && p.launching.contains(&id) {
            return;
        }
        self.effect(Effect::Terminate {
            driver: p.driver.clone(),
            cloud_id,
            report: Some((pool.to_owned(), id)),
        });
    }

    /// The driver could not end the instance: it stays as it is (stopping, or failed
    /// but still counted under the cap) and is tried again after a back-off, 5 s
    /// doubling up to 5 minutes; only the driver's word records it stopped.
    pub(super) fn terminate_failed(&mut self, pool: &str, id: i64, why: &str) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let Some(i) = p.instances.get(&id) else {
            return;
        };
        let tries = p.terminate_failures.entry(id).or_default();
        *tries += 1;
        let delay = Duration::from_secs((5u64 << (*tries - 1).min(6)).min(300));
        warn!(pool, instance = %i.name, "cannot terminate (try {tries}): {why}; trying again in {delay:?}");
        p.last_failure = Some(format!("cannot terminate {}: {why}", i.name));
        let pool = pool.to_owned();
        self.after(delay, LatentMsg::RetryTerminate { pool, id });
    }

    /// Drops an ended instance from memory (its record stays).
    pub(super) fn forget(&mut self, pool: &str, id: i64) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        if p.instances.get(&id).is_some_and(|i| i.phase.is_live()) {
            return;
        }
        if let Some(i) = p.instances.remove(&id) {
            // Launched (it had an id): its time in the cloud is over.
            if i.cloud_id.is_some() {
                crate::metrics::metrics()
                    .latent
                    .ended(pool, self.now - i.born);
            }
            p.passwords.remove(&id);
            p.phases.remove(&id);
            if self.workers.get(&i.name).is_none_or(|w| w.busy == 0) {
                p.interrupted.remove(&i.name);
            }
            self.workers.remove(&i.name);
        }
    }

    pub(super) fn deadline(&mut self, pool: &str, id: i64, limit: u64) {
        let Some(i) = self.pools.get(pool).and_then(|p| p.instances.get(&id)) else {
            return;
        };
        let msg = LatentMsg::Deadline {
            pool: pool.to_owned(),
            id,
            phase: i.phase,
            since: i.since,
            limit,
        };
        self.after(Duration::from_secs(limit), msg);
    }

    pub(super) fn after(&mut self, delay: Duration, msg: LatentMsg) {
        self.effect(Effect::latent_timer(delay, msg));
    }
}
