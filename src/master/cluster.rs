//! The coordinator's part in an installation of several masters (see
//! [`crate::cluster`]): the queue follows the shared database, a stop for a build that
//! runs elsewhere is passed on, and the instances of a master taken over are ended.

use super::{Master, Msg};
use crate::store::latent::InstanceRow;
use crate::store::RequestRow;
use tracing::{info, warn};

/// How soon a request another master held is tried again.
const CLAIM_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// This master's name in the installation.
#[derive(Debug, Clone)]
pub struct Membership {
    pub name: String,
}

/// What the cluster tasks tell the coordinator.
#[derive(Debug)]
pub enum ClusterMsg {
    /// Time to look (or a claim to try again): the queue is read again from the
    /// database, which also drops what other masters started or ended.
    Requests,
    /// Another master queued these requests (new ones, or ones to run again).
    Queued(Vec<i64>),
    /// Another master's API asked to stop a build running here.
    Stop { build_id: i64, why: String },
    /// This master took over `from`: its live instances are now this master's, to end.
    TookOver {
        from: String,
        instances: Vec<InstanceRow>,
    },
}

impl From<ClusterMsg> for Msg {
    fn from(m: ClusterMsg) -> Msg {
        Msg::Cluster(m)
    }
}

/// Request ids in one notice at most (PostgreSQL's payloads stop at 8000 bytes).
const IDS_PER_NOTICE: usize = 400;

/// The notifications other masters get for requests master `me` queued.
pub fn queued_notices(me: &str, ids: &[i64]) -> Vec<String> {
    ids.chunks(IDS_PER_NOTICE)
        .map(|chunk| {
            let ids: Vec<String> = chunk.iter().map(i64::to_string).collect();
            format!("queued {me} {}", ids.join(" "))
        })
        .collect()
}

/// Whether a notice is this master's own (it hears what it sends).
pub fn from_self(notice: &str, me: &str) -> bool {
    notice
        .strip_prefix("queued ")
        .and_then(|rest| rest.split(' ').next())
        == Some(me)
}

/// The notification asking the master running `build_id` to stop it.
pub fn stop_notice(build_id: i64, why: &str) -> String {
    format!("stop {build_id} {why}")
}

/// Reads a notification's payload; `None` for one this version does not know.
pub fn parse_notice(payload: &str) -> Option<ClusterMsg> {
    if let Some(rest) = payload.strip_prefix("queued ") {
        let ids = rest
            .split(' ')
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>();
        return ids.ok().map(ClusterMsg::Queued);
    }
    let rest = payload.strip_prefix("stop ")?;
    let (id, why) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(ClusterMsg::Stop {
        build_id: id.parse().ok()?,
        why: why.to_owned(),
    })
}

impl Master {
    pub(super) fn cluster(&mut self, msg: ClusterMsg) {
        match msg {
            ClusterMsg::Requests => {
                self.reload_queue();
                self.dispatch();
            }
            ClusterMsg::Queued(ids) => {
                match self.store.queued_among(&ids) {
                    Ok(rows) => {
                        for row in rows {
                            self.queue.push(std::sync::Arc::new(row));
                        }
                    }
                    Err(e) => warn!("cannot read the requests another master queued: {e}"),
                }
                self.dispatch();
            }
            ClusterMsg::Stop { build_id, why } => {
                self.stop_build(build_id, why);
            }
            ClusterMsg::TookOver { from, instances } => {
                self.end_taken_over(&from, instances);
                self.hold_stored_changes();
                self.dispatch();
            }
        }
    }

    /// The queue as the database has it: requests queued elsewhere join it, requests
    /// another master started leave it.
    fn reload_queue(&mut self) {
        match self.store.queued_requests() {
            Ok(rows) => self.queue = super::queue::Queue::from_rows(rows),
            Err(e) => warn!("cannot read the queue: {e}"),
        }
    }

    /// Tells the other masters that request `id` was queued (sent at the wake-up's
    /// commit).
    pub(super) fn requests_queued(&mut self, id: i64) {
        if self.membership.is_some() {
            self.queued_now.push(id);
        }
    }

    /// Asks the master that runs `build_id` to stop it; whether another master runs it.
    pub(super) fn stop_elsewhere(&mut self, build_id: i64, why: &str) -> bool {
        let Some(me) = &self.membership else {
            return false;
        };
        match self.store.build_master(build_id) {
            Ok(Some(master)) if master != me.name => {
                info!(build = build_id, %master, "asking the master running the build to stop it");
                if let Err(e) = self.store.notify(&stop_notice(build_id, why)) {
                    warn!("cannot pass the stop on: {e}");
                    return false;
                }
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!("cannot find the build's master: {e}");
                false
            }
        }
    }

    /// The other live master `worker` is attached to, if any: a second login is
    /// refused (retryably, as for a second login here) while that master lives.
    pub(super) fn attached_elsewhere(&self, worker: &str) -> Option<String> {
        let me = self.membership.as_ref()?;
        match self.store.worker_home(worker) {
            Ok(Some(home)) if home.alive && home.master != me.name => Some(home.master),
            Ok(_) => None,
            Err(e) => {
                // Unknown: admitting could run the worker's builds twice.
                warn!(worker, "cannot read where the worker is attached: {e}");
                Some("unknown (the database did not answer)".into())
            }
        }
    }

    /// Another master held a request or a builder's numbering for a moment: the
    /// queue is looked at again shortly (once per wake-up).
    pub(super) fn claim_again_soon(&mut self) {
        if !std::mem::replace(&mut self.claim_retry, true) {
            self.effect(super::Effect::Timer {
                after: CLAIM_RETRY,
                msg: Box::new(Msg::Cluster(ClusterMsg::Requests)),
            });
        }
    }

    /// Whether this master's latent pools start instances for `request`: one it
    /// queued (or took over), not another live master's, which does it itself.
    pub(super) fn plans_for(&self, request: &RequestRow) -> bool {
        match (&self.membership, &request.master) {
            (Some(me), Some(origin)) => *origin == me.name,
            _ => true,
        }
    }

    /// Sends what the wake-up owes the other masters, inside its transaction.
    pub(super) fn notify_cluster(&mut self) {
        let Some(me) = &self.membership else {
            return;
        };
        self.claim_retry = false;
        let queued = std::mem::take(&mut self.queued_now);
        for notice in queued_notices(&me.name, &queued) {
            if let Err(e) = self.store.notify(&notice) {
                warn!("cannot tell the other masters of new requests: {e}");
            }
        }
    }

    /// The changes the tree-stable timers of the installation hold, held here too
    /// (those the master taken over held would otherwise wait for a restart); the
    /// first master to fire a batch makes its requests.
    fn hold_stored_changes(&mut self) {
        match self.store.held_changes() {
            Ok(held) => {
                for (scheduler, change) in held {
                    self.schedulers
                        .hold(std::slice::from_ref(&scheduler), &change);
                }
                self.effect(super::Effect::WakeAt(self.schedulers.wake_at()));
            }
            Err(e) => warn!("cannot read the held changes: {e}"),
        }
    }

    /// The live instances of a master taken over: nobody can reach their workers
    /// (they were told the dead master's address), so each is ended by this master's
    /// pool of the same name, as if its launch had been this master's.
    fn end_taken_over(&mut self, from: &str, instances: Vec<InstanceRow>) {
        for row in instances {
            if !self.pools.contains_key(&row.pool) {
                warn!(pool = %row.pool, instance = %row.name, "an instance taken over from master {from} has no pool here: end it by hand");
                continue;
            }
            info!(instance = %row.name, "ending an instance of master {from}");
            self.adopt_to_end(&row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_back() {
        let ids: Vec<i64> = (1..=1000).collect();
        let notices = queued_notices("m1", &ids);
        assert_eq!(notices.len(), 3, "in notices that fit");
        assert!(notices.iter().all(|n| n.len() < 8000));
        let mut back = Vec::new();
        for n in &notices {
            assert!(from_self(n, "m1") && !from_self(n, "m"));
            match parse_notice(n) {
                Some(ClusterMsg::Queued(some)) => back.extend(some),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, ids);
        assert!(parse_notice("queued m1 7 x").is_none());
        match parse_notice(&stop_notice(42, "stopped by alice: why")) {
            Some(ClusterMsg::Stop { build_id, why }) => {
                assert_eq!((build_id, why.as_str()), (42, "stopped by alice: why"))
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_notice("stop x y").is_none());
        assert!(parse_notice("launch 1").is_none());
    }
}
