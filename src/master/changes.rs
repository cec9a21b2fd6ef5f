//! The coordinator's side of changes and schedulers: a change is stored with what it
//! causes before its sender is answered; the scheduler timer's wake-ups become
//! requests; durable scheduler state is reloaded at start.

use super::effect::{ConnOp, Effect};
use super::{Master, Refusal};
use crate::changes::{pb::from_pb, NewChange, Source};
use crate::conn::{pb_error, ConnHandle};
use pbwire::jelly::Value;
use std::collections::BTreeMap;
use tracing::{info, warn};

impl Master {
    /// Reloads what the schedulers were doing, starts their timer and fires anything
    /// overdue (a periodic scheduler's first run, a tree-stable timer that expired
    /// while the master was down).
    pub(super) fn start_schedulers(&mut self) {
        let now = self.now;
        let since = self.store.scheduler_since().unwrap_or_else(|e| {
            warn!("cannot read scheduler times: {e}");
            Default::default()
        });
        let held = self.store.held_changes().unwrap_or_else(|e| {
            warn!("cannot read held changes: {e}");
            Vec::new()
        });
        if !held.is_empty() {
            info!("{} held change(s) reloaded", held.len());
        }
        for (name, t) in self.schedulers.restore(&since, held, now) {
            if let Err(e) = self.store.set_scheduler_since(&name, t) {
                warn!(scheduler = %name, "cannot record the scheduler's start: {e}");
            }
        }
        for s in self.schedulers.describe() {
            info!("scheduler {s}");
        }
        self.scheduler_wake();
    }

    /// Makes the requests of every scheduler that is due, then publishes the next
    /// wake-up.
    pub(super) fn scheduler_wake(&mut self) {
        let now = self.now;
        let fires = self.schedulers.due(now);
        if !fires.is_empty() {
            match self.store.record_fires(&fires, now) {
                Ok(fired) => {
                    for f in fired.made.iter().filter_map(|&i| fires.get(i)) {
                        info!(scheduler = %f.scheduler, changes = ?f.changes, "{}", f.reason);
                    }
                    if !fired.ids.is_empty() {
                        info!(requests = ?fired.ids, "scheduled");
                    }
                    if fired.skipped > 0 {
                        info!("{} firing(s) made by another master first", fired.skipped);
                        match self.store.scheduler_since() {
                            Ok(since) => self.schedulers.resync(&since, now),
                            Err(e) => warn!("cannot read scheduler times: {e}"),
                        }
                    }
                    self.enqueue_stored(&fired.ids);
                }
                // The held rows are still there: a restart schedules them again.
                Err(e) => warn!("cannot record scheduled requests: {e}"),
            }
        }
        self.effect(Effect::WakeAt(self.schedulers.wake_at()));
        if !fires.is_empty() {
            self.dispatch();
        }
    }

    /// `addChange(change)` from a change source: parse, store, schedule, answer.
    pub(super) fn pb_change(&mut self, conn: ConnHandle, request_id: i64, change: &Value) {
        let result = from_pb(change).map_err(Refusal::Invalid);
        let answer = match result.and_then(|c| self.accept_change(c, Source::Pb)) {
            Ok(_) => Ok(Value::None),
            Err(Refusal::Invalid(e)) => {
                info!(peer = %conn.peer, "change refused: {e}");
                Err(pb_error(&e))
            }
            // The sender learns that it failed; the log says why.
            Err(Refusal::Store(e)) => {
                warn!(peer = %conn.peer, "cannot store a change: {e}");
                Err(pb_error("the master cannot store the change"))
            }
        };
        self.conn_op(&conn, ConnOp::Answer { request_id, answer });
    }

    /// Stores a change with what the schedulers make of it, in one transaction, and
    /// returns its id. Requests made at once are dispatched.
    pub(super) fn accept_change(
        &mut self,
        change: NewChange,
        source: Source,
    ) -> Result<i64, Refusal> {
        let schedulers = &self.schedulers;
        let (stored, plan, requests) = self
            .store
            .add_change(&change, source.name(), self.now, |c| {
                schedulers.plan_change(c)
            })
            .map_err(Refusal::Store)?;
        self.acknowledges = true;
        info!(change = stored.id, source = source.name(), branch = ?stored.change.branch,
              revision = ?stored.change.revision, held_by = ?plan.hold, requests = ?requests, "change received");
        self.schedulers.hold(&plan.hold, &stored);
        self.effect(Effect::WakeAt(self.schedulers.wake_at()));
        if !requests.is_empty() {
            self.enqueue_stored(&requests);
            self.dispatch();
        }
        Ok(stored.id)
    }

    /// Stores what a git poller found from the heads `seen`, its changes with what
    /// the schedulers make of them and the heads it saw, in one transaction; returns
    /// how many changes, or `None` if the stored heads are no longer `seen`.
    pub(super) fn accept_poll(
        &mut self,
        poller: &str,
        seen: Option<&BTreeMap<String, String>>,
        heads: &BTreeMap<String, String>,
        changes: &[NewChange],
    ) -> Result<Option<usize>, Refusal> {
        for c in changes {
            c.check().map_err(Refusal::Invalid)?;
        }
        let source = Source::GitPoller.name();
        let schedulers = &self.schedulers;
        let Some(added) = self
            .store
            .record_poll(poller, seen, heads, changes, source, self.now, |c| {
                schedulers.plan_change(c)
            })
            .map_err(Refusal::Store)?
        else {
            info!(poller, "another master stored this poll first");
            return Ok(None);
        };
        let mut all = Vec::new();
        for (stored, plan, requests) in &added {
            info!(change = stored.id, source, poller, branch = ?stored.change.branch,
                  revision = ?stored.change.revision, held_by = ?plan.hold, requests = ?requests, "change received");
            self.schedulers.hold(&plan.hold, stored);
            all.extend_from_slice(requests);
        }
        // The heads are durable before the poller moves on.
        self.acknowledges = true;
        if !added.is_empty() {
            self.effect(Effect::WakeAt(self.schedulers.wake_at()));
        }
        if !all.is_empty() {
            self.enqueue_stored(&all);
            self.dispatch();
        }
        Ok(Some(added.len()))
    }
}
