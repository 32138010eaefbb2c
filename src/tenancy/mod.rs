//! Tenants: model, resolution, provisioning, lifecycle.

pub mod dump;
pub mod export;
pub mod graphql;
pub mod model;
pub mod provision;
pub mod repo;
pub mod resolve;

use deadpool_postgres::Pool;
use uuid::Uuid;

use self::model::{Subdomain, Tenant, TenantName, TenantStatus};
use self::provision::{NewTenant, provision};
use crate::app::AppState;
use crate::error::AppError;

/// Creates a tenant owned by `user_id`.
pub async fn create_for_user(
    state: &AppState,
    user_id: Uuid,
    name: &str,
    subdomain: &str,
) -> Result<Tenant, AppError> {
    let new = NewTenant {
        name: TenantName::parse(name)?,
        subdomain: Subdomain::parse(subdomain)?,
        owner: Some(user_id),
    };
    let tenant = provision(&state.pool, &state.tenant_migrations, new).await?;
    state.members.forget(tenant.id, user_id).await;
    Ok(tenant)
}

/// Finds a tenant by subdomain, or `TENANT_NOT_FOUND`.
pub async fn by_subdomain(pool: &Pool, subdomain: &str) -> Result<Tenant, AppError> {
    let client = pool.get().await?;
    repo::find_by_subdomain(&client, subdomain)
        .await?
        .ok_or_else(|| {
            AppError::TenantNotFound(format!("no tenant has the subdomain {subdomain:?}"))
        })
}

/// Suspends or reactivates a tenant; every replica forgets its cached copy.
#[tracing::instrument(skip_all, fields(tenant.id))]
pub async fn set_status(
    pool: &Pool,
    subdomain: &str,
    status: TenantStatus,
) -> Result<Tenant, AppError> {
    let tenant = by_subdomain(pool, subdomain).await?;
    tracing::Span::current().record("tenant.id", tracing::field::display(tenant.id));
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    repo::set_status(&tx, tenant.id, status).await?;
    tx.commit().await?;
    tracing::info!(status = status.as_db(), "tenant status changed");
    Ok(Tenant { status, ..tenant })
}

/// Deletes a tenant: its schema and all its data, its memberships and its row.
#[tracing::instrument(skip_all, fields(tenant.id))]
pub async fn delete(pool: &Pool, subdomain: &str) -> Result<Tenant, AppError> {
    let tenant = by_subdomain(pool, subdomain).await?;
    tracing::Span::current().record("tenant.id", tracing::field::display(tenant.id));
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    crate::db::migrate::lock_schema(&tx, &tenant.schema).await?;
    tx.batch_execute(&format!(
        "drop schema if exists {} cascade",
        tenant.schema.quoted()
    ))
    .await?;
    tx.execute("delete from control.tenants where id = $1", &[&tenant.id])
        .await?;
    crate::db::notify::tenant_changed(&tx, tenant.id).await?;
    tx.commit().await?;
    tracing::info!("tenant deleted");
    Ok(tenant)
}
