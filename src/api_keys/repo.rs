//! SQL for `control.api_keys`.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::db::rows::Columns;
use crate::error::AppError;
use crate::members::Role;

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    fn from_row(row: &Row) -> Result<Self, AppError> {
        let c = Columns::of(row, "ApiKey::from_row");
        Ok(Self {
            id: c.try_get("id")?,
            name: c.try_get("name")?,
            role: Role::from_db(c.try_get("role")?)?,
            prefix: c.try_get("prefix")?,
            created_by: c.try_get("created_by")?,
            created_at: c.try_get("created_at")?,
            last_used_at: c.try_get("last_used_at")?,
            revoked_at: c.try_get("revoked_at")?,
        })
    }
}

/// What authentication needs.
pub struct StoredKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
    pub secret_hash: Vec<u8>,
    pub revoked: bool,
    /// The member who created the key (for a key made by a key: that key's creator).
    pub created_by: Option<Uuid>,
}

pub async fn insert(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    name: &str,
    role: Role,
    prefix: &str,
    secret_hash: &[u8],
    created_by: Option<Uuid>,
) -> Result<ApiKey, AppError> {
    let row = tx
        .control()
        .query_one(
            "insert into control.api_keys (id, tenant_id, name, role, prefix, secret_hash, created_by)
             values ($1, $2, $3, $4, $5, $6, $7) returning id, name, role, prefix, created_by, created_at, last_used_at, revoked_at",
            &[&Uuid::new_v4(), &tenant_id, &name, &role.as_db(), &prefix, &secret_hash, &created_by],
        )
        .await?;
    ApiKey::from_row(&row)
}

pub async fn list(db: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<ApiKey>, AppError> {
    let rows = db
        .query("select id, name, role, prefix, created_by, created_at, last_used_at, revoked_at from control.api_keys
             where tenant_id = $1 order by created_at", &[&tenant_id])
        .await?;
    rows.iter().map(ApiKey::from_row).collect()
}

pub async fn revoke(tx: &mut TenantTx, tenant_id: Uuid, id: Uuid) -> Result<Option<ApiKey>, AppError> {
    let row = tx
        .control()
        .query_opt(
            "update control.api_keys set revoked_at = now()
             where id = $1 and tenant_id = $2 and revoked_at is null returning id, name, role, prefix, created_by, created_at, last_used_at, revoked_at",
            &[&id, &tenant_id],
        )
        .await?;
    row.as_ref().map(ApiKey::from_row).transpose()
}

/// Revokes the tenant's live keys created by `user_id` whose role is one of `roles`.
pub async fn revoke_created_by(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    user_id: Uuid,
    roles: &[&str],
) -> Result<Vec<ApiKey>, AppError> {
    let rows = tx
        .control()
        .query(
            "update control.api_keys set revoked_at = now()
             where tenant_id = $1 and created_by = $2 and role = any($3) and revoked_at is null
             returning id, name, role, prefix, created_by, created_at, last_used_at, revoked_at",
            &[&tenant_id, &user_id, &roles],
        )
        .await?;
    rows.iter().map(ApiKey::from_row).collect()
}

pub async fn find_by_prefix(db: &impl GenericClient, prefix: &str) -> Result<Option<StoredKey>, AppError> {
    let row = db
        .query_opt(
            "select id, tenant_id, role, secret_hash, revoked_at is not null as revoked, created_by from control.api_keys
             where prefix = $1",
            &[&prefix],
        )
        .await?;
    row.map(|r| {
        let c = Columns::of(&r, "api_keys::repo::find_by_prefix");
        Ok(StoredKey {
            id: c.try_get("id")?,
            tenant_id: c.try_get("tenant_id")?,
            role: Role::from_db(c.try_get("role")?)?,
            secret_hash: c.try_get("secret_hash")?,
            revoked: c.try_get("revoked")?,
            created_by: c.try_get("created_by")?,
        })
    })
    .transpose()
}

pub async fn touch(db: &impl GenericClient, id: Uuid) -> Result<(), AppError> {
    db.execute("update control.api_keys set last_used_at = now() where id = $1", &[&id]).await?;
    Ok(())
}
