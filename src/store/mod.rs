//! Durable state in SQLite: build requests, builds, steps, logs and workers (log
//! bytes themselves go to files, see [`LogWriter`]).
//!
//! Every change is committed before the master acts on it, so a restart loses
//! nothing: queued requests stay queued, and builds that were running when the master
//! died are closed as `retry` with their requests queued again ([`Store::recover`]).
//!
//! Only this module knows SQL and SQLite: callers get rows and [`StoreError`], whose
//! variants say what failed (not found, conflict, unavailable, corrupt, I/O).

mod changes;
mod columns;
mod error;
pub mod latent;
mod logs;
mod schema;
mod workers;

use error::Cause;
pub use error::{StoreError, StoreResult};
pub use logs::LogWriter;

use crate::model::{BuildResult, WorkerState};
use columns::json;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Log channels, kept apart as the worker sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Stdout,
    Stderr,
    Header,
}

/// A shared handle on the database. Its methods block: async code reads through
/// [`Store::read`], which runs them on a blocking thread. The coordinator still calls
/// them directly (SQLite in WAL mode commits in well under a millisecond).
#[derive(Debug, Clone)]
pub struct Store {
    /// The connection for writes (and the coordinator's reads).
    db: Arc<Mutex<Connection>>,
    /// A second, read-only connection for [`Store::read`]: in WAL mode it reads while
    /// the first writes, so a slow query from the API holds up no writer.
    reader: Arc<Mutex<Connection>>,
    /// Where log bytes are kept (see [`LogWriter`]).
    logs_dir: Arc<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    pub id: i64,
    pub builder: String,
    pub reason: String,
    pub properties: serde_json::Value,
    pub submitted_at: f64,
    /// `None` while queued or building.
    pub result: Option<BuildResult>,
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildRow {
    pub id: i64,
    pub request_id: i64,
    pub builder: String,
    pub number: i64,
    pub worker: String,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub result: Option<BuildResult>,
    pub reason: Option<String>,
    /// `{name: [value, source]}`.
    pub properties: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub build_id: i64,
    pub number: i64,
    pub name: String,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub result: Option<BuildResult>,
    pub rc: Option<i64>,
    pub reason: Option<String>,
}

/// A log's bytes from one point on, with the sequence to ask from next time.
#[derive(Debug, Clone)]
pub struct LogChunk {
    pub seq: i64,
    pub channel: Channel,
    pub data: Vec<u8>,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Store {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> StoreResult<Store> {
        std::fs::create_dir_all(dir)?;
        let db = Connection::open(dir.join("pbmaster.sqlite"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        // Each build runs a handful of statements; parsing them each time was about a
        // tenth of the master's CPU with many short builds.
        db.set_prepared_statement_cache_capacity(64);
        db.execute_batch(schema::SCHEMA)?;
        db.execute_batch(changes::SCHEMA)?;
        db.execute_batch(latent::SCHEMA)?;
        for (table, column, definition) in schema::ADDED_COLUMNS {
            let has: bool = db
                .prepare(&format!(
                    "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
                ))?
                .exists([column])?;
            if !has {
                db.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        let reader = Connection::open(dir.join("pbmaster.sqlite"))?;
        reader.pragma_update(None, "query_only", "ON")?;
        reader.set_prepared_statement_cache_capacity(64);
        Ok(Store {
            db: Arc::new(Mutex::new(db)),
            reader: Arc::new(Mutex::new(reader)),
            logs_dir: Arc::new(dir.join("logs")),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on a blocking thread, off the async runtime, with a store whose
    /// methods use the read-only connection: for async callers (the API), so a slow
    /// query stalls no connection task. It sees everything committed before it
    /// starts; a write in `f` fails.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let reading = Store {
            db: self.reader.clone(),
            reader: self.reader.clone(),
            logs_dir: self.logs_dir.clone(),
        };
        tokio::task::spawn_blocking(move || f(&reading))
            .await
            .map_err(|e| StoreError::Internal(Cause::new(e)))?
    }

    /// Runs statements as they are: lets tests elsewhere put the database in a state
    /// the master would not (a dropped table, a value it does not know).
    #[cfg(test)]
    pub fn execute_for_test(&self, sql: &str) {
        self.db().execute_batch(sql).expect("test statements");
    }

    /// After a restart: builds left running are closed as `retry` and their requests
    /// queued again; workers are all disconnected. Returns the builds closed.
    pub fn recover(&self) -> StoreResult<usize> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let t = now();
        tx.execute(
            "UPDATE steps SET finished_at = ?1, result = 'retry', reason = 'master restarted'
             WHERE finished_at IS NULL",
            params![t],
        )?;
        let n = tx.execute(
            "UPDATE builds SET finished_at = ?1, result = 'retry', reason = 'master stopped while the build ran'
             WHERE finished_at IS NULL",
            params![t],
        )?;
        tx.execute(
            "UPDATE workers SET state = ?2, disconnected_at = ?1 WHERE state != ?2",
            params![t, WorkerState::Disconnected],
        )?;
        tx.commit()?;
        Ok(n)
    }

    pub fn add_request(
        &self,
        builder: &str,
        reason: &str,
        properties: &serde_json::Value,
    ) -> StoreResult<i64> {
        let db = self.db();
        db.prepare_cached("INSERT INTO requests (builder, reason, properties, submitted_at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![builder, reason, properties.to_string(), now()])?;
        Ok(db.last_insert_rowid())
    }

    /// Requests not complete and not being built, oldest first.
    pub fn queued_requests(&self) -> StoreResult<Vec<RequestRow>> {
        self.requests_where(
            "complete = 0 AND id NOT IN (SELECT request_id FROM builds WHERE finished_at IS NULL)",
        )
    }

    pub fn requests(&self, limit: i64) -> StoreResult<Vec<RequestRow>> {
        self.requests_where(&format!(
            "1 ORDER BY id DESC LIMIT {}",
            limit.clamp(1, 10_000)
        ))
    }

    pub fn request(&self, id: i64) -> StoreResult<Option<RequestRow>> {
        Ok(self.requests_where(&format!("id = {id}"))?.pop())
    }

    fn requests_where(&self, condition: &str) -> StoreResult<Vec<RequestRow>> {
        let db = self.db();
        let mut q = db.prepare(&format!(
            "SELECT id, builder, reason, properties, submitted_at, result, complete FROM requests WHERE {condition}"
        ))?;
        let rows = q.query_map([], |r| {
            Ok(RequestRow {
                id: r.get(0)?,
                builder: r.get(1)?,
                reason: r.get(2)?,
                properties: json(r, 3)?,
                submitted_at: r.get(4)?,
                result: r.get(5)?,
                complete: r.get::<_, i64>(6)? != 0,
            })
        })?;
        let mut out: Vec<RequestRow> = rows.collect::<Result<_, _>>()?;
        if !condition.contains("ORDER BY") {
            out.sort_by_key(|r| r.id);
        }
        Ok(out)
    }

    /// Starts a build for a request; its number is the next for the builder.
    pub fn start_build(
        &self,
        request_id: i64,
        builder: &str,
        worker: &str,
    ) -> StoreResult<BuildRow> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let number: i64 = tx
            .prepare_cached("SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE builder = ?1")?
            .query_row(params![builder], |r| r.get(0))?;
        let t = now();
        tx.prepare_cached("INSERT INTO builds (request_id, builder, number, worker, started_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![request_id, builder, number, worker, t])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(BuildRow {
            id,
            request_id,
            builder: builder.to_owned(),
            number,
            worker: worker.to_owned(),
            started_at: t,
            finished_at: None,
            result: None,
            reason: None,
            properties: serde_json::json!({}),
        })
    }

    /// Replaces a build's properties (`{name: [value, source]}`).
    pub fn set_build_properties(
        &self,
        build_id: i64,
        properties: &serde_json::Value,
    ) -> StoreResult<()> {
        self.db()
            .prepare_cached("UPDATE builds SET properties = ?2 WHERE id = ?1")?
            .execute(params![build_id, properties.to_string()])?;
        Ok(())
    }

    /// Ends a build. A `retry` leaves its request queued; anything else completes it.
    pub fn finish_build(
        &self,
        build_id: i64,
        result: BuildResult,
        reason: Option<&str>,
    ) -> StoreResult<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let t = now();
        let n = tx
            .prepare_cached(
                "UPDATE builds SET finished_at = ?2, result = ?3, reason = ?4 WHERE id = ?1",
            )?
            .execute(params![build_id, t, result, reason])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("build {build_id}")));
        }
        if result != BuildResult::Retry {
            tx.prepare_cached("UPDATE requests SET complete = 1, result = ?2 WHERE id = (SELECT request_id FROM builds WHERE id = ?1)")?
                .execute(params![build_id, result])?;
        }
        Ok(tx.commit()?)
    }

    pub fn builds(&self, builder: Option<&str>, limit: i64) -> StoreResult<Vec<BuildRow>> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT id, request_id, builder, number, worker, started_at, finished_at, result, reason, properties FROM builds
             WHERE (?1 IS NULL OR builder = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = q.query_map(params![builder, limit.clamp(1, 10_000)], build_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn build(&self, id: i64) -> StoreResult<Option<BuildRow>> {
        let db = self.db();
        Ok(db
            .query_row(
                "SELECT id, request_id, builder, number, worker, started_at, finished_at, result, reason, properties FROM builds WHERE id = ?1",
                params![id],
                build_row,
            )
            .optional()?)
    }

    pub fn builds_of_request(&self, request_id: i64) -> StoreResult<Vec<BuildRow>> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT id, request_id, builder, number, worker, started_at, finished_at, result, reason, properties FROM builds
             WHERE request_id = ?1 ORDER BY id",
        )?;
        let rows = q.query_map(params![request_id], build_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn start_step(&self, build_id: i64, number: i64, name: &str) -> StoreResult<()> {
        self.db()
            .prepare_cached(
                "INSERT INTO steps (build_id, number, name, started_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![build_id, number, name, now()])?;
        Ok(())
    }

    pub fn finish_step(
        &self,
        build_id: i64,
        number: i64,
        result: BuildResult,
        rc: Option<i64>,
        reason: Option<&str>,
    ) -> StoreResult<()> {
        let n = self.db().prepare_cached("UPDATE steps SET finished_at = ?3, result = ?4, rc = ?5, reason = ?6 WHERE build_id = ?1 AND number = ?2")?
            .execute(params![build_id, number, now(), result, rc, reason])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "step {number} of build {build_id}"
            )));
        }
        Ok(())
    }

    pub fn steps(&self, build_id: i64) -> StoreResult<Vec<StepRow>> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT build_id, number, name, started_at, finished_at, result, rc, reason FROM steps
             WHERE build_id = ?1 ORDER BY number",
        )?;
        let rows = q.query_map(params![build_id], |r| {
            Ok(StepRow {
                build_id: r.get(0)?,
                number: r.get(1)?,
                name: r.get(2)?,
                started_at: r.get(3)?,
                finished_at: r.get(4)?,
                result: r.get(5)?,
                rc: r.get(6)?,
                reason: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn build_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildRow> {
    Ok(BuildRow {
        id: r.get(0)?,
        request_id: r.get(1)?,
        builder: r.get(2)?,
        number: r.get(3)?,
        worker: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        result: r.get(7)?,
        reason: r.get(8)?,
        properties: json(r, 9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> (Store, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("pbmaster-store-{}-{}", std::process::id(), now()));
        (Store::open(&dir).unwrap(), dir)
    }

    #[tokio::test]
    async fn reads_see_what_was_committed_and_cannot_write() {
        let (store, dir) = temp();
        let id = store
            .add_request("b1", "force", &serde_json::json!({"p": 1}))
            .unwrap();
        let row = store.read(move |st| st.request(id)).await.unwrap();
        assert_eq!(row.map(|r| r.properties), Some(serde_json::json!({"p": 1})));
        let written = store
            .read(|st| st.add_request("b1", "from a read", &serde_json::json!({})))
            .await;
        assert!(written.is_err(), "the read connection is read-only");
        assert_eq!(store.requests(10).unwrap().len(), 1);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_running_build_is_retried_after_restart() {
        let (store, dir) = temp();
        let r1 = store
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let r2 = store
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let build = store.start_build(r1, "b1", "w1").unwrap();
        store.start_step(build.id, 1, "compile").unwrap();
        LogWriter::new(&store, build.id, 1)
            .append("stdio", Channel::Stdout, b"\xffraw")
            .unwrap();
        assert_eq!(
            store
                .queued_requests()
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            vec![r2]
        );
        drop(store);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.recover().unwrap(), 1);
        let queued: Vec<i64> = store
            .queued_requests()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(queued, vec![r1, r2], "nothing lost, order kept");
        assert_eq!(
            store.build(build.id).unwrap().unwrap().result,
            Some(BuildResult::Retry)
        );
        let log = store.log_chunks(build.id, 1, "stdio", 0).unwrap();
        assert_eq!(log[0].data, b"\xffraw", "bytes kept exactly");
        let again = store.start_build(r1, "b1", "w1").unwrap();
        assert_eq!(again.number, 2);
        store
            .finish_build(again.id, BuildResult::Success, None)
            .unwrap();
        assert!(store.request(r1).unwrap().unwrap().complete);
        std::fs::remove_dir_all(dir).ok();
    }
}
