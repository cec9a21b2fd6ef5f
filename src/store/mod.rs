//! Durable state in SQLite: build requests, builds, steps, logs, workers and the
//! reporters' outbox (log
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
mod checkpoint;
mod cluster;
mod columns;
mod error;
mod health;
pub mod latent;
mod logs;
mod outbox;
mod packed;
mod pollers;
#[cfg(test)]
mod postgres_tests;
mod retention;
mod schema;
pub(crate) mod sql;
mod workers;

pub use builds::{BuildRow, BuildWrite, Claim, Keyset, RequestRow, StepRow};
pub use cluster::Join;
use error::Cause;
pub use error::{StoreError, StoreResult};
pub use logs::LogWriter;
pub use outbox::{OutboxRow, Settled};
pub use retention::{Packed, Swept};

use crate::model::WorkerState;
use serde::{Deserialize, Serialize};
pub use sql::PgTarget;
use sql::{args, write, Db};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Log channels, kept apart as the worker sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Stdout,
    Stderr,
    Header,
}

/// A shared handle on the database. Its methods block: async code goes through
/// [`Store::read`] or [`Store::off_thread`], which run them on a blocking thread; the
/// coordinator calls them on its own thread, through its own connection
/// ([`Store::own_connection`]).
#[derive(Debug, Clone)]
pub struct Store {
    /// The connection for writes (and the coordinator's reads).
    db: Arc<Mutex<Db>>,
    /// A second, read-only connection for [`Store::read`]: in WAL mode it reads while
    /// the first writes, so a slow query from the API holds up no writer.
    reader: Arc<Mutex<Db>>,
    /// Where log bytes are kept (see [`LogWriter`]).
    logs_dir: Arc<PathBuf>,
    /// The SQLite database file, for more connections; its folder is the data
    /// folder on either backend.
    path: Arc<PathBuf>,
    /// The PostgreSQL server, when the database is there rather than in `path`.
    postgres: Option<Arc<PgTarget>>,
    /// SQLite: checkpoints the log for every connection (see [`checkpoint`]);
    /// stops with the last handle.
    checkpointer: Option<Arc<checkpoint::Checkpointer>>,
    /// This master's name when several share the database: builds, connections and
    /// instances are recorded as its own, and only its own are recovered.
    member: Option<Arc<str>>,
}

/// A log's bytes from one point on, with the sequence to ask from next time.
#[derive(Debug, Clone)]
pub struct LogChunk {
    pub seq: i64,
    pub channel: Channel,
    pub data: Vec<u8>,
}

/// A connection that writes: WAL, and statements cached (each build runs a handful;
/// parsing them each time was about a tenth of the master's CPU with many short
/// builds).
fn writer(path: &Path) -> StoreResult<Db> {
    let db = rusqlite::Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    // Checkpoints are the checkpointer thread's, not a commit's.
    db.pragma_update(None, "wal_autocheckpoint", 0)?;
    db.pragma_update(None, "journal_size_limit", checkpoint::WAL_SIZE_LIMIT)?;
    db.pragma_update(None, "foreign_keys", "ON")?;
    db.busy_timeout(std::time::Duration::from_secs(10))?;
    db.set_prepared_statement_cache_capacity(128);
    Ok(Db::sqlite(db))
}

/// Checks a `[store] url` as the config is read: a PostgreSQL URL that the driver
/// parses, without a password (URLs end up in logs).
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must start with postgres:// (or postgresql://)".into());
    }
    let config: postgres::Config = url.parse().map_err(|e| format!("cannot be read: {e}"))?;
    if config.get_password().is_some() {
        return Err("holds a password: give it with password_file or password_env instead".into());
    }
    Ok(())
}

/// A PostgreSQL connection whose transactions are read-only.
fn pg_reader(target: &PgTarget) -> StoreResult<Db> {
    let reader = Db::postgres(target)?;
    reader.execute_batch("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")?;
    Ok(reader)
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Store {
    /// Opens (creating if needed) the SQLite database in `dir`.
    pub fn open(dir: &Path) -> StoreResult<Store> {
        Store::open_with(dir, None)
    }

    /// Opens the database: on the PostgreSQL server `postgres` when given (`dir`
    /// still holds the master's lock and files), else the SQLite file in `dir`.
    /// Either is migrated to the current schema first.
    pub fn open_with(dir: &Path, postgres: Option<&PgTarget>) -> StoreResult<Store> {
        // The database holds one-time passwords and every build's output.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        if let Some(target) = postgres {
            let db = Db::postgres(target)?;
            schema::migrate(&db)?;
            return Ok(Store {
                db: Arc::new(Mutex::new(db)),
                reader: Arc::new(Mutex::new(pg_reader(target)?)),
                logs_dir: Arc::new(dir.join("logs")),
                path: Arc::new(dir.join("pbmaster.sqlite")),
                postgres: Some(Arc::new(target.clone())),
                checkpointer: None,
                member: None,
            });
        }
        let db = writer(&dir.join("pbmaster.sqlite"))?;
        schema::migrate(&db)?;
        let reader = rusqlite::Connection::open(dir.join("pbmaster.sqlite"))?;
        reader.pragma_update(None, "query_only", "ON")?;
        reader.set_prepared_statement_cache_capacity(128);
        let reader = Db::sqlite(reader);
        let checkpointer = checkpoint::Checkpointer::start(&dir.join("pbmaster.sqlite"))?;
        Ok(Store {
            db: Arc::new(Mutex::new(db)),
            reader: Arc::new(Mutex::new(reader)),
            logs_dir: Arc::new(dir.join("logs")),
            path: Arc::new(dir.join("pbmaster.sqlite")),
            postgres: None,
            checkpointer: Some(Arc::new(checkpointer)),
            member: None,
        })
    }

    /// Records what this handle (and handles made from it afterwards) does as the
    /// work of master `name` of an installation.
    pub fn set_member(&mut self, name: &str) {
        self.member = Some(name.into());
    }

    /// This master's name in an installation of several.
    fn member(&self) -> Option<&str> {
        self.member.as_deref()
    }

    /// The same database through a connection of its own, for the coordinator alone:
    /// its wake-ups are transactions ([`Store::begin`], [`Store::commit`]) that nobody
    /// else's statements may join, so it cannot share a connection.
    pub fn own_connection(&self) -> StoreResult<Store> {
        Ok(Store {
            db: Arc::new(Mutex::new(match &self.postgres {
                Some(target) => Db::postgres(target)?,
                None => writer(&self.path)?,
            })),
            reader: self.reader.clone(),
            logs_dir: self.logs_dir.clone(),
            path: self.path.clone(),
            postgres: self.postgres.clone(),
            checkpointer: self.checkpointer.clone(),
            member: self.member.clone(),
        })
    }

    /// Opens a transaction that the following calls on this handle join (each as a
    /// savepoint) until [`Store::commit`]: the writes of one coordinator wake-up
    /// commit together. It takes the write lock at once, so nothing another
    /// connection commits meanwhile can invalidate what it reads.
    pub fn begin(&self) -> StoreResult<()> {
        self.db().begin()
    }

    /// Makes what is committed survive a power loss (commits in WAL mode with
    /// `synchronous = NORMAL` reach the log file, not the disk): called before a
    /// change or forced request is acknowledged to whoever sent it.
    /// On PostgreSQL a commit is durable already.
    pub fn sync(&self) -> StoreResult<()> {
        if self.postgres.is_some() {
            return Ok(());
        }
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        match std::fs::File::open(&wal) {
            Ok(f) => f.sync_data()?,
            // No log file: everything is in the database file already.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Commits what was written since [`Store::begin`]; on failure, nothing of it
    /// stays.
    pub fn commit(&self) -> StoreResult<()> {
        let db = self.db();
        if !db.in_transaction() {
            return Ok(());
        }
        db.commit()
    }

    fn db(&self) -> MutexGuard<'_, Db> {
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
            path: self.path.clone(),
            postgres: self.postgres.clone(),
            checkpointer: self.checkpointer.clone(),
            member: self.member.clone(),
        };
        tokio::task::spawn_blocking(move || f(&reading))
            .await
            .map_err(|e| StoreError::Internal(Cause::new(e)))?
    }

    /// Runs `f` on a blocking thread, off the async runtime, with this handle: for
    /// async callers that write (a build recording its steps and logs), so a slow
    /// commit stalls no connection task.
    pub async fn off_thread<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Internal(Cause::new(e)))?
    }

    /// Whether the database is on a PostgreSQL server (log bytes are kept in it).
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Runs statements as they are: lets tests elsewhere put the database in a state
    /// the master would not (a dropped table, a value it does not know).
    #[cfg(test)]
    pub fn execute_for_test(&self, sql: &str) {
        self.db().execute_batch(sql).expect("test statements");
    }

    /// After a restart: builds left running are closed as `retry` and their requests
    /// queued again; workers are all disconnected. In an installation of several
    /// masters, only this master's. Returns the builds closed.
    pub fn recover(&self) -> StoreResult<usize> {
        let db = self.db();
        let tx = write(&db)?;
        let t = now();
        // Alone, everything is this master's (rows from before have no master).
        let mine = if self.member().is_some() {
            "master = ?2"
        } else {
            "CAST(?2 AS TEXT) IS NULL"
        };
        tx.execute(
            &format!(
                "UPDATE steps SET finished_at = ?1, result = 'retry', reason = 'master restarted'
                 WHERE finished_at IS NULL
                 AND build_id IN (SELECT id FROM builds WHERE finished_at IS NULL AND {mine})"
            ),
            args![t, self.member()],
        )?;
        let n = tx.execute(
            &format!(
                "UPDATE builds SET finished_at = ?1, result = 'retry', reason = 'master stopped while the build ran'
                 WHERE finished_at IS NULL AND {mine}"
            ),
            args![t, self.member()],
        )?;
        tx.execute(
            &format!(
                "UPDATE workers SET state = ?3, disconnected_at = ?1 WHERE state != ?3 AND {mine}"
            ),
            args![t, self.member(), WorkerState::Disconnected],
        )?;
        // Databases from before passwords were wiped at the end.
        tx.execute(
            "UPDATE latent_instances SET password = NULL
             WHERE phase IN ('stopped', 'failed') AND password IS NOT NULL",
            args![],
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
