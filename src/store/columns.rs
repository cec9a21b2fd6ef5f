//! How the master's types sit in columns: states, phases and results as their names
//! (text, as databases of earlier versions have them), log channels as small
//! integers, JSON as text. A stored value the master does not know is an error
//! ([`StoreError::Corrupt`](super::StoreError::Corrupt)) when read, never a default.

use super::Channel;
use crate::model::{BuildResult, Phase, WorkerState};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Type, ValueRef};
use rusqlite::Row;
use serde::de::DeserializeOwned;
use std::str::FromStr;

/// A value kept as its name.
fn by_name<T: FromStr<Err = String>>(value: ValueRef<'_>) -> FromSqlResult<T> {
    value
        .as_str()?
        .parse()
        .map_err(|e: String| FromSqlError::Other(e.into()))
}

fn name(name: &'static str) -> rusqlite::Result<ToSqlOutput<'static>> {
    Ok(ToSqlOutput::Borrowed(ValueRef::Text(name.as_bytes())))
}

macro_rules! named_column {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                by_name(value)
            }
        }
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                name(self.name())
            }
        }
    )*};
}

named_column!(BuildResult, Phase, WorkerState);

impl FromSql for Channel {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_i64()? {
            0 => Ok(Channel::Stdout),
            1 => Ok(Channel::Stderr),
            2 => Ok(Channel::Header),
            other => Err(FromSqlError::Other(
                format!("unknown log channel {other}").into(),
            )),
        }
    }
}

impl ToSql for Channel {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let code: i64 = match self {
            Channel::Stdout => 0,
            Channel::Stderr => 1,
            Channel::Header => 2,
        };
        Ok(code.into())
    }
}

/// A JSON column, read as `T`.
pub(super) fn json<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use rusqlite::Connection;

    fn read<T: FromSql>(sql: &str) -> Result<T, StoreError> {
        let db = Connection::open_in_memory().expect("memory database");
        Ok(db.query_row(sql, [], |r| r.get(0))?)
    }

    #[test]
    fn known_names_read_back() {
        assert_eq!(
            read::<WorkerState>("SELECT 'attached'").ok(),
            Some(WorkerState::Attached)
        );
        assert_eq!(
            read::<Phase>("SELECT 'draining'").ok(),
            Some(Phase::Draining)
        );
        assert_eq!(read::<Option<BuildResult>>("SELECT NULL").ok(), Some(None));
        assert_eq!(read::<Channel>("SELECT 1").ok(), Some(Channel::Stderr));
        let db = Connection::open_in_memory().expect("memory database");
        let back: (String, String, i64) = db
            .query_row(
                "SELECT ?1, ?2, ?3",
                (
                    WorkerState::Disconnected,
                    BuildResult::Retry,
                    Channel::Header,
                ),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("written");
        assert_eq!(back, ("disconnected".into(), "retry".into(), 2));
    }

    #[test]
    fn unknown_values_are_corrupt_not_defaults() {
        for e in [
            read::<WorkerState>("SELECT 'connected'").map(|_| ()),
            read::<Phase>("SELECT 'sleeping'").map(|_| ()),
            read::<BuildResult>("SELECT 'ok'").map(|_| ()),
            read::<Channel>("SELECT 7").map(|_| ()),
            read::<WorkerState>("SELECT 3").map(|_| ()),
        ] {
            let e = e.expect_err("unknown");
            assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
        }
        let e = read::<WorkerState>("SELECT 'connected'").expect_err("unknown");
        assert!(
            e.to_string().contains("unknown worker state \"connected\""),
            "{e}"
        );
    }

    #[test]
    fn json_that_does_not_parse_is_corrupt() {
        let db = Connection::open_in_memory().expect("memory database");
        let e: StoreError = db
            .query_row("SELECT '{not json'", [], |r| {
                json::<serde_json::Value>(r, 0)
            })
            .expect_err("not JSON")
            .into();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    }
}
