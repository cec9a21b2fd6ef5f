//! Builds whose instance was lost under them (it died, was killed, lost its
//! connection) run again, but not forever: a build that kills its instance (memory,
//! disk) would otherwise start instance after instance.

use crate::master::Master;
use crate::model::BuildResult;
use crate::store::RequestRow;
use tracing::warn;

impl Master {
    /// Whether the request of a build that ended in `retry` on `worker` may be queued
    /// again. A request that lost its latent instance more than the pool's
    /// `lost_build_retries` times ends instead, with a build in `exception` saying so.
    pub(in crate::master) fn may_retry(
        &mut self,
        request: &RequestRow,
        worker: &str,
        why: Option<&str>,
    ) -> bool {
        // A master shutting down interrupts builds; that is no loss of theirs.
        if self.draining {
            return true;
        }
        let Ok(Some(pool)) = self.store.instance_pool(worker) else {
            return true;
        };
        let Some(limit) = self.pools.get(&pool).map(|p| p.config.lost_build_retries) else {
            return true;
        };
        let Ok(builds) = self.store.builds_of_request(request.id) else {
            return true;
        };
        let lost = builds
            .iter()
            .filter(|b| b.result == Some(BuildResult::Retry))
            // An interruption is not the build's doing (see `interrupt`).
            .filter(|b| {
                !b.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(super::INTERRUPTED))
            })
            .filter(|b| matches!(self.store.instance_pool(&b.worker), Ok(Some(_))))
            .count();
        if lost <= limit as usize {
            return true;
        }
        let reason = format!(
            "lost its latent instance {lost} times (lost_build_retries = {limit}); the last time: {}",
            why.unwrap_or("the worker was lost")
        );
        warn!(request = request.id, "build request fails: {reason}");
        match self.store.fail_request(
            request.id,
            &request.builder,
            worker,
            BuildResult::Exception,
            &reason,
        ) {
            Ok(build) => {
                self.report_ended_request(&build, &request.properties, &reason);
                false
            }
            Err(e) => {
                warn!(request = request.id, "cannot record the failed build: {e}");
                true
            }
        }
    }
}
