//! Citus, when the database has it: the few statements that place schemas on purpose.
//!
//! With `citus.enable_schema_based_sharding = on`, every `create schema` becomes a distributed
//! schema (a tenant's own shard group, movable with `citus_schema_move`). Without the `citus`
//! extension none of this runs and nothing changes. See docs/SCALING.md.

use tokio_postgres::Transaction;

use super::SchemaName;
use super::rows::Columns;
use crate::error::AppError;

/// Whether the `citus` extension is installed in this database.
pub async fn installed(tx: &Transaction<'_>) -> Result<bool, AppError> {
    let row = tx
        .query_one("select exists (select 1 from pg_extension where extname = 'citus') as installed", &[])
        .await?;
    Ok(Columns::of(&row, "db::citus::installed").try_get("installed")?)
}

/// Whether new schemas become distributed schemas in this transaction.
pub async fn schema_sharding_on(tx: &Transaction<'_>) -> Result<bool, AppError> {
    let row = tx
        .query_one(
            "select coalesce(current_setting('citus.enable_schema_based_sharding', true), '') = 'on' as sharding",
            &[],
        )
        .await?;
    Ok(Columns::of(&row, "db::citus::schema_sharding_on").try_get("sharding")?)
}

/// Schemas created in the rest of this transaction stay plain, coordinator-local schemas.
pub async fn keep_schemas_local(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.execute("select set_config('citus.enable_schema_based_sharding', 'off', true)", &[]).await?;
    Ok(())
}

/// Turns a local schema (and every table in it) into a distributed schema.
pub async fn distribute(tx: &Transaction<'_>, schema: &SchemaName) -> Result<(), tokio_postgres::Error> {
    tx.execute("select citus_schema_distribute($1::text::regnamespace)", &[&schema.as_str()]).await?;
    Ok(())
}
