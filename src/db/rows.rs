//! Reading rows by column name without panicking.
//!
//! `Row::get` panics on a missing or mistyped column, and the panic layer turns that into a bare
//! 500. `Columns::try_get` returns a [`ColumnError`] instead, naming the column and the query, which
//! `?` makes an `INTERNAL` [`AppError`] (logged once, where it leaves the server) or an
//! `anyhow::Error` in operator code.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::error::AppError;

/// A row read by column name, labelled with the query that produced it.
#[derive(Clone, Copy)]
pub struct Columns<'a> {
    row: &'a Row,
    query: &'static str,
}

impl<'a> Columns<'a> {
    /// `query` is a short label for error messages: the function that reads the row.
    pub fn of(row: &'a Row, query: &'static str) -> Self {
        Self { row, query }
    }

    /// The value of `column`, or an error naming it if the row lacks it or holds another type.
    pub fn try_get<T: FromSql<'a>>(&self, column: &str) -> Result<T, ColumnError> {
        self.row.try_get(column).map_err(|source| ColumnError {
            query: self.query,
            column: column.to_owned(),
            present: self.row.columns().iter().map(|c| c.name().to_owned()).collect(),
            source: source.into(),
        })
    }
}

/// A column a query's row lacks, or holds as a type other than the one asked for.
#[derive(Debug, thiserror::Error)]
#[error("reading column `{column}` of {query} (its row has: {})", present.join(", "))]
pub struct ColumnError {
    query: &'static str,
    column: String,
    present: Vec<String>,
    /// Why: `invalid column`, or the conversion that failed.
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl From<ColumnError> for AppError {
    fn from(err: ColumnError) -> Self {
        Self::internal(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(column: &str) -> ColumnError {
        ColumnError {
            query: "jobs::repo::stats",
            column: column.to_owned(),
            present: vec!["queued".to_owned(), "running".to_owned()],
            source: format!("invalid column `{column}`").into(),
        }
    }

    #[test]
    fn a_missing_column_is_internal_and_names_the_column_and_the_query() {
        let err = AppError::from(missing("dead"));
        assert_eq!(err.code(), "INTERNAL");
        // The client sees nothing of it; the log (the internal detail) names both.
        assert!(!err.message().contains("dead"), "{}", err.message());
        let detail = format!("{:#}", err.into_anyhow());
        assert!(detail.contains("column `dead`"), "{detail}");
        assert!(detail.contains("jobs::repo::stats"), "{detail}");
        assert!(detail.contains("its row has: queued, running"), "{detail}");
    }

    #[test]
    fn operator_code_gets_the_same_detail_through_anyhow() {
        let err: anyhow::Error = missing("dead").into();
        assert!(format!("{err:#}").contains("column `dead` of jobs::repo::stats"), "{err:#}");
    }
}
