//! SQL for `control.tenants`.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::export::{ExportedMembership, ExportedTenant};
use super::model::{TENANT_COLUMNS, Tenant, TenantStatus};
use crate::db::rows::Columns;
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
    find_one(
        db,
        &format!("select {TENANT_COLUMNS} from control.tenants where subdomain = $1 and deleted_at is null"),
        &subdomain,
    )
    .await
}

pub async fn find_by_id(db: &impl GenericClient, id: Uuid) -> Result<Option<Tenant>, AppError> {
    find_one(
        db,
        &format!("select {TENANT_COLUMNS} from control.tenants where id = $1 and deleted_at is null"),
        &id,
    )
    .await
}

pub async fn find_by_domain(db: &impl GenericClient, domain: &str) -> Result<Option<Tenant>, AppError> {
    find_one(
        db,
        &format!("select {TENANT_COLUMNS} from control.tenants where domain = $1 and deleted_at is null"),
        &domain,
    )
    .await
}

/// Any tenant with this subdomain, deleted or not (for operators).
pub async fn find_any_by_subdomain(
    db: &impl GenericClient,
    subdomain: &str,
) -> Result<Option<Tenant>, AppError> {
    find_one(db, &format!("select {TENANT_COLUMNS} from control.tenants where subdomain = $1"), &subdomain)
        .await
}

/// Tenants deleted before `cutoff`, due to be purged.
pub async fn deleted_before(
    db: &impl GenericClient,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Tenant>, AppError> {
    db.query(&format!("select {TENANT_COLUMNS} from control.tenants where deleted_at < $1"), &[&cutoff])
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
            "select to_jsonb(t) as tenant,
                    (select coalesce(jsonb_agg(to_jsonb(m) order by m.created_at), '[]'::jsonb)
                     from control.memberships m where m.tenant_id = t.id) as memberships
             from control.tenants t where t.id = $1",
            &[&id],
        )
        .await?;
    let c = Columns::of(&row, "tenancy::repo::export_rows");
    Ok((c.try_get("tenant")?, c.try_get("memberships")?))
}

/// Inserts an exported tenant (already given its id, subdomain and schema) with plain
/// parameters: no `insert … select`, which Citus cannot always plan.
pub async fn insert_exported(db: &impl GenericClient, t: &ExportedTenant) -> Result<(), AppError> {
    db.execute(
        "insert into control.tenants (id, name, subdomain, domain, pending_domain, domain_token, plan,
                                      status, expires_at, settings, stripe_customer_id, owner_id,
                                      schema_name, migration_version, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now())",
        &[
            &t.id,
            &t.name,
            &t.subdomain,
            &t.domain,
            &t.pending_domain,
            &t.domain_token,
            &t.plan,
            &t.status,
            &t.expires_at,
            &t.settings,
            &t.stripe_customer_id,
            &t.owner_id,
            &t.schema_name,
            &t.migration_version,
            &t.created_at,
        ],
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

/// Which of `ids` are users of this database.
pub async fn existing_users(db: &impl GenericClient, ids: &[Uuid]) -> Result<HashSet<Uuid>, AppError> {
    let rows = db.query("select id from control.users where id = any($1)", &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|row| Columns::of(row, "tenancy::repo::existing_users").try_get("id"))
        .collect::<Result<_, _>>()?)
}

/// Inserts one exported membership of tenant `id`.
pub async fn insert_exported_membership(
    db: &impl GenericClient,
    id: Uuid,
    m: &ExportedMembership,
) -> Result<(), AppError> {
    db.execute(
        "insert into control.memberships (tenant_id, user_id, role, created_at) values ($1, $2, $3, $4)",
        &[&id, &m.user_id, &m.role, &m.created_at],
    )
    .await?;
    Ok(())
}

pub async fn list_all(db: &impl GenericClient) -> Result<Vec<Tenant>, AppError> {
    db.query(&format!("select {TENANT_COLUMNS} from control.tenants order by subdomain"), &[])
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
    // Qualified: memberships has a `created_at` too.
    let sql = "select t.id, t.name, t.subdomain, t.domain, t.plan, t.status, t.expires_at, t.settings,
                      t.owner_id, t.schema_name, t.migration_version, t.created_at, t.deleted_at, m.role
               from control.tenants t
               join control.memberships m on m.tenant_id = t.id
               where m.user_id = $1 and t.deleted_at is null order by t.subdomain";
    db.query(sql, &[&user_id])
        .await?
        .iter()
        .map(|row| {
            Ok((Tenant::from_row(row)?, Columns::of(row, "tenancy::repo::list_for_user").try_get("role")?))
        })
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
        .query(
            "select status, count(*) as n from control.tenants where deleted_at is null group by status",
            &[],
        )
        .await?;
    let by_status = |row: &tokio_postgres::Row| -> Result<(String, i64), AppError> {
        let c = Columns::of(row, "tenancy::repo::count_by_status");
        Ok((c.try_get("status")?, c.try_get("n")?))
    };
    rows.iter().map(by_status).collect()
}

pub async fn count(db: &impl GenericClient) -> Result<(i64, i64), AppError> {
    let row = db
        .query_one("select count(*) as total, count(*) filter (where status = 'active') as active from control.tenants where deleted_at is null", &[])
        .await?;
    let c = Columns::of(&row, "tenancy::repo::count");
    Ok((c.try_get("total")?, c.try_get("active")?))
}
