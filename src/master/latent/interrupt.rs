//! Instances the cloud ends on its own while they take builds: spot interruptions,
//! or any termination the master did not ask for. The instance takes nothing more
//! and is stopped; a build it ran ends in `retry` with the interruption as its reason
//! and runs again elsewhere.
//!
//! An interruption does not count against `lost_build_retries`: that bound stops a
//! build that kills its own instance (memory, disk) from using up instance after
//! instance, and an interruption is the cloud reclaiming capacity, which says nothing
//! about the build. Counting it would fail builds of spot pools for the market's
//! doing.

use crate::master::Master;
use crate::model::{BuildResult, Phase};
use crate::runner::BuildOutcome;
use tracing::warn;

/// How the reason of a build ended by an interruption starts (and how a lost build
/// is told apart from an interrupted one).
pub const INTERRUPTED: &str = "interrupted by the cloud:";

impl Master {
    /// The cloud says a live instance is gone.
    pub(super) fn interrupted(&mut self, pool: &str, id: i64, why: &str) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let Some(i) = p.instances.get(&id) else {
            return;
        };
        if !matches!(
            i.phase,
            Phase::Ready | Phase::Building | Phase::Idle | Phase::Draining
        ) {
            return;
        }
        let cloud_id = i.cloud_id.as_deref().unwrap_or("?");
        let reason = format!("{INTERRUPTED} instance {} ({cloud_id}) {why}", i.name);
        warn!(pool, "{reason}");
        p.interrupted.insert(i.name.clone(), reason.clone());
        p.last_failure = Some(reason.clone());
        crate::metrics::metrics().latent.failed(pool, "interrupted");
        self.stop_instance(pool, id, &reason);
    }

    /// A build on `worker` that its instance's interruption ended: `retry`, with the
    /// interruption as its reason. Returns the instance's pool if it was so.
    pub(in crate::master) fn mark_interrupted(
        &mut self,
        worker: &str,
        outcome: &mut BuildOutcome,
    ) -> Option<String> {
        let found = self
            .pools
            .iter()
            .find_map(|(name, p)| Some((name.clone(), p.interrupted.get(worker)?.clone())));
        let mut pool = None;
        if let Some((name, why)) = found {
            if matches!(outcome.result, BuildResult::Retry | BuildResult::Cancelled) {
                outcome.result = BuildResult::Retry;
                outcome.reason = Some(why);
                pool = Some(name);
            }
        }
        // Its last build: the interruption is told.
        if self.workers.get(worker).is_none_or(|s| s.busy <= 1) {
            for p in self.pools.values_mut() {
                p.interrupted.remove(worker);
            }
        }
        pool
    }

    /// The request of a build an interruption of `pool`'s instance ended is queued
    /// again: with `on_interruption = "on-demand"`, the next instance the pool starts
    /// is on demand, for it.
    pub(in crate::master) fn prefer_on_demand(&mut self, pool: &str, request: i64) {
        if let Some(p) = self.pools.get_mut(pool) {
            if p.config.on_demand_after_interruption {
                p.on_demand_for.insert(request);
            }
        }
    }

    /// A request's build started: it needs no instance started for it any more.
    pub(in crate::master) fn request_started(&mut self, request: i64) {
        for p in self.pools.values_mut() {
            p.on_demand_for.remove(&request);
        }
    }
}
