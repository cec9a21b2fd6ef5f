//! The store's errors, in the master's terms: what failed, not which library failed.
//!
//! The database's own error is kept as the source, for the log, behind [`Cause`]: no
//! caller names a database type, so a second backend maps its errors to the same
//! variants. Callers that answer clients (the API) log the detail and answer a
//! generic message: SQL text and stored values never leave the master.

use rusqlite::ErrorCode;
use std::fmt;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row the operation needs does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A write broke a rule of the schema: a duplicate key, a missing row it refers to.
    #[error("conflict with stored data: {0}")]
    Conflict(#[source] Cause),
    /// The database cannot be used now: locked past the timeout, not openable,
    /// read-only, full, out of memory. Trying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// What is stored is not what the master writes: a damaged file, or a value the
    /// master does not know (a state or result of another version, say).
    #[error("corrupt data: {what}")]
    Corrupt {
        what: String,
        #[source]
        source: Option<Cause>,
    },
    /// Files beside the database: its folder, the build logs.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else the database refused (a statement it cannot run: a bug).
    #[error("database error: {0}")]
    Internal(#[source] Cause),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The backend's own error, kept for the log; its type is not part of the store's
/// interface.
pub struct Cause(Box<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    pub(super) fn new(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Box::new(e))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::Error as E;
        match &e {
            E::QueryReturnedNoRows => StoreError::NotFound("no such row".into()),
            E::SqliteFailure(failure, _) => match failure.code {
                ErrorCode::ConstraintViolation => StoreError::Conflict(Cause::new(e)),
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::DiskFull
                | ErrorCode::OutOfMemory
                | ErrorCode::PermissionDenied
                | ErrorCode::SystemIoFailure
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::NoLargeFileSupport => StoreError::Unavailable(Cause::new(e)),
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt {
                    what: "the database file".into(),
                    source: Some(Cause::new(e)),
                },
                _ => StoreError::Internal(Cause::new(e)),
            },
            E::FromSqlConversionFailure(column, _, inner) => StoreError::Corrupt {
                what: format!("column {column}: {inner}"),
                source: Some(Cause::new(e)),
            },
            E::IntegralValueOutOfRange(column, _) | E::InvalidColumnType(column, _, _) => {
                StoreError::Corrupt {
                    what: format!("column {column}"),
                    source: Some(Cause::new(e)),
                }
            }
            E::Utf8Error(_) => StoreError::Corrupt {
                what: "text that is not UTF-8".into(),
                source: Some(Cause::new(e)),
            },
            _ => StoreError::Internal(Cause::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn failing(sql: &str) -> StoreError {
        let db = Connection::open_in_memory().expect("memory database");
        db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .expect("schema");
        db.execute_batch(sql).expect_err("fails").into()
    }

    #[test]
    fn a_broken_constraint_is_a_conflict() {
        let e = failing("INSERT INTO t VALUES (1, 'a'); INSERT INTO t VALUES (1, 'b');");
        assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
        let e = failing("INSERT INTO t (id) VALUES (2)");
        assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    }

    #[test]
    fn a_statement_the_database_refuses_is_internal() {
        let e = failing("SELECT * FROM missing");
        assert!(matches!(e, StoreError::Internal(_)), "{e:?}");
        assert!(
            e.to_string().contains("no such table"),
            "the log says why: {e}"
        );
    }

    #[test]
    fn busy_and_unopenable_databases_are_unavailable() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(StoreError::from(busy), StoreError::Unavailable(_)));
        let dir = std::env::temp_dir().join(format!("pbmaster-error-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        // A folder where the database file should be.
        let e: StoreError = Connection::open(&dir).expect_err("a folder").into();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_file_that_is_not_a_database_is_corrupt() {
        let path = std::env::temp_dir().join(format!("pbmaster-notdb-{}", std::process::id()));
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        let db = Connection::open(&path).expect("opens lazily");
        let e: StoreError = db
            .execute_batch("SELECT * FROM sqlite_master")
            .expect_err("not a database")
            .into();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_corrupt_and_a_missing_row_not_found() {
        let db = Connection::open_in_memory().expect("memory database");
        let e: StoreError = db
            .query_row("SELECT 'text'", [], |r| r.get::<_, i64>(0))
            .expect_err("not an integer")
            .into();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
        let e: StoreError = db
            .query_row("SELECT 1 WHERE 0", [], |r| r.get::<_, i64>(0))
            .expect_err("no row")
            .into();
        assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    }

    #[test]
    fn the_cause_is_kept_as_the_source() {
        let e = failing("SELECT * FROM missing");
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source.to_string().contains("no such table"));
    }
}
