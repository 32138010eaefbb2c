//! SQL for `control.sso_connections` and `control.sso_domains` (always the control pool: none
//! of it is tenant data).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::rows::Columns;
use crate::error::AppError;
use crate::members::Role;

/// A tenant's connection as stored; the secret stays sealed until a flow needs it.
#[derive(Debug, Clone)]
pub struct StoredConnection {
    pub tenant_id: Uuid,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Vec<u8>,
    pub default_role: Role,
    pub enforced_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const CONNECTION: &str =
    "select tenant_id, issuer, client_id, client_secret, default_role, enforced_at, updated_at
                          from control.sso_connections";

impl StoredConnection {
    fn from_row(row: &Row) -> Result<Self, AppError> {
        let c = Columns::of(row, "sso::repo::StoredConnection");
        Ok(Self {
            tenant_id: c.try_get("tenant_id")?,
            issuer: c.try_get("issuer")?,
            client_id: c.try_get("client_id")?,
            client_secret: c.try_get("client_secret")?,
            default_role: Role::from_db(c.try_get("default_role")?)?,
            enforced_at: c.try_get("enforced_at")?,
            updated_at: c.try_get("updated_at")?,
        })
    }
}

pub async fn connection(
    db: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<Option<StoredConnection>, AppError> {
    let row = db.query_opt(&format!("{CONNECTION} where tenant_id = $1"), &[&tenant_id]).await?;
    row.as_ref().map(StoredConnection::from_row).transpose()
}

/// What `configureSso` writes. `client_secret`: `None` keeps the stored one.
pub struct ConnectionWrite<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub client_secret: Option<(&'a [u8], &'a str)>,
    pub default_role: Role,
    pub enforced: bool,
}

/// Creates or updates the connection; `enforced_at` keeps its first time while enforced.
/// `None` when there is none yet and no secret was given.
pub async fn upsert(
    db: &impl GenericClient,
    tenant_id: Uuid,
    write: &ConnectionWrite<'_>,
) -> Result<Option<StoredConnection>, AppError> {
    let (secret, key_id) = write.client_secret.unzip();
    let row = db
        .query_opt(
            "with updated as (
                update control.sso_connections
                   set issuer = $2, client_id = $3, client_secret = coalesce($4, client_secret),
                       key_id = coalesce($5, key_id), default_role = $6,
                       enforced_at = case when $7 then coalesce(enforced_at, now()) end, updated_at = now()
                 where tenant_id = $1
             returning tenant_id, issuer, client_id, client_secret, default_role, enforced_at, updated_at
             ), inserted as (
                insert into control.sso_connections
                       (tenant_id, issuer, client_id, client_secret, key_id, default_role, enforced_at)
                select $1, $2, $3, $4, $5, $6, case when $7 then now() end
                 where $4::bytea is not null and not exists (select 1 from updated)
             returning tenant_id, issuer, client_id, client_secret, default_role, enforced_at, updated_at
             )
             select tenant_id, issuer, client_id, client_secret, default_role, enforced_at, updated_at from updated
             union all
             select tenant_id, issuer, client_id, client_secret, default_role, enforced_at, updated_at from inserted",
            &[
                &tenant_id,
                &write.issuer,
                &write.client_id,
                &secret,
                &key_id,
                &write.default_role.as_db(),
                &write.enforced,
            ],
        )
        .await?;
    row.as_ref().map(StoredConnection::from_row).transpose()
}

/// A claimed email domain and its proof.
#[derive(Debug, Clone)]
pub struct SsoDomain {
    pub domain: String,
    pub token: String,
    pub verified_at: Option<DateTime<Utc>>,
}

pub async fn domains(db: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<SsoDomain>, AppError> {
    let rows = db
        .query(
            "select domain, token, verified_at from control.sso_domains where tenant_id = $1 order by domain",
            &[&tenant_id],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let c = Columns::of(row, "sso::repo::domains");
            Ok(SsoDomain {
                domain: c.try_get("domain")?,
                token: c.try_get("token")?,
                verified_at: c.try_get("verified_at")?,
            })
        })
        .collect()
}

/// Makes the tenant's claimed domains exactly `wanted`: new ones are claimed (pending, with a
/// fresh token), ones no longer wanted are released. Verified ones stay verified.
pub async fn set_domains(
    db: &impl GenericClient,
    tenant_id: Uuid,
    wanted: &[String],
) -> Result<(), AppError> {
    db.execute(
        "delete from control.sso_domains where tenant_id = $1 and not (domain = any($2))",
        &[&tenant_id, &wanted],
    )
    .await?;
    db.execute(
        "insert into control.sso_domains (tenant_id, domain, token)
         select $1, d, replace(gen_random_uuid()::text, '-', '') from unnest($2::text[]) d
         on conflict on constraint sso_domains_pkey do nothing",
        &[&tenant_id, &wanted],
    )
    .await?;
    Ok(())
}

/// Marks a proven claim verified; `CONFLICT` when another tenant verified it first.
pub async fn mark_verified(
    db: &impl GenericClient,
    tenant_id: Uuid,
    domain: &str,
    token: &str,
) -> Result<bool, AppError> {
    let updated = db
        .execute(
            "update control.sso_domains set verified_at = coalesce(verified_at, now())
              where tenant_id = $1 and domain = $2 and token = $3",
            &[&tenant_id, &domain, &token],
        )
        .await
        .map_err(|err| {
            let taken = crate::error::violated_constraint(&err) == Some("sso_domains_verified_key");
            if taken { domain_taken() } else { AppError::from(err) }
        })?;
    Ok(updated == 1)
}

/// The error for an email domain another tenant verified.
pub fn domain_taken() -> AppError {
    AppError::Conflict {
        field: "domain",
        message: "this email domain is already verified for single sign-on by another tenant".into(),
    }
}

/// Whether another tenant has verified `domain`.
pub async fn verified_elsewhere(
    db: &impl GenericClient,
    tenant_id: Uuid,
    domain: &str,
) -> Result<bool, AppError> {
    let row = db
        .query_opt(
            "select 1 as taken from control.sso_domains
              where domain = $1 and tenant_id <> $2 and verified_at is not null",
            &[&domain, &tenant_id],
        )
        .await?;
    Ok(row.is_some())
}

/// The tenant that verified `domain` and has a connection: where `startSsoSignIn(email:)` goes.
pub async fn tenant_for_domain(db: &impl GenericClient, domain: &str) -> Result<Option<Uuid>, AppError> {
    let row = db
        .query_opt(
            "select d.tenant_id from control.sso_domains d
               join control.sso_connections c on c.tenant_id = d.tenant_id
               join control.tenants t on t.id = d.tenant_id and t.deleted_at is null
              where d.domain = $1 and d.verified_at is not null",
            &[&domain],
        )
        .await?;
    row.map(|row| Ok(Columns::of(&row, "sso::repo::tenant_for_domain").try_get("tenant_id")?)).transpose()
}

/// Whether `domain` is verified by `tenant_id`.
pub async fn verified_by(db: &impl GenericClient, tenant_id: Uuid, domain: &str) -> Result<bool, AppError> {
    let row = db
        .query_opt(
            "select 1 as verified from control.sso_domains
              where tenant_id = $1 and domain = $2 and verified_at is not null",
            &[&tenant_id, &domain],
        )
        .await?;
    Ok(row.is_some())
}

/// Whether a tenant that verified `domain` enforces SSO.
pub async fn domain_enforced(db: &impl GenericClient, domain: &str) -> Result<bool, AppError> {
    let row = db
        .query_opt(
            "select 1 as enforced from control.sso_domains d
               join control.sso_connections c on c.tenant_id = d.tenant_id and c.enforced_at is not null
              where d.domain = $1 and d.verified_at is not null",
            &[&domain],
        )
        .await?;
    Ok(row.is_some())
}

/// Revokes the tenant's API keys created before `before`; returns their prefixes.
pub async fn revoke_keys_before(
    db: &impl GenericClient,
    tenant_id: Uuid,
    before: DateTime<Utc>,
) -> Result<Vec<String>, AppError> {
    let rows = db
        .query(
            "update control.api_keys set revoked_at = now()
              where tenant_id = $1 and revoked_at is null and created_at <= $2 returning prefix",
            &[&tenant_id, &before],
        )
        .await?;
    rows.iter().map(|row| Ok(Columns::of(row, "sso::repo::revoke_keys_before").try_get("prefix")?)).collect()
}
