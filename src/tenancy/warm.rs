//! The warm pool: tenant schemas created and migrated ahead of time, so that `createTenant`
//! claims one in a single statement instead of running the tenant migrations while the user
//! waits (docs/SCALING.md, "The warm pool").
//!
//! A warm schema is a `control.warm_schemas` row, not a tenant: nothing lists, counts, migrates
//! or serves it. A claim deletes the row and inserts the tenant under the id the schema was
//! named for, in the provisioning transaction. Warm schemas follow the migrations by being
//! replaced: a refill drops those behind this build's migrations and creates new ones; a claim
//! takes only a schema at exactly this build's version (during a rolling deploy a server of the
//! other version provisions cold).

use deadpool_postgres::Pool;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::db::SchemaName;
use crate::db::migrate::{MigrationSet, lock_schema, migrate_schema_in_tx};
use crate::db::rows::Columns;
use crate::error::AppError;

/// The refill job's kind: runs after each claim, at start and every minute.
pub const REFILL: &str = "tenants.refill_warm_pool";

/// What one refill did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refilled {
    /// Warm schemas behind the migrations, dropped.
    pub dropped: usize,
    pub created: usize,
    /// Tenant roles made ahead (one batch, `db::tenant_role::make_ahead`).
    pub roles: usize,
}

/// Takes one warm schema at `set`'s latest version, if there is one: its row is gone when `tx`
/// commits, and the caller makes the tenant under the returned id.
pub async fn claim(tx: &Transaction<'_>, set: &MigrationSet) -> Result<Option<(Uuid, SchemaName)>, AppError> {
    let row = tx
        .query_opt(
            "delete from control.warm_schemas
              where schema_name = (select schema_name from control.warm_schemas
                                    where migration_version = $1
                                    limit 1 for update skip locked)
             returning tenant_id, schema_name",
            &[&set.latest_version()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let row = Columns::of(&row, "tenancy::warm::claim");
    let schema: String = row.try_get("schema_name")?;
    let schema = SchemaName::parse(&schema).map_err(|e| AppError::Internal(e.into()))?;
    Ok(Some((row.try_get("tenant_id")?, schema)))
}

/// Brings the pool to `target` schemas at `set`'s latest version: drops warm schemas behind it,
/// then creates what is missing, one transaction each (a failure leaves nothing half made).
/// Before that, tops up the tenant roles made ahead to `roles_ahead` when fewer than a quarter
/// of them (or fewer than the schemas about to be made) are left, in one batch.
pub async fn refill(
    pool: &Pool,
    set: &MigrationSet,
    target: usize,
    roles_ahead: usize,
) -> Result<Refilled, AppError> {
    let mut done = Refilled::default();
    while drop_one_stale(pool, set).await? {
        done.dropped += 1;
    }
    let ready = count(pool, set).await?;
    let missing = target.saturating_sub(ready);
    if roles_ahead > 0 {
        let low = (roles_ahead / 4).max(missing).max(1);
        // Roles made ahead save rebuilds; without them each schema makes its own role, so a
        // failed batch is reported and the schemas are made all the same.
        match crate::db::tenant_role::make_ahead(pool, low, roles_ahead + missing).await {
            Ok(made) => done.roles = made,
            Err(err) => {
                tracing::warn!(error = ?err, "making tenant roles ahead failed; each warm schema makes its own")
            }
        }
    }
    for _ in ready..target {
        create_one(pool, set).await?;
        done.created += 1;
    }
    Ok(done)
}

/// Warm schemas ready at `set`'s latest version.
pub async fn count(pool: &Pool, set: &MigrationSet) -> Result<usize, AppError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "select count(*) as ready from control.warm_schemas where migration_version = $1",
            &[&set.latest_version()],
        )
        .await?;
    let ready: i64 = Columns::of(&row, "tenancy::warm::count").try_get("ready")?;
    Ok(usize::try_from(ready).unwrap_or(0))
}

async fn drop_one_stale(pool: &Pool, set: &MigrationSet) -> Result<bool, AppError> {
    let mut client = pool.get().await?;
    let mut tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "delete from control.warm_schemas
              where schema_name = (select schema_name from control.warm_schemas
                                    where migration_version < $1
                                    limit 1 for update skip locked)
             returning schema_name",
            &[&set.latest_version()],
        )
        .await?;
    let Some(row) = row else { return Ok(false) };
    let schema: String = Columns::of(&row, "tenancy::warm::drop_one_stale").try_get("schema_name")?;
    let schema = SchemaName::parse(&schema).map_err(|e| AppError::Internal(e.into()))?;
    lock_schema(&tx, &schema).await?;
    tx.execute_typed(&format!("drop schema if exists {} cascade", schema.quoted()), &[]).await?;
    crate::db::tenant_role::drop(&mut tx, &schema).await?;
    tx.commit().await?;
    Ok(true)
}

async fn create_one(pool: &Pool, set: &MigrationSet) -> Result<(), AppError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let id = crate::db::tenant_role::take_ahead(&tx).await?.unwrap_or_else(Uuid::new_v4);
    let schema = SchemaName::for_tenant(id);
    tx.execute_typed(&format!("create schema {}", schema.quoted()), &[]).await?;
    // The schema's role comes with it, as at provisioning (before the migrations, whose objects
    // take its default privileges): a claimed schema serves as its role.
    let citus = crate::db::tenant_role::grant_empty(&tx, &schema).await?;
    migrate_schema_in_tx(&tx, &schema, set).await.map_err(AppError::Internal)?;
    if citus {
        crate::db::tenant_role::grant_existing(&tx, &schema).await?;
    }
    tx.execute(
        "insert into control.warm_schemas (schema_name, tenant_id, migration_version) values ($1, $2, $3)",
        &[&schema.as_str(), &id, &set.latest_version()],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
