//! SQL for `control.tenants`.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::model::{Tenant, TenantStatus};
use crate::error::AppError;

pub async fn find_by_subdomain(db: &impl GenericClient, subdomain: &str) -> Result<Option<Tenant>, AppError> {
    db.query_opt("select * from control.tenants where subdomain = $1 and deleted_at is null", &[&subdomain])
        .await?
        .as_ref()
        .map(Tenant::from_row)
        .transpose()
}

pub async fn find_by_id(db: &impl GenericClient, id: Uuid) -> Result<Option<Tenant>, AppError> {
    db.query_opt("select * from control.tenants where id = $1 and deleted_at is null", &[&id])
        .await?
        .as_ref()
        .map(Tenant::from_row)
        .transpose()
}

pub async fn find_by_domain(db: &impl GenericClient, domain: &str) -> Result<Option<Tenant>, AppError> {
    db.query_opt("select * from control.tenants where domain = $1 and deleted_at is null", &[&domain])
        .await?
        .as_ref()
        .map(Tenant::from_row)
        .transpose()
}

/// Any tenant with this subdomain, deleted or not (for operators).
pub async fn find_any_by_subdomain(
    db: &impl GenericClient,
    subdomain: &str,
) -> Result<Option<Tenant>, AppError> {
    db.query_opt("select * from control.tenants where subdomain = $1", &[&subdomain])
        .await?
        .as_ref()
        .map(Tenant::from_row)
        .transpose()
}

/// Tenants deleted before `cutoff`, due to be purged.
pub async fn deleted_before(
    db: &impl GenericClient,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Tenant>, AppError> {
    db.query("select * from control.tenants where deleted_at < $1", &[&cutoff])
        .await?
        .iter()
        .map(Tenant::from_row)
        .collect()
}

pub async fn list_all(db: &impl GenericClient) -> Result<Vec<Tenant>, AppError> {
    db.query("select * from control.tenants order by subdomain", &[])
        .await?
        .iter()
        .map(Tenant::from_row)
        .collect()
}

/// Tenants the user is a member of, with the user's role in each.
pub async fn list_for_user(
    db: &impl GenericClient,
    user_id: Uuid,
) -> Result<Vec<(Tenant, String)>, AppError> {
    let sql = "select t.*, m.role from control.tenants t
               join control.memberships m on m.tenant_id = t.id
               where m.user_id = $1 and t.deleted_at is null order by t.subdomain";
    db.query(sql, &[&user_id])
        .await?
        .iter()
        .map(|row| Ok((Tenant::from_row(row)?, row.get("role"))))
        .collect()
}

/// Sets the status and tells every replica, in the same transaction.
pub async fn set_status(db: &impl GenericClient, id: Uuid, status: TenantStatus) -> Result<bool, AppError> {
    let changed = db
        .execute(
            "update control.tenants set status = $2, updated_at = now() where id = $1",
            &[&id, &status.as_db()],
        )
        .await?;
    crate::db::notify::tenant_changed(db, id).await?;
    Ok(changed == 1)
}

pub async fn count(db: &impl GenericClient) -> Result<(i64, i64), AppError> {
    let row = db
        .query_one("select count(*), count(*) filter (where status = 'active') from control.tenants where deleted_at is null", &[])
        .await?;
    Ok((row.get(0), row.get(1)))
}
