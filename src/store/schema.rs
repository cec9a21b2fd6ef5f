//! The database schema; statements are idempotent so opening an existing database
//! is safe.

use super::sql::{args, Db};
use super::StoreResult;

/// Brings the database to the current schema.
pub fn migrate(db: &Db) -> StoreResult<()> {
    db.execute_batch(SCHEMA)?;
    db.execute_batch(super::changes::SCHEMA)?;
    db.execute_batch(super::latent::SCHEMA)?;
    db.execute_batch(super::outbox::SCHEMA)?;
    db.execute_batch(super::pollers::SCHEMA)?;
    db.execute_batch(super::cluster::SCHEMA)?;
    for (table, column, definition) in ADDED_COLUMNS.iter().chain(super::cluster::ADDED_COLUMNS) {
        let has = db.exists(
            &format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"),
            args![column],
        )?;
        if !has {
            db.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    db.execute_batch(RETENTION_INDEXES)?;
    db.execute_batch(super::cluster::INDEXES)?;
    Ok(())
}

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    builder TEXT NOT NULL,
    reason TEXT NOT NULL,
    properties TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    result TEXT
);
CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES requests(id),
    builder TEXT NOT NULL,
    number INTEGER NOT NULL,
    worker TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    result TEXT,
    reason TEXT,
    properties TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS builds_request ON builds(request_id);
-- The dispatch queries: queued requests, running builds, the next build number.
CREATE INDEX IF NOT EXISTS requests_open ON requests(id) WHERE complete = 0;
CREATE INDEX IF NOT EXISTS builds_running ON builds(request_id) WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS builds_number ON builds(builder, number);
-- A builder's builds a page at a time (keyset on id).
CREATE INDEX IF NOT EXISTS builds_builder_id ON builds(builder, id);
CREATE TABLE IF NOT EXISTS steps (
    build_id INTEGER NOT NULL REFERENCES builds(id),
    number INTEGER NOT NULL,
    name TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    result TEXT,
    rc INTEGER,
    reason TEXT,
    PRIMARY KEY (build_id, number)
);
CREATE TABLE IF NOT EXISTS log_chunks (
    seq INTEGER PRIMARY KEY,
    build_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    log TEXT NOT NULL,
    channel INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_chunks_step ON log_chunks(build_id, step, log, seq);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    version TEXT,
    info TEXT NOT NULL DEFAULT '{}',
    connected_at REAL,
    disconnected_at REAL,
    peer TEXT
);
";

/// Columns added after the first release of a table: (table, column, definition).
/// Opening an older database adds them.
pub const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("builds", "properties", "TEXT NOT NULL DEFAULT '{}'"),
    ("latent_instances", "password", "TEXT"),
    // Where a log chunk's bytes lie in its build's log file (see store::logs); rows
    // without them hold their bytes in `data`.
    ("log_chunks", "file_offset", "INTEGER"),
    ("log_chunks", "file_len", "INTEGER"),
    // Builds an instance started (for `max_uses`, kept across a restart), where the
    // cloud put it, and its price per hour (for its cost).
    ("latent_instances", "uses", "INTEGER NOT NULL DEFAULT 0"),
    ("latent_instances", "placement", "TEXT"),
    ("latent_instances", "price_per_hour", "REAL"),
    // The market an instance runs on, and each build's share of its instance's cost
    // (set once the instance has ended).
    ("latent_instances", "market", "TEXT"),
    ("builds", "cost", "REAL"),
    // Retention (see store::retention): when a finished build's logs were compressed
    // and when they were deleted, and each step's mark that its logs are gone.
    ("builds", "logs_packed_at", "REAL"),
    ("builds", "logs_expired_at", "REAL"),
    ("steps", "logs_expired_at", "REAL"),
];

/// Indexes on added columns, created once they exist: the janitor's queries.
pub const RETENTION_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS builds_unpacked ON builds(id)
    WHERE logs_packed_at IS NULL AND logs_expired_at IS NULL;
CREATE INDEX IF NOT EXISTS builds_logs_kept ON builds(finished_at) WHERE logs_expired_at IS NULL;
CREATE INDEX IF NOT EXISTS builds_finished ON builds(finished_at);
";
