//! SQL for `control.tenant_secrets`. Values are only ever ciphertext here.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::rows::Columns;
use crate::error::AppError;

/// A secret as listed: its name and dates, never its value.
#[derive(Debug, Clone)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SecretInfo {
    fn from_row(row: &Row) -> Result<Self, AppError> {
        let c = Columns::of(row, "SecretInfo::from_row");
        Ok(Self {
            name: c.try_get("name")?,
            created_at: c.try_get("created_at")?,
            updated_at: c.try_get("updated_at")?,
        })
    }
}

/// One row to re-encrypt.
pub struct Sealed {
    pub tenant_id: Uuid,
    pub name: String,
    pub ciphertext: Vec<u8>,
}

pub async fn upsert(
    db: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
    ciphertext: &[u8],
    key_id: &str,
) -> Result<SecretInfo, AppError> {
    let row = db
        .query_one(
            "insert into control.tenant_secrets (tenant_id, name, ciphertext, key_id) values ($1, $2, $3, $4)
             on conflict (tenant_id, name)
             do update set ciphertext = excluded.ciphertext, key_id = excluded.key_id, updated_at = now()
             returning name, created_at, updated_at",
            &[&tenant_id, &name, &ciphertext, &key_id],
        )
        .await?;
    SecretInfo::from_row(&row)
}

pub async fn list(db: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<SecretInfo>, AppError> {
    let rows = db
        .query(
            "select name, created_at, updated_at from control.tenant_secrets where tenant_id = $1 order by name",
            &[&tenant_id],
        )
        .await?;
    rows.iter().map(SecretInfo::from_row).collect()
}

pub async fn ciphertext(
    db: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
) -> Result<Option<Vec<u8>>, AppError> {
    let row = db
        .query_opt(
            "select ciphertext from control.tenant_secrets where tenant_id = $1 and name = $2",
            &[&tenant_id, &name],
        )
        .await?;
    Ok(row.map(|row| Columns::of(&row, "secrets::repo::ciphertext").try_get("ciphertext")).transpose()?)
}

pub async fn delete(db: &impl GenericClient, tenant_id: Uuid, name: &str) -> Result<bool, AppError> {
    let deleted = db
        .execute(
            "delete from control.tenant_secrets where tenant_id = $1 and name = $2",
            &[&tenant_id, &name],
        )
        .await?;
    Ok(deleted > 0)
}

/// Up to `limit` rows not under `current_key`, locked for this transaction (concurrent
/// rotations take different rows).
pub async fn lock_stale(
    db: &impl GenericClient,
    current_key: &str,
    limit: i64,
) -> Result<Vec<Sealed>, AppError> {
    let rows = db
        .query(
            "select tenant_id, name, ciphertext from control.tenant_secrets where key_id <> $1
             order by tenant_id, name limit $2 for update skip locked",
            &[&current_key, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let c = Columns::of(row, "secrets::repo::lock_stale");
            Ok(Sealed {
                tenant_id: c.try_get("tenant_id")?,
                name: c.try_get("name")?,
                ciphertext: c.try_get("ciphertext")?,
            })
        })
        .collect()
}

/// Replaces a value's ciphertext without touching `updated_at` (the value did not change).
pub async fn reseal(
    db: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
    ciphertext: &[u8],
    key_id: &str,
) -> Result<(), AppError> {
    db.execute(
        "update control.tenant_secrets set ciphertext = $3, key_id = $4 where tenant_id = $1 and name = $2",
        &[&tenant_id, &name, &ciphertext, &key_id],
    )
    .await?;
    Ok(())
}

/// How many rows are still under another key than `current_key`.
pub async fn count_stale(db: &impl GenericClient, current_key: &str) -> Result<i64, AppError> {
    let row = db
        .query_one("select count(*) as stale from control.tenant_secrets where key_id <> $1", &[&current_key])
        .await?;
    Ok(Columns::of(&row, "secrets::repo::count_stale").try_get("stale")?)
}
