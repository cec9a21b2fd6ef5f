//! Requests and builds in the coordinator: queuing forced and stored requests,
//! dispatching them to free workers oldest first, a build's end (retries queued
//! again), stopping builds, draining, and workers that leave.

use super::effect::{BuildStart, ConnOp, Effect};
use super::{Master, Msg, Refusal, Running};
use crate::config::{BuilderConfig, ReportEvent};
use crate::events::Event;
use crate::model::BuildResult;
use crate::reporters::{reports_for, BuildFacts};
use crate::runner::{initial_properties, BuildOutcome};
use crate::store::{Claim, RequestRow};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

impl Master {
    /// Queues a forced request once the store has it; its id.
    pub(super) fn force(
        &mut self,
        builder: String,
        reason: String,
        properties: serde_json::Value,
    ) -> Result<i64, Refusal> {
        if !self.builders.contains_key(&builder) {
            return Err(Refusal::Invalid(format!("no builder {builder:?}")));
        }
        if self.draining {
            return Err(Refusal::Invalid("the master is shutting down".into()));
        }
        let id = self
            .store
            .add_request(&builder, &reason, &properties)
            .map_err(Refusal::Store)?;
        self.acknowledges = true;
        self.notify(Event::RequestQueued {
            request: id,
            builder: builder.clone(),
        });
        self.requests_queued(id);
        self.queue.push(Arc::new(RequestRow {
            id,
            builder,
            reason,
            properties,
            submitted_at: self.now,
            result: None,
            complete: false,
            master: self.membership.as_ref().map(|m| m.name.clone()),
        }));
        Ok(id)
    }

    /// Asks a running build to stop; whether it runs.
    pub(super) fn stop_build(&mut self, build_id: i64, why: String) -> bool {
        let Some(running) = self.running.get(&build_id) else {
            return false;
        };
        let signal = running.stop.clone();
        self.effect(Effect::StopBuild { signal, why });
        true
    }

    /// No new builds from now on; those running get `grace`, then are stopped.
    pub(super) fn drain(&mut self, grace: Duration) {
        info!(
            "draining: no new builds; {} running get {grace:?}",
            self.running.len()
        );
        self.draining = true;
        let why = "master shutting down".into();
        self.effect(Effect::Timer {
            after: grace,
            msg: Box::new(Msg::StopAll { why }),
        });
    }

    /// A build ended: recorded (a retry queued again), its worker freed, and what
    /// waits dispatched.
    pub(super) fn build_done(
        &mut self,
        build_id: i64,
        worker: &str,
        builder: &str,
        mut outcome: BuildOutcome,
    ) {
        let interrupted = self.mark_interrupted(worker, &mut outcome);
        if self.draining && outcome.result == BuildResult::Cancelled {
            // Interrupted by the shutdown, not by a user: run it again later.
            outcome.result = BuildResult::Retry;
        }
        let running = self.running.remove(&build_id);
        // Whether the worker's list still names the builder as this build had it.
        let listed_as_now = running.as_ref().is_none_or(|r| {
            self.builders
                .get(builder)
                .is_some_and(|b| b.builddir == r.builder.builddir)
        });
        let finished = self.store.finish_build(
            build_id,
            &outcome.writes,
            outcome.result,
            outcome.reason.as_deref(),
        );
        if let (Ok(()), Some(r)) = (&finished, &running) {
            let facts = BuildFacts {
                event: ReportEvent::Finished,
                build_id,
                builder,
                number: r.number,
                worker,
                result: Some(outcome.result),
                reason: outcome.reason.as_deref(),
                properties: &r.request.properties,
            };
            self.queue_reports(&facts);
        }
        match finished {
            Ok(()) if outcome.result == BuildResult::Retry => {
                if let Some(r) = running {
                    if !self.builders.contains_key(builder) {
                        let reason =
                            format!("builder {builder:?} was removed from the configuration");
                        self.cancel_request(&r.request, &reason);
                    } else if self.may_retry(&r.request, worker, outcome.reason.as_deref()) {
                        if let Some(pool) = &interrupted {
                            self.prefer_on_demand(pool, r.request.id);
                        }
                        self.requests_queued(r.request.id);
                        self.queue.push(r.request);
                    }
                }
            }
            Ok(()) => {}
            // The store still has the build running: after a restart it is closed as
            // retry and its request runs again.
            Err(e) => warn!(build = build_id, "cannot record the build's end: {e}"),
        }
        info!(build = build_id, worker = %worker, result = %outcome.result, "build finished");
        crate::metrics::metrics().build_finished(build_id, builder, &outcome.result.to_string());
        self.notify(Event::BuildFinished {
            build: build_id,
            builder: builder.to_owned(),
            result: outcome.result.to_string(),
        });
        let mut conn_id = None;
        if let Some(slot) = self.workers.get_mut(worker) {
            slot.busy = slot.busy.saturating_sub(1);
            slot.busy_builders.remove(builder);
            conn_id = slot.attached.as_ref().map(|a| a.conn.id);
        }
        self.instance_build_done(worker);
        if let Some(id) = conn_id {
            self.maybe_shut_down(id);
        }
        self.after_reconfigured_build(worker, listed_as_now);
        self.dispatch();
    }

    /// The worker asked to shut down: no new builds, and once idle it is told to.
    pub(super) fn shutdown_requested(&mut self, conn_id: u64) {
        let slot = self
            .conns
            .get(&conn_id)
            .and_then(|n| self.workers.get_mut(n));
        if let Some(slot) = slot {
            slot.graceful = true;
            self.maybe_shut_down(conn_id);
        }
    }

    pub(super) fn closed(&mut self, conn_id: u64, reason: &str) {
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
            self.notify(Event::WorkerDetached {
                worker: name.clone(),
            });
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
            let op = ConnOp::Call {
                mind,
                method: "shutdown",
            };
            self.conn_op(&conn, op);
        }
    }

    /// Queues requests the store has just written (made by changes or schedulers).
    pub(super) fn enqueue_stored(&mut self, ids: &[i64]) {
        for &id in ids {
            match self.store.request(id) {
                Ok(Some(r)) => {
                    self.requests_queued(r.id);
                    self.queue.push(Arc::new(r));
                }
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

    /// The disk is almost full (`Some`): running builds are stopped, saying why,
    /// and none starts until it has room again (`None`).
    pub(super) fn disk_low(&mut self, why: Option<String>) {
        match &why {
            Some(why) => {
                warn!("{why}: stopping builds, starting none");
                let ids: Vec<i64> = self.running.keys().copied().collect();
                for id in ids {
                    self.stop_build(id, why.clone());
                }
            }
            None => info!("the disk has room again: builds start"),
        }
        self.disk_low = why;
        self.dispatch();
    }

    /// Starts every queued request that has a free worker, oldest first.
    pub(super) fn dispatch(&mut self) {
        if self.draining || self.disk_low.is_some() {
            return;
        }
        let mut demand: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        let mut pass = self.queue.pass();
        while let Some(request) = pass.next(&self.queue) {
            let Some(builder) = self.builders.get(&request.builder).cloned() else {
                pass.skip_builder();
                continue;
            };
            let Some((worker, wfb)) = self.free_worker(&builder) else {
                // Nobody free, for this request nor (starting builds only takes
                // workers) for the builder's later ones: a latent pool serving the
                // builder may start an instance for each of them (the pools of the
                // master that queued them, in an installation of several).
                if !self.plans_for(&request) {
                    continue;
                }
                let mut waiting = None;
                for pool in builder
                    .workers
                    .iter()
                    .filter(|w| self.pools.contains_key(*w))
                {
                    let n = *waiting.get_or_insert_with(|| {
                        self.queue.waiting_from(&request.builder, request.id)
                    });
                    *demand
                        .entry(pool.clone())
                        .or_default()
                        .entry(request.builder.clone())
                        .or_default() += n;
                }
                pass.skip_builder();
                continue;
            };
            if !self.start_build(&request, builder, worker, wfb) {
                return;
            }
        }
        self.plan_pools(&demand);
    }

    /// The least busy attached worker that may take a build of `builder` now, with
    /// its object for the builder.
    fn free_worker(&self, builder: &BuilderConfig) -> Option<(String, i64)> {
        self.candidate_names(builder)
            .into_iter()
            .filter_map(|name| {
                let slot = self.workers.get(&name)?;
                let attached = slot.attached.as_ref()?;
                let wfb = *attached.builders.get(&builder.name)?;
                let free =
                    slot.busy < slot.max_builds && !slot.busy_builders.contains(&builder.name);
                let open = self.instance_takes_builds(&name);
                let taking = !slot.graceful && !slot.removed;
                (free && open && taking && !attached.conn.is_closed())
                    .then_some((slot.busy, name, wfb))
            })
            .min()
            .map(|(_, name, wfb)| (name, wfb))
    }

    /// Records the build and asks for it to run; false if the store refused (nothing
    /// more is dispatched in this wake-up).
    fn start_build(
        &mut self,
        request: &Arc<RequestRow>,
        builder: Arc<BuilderConfig>,
        worker: String,
        wfb: i64,
    ) -> bool {
        let build = match self
            .store
            .start_build(request.id, &request.builder, &worker)
        {
            Ok(Claim::Started(b)) => b,
            Ok(Claim::Gone) => {
                // Another master started or ended it first.
                self.queue.take(&request.builder, request.id);
                return true;
            }
            Ok(Claim::Busy) => {
                self.claim_again_soon();
                return true;
            }
            Err(e) => {
                warn!("cannot record a build: {e}");
                return false;
            }
        };
        // Only once recorded: an instance must not be left building a build that
        // never started.
        self.instance_build_started(&worker);
        self.queue.take(&request.builder, request.id);
        self.request_started(request.id);
        let Some(slot) = self.workers.get_mut(&worker) else {
            return true;
        };
        let Some(attached) = slot.attached.clone() else {
            return true;
        };
        slot.busy += 1;
        slot.busy_builders.insert(request.builder.clone());
        let (stop, stop_rx) = watch::channel(None);
        self.running.insert(
            build.id,
            Running {
                stop,
                request: request.clone(),
                number: build.number,
                worker: worker.clone(),
                builder: builder.clone(),
            },
        );
        let facts = BuildFacts {
            event: ReportEvent::Started,
            build_id: build.id,
            builder: &request.builder,
            number: build.number,
            worker: &worker,
            result: None,
            reason: None,
            properties: &request.properties,
        };
        self.queue_reports(&facts);
        info!(build = build.id, builder = %request.builder, worker = %worker, "build started");
        let waited = crate::store::now() - request.submitted_at;
        crate::metrics::metrics().build_started(build.id, &request.builder, waited);
        self.notify(Event::BuildStarted {
            build: build.id,
            builder: request.builder.clone(),
        });
        let properties = initial_properties(&builder, &request.properties, build.number, &worker);
        self.effect(Effect::RunBuild(Box::new(BuildStart {
            build,
            builder,
            worker_name: worker,
            worker: attached,
            wfb,
            properties,
            stop: stop_rx,
        })));
        true
    }

    /// Queues what the reporters want to be told of a build's start or end, in the
    /// wake-up's transaction (so with the build's record); the runtime then wakes the
    /// delivery task.
    pub(super) fn queue_reports(&mut self, facts: &BuildFacts) {
        let mut queued = false;
        for (reporter, payload) in reports_for(&self.reporters, facts) {
            let event = facts.event.name();
            match self
                .store
                .add_report(&reporter, facts.build_id, event, &payload, self.now)
            {
                Ok(_) => queued = true,
                Err(e) => {
                    warn!(build = facts.build_id, reporter = %reporter, "cannot queue a report: {e}")
                }
            }
        }
        if queued {
            self.effect(Effect::Deliver);
        }
    }

    /// Reports a request that ended without running, with its build's result.
    pub(super) fn report_ended_request(
        &mut self,
        build: &crate::store::BuildRow,
        properties: &serde_json::Value,
        reason: &str,
    ) {
        let facts = BuildFacts {
            event: ReportEvent::Finished,
            build_id: build.id,
            builder: &build.builder,
            number: build.number,
            worker: &build.worker,
            result: Some(build.result.unwrap_or(BuildResult::Exception)),
            reason: Some(reason),
            properties,
        };
        self.queue_reports(&facts);
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
