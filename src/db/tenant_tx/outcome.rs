//! What a tenant statement's caller wants back, and how a statement is run for it.

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::error::AppError;

/// What a statement's caller wants back.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Rows,
    Count,
}

pub(super) enum Outcome {
    Rows(Vec<Row>),
    Count(u64),
}

impl Kind {
    pub(super) async fn run(
        self,
        client: &Object,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Outcome, tokio_postgres::Error> {
        match self {
            Self::Rows => client.query(statement, params).await.map(Outcome::Rows),
            Self::Count => client.execute(statement, params).await.map(Outcome::Count),
        }
    }
}

impl Outcome {
    pub(super) fn rows(self) -> Vec<Row> {
        match self {
            Self::Rows(rows) => rows,
            Self::Count(_) => Vec::new(),
        }
    }

    pub(super) fn count(self) -> u64 {
        match self {
            Self::Count(n) => n,
            Self::Rows(rows) => rows.len() as u64,
        }
    }
}

/// The one row of a `query_opt`, if any; more than one is an error.
pub(super) fn at_most_one(mut rows: Vec<Row>) -> Result<Option<Row>, AppError> {
    if rows.len() > 1 {
        return Err(AppError::internal(anyhow::anyhow!(
            "query returned {} rows, expected at most one",
            rows.len()
        )));
    }
    Ok(rows.pop())
}

/// The one row of a `query_one`; none or several is an error.
pub(super) fn exactly_one(mut rows: Vec<Row>) -> Result<Row, AppError> {
    if rows.len() != 1 {
        return Err(AppError::internal(anyhow::anyhow!("query returned {} rows, expected one", rows.len())));
    }
    Ok(rows.remove(0))
}
