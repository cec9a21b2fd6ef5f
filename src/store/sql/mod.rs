//! One SQL layer for the store's two databases: the embedded SQLite file and a
//! PostgreSQL server.
//!
//! Statements are written once, in a dialect both understand: `?1`-style
//! placeholders (rewritten to `$1` for PostgreSQL), `ON CONFLICT` rather than
//! `INSERT OR ...`, `COALESCE`, `CAST(.. AS BIGINT)` where PostgreSQL would give a
//! numeric. Arguments are [`Arg`] values (see [`args!`]); rows come back as
//! [`Row`]s of backend-neutral cells, read with [`Row::get`], so a stored value the
//! master does not know is [`StoreError::Corrupt`] on both.

mod postgres;
mod row;
mod value;

pub use postgres::PgTarget;

pub use row::{Cell, FromCell, Row};
pub use value::{Arg, Value};

use super::error::Cause;
use super::{StoreError, StoreResult};
use std::cell::{Cell as Flag, RefCell};

/// A slice of statement arguments: `args![a, b]`.
macro_rules! store_args {
    () => { &[] as &[&dyn $crate::store::sql::Arg] };
    ($($a:expr),+ $(,)?) => { &[$(&$a as &dyn $crate::store::sql::Arg),+] as &[&dyn $crate::store::sql::Arg] };
}
pub(crate) use store_args as args;

/// One connection, to either database. Its methods take `&self`, as rusqlite's do;
/// a [`Store`](super::Store) keeps it behind a mutex.
pub struct Db {
    conn: Conn,
    /// Open savepoints inside the current transaction, for their names.
    savepoints: Flag<u32>,
    /// PostgreSQL: whether a transaction is open (SQLite says so itself).
    in_tx: Flag<bool>,
    /// PostgreSQL: the savepoint depth at which a statement failed, which aborted
    /// the transaction down to there (a `COMMIT` would then silently roll back).
    failed_at: Flag<Option<u32>>,
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<postgres::PgConn>>),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.conn {
            Conn::Sqlite(_) => "Db(SQLite)",
            Conn::Postgres(_) => "Db(PostgreSQL)",
        })
    }
}

/// Which database a [`Db`] speaks to, for the few things that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn sqlite_args(args: &[&dyn Arg]) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    args.iter()
        .map(|a| match a.value() {
            Value::Null => V::Null,
            Value::Int(i) => V::Integer(i),
            Value::Real(f) => V::Real(f),
            Value::Text(s) => V::Text(s.into_owned()),
            Value::Blob(b) => V::Blob(b.into_owned()),
        })
        .collect()
}

fn pg_args<'a>(args: &'a [&'a dyn Arg]) -> Vec<Value<'a>> {
    args.iter().map(|a| a.value()).collect()
}

impl Db {
    /// A SQLite connection, as configured by the caller.
    pub fn sqlite(conn: rusqlite::Connection) -> Db {
        Db::with(Conn::Sqlite(conn))
    }

    /// A connection to a PostgreSQL server.
    pub fn postgres(target: &PgTarget) -> StoreResult<Db> {
        Ok(Db::with(Conn::Postgres(Box::new(RefCell::new(
            postgres::PgConn::connect(target)?,
        )))))
    }

    fn with(conn: Conn) -> Db {
        Db {
            conn,
            savepoints: Flag::new(0),
            in_tx: Flag::new(false),
            failed_at: Flag::new(None),
        }
    }

    /// An empty SQLite database in memory, for tests of the layer itself.
    #[cfg(test)]
    pub fn memory() -> Db {
        Db::sqlite(rusqlite::Connection::open_in_memory().expect("memory database"))
    }

    pub fn backend(&self) -> Backend {
        match self.conn {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite connection underneath, for what only SQLite has (pragmas).
    #[allow(dead_code)]
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.conn {
            Conn::Sqlite(c) => Some(c),
            Conn::Postgres(_) => None,
        }
    }

    /// The PostgreSQL connection, connected again first if the server closed it
    /// and no transaction is open.
    fn pg<'a>(
        &self,
        c: &'a RefCell<postgres::PgConn>,
    ) -> StoreResult<std::cell::RefMut<'a, postgres::PgConn>> {
        let mut conn = c.borrow_mut();
        if !self.in_tx.get() {
            conn.reopen_if_closed()?;
        }
        Ok(conn)
    }

    /// Notes a failed statement inside a PostgreSQL transaction.
    fn failed<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        if r.is_err() && self.in_tx.get() && self.failed_at.get().is_none() {
            self.failed_at.set(Some(self.savepoints.get()));
        }
        r
    }

    /// Runs statements separated by `;`, without arguments.
    pub fn execute_batch(&self, sql: &str) -> StoreResult<()> {
        match &self.conn {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(c) => {
                let r = self.pg(c).and_then(|mut c| Ok(c.batch(sql)?));
                self.failed(r)
            }
        }
    }

    /// Runs one statement; the rows it changed.
    pub fn execute(&self, sql: &str, args: &[&dyn Arg]) -> StoreResult<usize> {
        match &self.conn {
            Conn::Sqlite(c) => {
                let args = sqlite_args(args);
                Ok(c.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(args))?)
            }
            Conn::Postgres(c) => {
                let args = pg_args(args);
                let r = self.pg(c).and_then(|mut c| Ok(c.execute(sql, &args)?));
                Ok(self.failed(r)? as usize)
            }
        }
    }

    /// Runs one `INSERT` into a table whose key is `id`; the new row's id.
    pub fn insert(&self, sql: &str, args: &[&dyn Arg]) -> StoreResult<i64> {
        match &self.conn {
            Conn::Sqlite(c) => {
                let args = sqlite_args(args);
                c.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(args))?;
                Ok(c.last_insert_rowid())
            }
            Conn::Postgres(_) => self.query_row(&format!("{sql} RETURNING id"), args, |r| r.get(0)),
        }
    }

    /// Calls `f` on each row in turn while it answers `true`.
    pub fn query_while(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut f: impl FnMut(&Row) -> StoreResult<bool>,
    ) -> StoreResult<()> {
        match &self.conn {
            Conn::Sqlite(c) => {
                let args = sqlite_args(args);
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
                while let Some(r) = rows.next()? {
                    if !f(&Row::from_sqlite(r)?)? {
                        break;
                    }
                }
                Ok(())
            }
            Conn::Postgres(c) => {
                let args = pg_args(args);
                let r = self.pg(c).and_then(|mut c| c.query_while(sql, &args, f));
                self.failed(r)
            }
        }
    }
    /// Every row, each made a `T` by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut f: impl FnMut(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        self.query_while(sql, args, |r| {
            out.push(f(r)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first row, if any.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnOnce(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let mut f = Some(f);
        let mut out = None;
        self.query_while(sql, args, |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    /// The first row; [`StoreError::NotFound`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnOnce(&Row) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.query_opt(sql, args, f)?
            .ok_or_else(|| StoreError::NotFound("no such row".into()))
    }

    /// Whether the statement gives a row.
    pub fn exists(&self, sql: &str, args: &[&dyn Arg]) -> StoreResult<bool> {
        Ok(self.query_opt(sql, args, |_| Ok(()))?.is_some())
    }

    /// The notifications that arrived on this connection (after `LISTEN`), waiting
    /// up to `timeout` for the first.
    pub fn notifications(&self, timeout: std::time::Duration) -> StoreResult<Vec<String>> {
        match &self.conn {
            Conn::Sqlite(_) => {
                let _ = timeout;
                Err(internal("SQLite has no notifications"))
            }
            Conn::Postgres(c) => Ok(c.borrow_mut().notifications(timeout)?),
        }
    }

    /// Whether a transaction is open on this connection.
    pub fn in_transaction(&self) -> bool {
        match &self.conn {
            Conn::Sqlite(c) => !c.is_autocommit(),
            Conn::Postgres(_) => self.in_tx.get(),
        }
    }

    /// Opens a transaction that takes the write lock at once (SQLite `IMMEDIATE`:
    /// two connections write, and a deferred one could read a snapshot the other
    /// has moved past).
    pub fn begin(&self) -> StoreResult<()> {
        self.savepoints.set(0);
        self.failed_at.set(None);
        match &self.conn {
            Conn::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Conn::Postgres(c) => {
                self.pg(c)?.batch("BEGIN")?;
                self.in_tx.set(true);
            }
        }
        Ok(())
    }

    /// Commits the open transaction; on failure nothing of it stays.
    pub fn commit(&self) -> StoreResult<()> {
        self.savepoints.set(0);
        if self.failed_at.get().is_some() {
            self.rollback();
            return Err(internal(
                "the transaction was rolled back: a statement in it failed",
            ));
        }
        let done = self.execute_batch("COMMIT");
        self.in_tx.set(false);
        if let Err(e) = done {
            if self.in_transaction() {
                let _ = self.execute_batch("ROLLBACK");
            }
            return Err(e);
        }
        Ok(())
    }

    fn rollback(&self) {
        self.savepoints.set(0);
        self.failed_at.set(None);
        if self.in_transaction() {
            let _ = self.execute_batch("ROLLBACK");
        }
        self.in_tx.set(false);
    }
}

/// One store call's writes: a transaction of its own, or a savepoint inside the
/// transaction already open on the connection (the coordinator's wake-up). Rolled
/// back when dropped uncommitted.
pub struct Write<'a> {
    db: &'a Db,
    /// The savepoint's number; 0 for a transaction of its own.
    savepoint: u32,
    done: bool,
}

/// Starts a [`Write`] on `db`.
pub fn write(db: &Db) -> StoreResult<Write<'_>> {
    if !db.in_transaction() {
        db.begin()?;
        return Ok(Write {
            db,
            savepoint: 0,
            done: false,
        });
    }
    let n = db.savepoints.get() + 1;
    db.execute_batch(&format!("SAVEPOINT sp{n}"))?;
    db.savepoints.set(n);
    Ok(Write {
        db,
        savepoint: n,
        done: false,
    })
}

impl Write<'_> {
    pub fn commit(mut self) -> StoreResult<()> {
        self.done = true;
        if self.savepoint == 0 {
            return self.db.commit();
        }
        self.db.savepoints.set(self.savepoint - 1);
        self.db
            .execute_batch(&format!("RELEASE SAVEPOINT sp{}", self.savepoint))
    }
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.savepoint == 0 {
            self.db.rollback();
            return;
        }
        self.db.savepoints.set(self.savepoint - 1);
        let n = self.savepoint;
        // What failed inside the savepoint is undone with it.
        if self.db.failed_at.get().is_some_and(|at| at >= n) {
            self.db.failed_at.set(None);
        }
        let _ = self.db.execute_batch(&format!(
            "ROLLBACK TO SAVEPOINT sp{n}; RELEASE SAVEPOINT sp{n}"
        ));
    }
}

impl std::ops::Deref for Write<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

/// A conversion failure of one column, as the store reports it.
pub(super) fn corrupt(column: usize, why: impl Into<String>) -> StoreError {
    let why = why.into();
    StoreError::Corrupt {
        what: format!("column {column}: {why}"),
        source: None,
    }
}

/// An error of the layer itself (a statement the backend cannot run).
pub(super) fn internal(why: impl Into<String>) -> StoreError {
    StoreError::Internal(Cause::new(std::io::Error::other(why.into())))
}

#[cfg(test)]
mod tests;
