//! SQL for `control.tenants`.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::model::{Tenant, TenantStatus};
use crate::error::{AppError, violated_constraint};

/// The tenant the query (one parameter) finds, if any.
async fn find_one(
    db: &impl GenericClient,
    sql: &str,
    param: &(dyn ToSql + Sync),
) -> Result<Option<Tenant>, AppError> {
    db.query_opt(sql, &[param]).await?.as_ref().map(Tenant::from_row).transpose()
}

pub async fn find_by_subdomain(db: &impl GenericClient, subdomain: &str) -> Result<Option<Tenant>, AppError> {
    find_one(db, "select * from control.tenants where subdomain = $1 and deleted_at is null", &subdomain)
        .await
}

pub async fn find_by_id(db: &impl GenericClient, id: Uuid) -> Result<Option<Tenant>, AppError> {
    find_one(db, "select * from control.tenants where id = $1 and deleted_at is null", &id).await
}

pub async fn find_by_domain(db: &impl GenericClient, domain: &str) -> Result<Option<Tenant>, AppError> {
    find_one(db, "select * from control.tenants where domain = $1 and deleted_at is null", &domain).await
}

/// Any tenant with this subdomain, deleted or not (for operators).
pub async fn find_any_by_subdomain(
    db: &impl GenericClient,
    subdomain: &str,
) -> Result<Option<Tenant>, AppError> {
    find_one(db, "select * from control.tenants where subdomain = $1", &subdomain).await
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

/// The tenant's row and its memberships as JSON, for an export.
pub async fn export_rows(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<(serde_json::Value, serde_json::Value), AppError> {
    let row = db
        .query_one(
            "select to_jsonb(t),
                    (select coalesce(jsonb_agg(to_jsonb(m) order by m.created_at), '[]'::jsonb)
                     from control.memberships m where m.tenant_id = t.id)
             from control.tenants t where t.id = $1",
            &[&id],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Inserts an exported tenant row (already given its id, subdomain and schema). An owner who
/// does not exist in this database is dropped.
pub async fn insert_exported(db: &impl GenericClient, row: &serde_json::Value) -> Result<(), AppError> {
    db.execute(
        "insert into control.tenants
         select (r).id, (r).name, (r).subdomain, (r).domain, (r).plan, (r).status, (r).expires_at,
                (r).settings, (r).stripe_customer_id,
                (select u.id from control.users u where u.id = (r).owner_id),
                (r).schema_name, (r).migration_version, (r).created_at, now()
         from (select jsonb_populate_record(null::control.tenants, $1) as r) s",
        &[row],
    )
    .await
    .map_err(|err| match violated_constraint(&err) {
        Some("tenants_pkey") => AppError::Conflict {
            field: "id",
            message: "this tenant still exists; delete it first or import it as a new tenant".into(),
        },
        Some("tenants_subdomain_key") => {
            AppError::Conflict { field: "subdomain", message: "the subdomain is already taken".into() }
        }
        Some("tenants_domain_key") => AppError::Conflict {
            field: "domain",
            message: "the custom domain belongs to another tenant".into(),
        },
        _ => err.into(),
    })?;
    Ok(())
}

/// Inserts exported memberships into tenant `id`, for users that exist here; returns how many.
pub async fn insert_exported_memberships(
    db: &impl GenericClient,
    id: Uuid,
    memberships: &serde_json::Value,
) -> Result<u64, AppError> {
    Ok(db
        .execute(
            "insert into control.memberships (tenant_id, user_id, role, created_at)
             select $1, m.user_id, m.role, m.created_at
             from jsonb_populate_recordset(null::control.memberships, $2) m
             where exists (select 1 from control.users u where u.id = m.user_id)",
            &[&id, memberships],
        )
        .await?)
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

/// Tenants not deleted, by status (for the `tenants` gauge).
pub async fn count_by_status(db: &impl GenericClient) -> Result<Vec<(String, i64)>, AppError> {
    let rows = db
        .query("select status, count(*) from control.tenants where deleted_at is null group by status", &[])
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

pub async fn count(db: &impl GenericClient) -> Result<(i64, i64), AppError> {
    let row = db
        .query_one("select count(*), count(*) filter (where status = 'active') from control.tenants where deleted_at is null", &[])
        .await?;
    Ok((row.get(0), row.get(1)))
}
