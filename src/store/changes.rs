//! Changes, which requests they caused, and the schedulers' durable state: the
//! changes tree-stable timers hold, and when timed schedulers last fired.
//!
//! A change is committed together with what it causes (held rows, immediate requests)
//! before the sender is answered; a firing commits its requests, releases its held
//! changes and records its time in one transaction.

use super::sql::{args, write, Db, Row};
use super::{Store, StoreResult};
use crate::changes::{Change, NewChange};
use crate::model::{ChangePlan, Fire};
use std::collections::HashMap;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,
    author TEXT NOT NULL,
    files TEXT NOT NULL,
    comments TEXT NOT NULL,
    branch TEXT,
    revision TEXT,
    properties TEXT NOT NULL,
    repository TEXT NOT NULL,
    project TEXT NOT NULL,
    category TEXT,
    when_timestamp REAL NOT NULL,
    revlink TEXT NOT NULL,
    codebase TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS request_changes (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    change_id INTEGER NOT NULL REFERENCES changes(id),
    PRIMARY KEY (request_id, change_id)
);
CREATE INDEX IF NOT EXISTS request_changes_change ON request_changes(change_id);
CREATE TABLE IF NOT EXISTS scheduler_held (
    scheduler TEXT NOT NULL,
    change_id INTEGER NOT NULL REFERENCES changes(id),
    PRIMARY KEY (scheduler, change_id)
);
CREATE TABLE IF NOT EXISTS scheduler_since (
    scheduler TEXT PRIMARY KEY,
    since REAL NOT NULL
);
";

const COLUMNS: &str =
    "id, author, files, comments, branch, revision, properties, repository, project,
     category, when_timestamp, revlink, codebase, source, received_at";

fn change_row(r: &Row) -> StoreResult<Change> {
    change_row_at(r, 0)
}

/// Inserts one request per builder of a firing, linked to its changes; releases the
/// changes it held and records a timed scheduler's time.
/// Makes the requests of a firing; `None` if another master running the same
/// scheduler made them first: a timed scheduler's stored time is no longer the one
/// it fired from, or a tree-stable timer's held changes were released already.
fn insert_fire(
    tx: &Db,
    fire: &Fire,
    now: f64,
    master: Option<&str>,
) -> StoreResult<Option<Vec<i64>>> {
    match (fire.since, fire.fired_from) {
        (Some(since), Some(from)) => {
            let moved = tx.execute(
                "UPDATE scheduler_since SET since = ?3 WHERE scheduler = ?1 AND since = ?2",
                args![fire.scheduler, from, since],
            )?;
            if moved == 0 {
                let stored = tx.exists(
                    "SELECT 1 FROM scheduler_since WHERE scheduler = ?1",
                    args![fire.scheduler],
                )?;
                if stored {
                    return Ok(None);
                }
                set_since(tx, &fire.scheduler, since)?;
            }
        }
        (Some(since), None) => set_since(tx, &fire.scheduler, since)?,
        (None, _) => {}
    }
    let mut released = 0;
    for change in &fire.changes {
        released += tx.execute(
            "DELETE FROM scheduler_held WHERE scheduler = ?1 AND change_id = ?2",
            args![fire.scheduler, change],
        )?;
    }
    if fire.held && !fire.changes.is_empty() && released == 0 {
        return Ok(None);
    }
    let properties = serde_json::Value::Object(fire.properties.clone()).to_string();
    let mut ids = Vec::new();
    for builder in &fire.builders {
        let id = tx.insert(
            "INSERT INTO requests (builder, reason, properties, submitted_at, master) VALUES (?1, ?2, ?3, ?4, ?5)",
            args![builder, fire.reason, properties, now, master],
        )?;
        for change in &fire.changes {
            tx.execute(
                "INSERT INTO request_changes (request_id, change_id) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
                args![id, change],
            )?;
        }
        ids.push(id);
    }
    Ok(Some(ids))
}

/// Inserts a change and what `plan` decides it causes; returns the stored change,
/// the plan and the new request ids.
pub(super) fn insert_change(
    tx: &Db,
    change: &NewChange,
    source: &str,
    now: f64,
    master: Option<&str>,
    plan: impl FnOnce(&Change) -> ChangePlan,
) -> StoreResult<(Change, ChangePlan, Vec<i64>)> {
    let when = change.when.unwrap_or(now);
    let id = tx.insert(
        "INSERT INTO changes (author, files, comments, branch, revision, properties, repository,
             project, category, when_timestamp, revlink, codebase, source, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        args![
            change.author,
            serde_json::to_string(&change.files).unwrap_or_else(|_| "[]".into()),
            change.comments,
            change.branch,
            change.revision,
            serde_json::Value::Object(change.properties.clone()).to_string(),
            change.repository,
            change.project,
            change.category,
            when,
            change.revlink,
            change.codebase,
            source,
            now
        ],
    )?;
    let stored = Change {
        id,
        received_at: now,
        source: source.to_owned(),
        change: NewChange {
            when: Some(when),
            ..change.clone()
        },
    };
    let plan = plan(&stored);
    for scheduler in &plan.hold {
        tx.execute(
            "INSERT INTO scheduler_held (scheduler, change_id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
            args![scheduler, stored.id],
        )?;
    }
    let mut requests = Vec::new();
    for fire in &plan.fires {
        requests.extend(insert_fire(tx, fire, now, master)?.unwrap_or_default());
    }
    Ok((stored, plan, requests))
}

fn set_since(db: &Db, scheduler: &str, since: f64) -> StoreResult<()> {
    db.execute(
        "INSERT INTO scheduler_since (scheduler, since) VALUES (?1, ?2)
         ON CONFLICT(scheduler) DO UPDATE SET since = ?2",
        args![scheduler, since],
    )?;
    Ok(())
}

/// What came of a wake-up's scheduler firings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fired {
    /// The requests made.
    pub ids: Vec<i64>,
    /// Which firings made them (indexes into the firings given).
    pub made: Vec<usize>,
    /// Firings another master made first.
    pub skipped: usize,
}

impl Store {
    /// Stores a change received at `now` and, in the same transaction, what `plan`
    /// decides it causes. Returns the stored change, the plan and the new request ids.
    pub fn add_change(
        &self,
        change: &NewChange,
        source: &str,
        now: f64,
        plan: impl FnOnce(&Change) -> ChangePlan,
    ) -> StoreResult<(Change, ChangePlan, Vec<i64>)> {
        let db = self.db();
        let tx = write(&db)?;
        let added = insert_change(&tx, change, source, now, self.member(), plan)?;
        tx.commit()?;
        Ok(added)
    }

    /// Makes the requests of scheduler firings, all in one transaction.
    pub fn record_fires(&self, fires: &[Fire], now: f64) -> StoreResult<Fired> {
        let db = self.db();
        let tx = write(&db)?;
        let mut fired = Fired::default();
        for (i, fire) in fires.iter().enumerate() {
            match insert_fire(&tx, fire, now, self.member())? {
                Some(ids) => {
                    fired.ids.extend(ids);
                    fired.made.push(i);
                }
                None => fired.skipped += 1,
            }
        }
        tx.commit()?;
        Ok(fired)
    }

    pub fn set_scheduler_since(&self, scheduler: &str, since: f64) -> StoreResult<()> {
        set_since(&self.db(), scheduler, since)
    }

    /// Each timed scheduler's stored time.
    pub fn scheduler_since(&self) -> StoreResult<HashMap<String, f64>> {
        let rows = self.db().query_map(
            "SELECT scheduler, since FROM scheduler_since",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.into_iter().collect())
    }

    /// The changes tree-stable timers hold, with the scheduler holding each.
    pub fn held_changes(&self) -> StoreResult<Vec<(String, Change)>> {
        let sql = format!(
            "SELECT h.scheduler, {} FROM scheduler_held h JOIN changes c ON c.id = h.change_id
             ORDER BY c.id",
            COLUMNS
                .split(',')
                .map(|c| format!("c.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.db().query_map(&sql, args![], |r| {
            let scheduler: String = r.get(0)?;
            // The change's columns follow the scheduler's name.
            let change = change_row_at(r, 1)?;
            Ok((scheduler, change))
        })
    }

    /// The newest changes first.
    pub fn changes(&self, limit: i64) -> StoreResult<Vec<Change>> {
        self.db().query_map(
            &format!("SELECT {COLUMNS} FROM changes ORDER BY id DESC LIMIT ?1"),
            args![limit.clamp(1, 10_000)],
            change_row,
        )
    }

    pub fn change(&self, id: i64) -> StoreResult<Option<Change>> {
        self.db().query_opt(
            &format!("SELECT {COLUMNS} FROM changes WHERE id = ?1"),
            args![id],
            change_row,
        )
    }

    /// Requests a change caused, oldest first.
    pub fn requests_of_change(&self, change_id: i64) -> StoreResult<Vec<i64>> {
        self.db().query_map(
            "SELECT request_id FROM request_changes WHERE change_id = ?1 ORDER BY request_id",
            args![change_id],
            |r| r.get(0),
        )
    }

    /// Changes behind a request, oldest first.
    pub fn changes_of_request(&self, request_id: i64) -> StoreResult<Vec<i64>> {
        self.db().query_map(
            "SELECT change_id FROM request_changes WHERE request_id = ?1 ORDER BY change_id",
            args![request_id],
            |r| r.get(0),
        )
    }

    /// Schedulers holding a change (waiting for a tree-stable timer).
    pub fn change_held_by(&self, change_id: i64) -> StoreResult<Vec<String>> {
        self.db().query_map(
            "SELECT scheduler FROM scheduler_held WHERE change_id = ?1 ORDER BY scheduler",
            args![change_id],
            |r| r.get(0),
        )
    }
}

/// [`change_row`] for columns starting at `offset`.
fn change_row_at(r: &Row, o: usize) -> StoreResult<Change> {
    Ok(Change {
        id: r.get(o)?,
        change: NewChange {
            author: r.get(o + 1)?,
            files: r.json(o + 2)?,
            comments: r.get(o + 3)?,
            branch: r.get(o + 4)?,
            revision: r.get(o + 5)?,
            properties: r.json(o + 6)?,
            repository: r.get(o + 7)?,
            project: r.get(o + 8)?,
            category: r.get(o + 9)?,
            when: r.get(o + 10)?,
            revlink: r.get(o + 11)?,
            codebase: r.get(o + 12)?,
        },
        source: r.get(o + 13)?,
        received_at: r.get(o + 14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::now;

    fn temp() -> (Store, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("pbmaster-changes-{}-{}", std::process::id(), now()));
        (Store::open(&dir).expect("store"), dir)
    }

    fn fire(changes: Vec<i64>, since: Option<f64>) -> Fire {
        Fire {
            scheduler: "s".into(),
            builders: vec!["b1".into(), "b2".into()],
            reason: "why".into(),
            properties: [("branch".to_owned(), serde_json::json!("main"))]
                .into_iter()
                .collect(),
            changes,
            since,
            fired_from: None,
            held: false,
        }
    }

    #[test]
    fn a_firing_is_made_once_whichever_master_makes_it() {
        let (store, dir) = temp();
        store.set_scheduler_since("s", 100.0).unwrap();
        // Two masters run the same timed scheduler, both from the stored time.
        let timed = |at: f64| Fire {
            fired_from: Some(100.0),
            ..fire(vec![], Some(at))
        };
        let first = store.record_fires(&[timed(160.0)], 160.0).unwrap();
        assert_eq!(
            (first.ids.len(), first.made.clone(), first.skipped),
            (2, vec![0], 0)
        );
        let second = store.record_fires(&[timed(160.5)], 160.5).unwrap();
        assert_eq!((second.ids.len(), second.skipped), (0, 1), "made already");
        assert_eq!(store.scheduler_since().unwrap()["s"], 160.0);
        // Held changes are released by the first firing only.
        let hold = |_: &Change| ChangePlan {
            hold: vec!["s".into()],
            fires: vec![],
        };
        let (c, _, _) = store
            .add_change(&NewChange::default(), "http", 170.0, hold)
            .unwrap();
        let held = || Fire {
            held: true,
            ..fire(vec![c.id], None)
        };
        assert_eq!(store.record_fires(&[held()], 180.0).unwrap().ids.len(), 2);
        assert_eq!(store.record_fires(&[held()], 180.1).unwrap().skipped, 1);
        assert_eq!(store.requests(100).unwrap().len(), 4);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn held_changes_survive_reopening_and_firing_releases_them() {
        let (store, dir) = temp();
        let change = NewChange {
            author: "a".into(),
            files: vec!["x/y".into()],
            branch: Some("main".into()),
            properties: [("p".to_owned(), serde_json::json!(1))]
                .into_iter()
                .collect(),
            ..NewChange::default()
        };
        let hold = |_: &Change| ChangePlan {
            hold: vec!["s".into()],
            fires: vec![],
        };
        let (c1, _, none) = store.add_change(&change, "http", 100.0, hold).unwrap();
        assert!(none.is_empty());
        assert_eq!(
            c1.change.when,
            Some(100.0),
            "when defaults to the receiving time"
        );
        let (c2, _, _) = store.add_change(&change, "pb", 101.0, hold).unwrap();
        drop(store);

        let store = Store::open(&dir).unwrap();
        let held = store.held_changes().unwrap();
        assert_eq!(held.len(), 2);
        assert_eq!(held[0], ("s".to_owned(), c1.clone()));
        assert_eq!(held[1].1, c2);

        let ids = store
            .record_fires(&[fire(vec![c1.id, c2.id], Some(102.0))], 102.0)
            .unwrap()
            .ids;
        assert_eq!(ids.len(), 2, "one request per builder");
        assert!(store.held_changes().unwrap().is_empty());
        assert_eq!(store.requests_of_change(c1.id).unwrap(), ids);
        assert_eq!(store.changes_of_request(ids[0]).unwrap(), [c1.id, c2.id]);
        assert_eq!(store.scheduler_since().unwrap()["s"], 102.0);
        let request = store.request(ids[1]).unwrap().unwrap();
        assert_eq!(request.builder, "b2");
        assert_eq!(request.properties["branch"], "main");
        assert_eq!(store.changes(10).unwrap()[0].id, c2.id, "newest first");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn an_immediate_request_commits_with_its_change() {
        let (store, dir) = temp();
        let (c, plan, ids) = store
            .add_change(&NewChange::default(), "http", 5.0, |c| ChangePlan {
                hold: vec![],
                fires: vec![fire(vec![c.id], None)],
            })
            .unwrap();
        assert_eq!(plan.fires.len(), 1);
        assert_eq!(ids.len(), 2);
        assert_eq!(store.requests_of_change(c.id).unwrap(), ids);
        assert!(store.scheduler_since().unwrap().is_empty());
        std::fs::remove_dir_all(dir).ok();
    }
}
