//! Reading rows back into Foyer's types, once for both databases: through [`Read`],
//! which either backend's row implements (each aggregate's own decoding is in its
//! file, the lifecycle row's in `room.rs`). A value that does not read back (a hand
//! edit, a bug) is `StoreError::Corrupt`.

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{StoreError, from_millis};

/// A row's columns, by name, as the few types the schema uses on both databases.
pub trait Read {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, col: &str) -> Result<bool, StoreError>;

    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_int(col)?.map(from_millis).transpose()
    }
}

impl<R> Read for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> Result<String, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(col)?)
    }
}

/// A text column parsed by `parse`: a value that does not parse is corrupt.
pub(super) fn parsed<T, E: std::fmt::Display>(
    row: &(impl Read + ?Sized), col: &str, parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, StoreError> {
    parse(&row.text(col)?).map_err(|e| corrupt(col, e))
}

/// [`parsed`] for a column that may be NULL.
pub(super) fn opt_parsed<T, E: std::fmt::Display>(
    row: &(impl Read + ?Sized), col: &str, parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, StoreError> {
    row.opt_text(col)?.map(|text| parse(&text).map_err(|e| corrupt(col, e))).transpose()
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}
