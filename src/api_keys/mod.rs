//! Tenant API keys for machine clients: `tk_<prefix>_<secret>`, shown once, stored as a hash.
//! A key acts as a member of its tenant with the key's role, and of no other tenant.

pub mod repo;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use moka::future::Cache;
use rand::RngCore;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::auth::secret::{hash_secret, new_secret};
use crate::auth::token::TokenRejected;
use crate::db::TenantTx;
use crate::db::notify::{API_KEY_CHANGED, publish};
use crate::error::AppError;
use crate::members::{self, Role};

use self::repo::{ApiKey, StoredKey};

/// An authenticated API key, as a caller.
#[derive(Debug, Clone, Copy)]
pub struct KeyCaller {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
    /// The member answerable for the key: keys it creates are theirs too.
    pub created_by: Option<Uuid>,
}

/// Splits `tk_<12 hex>_<secret>` into prefix and secret.
fn split(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("tk_")?;
    let (prefix, secret) = rest.split_once('_')?;
    let ok = prefix.len() == 12 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty();
    ok.then_some((prefix, secret))
}

pub fn looks_like_key(token: &str) -> bool {
    token.starts_with("tk_")
}

/// Creates a key; the returned string is the only time the secret exists outside the caller.
/// `created_by` is the member answerable for it: the signed-in creator, or, when a key creates
/// a key, that key's creator (so removing the member revokes both).
pub async fn create(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    actor: Actor,
    created_by: Option<Uuid>,
    name: &str,
    role: Role,
) -> Result<(String, ApiKey), AppError> {
    let name = name.trim();
    if !(1..=100).contains(&name.chars().count()) {
        return Err(AppError::validation("name", "must be 1 to 100 characters long"));
    }
    if role == Role::Owner {
        return Err(AppError::validation("role", "an API key can be ADMIN, MEMBER or VIEWER, not OWNER"));
    }
    let mut bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut bytes);
    let prefix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = new_secret();
    let key = repo::insert(tx, tenant_id, name, role, &prefix, &hash_secret(&secret), created_by).await?;
    let details = serde_json::json!({ "name": name, "role": role.as_db(), "prefix": prefix });
    audit::record(tx, actor, "api_key.created", "api_key", &key.id.to_string(), details).await?;
    // A lookup of this prefix may have been cached as unknown on some replica.
    publish(tx.control(), API_KEY_CHANGED, &prefix).await?;
    Ok((format!("tk_{prefix}_{secret}"), key))
}

/// Revokes a key of the tenant; every replica forgets it.
pub async fn revoke(tx: &mut TenantTx, tenant_id: Uuid, actor: Actor, id: Uuid) -> Result<ApiKey, AppError> {
    let key = repo::revoke(tx, tenant_id, id).await?.ok_or(AppError::NotFound("API key"))?;
    audit::record(
        tx,
        actor,
        "api_key.revoked",
        "api_key",
        &id.to_string(),
        serde_json::json!({ "name": key.name }),
    )
    .await?;
    publish(tx.control(), API_KEY_CHANGED, &key.prefix).await?;
    Ok(key)
}

/// Revokes the keys `member` created in the tenant whose role is above `allowed` (`None`: all
/// of them, on removal), each with its audit entry; returns their prefixes. A key never keeps
/// more power than its creator has now.
pub async fn revoke_created_by(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    actor: Actor,
    member: Uuid,
    allowed: Option<Role>,
) -> Result<Vec<String>, AppError> {
    let roles: Vec<&str> = [Role::Owner, Role::Admin, Role::Member, Role::Viewer]
        .into_iter()
        // `Role` orders from most to least privileged.
        .filter(|role| allowed.is_none_or(|allowed| *role < allowed))
        .map(Role::as_db)
        .collect();
    if roles.is_empty() {
        return Ok(Vec::new());
    }
    let revoked = repo::revoke_created_by(tx, tenant_id, member, &roles).await?;
    let reason = if allowed.is_some() { "creator demoted" } else { "creator removed" };
    for key in &revoked {
        let details = serde_json::json!({ "name": key.name, "reason": reason });
        audit::record(tx, actor, "api_key.revoked", "api_key", &key.id.to_string(), details).await?;
        publish(tx.control(), API_KEY_CHANGED, &key.prefix).await?;
    }
    Ok(revoked.into_iter().map(|key| key.prefix).collect())
}

/// Revokes, with the member's demotion or removal, the API keys they created above their new
/// role (all of them on removal).
pub struct RevokeKeys;

impl members::OnMemberChange for RevokeKeys {
    fn member_changed(
        &self,
        tx: &mut TenantTx,
        tenant_id: Uuid,
        actor: Actor,
        member: Uuid,
        role: Option<Role>,
    ) -> impl Future<Output = Result<Vec<String>, AppError>> + Send {
        revoke_created_by(tx, tenant_id, actor, member, role)
    }
}

/// Authenticates keys by prefix (cached), and records use at most once a minute per key.
#[derive(Clone)]
pub struct ApiKeyCache {
    keys: Cache<String, Option<Arc<StoredKey>>>,
    recently_used: Cache<Uuid, ()>,
}

impl ApiKeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            keys: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            recently_used: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    pub async fn authenticate(&self, pool: &Pool, key: &str) -> Result<KeyCaller, TokenRejected> {
        let (prefix, secret) = split(key).ok_or(TokenRejected::Invalid)?;
        let stored = self
            .keys
            .try_get_with_by_ref(prefix, async {
                let client = pool.get().await.map_err(AppError::from)?;
                Ok::<_, AppError>(repo::find_by_prefix(&client, prefix).await?.map(Arc::new))
            })
            .await
            .map_err(|err| {
                tracing::error!(error = ?err, "API key lookup failed");
                TokenRejected::Invalid
            })?
            .ok_or(TokenRejected::Invalid)?;
        // Both sides are SHA-256 digests of a high-entropy secret: comparing them leaks nothing useful.
        if stored.revoked || stored.secret_hash != hash_secret(secret) {
            return Err(TokenRejected::Invalid);
        }
        if !self.recently_used.contains_key(&stored.id) {
            self.recently_used.insert(stored.id, ()).await;
            let (pool, id) = (pool.clone(), stored.id);
            tokio::spawn(async move {
                if let Ok(client) = pool.get().await {
                    let _ = repo::touch(&client, id).await;
                }
            });
        }
        Ok(KeyCaller {
            id: stored.id,
            tenant_id: stored.tenant_id,
            role: stored.role,
            created_by: stored.created_by,
        })
    }

    pub async fn forget(&self, prefix: &str) {
        self.keys.invalidate(prefix).await;
    }

    pub fn clear(&self) {
        self.keys.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_prefix_and_secret() {
        assert_eq!(split("tk_0123456789ab_s3cr3t"), Some(("0123456789ab", "s3cr3t")));
        for bad in ["tk_0123_s", "xx_0123456789ab_s", "tk_0123456789ab_", "tk_0123456789zz_s", "eyJ.x.y"] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }
}
