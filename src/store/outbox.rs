//! The reporters' outbox: what outside services are to be told about builds. The
//! coordinator adds rows in the transaction that records a build's start or end, so
//! a report exists exactly when the build event does; the delivery task takes due
//! rows, sends them and marks each one done, so a restart sends what is left.
//!
//! Rows hold no credential: the reporter's name and what happened. Rows of one
//! reporter and build go out in order (a build's "started" never lands after its
//! "finished").

use super::sql::{args, write};
use super::{Store, StoreResult};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    reporter TEXT NOT NULL,
    build_id INTEGER NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_at) WHERE done = 0;
CREATE INDEX IF NOT EXISTS outbox_order ON outbox(reporter, build_id, id) WHERE done = 0;
";

/// One report to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub reporter: String,
    pub build_id: i64,
    pub event: String,
    pub payload: serde_json::Value,
    pub created_at: f64,
    pub attempts: i64,
}

/// How a row was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Delivered,
    /// Refused for good by the service, or too old: never sent again.
    GivenUp,
}

impl Store {
    /// Queues a report; part of the caller's transaction when inside one.
    pub fn add_report(
        &self,
        reporter: &str,
        build_id: i64,
        event: &str,
        payload: &serde_json::Value,
        now: f64,
    ) -> StoreResult<i64> {
        let db = self.db();
        let tx = write(&db)?;
        let id = tx.insert(
            "INSERT INTO outbox (reporter, build_id, event, payload, created_at, next_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            args![reporter, build_id, event, payload.to_string(), now],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Up to `limit` undelivered rows due by `now` with no earlier undelivered row of
    /// the same reporter and build, oldest first.
    pub fn due_reports(&self, now: f64, limit: usize) -> StoreResult<Vec<OutboxRow>> {
        self.db().query_map(
            "SELECT id, reporter, build_id, event, payload, created_at, attempts FROM outbox o
             WHERE done = 0 AND next_at <= ?1 AND NOT EXISTS (
                 SELECT 1 FROM outbox p WHERE p.done = 0 AND p.reporter = o.reporter
                 AND p.build_id = o.build_id AND p.id < o.id)
             ORDER BY id LIMIT ?2",
            args![now, limit as i64],
            |r| {
                let payload: String = r.get(4)?;
                Ok(OutboxRow {
                    id: r.get(0)?,
                    reporter: r.get(1)?,
                    build_id: r.get(2)?,
                    event: r.get(3)?,
                    payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                    created_at: r.get(5)?,
                    attempts: r.get(6)?,
                })
            },
        )
    }

    /// Whether a row is still to be delivered (not settled since it was read).
    pub fn report_waiting(&self, id: i64) -> StoreResult<bool> {
        self.db()
            .exists("SELECT 1 FROM outbox WHERE id = ?1 AND done = 0", args![id])
    }

    /// When the next undelivered row falls due, if any.
    pub fn next_report_at(&self) -> StoreResult<Option<f64>> {
        self.db().query_row(
            "SELECT MIN(next_at) FROM outbox WHERE done = 0",
            args![],
            |r| r.get(0),
        )
    }

    /// A row is done with: delivered or given up.
    pub fn settle_report(&self, id: i64, how: Settled, error: Option<&str>) -> StoreResult<()> {
        let outcome = match how {
            Settled::Delivered => "delivered",
            Settled::GivenUp => "given up",
        };
        let db = self.db();
        let tx = write(&db)?;
        tx.execute(
            "UPDATE outbox SET done = 1, outcome = ?2, attempts = attempts + 1,
             last_error = COALESCE(?3, last_error) WHERE id = ?1",
            args![id, outcome, error],
        )?;
        tx.commit()
    }

    /// A row is tried again at `next_at`.
    pub fn retry_report(&self, id: i64, next_at: f64, error: &str) -> StoreResult<()> {
        let db = self.db();
        let tx = write(&db)?;
        tx.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3
             WHERE id = ?1",
            args![id, next_at, error],
        )?;
        tx.commit()
    }

    /// (delivered, given up, waiting) rows.
    #[cfg(test)]
    pub fn report_counts(&self) -> StoreResult<(i64, i64, i64)> {
        self.db().query_row(
            "SELECT COUNT(*) FILTER (WHERE outcome = 'delivered'), COUNT(*) FILTER (WHERE outcome = 'given up'),
             COUNT(*) FILTER (WHERE done = 0) FROM outbox",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "pbmaster-outbox-{}-{}",
            std::process::id(),
            super::super::now()
        ));
        (Store::open(&dir).unwrap(), dir)
    }

    #[test]
    fn rows_of_one_build_go_out_in_order_and_retries_wait() {
        let (store, dir) = temp();
        let started = store
            .add_report("gh", 7, "started", &json!({"a": 1}), 100.0)
            .unwrap();
        let finished = store
            .add_report("gh", 7, "finished", &json!({"a": 2}), 101.0)
            .unwrap();
        let other = store
            .add_report("mail", 7, "finished", &json!({}), 101.0)
            .unwrap();
        let ids = |now| -> Vec<i64> {
            store
                .due_reports(now, 10)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(ids(102.0), [started, other], "finished waits for started");
        store.retry_report(started, 200.0, "HTTP 500").unwrap();
        assert_eq!(
            ids(102.0),
            [other],
            "a retried row holds back the later one"
        );
        assert_eq!(store.next_report_at().unwrap(), Some(101.0));
        store
            .settle_report(other, Settled::Delivered, None)
            .unwrap();
        assert_eq!(ids(200.0), [started]);
        store
            .settle_report(started, Settled::Delivered, None)
            .unwrap();
        assert_eq!(ids(200.0), [finished]);
        let row = &store.due_reports(200.0, 1).unwrap()[0];
        assert_eq!(
            (row.event.as_str(), &row.payload),
            ("finished", &json!({"a": 2}))
        );
        store
            .settle_report(finished, Settled::GivenUp, Some("too old"))
            .unwrap();
        assert_eq!(store.report_counts().unwrap(), (2, 1, 0));
        assert_eq!(store.next_report_at().unwrap(), None);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_database_from_before_the_outbox_gets_it_on_open() {
        let (store, dir) = temp();
        // As a release before the outbox (and before versioned migrations) left it.
        store.execute_for_test("DROP TABLE outbox; DROP TABLE schema_migrations");
        drop(store);
        let store = Store::open(&dir).unwrap();
        store
            .add_report("gh", 1, "started", &json!({}), 1.0)
            .unwrap();
        assert_eq!(store.report_counts().unwrap(), (0, 0, 1));
        std::fs::remove_dir_all(dir).ok();
    }
}
