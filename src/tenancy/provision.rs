//! Provisioning: a tenant row, its owner, its schema, its migrations and its role (see
//! `db::tenant_role`), in one transaction.
//!
//! DDL is transactional in PostgreSQL, so a failure at any step leaves nothing behind: no row,
//! no schema, no half-migrated tables. There is nothing to mark or retry.

use deadpool_postgres::Pool;
use uuid::Uuid;

use deadpool_postgres::Transaction;

use super::model::{Subdomain, TENANT_COLUMNS, Tenant, TenantName};
use super::warm;
use crate::db::migrate::{MigrationSet, migrate_tenant_in_tx};
use crate::db::{SchemaName, tenant_role};
use crate::error::{AppError, violated_constraint};
use crate::members::{Role, repo as members_repo};

/// What a new tenant is made of; owner is absent for operator-created tenants.
pub struct NewTenant {
    pub name: TenantName,
    pub subdomain: Subdomain,
    pub owner: Option<Uuid>,
}

/// Provisions a tenant: in a warm schema of the pool if one is ready (one statement claims it,
/// no DDL), else with its schema created and migrated now, under the id of a tenant role made
/// ahead if one is left (no membership changes), else under a fresh random id.
#[tracing::instrument(skip_all, fields(tenant.id, warm))]
pub async fn provision(pool: &Pool, migrations: &MigrationSet, new: NewTenant) -> Result<Tenant, AppError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some((id, schema)) = warm::claim(&tx, migrations).await? else {
        drop(tx);
        drop(client);
        tracing::Span::current().record("warm", false);
        return provision_cold(pool, migrations, None, new).await;
    };
    let span = tracing::Span::current();
    span.record("tenant.id", tracing::field::display(id));
    span.record("warm", true);
    insert_tenant(&tx, id, &schema, &new, migrations.latest_version()).await?;
    // The pool refills behind the claim (a unique job: claims in a burst queue one refill).
    crate::jobs::enqueue(&tx, &crate::jobs::NewJob::new(warm::REFILL).unique(warm::REFILL)).await?;
    finish(tx, id).await
}

/// Provisions a tenant under a chosen id (imports keep or pick theirs; benches use fixed ones).
#[tracing::instrument(skip_all, fields(tenant.id))]
pub async fn provision_with_id(
    pool: &Pool,
    migrations: &MigrationSet,
    id: Uuid,
    new: NewTenant,
) -> Result<Tenant, AppError> {
    provision_cold(pool, migrations, Some(id), new).await
}

/// The schema created and migrated now, under `id` or else a role made ahead's id.
async fn provision_cold(
    pool: &Pool,
    migrations: &MigrationSet,
    id: Option<Uuid>,
    new: NewTenant,
) -> Result<Tenant, AppError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let id = match id {
        Some(id) => id,
        None => tenant_role::take_ahead(&tx).await?.unwrap_or_else(Uuid::new_v4),
    };
    tracing::Span::current().record("tenant.id", tracing::field::display(id));
    let schema = SchemaName::for_tenant(id);
    insert_tenant(&tx, id, &schema, &new, 0).await?;
    tx.execute_typed(&format!("create schema {}", schema.quoted()), &[]).await?;
    // Before the migrations: their objects come with the role's grants (default privileges).
    let citus = tenant_role::grant_empty(&tx, &schema).await?;
    migrate_tenant_in_tx(&tx, id, &schema, migrations).await.map_err(AppError::Internal)?;
    if citus {
        tenant_role::grant_existing(&tx, &schema).await?;
    }
    finish(tx, id).await
}

/// The tenant's control row, and its owner's membership.
async fn insert_tenant(
    tx: &Transaction<'_>,
    id: Uuid,
    schema: &SchemaName,
    new: &NewTenant,
    migration_version: i32,
) -> Result<(), AppError> {
    tx.execute(
        "insert into control.tenants (id, name, subdomain, owner_id, schema_name, migration_version)
         values ($1, $2, $3, $4, $5, $6)",
        &[&id, &new.name.as_str(), &new.subdomain.as_str(), &new.owner, &schema.as_str(), &migration_version],
    )
    .await
    .map_err(|err| match violated_constraint(&err) {
        Some("tenants_subdomain_key") => AppError::Conflict {
            field: "subdomain",
            message: format!("the subdomain {:?} is already taken", new.subdomain.as_str()),
        },
        _ => err.into(),
    })?;
    if let Some(owner) = new.owner {
        members_repo::insert(tx, id, owner, Role::Owner).await?;
    }
    Ok(())
}

/// Reads the new tenant back, tells the replicas and commits.
async fn finish(tx: Transaction<'_>, id: Uuid) -> Result<Tenant, AppError> {
    let row =
        tx.query_one(&format!("select {TENANT_COLUMNS} from control.tenants where id = $1"), &[&id]).await?;
    // Replicas may have cached "no such tenant" for this subdomain: the commit clears it.
    crate::db::notify::tenant_changed(&tx, id).await?;
    tx.commit().await?;
    tracing::info!("tenant provisioned");
    Tenant::from_row(&row)
}
