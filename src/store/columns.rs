//! How the master's types sit in columns: states, phases and results as their names
//! (text, as databases of earlier versions have them), log channels as small
//! integers, JSON as text. A stored value the master does not know is an error
//! ([`StoreError::Corrupt`](super::StoreError::Corrupt)) when read, never a default.

use super::sql::{Arg, Cell, FromCell, Value};
use super::Channel;
use crate::model::{BuildResult, Phase, WorkerState};
use std::borrow::Cow;
use std::str::FromStr;

/// A value kept as its name.
fn by_name<T: FromStr<Err = String>>(cell: &Cell) -> Result<T, String> {
    match cell {
        Cell::Text(name) => name.parse(),
        other => Err(other.unexpected("a name")),
    }
}

macro_rules! named_column {
    ($($t:ty),*) => {$(
        impl FromCell for $t {
            fn from_cell(cell: &Cell) -> Result<Self, String> {
                by_name(cell)
            }
        }
        impl Arg for $t {
            fn value(&self) -> Value<'_> {
                Value::Text(Cow::Borrowed(self.name()))
            }
        }
    )*};
}

named_column!(BuildResult, Phase, WorkerState);

impl FromCell for Channel {
    fn from_cell(cell: &Cell) -> Result<Channel, String> {
        match i64::from_cell(cell)? {
            0 => Ok(Channel::Stdout),
            1 => Ok(Channel::Stderr),
            2 => Ok(Channel::Header),
            other => Err(format!("unknown log channel {other}")),
        }
    }
}

impl Arg for Channel {
    fn value(&self) -> Value<'_> {
        Value::Int(match self {
            Channel::Stdout => 0,
            Channel::Stderr => 1,
            Channel::Header => 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::{args, Db};
    use crate::store::StoreError;

    fn read<T: FromCell>(sql: &str) -> Result<T, StoreError> {
        Db::memory().query_row(sql, args![], |r| r.get(0))
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
        let db = Db::memory();
        let back: (String, String, i64) = db
            .query_row(
                "SELECT ?1, ?2, ?3",
                args![
                    WorkerState::Disconnected,
                    BuildResult::Retry,
                    Channel::Header
                ],
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
        let e = Db::memory()
            .query_row("SELECT '{not json'", args![], |r| {
                r.json::<serde_json::Value>(0)
            })
            .expect_err("not JSON");
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    }
}
