//! Durable state in SQLite: build requests, builds, steps, logs and workers (log
//! bytes themselves go to files, see [`LogWriter`]).
//!
//! Every change is committed before the master acts on it, so a restart loses
//! nothing: queued requests stay queued, and builds that were running when the master
//! died are closed as `retry` with their requests queued again ([`Store::recover`]).
//!
//! Only this module knows SQL and SQLite: callers get rows and [`StoreError`], whose
//! variants say what failed (not found, conflict, unavailable, corrupt, I/O).

mod builds;
mod changes;
mod columns;
mod error;
pub mod latent;
mod logs;
mod schema;
mod workers;

pub use builds::{BuildRow, BuildWrite, RequestRow};
use error::Cause;
pub use error::{StoreError, StoreResult};
pub use logs::LogWriter;

use crate::model::WorkerState;
use rusqlite::{params, Connection};
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
}
