//! The PostgreSQL side of [`Db`](super::Db): statements prepared once per
//! connection, `?N` placeholders rewritten to `$N`, arguments converted by the
//! parameter's declared type, rows read into backend-neutral cells, SQLSTATEs
//! mapped to the store's errors.

use super::{Cell, Row, Value};
use crate::store::error::Cause;
use crate::store::StoreError;
use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, Statement};
use std::collections::HashMap;
use std::error::Error;

/// Prepared statements kept per connection, at most this many (the store has
/// about a hundred distinct statements; a few are built with varying text).
const CACHE: usize = 512;

/// Where and as whom to connect. The password never appears in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// `postgres://user@host:port/dbname`, without a password.
    pub url: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// A connection and its prepared statements.
pub struct PgConn {
    /// Always there until dropped (see `Drop`).
    client: Option<Client>,
    cache: HashMap<String, Statement>,
    /// For a new connection when the server closed this one.
    config: postgres::Config,
}

impl Drop for PgConn {
    /// The client owns a small runtime, which may not be dropped on an async task.
    fn drop(&mut self) {
        let client = self.client.take();
        off_runtime(move || drop(client));
    }
}

impl PgConn {
    pub fn connect(target: &PgTarget) -> Result<PgConn, StoreError> {
        let mut config: postgres::Config = target
            .url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Unavailable(Cause::new(e)))?;
        if let Some(p) = &target.password {
            config.password(p);
        }
        config.application_name("pbmaster");
        config.connect_timeout(std::time::Duration::from_secs(10));
        // As SQLite's busy timeout: a lock held too long is an error (unavailable,
        // retryable), never an endless wait. A session left in a transaction (its
        // master frozen, or cut off) is ended by the server, and a dead peer found by
        // keepalives, so its locks never keep other masters from taking its work
        // over (a master's own transactions last milliseconds).
        config.options(
            "-c lock_timeout=10s -c idle_in_transaction_session_timeout=5s \
             -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
        );
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(5));
        let client = off_runtime(|| config.connect(postgres::NoTls))?;
        Ok(PgConn {
            client: Some(client),
            cache: HashMap::new(),
            config,
        })
    }

    /// Connects again if the server closed the connection (a restart, a network
    /// cut): called only outside a transaction, whose statements must not go to
    /// another session.
    pub fn reopen_if_closed(&mut self) -> Result<(), postgres::Error> {
        if !self.client.as_ref().is_some_and(|c| c.is_closed()) {
            return Ok(());
        }
        let config = self.config.clone();
        let client = off_runtime(|| config.connect(postgres::NoTls))?;
        let old = self.client.replace(client);
        off_runtime(move || drop(old));
        self.cache.clear();
        tracing::info!("store: connected to PostgreSQL again");
        Ok(())
    }

    fn client(&mut self) -> &mut Client {
        // Taken only when dropped.
        self.client.as_mut().expect("an open connection")
    }

    /// The payloads of the notifications that arrived, waiting up to `timeout` for
    /// the first; those already received come along.
    pub fn notifications(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Vec<String>, postgres::Error> {
        use postgres::fallible_iterator::FallibleIterator;
        off_runtime(|| {
            let mut out = Vec::new();
            let mut notifications = self.client().notifications();
            if let Some(n) = notifications.timeout_iter(timeout).next()? {
                out.push(n.payload().to_owned());
            }
            let mut pending = notifications.iter();
            while let Some(n) = pending.next()? {
                out.push(n.payload().to_owned());
            }
            Ok(out)
        })
    }

    pub fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        off_runtime(|| self.client().batch_execute(sql))
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let statement = off_runtime(|| self.client().prepare(&placeholders(sql)))?;
        if self.cache.len() >= CACHE {
            self.cache.clear();
        }
        self.cache.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn execute(&mut self, sql: &str, args: &[Value<'_>]) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        off_runtime(|| self.client().execute(&statement, &params))
    }

    /// Rows one at a time into `f` while it answers `true`.
    pub fn query_while(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
        mut f: impl FnMut(&Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let statement = self.statement(sql)?;
        off_runtime(|| {
            let mut rows = self.client().query_raw(&statement, args.iter())?;
            while let Some(r) = rows.next()? {
                if !f(&row(&r)?)? {
                    break;
                }
            }
            Ok(())
        })
    }
}

/// Runs `f`, which blocks on the client's own runtime. Called on a worker thread of
/// the master's runtime (at start, say), it first tells that runtime this thread
/// blocks, as a nested runtime may not be entered from an async task; elsewhere
/// (the coordinator's thread, blocking threads) it simply runs.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// `?N` placeholders as PostgreSQL's `$N`; string literals, quoted names and
/// comments are left alone.
pub fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

fn row(r: &postgres::Row) -> Result<Row, StoreError> {
    let mut cells = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let bad = |e: postgres::Error| super::corrupt(i, e.to_string());
        let ty = column.type_();
        let cell = match *ty {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(bad)?.map(Cell::Int),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map_err(bad)?
                .map(|v| Cell::Int(v.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map_err(bad)?
                .map(|v| Cell::Int(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map_err(bad)?
                .map(|v| Cell::Int(v.into())),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map_err(bad)?.map(Cell::Real),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)
                .map_err(bad)?
                .map(|v| Cell::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => r
                .try_get::<_, Option<String>>(i)
                .map_err(bad)?
                .map(Cell::Text),
            Type::BYTEA => r
                .try_get::<_, Option<Vec<u8>>>(i)
                .map_err(bad)?
                .map(Cell::Blob),
            _ => {
                return Err(super::internal(format!(
                    "column {i} ({}) is of type {ty}, which the store does not read: \
                     cast it in the statement",
                    column.name()
                )))
            }
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row::new(cells))
}

/// Arguments take the parameter's type: an integer may fill a `DOUBLE PRECISION`
/// or `BOOLEAN` parameter, a real may not fill an integer one.
impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let mismatch = || -> Box<dyn Error + Sync + Send> {
            format!("cannot send {self:?} as a value of type {ty}").into()
        };
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Value::Real(v) => match *ty {
                Type::FLOAT8 => v.to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.as_ref().to_sql(ty, out)
                }
                _ => Err(mismatch()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.as_ref().to_sql(ty, out),
                _ => Err(mismatch()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        let Some(code) = e.code().map(|c| c.code().to_owned()) else {
            // No SQLSTATE: the connection failed or closed, or a value did not
            // convert.
            let io = e
                .source()
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
            return if e.is_closed() || io {
                StoreError::Unavailable(Cause::new(e))
            } else {
                StoreError::Internal(Cause::new(e))
            };
        };
        match code.get(..2).unwrap_or("") {
            "23" => StoreError::Conflict(Cause::new(e)),
            "08" | "53" => StoreError::Unavailable(Cause::new(e)),
            "57" if code.starts_with("57P") => StoreError::Unavailable(Cause::new(e)),
            // lock_timeout ran out: busy, as SQLite's SQLITE_BUSY.
            "55" if code == "55P03" => StoreError::Unavailable(Cause::new(e)),
            "40" if code == "40001" || code == "40P01" => StoreError::Unavailable(Cause::new(e)),
            "22" => StoreError::Corrupt {
                what: format!("a value the database refused ({code})"),
                source: Some(Cause::new(e)),
            },
            _ => StoreError::Internal(Cause::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_literals_and_comments() {
        assert_eq!(
            placeholders("SELECT ?1, '?2', \"?3\", ?10 -- ?4\n, ?5"),
            "SELECT $1, '?2', \"?3\", $10 -- ?4\n, $5"
        );
        assert_eq!(
            placeholders("SELECT 'it''s ?1', ?2"),
            "SELECT 'it''s ?1', $2"
        );
        assert_eq!(placeholders("SELECT ? FROM t"), "SELECT ? FROM t");
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let t = PgTarget {
            url: "postgres://u@h/db".into(),
            password: Some("s3cret".into()),
        };
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
