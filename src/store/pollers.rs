//! What each git poller last saw: one revision per branch. It is written in the
//! transaction that stores the changes it found, so a restart neither replays nor
//! skips commits.

use super::changes::insert_change;
use super::sql::{args, write, Backend, Db};
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

/// The heads `poller` recorded, read with `lock` appended to the poller's row query.
fn heads(db: &Db, poller: &str, lock: &str) -> StoreResult<Option<BTreeMap<String, String>>> {
    if !db.exists(
        &format!("SELECT 1 FROM pollers WHERE poller = ?1{lock}"),
        args![poller],
    )? {
        return Ok(None);
    }
    let rows = db.query_map(
        "SELECT branch, revision FROM poller_heads WHERE poller = ?1",
        args![poller],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Some(rows.into_iter().collect()))
}

/// One change a poll stored, with what it caused.
pub type Added = (Change, ChangePlan, Vec<i64>);

impl Store {
    /// The heads `poller` recorded at its last poll; `None` if it never polled.
    pub fn poller_heads(&self, poller: &str) -> StoreResult<Option<BTreeMap<String, String>>> {
        heads(&self.db(), poller, "")
    }

    /// Stores the changes of one poll, oldest first, each with what `plan` makes of
    /// it, and the heads the poll saw, in one transaction; `None` (nothing stored)
    /// if the stored heads are not `seen`, those the poll started from: another
    /// master polling the same repository stored its poll first.
    #[allow(clippy::too_many_arguments)]
    pub fn record_poll(
        &self,
        poller: &str,
        seen: Option<&BTreeMap<String, String>>,
        heads: &BTreeMap<String, String>,
        changes: &[NewChange],
        source: &str,
        now: f64,
        mut plan: impl FnMut(&Change) -> ChangePlan,
    ) -> StoreResult<Option<Vec<Added>>> {
        let db = self.db();
        let tx = write(&db)?;
        // Masters polling the same repository store one at a time.
        let lock = match tx.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        if self::heads(&tx, poller, lock)?.as_ref() != seen {
            return Ok(None);
        }
        let mut added = Vec::new();
        for change in changes {
            added.push(insert_change(
                &tx,
                change,
                source,
                now,
                self.member(),
                &mut plan,
            )?);
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
        Ok(Some(added))
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
            .record_poll("p", None, &empty, &[], "git", 1.0, |_| {
                ChangePlan::default()
            })
            .unwrap()
            .expect("stored");
        assert_eq!(store.poller_heads("p").unwrap(), Some(empty.clone()));
        let heads: BTreeMap<String, String> = [("main".to_string(), "a".repeat(40))].into();
        let change = NewChange {
            branch: Some("main".into()),
            ..NewChange::default()
        };
        let poll = |store: &Store, seen| {
            store.record_poll(
                "p",
                seen,
                &heads,
                &[change.clone(), change.clone()],
                "git",
                2.0,
                |_| ChangePlan::default(),
            )
        };
        let added = poll(&store, Some(&empty)).unwrap().expect("stored");
        assert_eq!(added.len(), 2);
        // A second master that polled from the same heads stores nothing.
        assert!(poll(&store, Some(&empty)).unwrap().is_none());
        assert!(poll(&store, None).unwrap().is_none());
        drop(store);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.poller_heads("p").unwrap(), Some(heads));
        assert_eq!(store.poller_heads("other").unwrap(), None);
        assert_eq!(store.changes(10).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
