//! Schedulers: what turns time and changes into build requests.
//!
//! Everything here is a pure state machine: the current time is always an argument, so
//! tests drive it with a simulated clock. The coordinator owns a [`SchedulerSet`], stores
//! what it decides, and [`timer`] wakes it at [`SchedulerSet::wake_at`].
//!
//! Kinds: `force` (API only; nothing here), `periodic` and `nightly` ([`timed`]), and
//! `changes` (a [`ChangeFilter`] picks the changes, [`tree_stable`] merges close ones).

pub mod timed;
pub mod timer;
pub mod tree_stable;

use crate::changes::Change;
use crate::config::{SchedulerConfig, SchedulerKind};
use crate::model::filter::ChangeFilter;
use crate::model::{ChangePlan, Fire};
use serde_json::{Map, Value};
use std::collections::HashMap;
use timed::{Rule, Timed};
use tracing::warn;
use tree_stable::TreeStable;

#[derive(Debug, Clone)]
enum Kind {
    Force,
    Timed(Timed),
    Changes {
        filter: ChangeFilter,
        /// `None`: one request per change, at once.
        stable: Option<TreeStable>,
    },
}

#[derive(Debug, Clone)]
struct Scheduler {
    name: String,
    builders: Vec<String>,
    properties: Map<String, Value>,
    kind: Kind,
}

/// Every configured scheduler.
#[derive(Debug, Clone, Default)]
pub struct SchedulerSet {
    items: Vec<Scheduler>,
    /// Reloaded held changes whose scheduler no longer has a timer: released at the
    /// next wake-up, one request per change.
    orphans: Vec<(String, Change)>,
}

impl SchedulerSet {
    /// The schedulers of a checked config.
    pub fn from_config(configs: &[SchedulerConfig]) -> SchedulerSet {
        let items = configs.iter().map(Scheduler::from_config).collect();
        SchedulerSet {
            items,
            orphans: Vec::new(),
        }
    }

    /// Restores durable state: each timed scheduler's stored `since` (arming those
    /// without one) and the changes tree-stable timers were holding. Returns the
    /// `since` values newly armed, to store.
    pub fn restore(
        &mut self,
        since: &HashMap<String, f64>,
        pending: Vec<(String, Change)>,
        now: f64,
    ) -> Vec<(String, f64)> {
        let mut armed = Vec::new();
        for s in &mut self.items {
            if let Kind::Timed(t) = &mut s.kind {
                let stored = since.get(&s.name).copied();
                let value = t.arm(stored, now);
                if stored.is_none() {
                    armed.push((s.name.clone(), value));
                }
            }
        }
        for (name, change) in pending {
            let stable = self.items.iter_mut().find_map(|s| match &mut s.kind {
                Kind::Changes {
                    stable: Some(st), ..
                } if s.name == name => Some(st),
                _ => None,
            });
            match stable {
                Some(st) => st.hold(change),
                // The scheduler is gone or lost its timer: release the change now.
                None => self.release_orphan(&name, change),
            }
        }
        armed
    }

    /// Timed schedulers take the stored `since` of another master that fired first
    /// (their next firing is then the same as everyone's).
    pub fn resync(&mut self, since: &HashMap<String, f64>, now: f64) {
        for s in &mut self.items {
            if let (Kind::Timed(t), Some(stored)) = (&mut s.kind, since.get(&s.name)) {
                t.arm(Some(*stored), now);
            }
        }
    }

    /// A held change whose scheduler no longer holds changes runs as if it had never
    /// been held, if the scheduler still takes changes; otherwise it is dropped.
    fn release_orphan(&mut self, name: &str, change: Change) {
        let takes_changes = self
            .items
            .iter()
            .any(|s| s.name == name && matches!(s.kind, Kind::Changes { .. }));
        if takes_changes {
            self.orphans.push((name.to_owned(), change));
        } else {
            warn!(scheduler = %name, change = change.id, "a held change's scheduler is gone; not scheduled");
        }
    }

    /// Which schedulers take a change, and the requests it makes at once.
    pub fn plan_change(&self, change: &Change) -> ChangePlan {
        let mut plan = ChangePlan::default();
        for s in &self.items {
            let Kind::Changes { filter, stable } = &s.kind else {
                continue;
            };
            if !filter.matches(change.change.branch.as_deref(), &change.change.files) {
                continue;
            }
            match stable {
                Some(_) => plan.hold.push(s.name.clone()),
                None => plan
                    .fires
                    .push(s.change_fire(std::slice::from_ref(change), None)),
            }
        }
        plan
    }

    /// Holds a stored change in the named schedulers' tree-stable timers.
    pub fn hold(&mut self, names: &[String], change: &Change) {
        for s in &mut self.items {
            if let Kind::Changes {
                stable: Some(st), ..
            } = &mut s.kind
            {
                if names.contains(&s.name) {
                    st.hold(change.clone());
                }
            }
        }
    }

    /// The earliest time something becomes due.
    pub fn wake_at(&self) -> Option<f64> {
        if let Some((_, c)) = self.orphans.first() {
            return Some(c.received_at);
        }
        self.items
            .iter()
            .filter_map(|s| match &s.kind {
                Kind::Force => None,
                Kind::Timed(t) => t.next_fire(),
                Kind::Changes { stable, .. } => stable.as_ref()?.wake_at(),
            })
            .min_by(f64::total_cmp)
    }

    /// Everything due at `now`; the state moves on as if the requests were made.
    pub fn due(&mut self, now: f64) -> Vec<Fire> {
        let mut fires = Vec::new();
        for (name, change) in std::mem::take(&mut self.orphans) {
            if let Some(s) = self.items.iter().find(|s| s.name == name) {
                let mut fire = s.change_fire(std::slice::from_ref(&change), None);
                fire.held = true;
                fires.push(fire);
            }
        }
        for s in &mut self.items {
            match &mut s.kind {
                Kind::Force => {}
                Kind::Timed(t) => {
                    let from = t.since();
                    if t.fire_if_due(now) {
                        let reason = format!("scheduler {:?}: {}", s.name, t.rule.describe());
                        let since = t.since();
                        let mut fire = s.fire(reason, Map::new(), Vec::new(), since);
                        fire.fired_from = from;
                        fires.push(fire);
                    }
                }
                Kind::Changes { stable, .. } => {
                    let Some(st) = stable else { continue };
                    let timer = Some(st.timer());
                    for batch in st.take_stable(now) {
                        let mut fire = s.change_fire(&batch, timer);
                        fire.held = true;
                        fires.push(fire);
                    }
                }
            }
        }
        fires
    }

    /// Names of the schedulers, with their kinds, for logging.
    pub fn describe(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|s| {
                let kind = match &s.kind {
                    Kind::Force => "force".to_owned(),
                    Kind::Timed(t) => t.rule.describe(),
                    Kind::Changes { stable, .. } => match stable {
                        Some(st) => format!("changes, {} held", st.held()),
                        None => "changes".to_owned(),
                    },
                };
                format!("{} ({kind})", s.name)
            })
            .collect()
    }
}

impl Scheduler {
    fn from_config(c: &SchedulerConfig) -> Scheduler {
        let kind = match &c.kind {
            SchedulerKind::Force => Kind::Force,
            SchedulerKind::Periodic { interval } => {
                Kind::Timed(Timed::new(Rule::Every(*interval as f64)))
            }
            SchedulerKind::Nightly { cron } => Kind::Timed(Timed::new(Rule::Cron(cron.clone()))),
            SchedulerKind::Changes {
                filter,
                tree_stable_timer,
            } => Kind::Changes {
                filter: filter.clone(),
                stable: (*tree_stable_timer > 0)
                    .then(|| TreeStable::new(*tree_stable_timer as f64)),
            },
        };
        Scheduler {
            name: c.name.clone(),
            builders: c.builders.clone(),
            properties: c.properties.clone(),
            kind,
        }
    }

    /// A request's properties: `base` (from changes), then the scheduler's own, then
    /// `scheduler` = its name.
    fn fire(
        &self,
        reason: String,
        mut properties: Map<String, Value>,
        changes: Vec<i64>,
        since: Option<f64>,
    ) -> Fire {
        properties.extend(self.properties.clone());
        properties.insert("scheduler".into(), Value::String(self.name.clone()));
        Fire {
            scheduler: self.name.clone(),
            builders: self.builders.clone(),
            reason,
            properties,
            changes,
            since,
            fired_from: None,
            held: false,
        }
    }

    /// The request for a batch of changes (oldest first): the changes' own properties,
    /// then branch, revision, repository and project of the newest.
    fn change_fire(&self, batch: &[Change], timer: Option<f64>) -> Fire {
        let mut properties = Map::new();
        for c in batch {
            properties.extend(c.change.properties.clone());
        }
        let Some(newest) = batch.last() else {
            return self.fire(String::new(), properties, Vec::new(), None);
        };
        let n = &newest.change;
        if let Some(b) = &n.branch {
            properties.insert("branch".into(), Value::String(b.clone()));
        }
        if let Some(r) = &n.revision {
            properties.insert("revision".into(), Value::String(r.clone()));
        }
        properties.insert("repository".into(), Value::String(n.repository.clone()));
        properties.insert("project".into(), Value::String(n.project.clone()));
        let on = match &n.branch {
            Some(b) => format!(" on branch {b:?}"),
            None => String::new(),
        };
        let reason = match (batch.len(), timer) {
            (1, None) => format!("scheduler {:?}: change {}{on}", self.name, newest.id),
            (k, Some(t)) => format!(
                "scheduler {:?}: {k} change(s){on}, stable for {t} s",
                self.name
            ),
            (k, None) => format!("scheduler {:?}: {k} change(s){on}", self.name),
        };
        let ids = batch.iter().map(|c| c.id).collect();
        self.fire(reason, properties, ids, None)
    }
}

#[cfg(test)]
mod tests;
