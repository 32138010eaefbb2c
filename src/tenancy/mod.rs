//! Tenants: model, resolution, provisioning, lifecycle.

pub mod domain_proof;
pub mod domains;
pub mod dump;
mod dump_check;
pub mod export;
pub mod model;
pub mod provision;
pub mod repo;
pub mod resolve;
pub mod warm;

use deadpool_postgres::Pool;
use uuid::Uuid;

use self::model::{Domain, Subdomain, TENANT_COLUMNS, Tenant, TenantName, TenantStatus};
use self::provision::{NewTenant, provision};
use self::resolve::{TenantCache, TenantKey};
use crate::audit::{self, Actor};
use crate::db::TenantTx;
use crate::db::migrate::MigrationSet;
use crate::db::notify::{TENANT_CHANGED, publish};
use crate::error::AppError;
use crate::members::MemberCache;

/// The handles tenant creation uses, lent by the caller (`AppState::provisioning`).
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub pool: &'a Pool,
    pub tenant_migrations: &'a MigrationSet,
    pub tenants: &'a TenantCache,
    pub members: &'a MemberCache,
    pub require_verified_email: bool,
}

/// Creates a tenant owned by `user_id`.
pub async fn create_for_user(
    state: Handles<'_>,
    user_id: Uuid,
    name: &str,
    subdomain: &str,
) -> Result<Tenant, AppError> {
    let new = NewTenant {
        name: TenantName::parse(name)?,
        subdomain: Subdomain::parse(subdomain)?,
        owner: Some(user_id),
    };
    // A token may name no account (deleted, or handed out by `signUp` for a taken address).
    let user = crate::auth::repo::require(&state.pool.get().await?, user_id).await?;
    if state.require_verified_email && !user.email_verified {
        return Err(AppError::EmailNotVerified);
    }
    let tenant = provision(state.pool, state.tenant_migrations, new).await?;
    // The notification reaches this replica too, a moment later; the creator's next request
    // must not meet a cached "no such tenant" or "not a member" before it does.
    state.tenants.forget(&TenantKey::Subdomain(tenant.subdomain.clone())).await;
    state.members.forget(tenant.id, user_id).await;
    Ok(tenant)
}

/// Renames a tenant and/or claims a custom domain (`Some(None)` removes it and any claim), with
/// its audit entry, in the tenant transaction. A claimed domain is pending, with a fresh token,
/// until `verifyDomain` proves it; the verified domain keeps routing meanwhile. Claiming the
/// verified domain again drops a pending claim.
#[tracing::instrument(skip_all, fields(tenant.id = %tenant.id))]
pub async fn update(
    tx: &mut TenantTx,
    own_hosts: (&str, &str),
    actor: Actor,
    tenant: &Tenant,
    name: Option<&str>,
    domain: Option<Option<&str>>,
) -> Result<Tenant, AppError> {
    let (base_domain, public_url) = own_hosts;
    let name = name.map(TenantName::parse).transpose()?;
    let domain = domain.map(|d| d.map(|d| Domain::parse(d, base_domain)).transpose()).transpose()?;
    if let Some(Some(claimed)) = &domain {
        domain_proof::claimable(claimed, public_url)?;
        let taken = tx
            .control()
            .query_opt(
                "select 1 from control.tenants where domain = $1 and id <> $2",
                &[&claimed.as_str(), &tenant.id],
            )
            .await?;
        if taken.is_some() {
            return Err(domains::taken());
        }
    }
    let token = Uuid::new_v4().simple().to_string();
    let sql = format!(
        "update control.tenants set
             name = coalesce($2, name),
             domain = case when $3 and $4::text is null then null else domain end,
             pending_domain = case when not $3 then pending_domain
                                   when $4::text = domain then null else $4::text end,
             domain_token = case when not $3 then domain_token
                                 when $4::text is null or $4::text = domain then null else $5 end,
             updated_at = now()
         where id = $1 returning {TENANT_COLUMNS}"
    );
    let row = tx
        .control()
        .query_one(
            &sql,
            &[
                &tenant.id,
                &name.as_ref().map(TenantName::as_str),
                &domain.is_some(),
                &domain.as_ref().and_then(|d| d.as_ref().map(Domain::as_str)),
                &token,
            ],
        )
        .await
        .map_err(|err| {
            if err.constraint() == Some("tenants_domain_key") {
                AppError::Conflict {
                    field: "domain",
                    message: "this domain is already used by another tenant".into(),
                }
            } else {
                err
            }
        })?;
    let updated = Tenant::from_row(&row)?;
    let claimed = domain.as_ref().map(|d| d.as_ref().map(Domain::as_str));
    let details = serde_json::json!({ "name": updated.name, "domain": updated.domain, "claimed": claimed });
    audit::record(tx, actor, "tenant.updated", "tenant", &tenant.id.to_string(), details).await?;
    publish(tx.control(), TENANT_CHANGED, &tenant.id.to_string()).await?;
    Ok(updated)
}

/// Deletes a tenant softly: it is gone for every request at once (on every replica); its schema
/// and data are purged after the grace period, or at once by `tenantry tenants delete --purge`.
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id))]
pub async fn soft_delete(tx: &mut TenantTx, actor: Actor, tenant_id: Uuid) -> Result<(), AppError> {
    tx.control()
        .execute(
        "update control.tenants set deleted_at = now(), updated_at = now() where id = $1 and deleted_at is null",
        &[&tenant_id],
    )
    .await?;
    audit::record(tx, actor, "tenant.deleted", "tenant", &tenant_id.to_string(), serde_json::json!({}))
        .await?;
    publish(tx.control(), TENANT_CHANGED, &tenant_id.to_string()).await?;
    tracing::info!("tenant deleted (soft)");
    Ok(())
}

/// Purges tenants deleted longer ago than `grace`; returns how many.
pub async fn purge_deleted(pool: &Pool, grace: chrono::Duration) -> Result<usize, AppError> {
    let due = {
        let client = pool.get().await?;
        repo::deleted_before(&client, chrono::Utc::now() - grace).await?
    };
    for tenant in &due {
        purge(pool, tenant).await?;
    }
    Ok(due.len())
}

/// Finds a tenant by subdomain, deleted or not (for operators), or `TENANT_NOT_FOUND`.
pub async fn by_subdomain(pool: &Pool, subdomain: &str) -> Result<Tenant, AppError> {
    let client = pool.get().await?;
    repo::find_any_by_subdomain(&client, subdomain)
        .await?
        .ok_or_else(|| AppError::TenantNotFound(format!("no tenant has the subdomain {subdomain:?}")))
}

/// Suspends or reactivates a tenant; every replica forgets its cached copy.
#[tracing::instrument(skip_all, fields(tenant.id))]
pub async fn set_status(pool: &Pool, subdomain: &str, status: TenantStatus) -> Result<Tenant, AppError> {
    let tenant = by_subdomain(pool, subdomain).await?;
    tracing::Span::current().record("tenant.id", tracing::field::display(tenant.id));
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    repo::set_status(&tx, tenant.id, status).await?;
    tx.commit().await?;
    tracing::info!(status = status.as_db(), "tenant status changed");
    Ok(Tenant { status, ..tenant })
}

/// Purges a tenant: drops its schema and all its data, its role, its memberships and its row.
#[tracing::instrument(skip_all, fields(tenant.id = %tenant.id))]
pub async fn purge(pool: &Pool, tenant: &Tenant) -> Result<(), AppError> {
    let mut client = pool.get().await?;
    let mut tx = client.transaction().await?;
    crate::db::migrate::lock_schema(&tx, &tenant.schema).await?;
    tx.execute_typed(&format!("drop schema if exists {} cascade", tenant.schema.quoted()), &[]).await?;
    crate::db::tenant_role::drop(&mut tx, &tenant.schema).await?;
    tx.execute("delete from control.tenants where id = $1", &[&tenant.id]).await?;
    crate::db::notify::tenant_changed(&tx, tenant.id).await?;
    tx.commit().await?;
    tracing::info!("tenant purged");
    Ok(())
}
