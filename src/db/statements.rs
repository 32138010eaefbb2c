//! `Statements`: one way to run a statement that may go to a tenant transaction or to the
//! control pool, so such a statement is written once.
//!
//! Implemented for a tenant transaction's control path (`TenantTx::control()`: the statement
//! joins the tenant's transaction, as the login role; scoping stays in `TenantTx`, which hands
//! out no connection) and for a shared reference to any pooled client or transaction
//! (`&impl deadpool_postgres::GenericClient`). Functions take `db: impl Statements`: pass
//! `&client`, `&tx` or, from a `&mut TenantTx`, `tx.control()`.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::AppError;

pub trait Statements: Send {
    /// Runs `sql` and returns its rows.
    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, AppError>> + Send;

    /// Runs `sql`, which must return exactly one row.
    fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, AppError>> + Send;

    /// Runs `sql` and returns the number of rows it touched.
    fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, AppError>> + Send;
}

impl<C: GenericClient> Statements for &C {
    async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, AppError> {
        Ok(GenericClient::query(*self, sql, params).await?)
    }

    async fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, AppError> {
        Ok(GenericClient::query_one(*self, sql, params).await?)
    }

    async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, AppError> {
        Ok(GenericClient::execute(*self, sql, params).await?)
    }
}
