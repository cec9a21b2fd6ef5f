//! Rows as the store reads them: cells of SQL's five kinds, whatever the backend,
//! converted to Rust types by [`FromCell`]. A cell of the wrong kind, or a name the
//! master does not know, is [`StoreError::Corrupt`]: never a default.

use super::corrupt;
use crate::store::{StoreError, StoreResult};
use serde::de::DeserializeOwned;

/// One column's value in a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Int(_) => "an integer",
            Cell::Real(_) => "a real",
            Cell::Text(_) => "text",
            Cell::Blob(_) => "a blob",
        }
    }

    /// The error for a cell that is not what `wanted` needs.
    pub fn unexpected(&self, wanted: &str) -> String {
        format!("{} where {wanted} was expected", self.kind())
    }
}

/// One row of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    cells: Vec<Cell>,
}

/// A type read from one cell.
pub trait FromCell: Sized {
    /// `Err` says what is wrong with the value; the row adds which column.
    fn from_cell(cell: &Cell) -> Result<Self, String>;
}

impl Row {
    #[allow(dead_code)]
    pub fn new(cells: Vec<Cell>) -> Row {
        Row { cells }
    }

    pub(super) fn from_sqlite(r: &rusqlite::Row<'_>) -> StoreResult<Row> {
        use rusqlite::types::ValueRef;
        let n = r.as_ref().column_count();
        let mut cells = Vec::with_capacity(n);
        for i in 0..n {
            cells.push(match r.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Real(v),
                ValueRef::Text(t) => match std::str::from_utf8(t) {
                    Ok(s) => Cell::Text(s.to_owned()),
                    Err(_) => return Err(corrupt(i, "text that is not UTF-8")),
                },
                ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
            });
        }
        Ok(Row { cells })
    }

    /// Column `i` as a `T`.
    pub fn get<T: FromCell>(&self, i: usize) -> StoreResult<T> {
        let cell = self
            .cells
            .get(i)
            .ok_or_else(|| corrupt(i, "no such column"))?;
        T::from_cell(cell).map_err(|why| corrupt(i, why))
    }

    /// A JSON column (kept as text), read as `T`.
    pub fn json<T: DeserializeOwned>(&self, i: usize) -> StoreResult<T> {
        let text: String = self.get(i)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            what: format!("column {i}: {e}"),
            source: Some(crate::store::error::Cause::new(e)),
        })
    }
}

impl FromCell for i64 {
    fn from_cell(cell: &Cell) -> Result<i64, String> {
        match cell {
            Cell::Int(v) => Ok(*v),
            other => Err(other.unexpected("an integer")),
        }
    }
}

impl FromCell for f64 {
    fn from_cell(cell: &Cell) -> Result<f64, String> {
        match cell {
            Cell::Real(v) => Ok(*v),
            // SQLite keeps a whole REAL as an integer when it can.
            Cell::Int(v) => Ok(*v as f64),
            other => Err(other.unexpected("a real")),
        }
    }
}

/// Flags are integers in SQLite and `EXISTS` is a boolean in PostgreSQL (read as
/// 0 or 1): both read as `bool`.
impl FromCell for bool {
    fn from_cell(cell: &Cell) -> Result<bool, String> {
        i64::from_cell(cell).map(|v| v != 0)
    }
}

impl FromCell for String {
    fn from_cell(cell: &Cell) -> Result<String, String> {
        match cell {
            Cell::Text(v) => Ok(v.clone()),
            other => Err(other.unexpected("text")),
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(cell: &Cell) -> Result<Vec<u8>, String> {
        match cell {
            Cell::Blob(v) => Ok(v.clone()),
            Cell::Text(v) => Ok(v.clone().into_bytes()),
            other => Err(other.unexpected("a blob")),
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: &Cell) -> Result<Option<T>, String> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

impl FromCell for u32 {
    fn from_cell(cell: &Cell) -> Result<u32, String> {
        let v = i64::from_cell(cell)?;
        u32::try_from(v).map_err(|_| format!("{v} is out of range"))
    }
}
