//! The tree-stable timer: changes are held until none has arrived for `timer`
//! seconds, then released together. Changes on different branches are held apart, so
//! each release is one branch's changes.

use crate::changes::Change;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
struct Held {
    changes: Vec<Change>,
    /// When the newest change arrived.
    newest: f64,
}

/// One scheduler's held changes.
#[derive(Debug, Clone)]
pub struct TreeStable {
    timer: f64,
    held: BTreeMap<Option<String>, Held>,
}

impl TreeStable {
    pub fn new(timer: f64) -> TreeStable {
        TreeStable {
            timer,
            held: BTreeMap::new(),
        }
    }

    /// Holds a change; its branch's timer restarts from when it arrived.
    pub fn hold(&mut self, change: Change) {
        let held = self.held.entry(change.change.branch.clone()).or_default();
        held.newest = held.newest.max(change.received_at);
        if !held.changes.iter().any(|c| c.id == change.id) {
            held.changes.push(change);
            held.changes.sort_by_key(|c| c.id);
        }
    }

    /// When the earliest branch becomes stable.
    pub fn wake_at(&self) -> Option<f64> {
        self.held
            .values()
            .map(|h| h.newest + self.timer)
            .min_by(f64::total_cmp)
    }

    /// Releases every branch stable at `now`, each as its changes oldest first.
    pub fn take_stable(&mut self, now: f64) -> Vec<Vec<Change>> {
        let timer = self.timer;
        let stable: Vec<Option<String>> = self
            .held
            .iter()
            .filter(|(_, h)| now >= h.newest + timer)
            .map(|(b, _)| b.clone())
            .collect();
        stable
            .into_iter()
            .filter_map(|b| self.held.remove(&b))
            .map(|h| h.changes)
            .collect()
    }

    pub fn timer(&self) -> f64 {
        self.timer
    }

    pub fn held(&self) -> usize {
        self.held.values().map(|h| h.changes.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::NewChange;

    pub fn change(id: i64, branch: &str, at: f64) -> Change {
        Change {
            id,
            received_at: at,
            source: "http".into(),
            change: NewChange {
                branch: Some(branch.into()),
                ..NewChange::default()
            },
        }
    }

    fn ids(batch: &[Change]) -> Vec<i64> {
        batch.iter().map(|c| c.id).collect()
    }

    #[test]
    fn close_changes_merge_and_each_one_restarts_the_timer() {
        let mut t = TreeStable::new(60.0);
        assert_eq!(t.wake_at(), None);
        t.hold(change(1, "main", 100.0));
        assert_eq!(t.wake_at(), Some(160.0));
        t.hold(change(2, "main", 130.0));
        assert_eq!(t.wake_at(), Some(190.0), "restarted by the second change");
        assert!(t.take_stable(160.0).is_empty());
        let out = t.take_stable(190.0);
        assert_eq!(out.len(), 1);
        assert_eq!(ids(&out[0]), [1, 2]);
        assert_eq!(t.wake_at(), None);
        assert_eq!(t.held(), 0);
    }

    #[test]
    fn branches_are_held_apart() {
        let mut t = TreeStable::new(10.0);
        t.hold(change(1, "a", 0.0));
        t.hold(change(2, "b", 5.0));
        t.hold(change(3, "a", 8.0));
        assert_eq!(t.wake_at(), Some(15.0));
        let first = t.take_stable(15.0);
        assert_eq!(first.iter().map(|b| ids(b)).collect::<Vec<_>>(), [vec![2]]);
        let second = t.take_stable(18.0);
        assert_eq!(
            second.iter().map(|b| ids(b)).collect::<Vec<_>>(),
            [vec![1, 3]]
        );
    }

    #[test]
    fn reloaded_changes_rearm_from_the_newest() {
        // After a restart the held changes come back in any order, possibly twice.
        let mut t = TreeStable::new(60.0);
        t.hold(change(7, "main", 1000.0));
        t.hold(change(5, "main", 990.0));
        t.hold(change(7, "main", 1000.0));
        assert_eq!(t.wake_at(), Some(1060.0));
        assert_eq!(ids(&t.take_stable(1060.0)[0]), [5, 7]);
    }
}
