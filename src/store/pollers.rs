//! What each git poller last saw: one revision per branch. It is written in the
//! transaction that stores the changes it found, so a restart neither replays nor
//! skips commits.

use super::changes::insert_change;
use super::sql::{args, write};
use super::{Store, StoreResult};
use crate::changes::{Change, NewChange};
use crate::model::ChangePlan;
use std::collections::BTreeMap;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS poller_heads (
    poller TEXT NOT NULL,
    branch TEXT NOT NULL,
    revision TEXT NOT NULL,
    PRIMARY KEY (poller, branch)
);
CREATE TABLE IF NOT EXISTS pollers (
    poller TEXT PRIMARY KEY,
    polled_at REAL NOT NULL
);
";

/// One change a poll stored, with what it caused.
pub type Added = (Change, ChangePlan, Vec<i64>);

impl Store {
    /// The heads `poller` recorded at its last poll; `None` if it never polled.
    pub fn poller_heads(&self, poller: &str) -> StoreResult<Option<BTreeMap<String, String>>> {
        let db = self.db();
        if !db.exists("SELECT 1 FROM pollers WHERE poller = ?1", args![poller])? {
            return Ok(None);
        }
        let rows = db.query_map(
            "SELECT branch, revision FROM poller_heads WHERE poller = ?1",
            args![poller],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Some(rows.into_iter().collect()))
    }

    /// Stores the changes of one poll, oldest first, each with what `plan` makes of
    /// it, and the heads the poll saw, in one transaction.
    pub fn record_poll(
        &self,
        poller: &str,
        heads: &BTreeMap<String, String>,
        changes: &[NewChange],
        source: &str,
        now: f64,
        mut plan: impl FnMut(&Change) -> ChangePlan,
    ) -> StoreResult<Vec<Added>> {
        let db = self.db();
        let tx = write(&db)?;
        let mut added = Vec::new();
        for change in changes {
            added.push(insert_change(&tx, change, source, now, &mut plan)?);
        }
        tx.execute("DELETE FROM poller_heads WHERE poller = ?1", args![poller])?;
        for (branch, revision) in heads {
            tx.execute(
                "INSERT INTO poller_heads (poller, branch, revision) VALUES (?1, ?2, ?3)",
                args![poller, branch, revision],
            )?;
        }
        tx.execute(
            "INSERT INTO pollers (poller, polled_at) VALUES (?1, ?2)
             ON CONFLICT(poller) DO UPDATE SET polled_at = ?2",
            args![poller, now],
        )?;
        tx.commit()?;
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_changes_commit_together() {
        let dir = std::env::temp_dir().join(format!("pbmaster-pollers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.poller_heads("p").unwrap(), None, "never polled");
        let empty = BTreeMap::new();
        store
            .record_poll("p", &empty, &[], "git", 1.0, |_| ChangePlan::default())
            .unwrap();
        assert_eq!(store.poller_heads("p").unwrap(), Some(empty));
        let heads: BTreeMap<String, String> = [("main".to_string(), "a".repeat(40))].into();
        let change = NewChange {
            branch: Some("main".into()),
            ..NewChange::default()
        };
        let added = store
            .record_poll("p", &heads, &[change.clone(), change], "git", 2.0, |_| {
                ChangePlan::default()
            })
            .unwrap();
        assert_eq!(added.len(), 2);
        drop(store);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.poller_heads("p").unwrap(), Some(heads));
        assert_eq!(store.poller_heads("other").unwrap(), None);
        assert_eq!(store.changes(10).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
