//! `tenantry keys rotate` for single sign-on: re-encrypts connections' client secrets and the
//! providers' refresh tokens kept for SSO sessions that are not under the current key.
//! (Flows in progress live ten minutes and are not worth it: an old key stays readable while
//! it is in OLD_ENCRYPTION_KEYS.)

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::enforcement::refresh_aad;
use super::secret_aad;
use crate::crypto::Keyring;
use crate::db::rows::Columns;

/// Re-encrypted and unreadable (under a key not configured) values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub reencrypted: u64,
    pub unreadable: u64,
}

/// Reseals every SSO secret not under the current key, in one transaction.
pub async fn rotate(pool: &Pool, keys: &Keyring) -> anyhow::Result<Resealed> {
    let current = keys.current_id().hex();
    let mut done = Resealed::default();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let stale = "select tenant_id, client_secret from control.sso_connections where key_id <> $1 for update";
    for row in tx.query(stale, &[&current]).await? {
        let c = Columns::of(&row, "sso::rotation::connections");
        let (tenant_id, sealed): (Uuid, Vec<u8>) = (c.try_get("tenant_id")?, c.try_get("client_secret")?);
        let aad = secret_aad(tenant_id);
        let Ok(plain) = keys.decrypt(&sealed, &aad) else {
            tracing::error!(tenant.id = %tenant_id, "cannot re-encrypt the SSO client secret");
            done.unreadable += 1;
            continue;
        };
        tx.execute(
            "update control.sso_connections set client_secret = $2, key_id = $3 where tenant_id = $1",
            &[&tenant_id, &keys.encrypt(&plain, &aad), &current],
        )
        .await?;
        done.reencrypted += 1;
    }
    // The key id is bytes 2 to 5 of a ciphertext (crypto::Keyring's layout).
    let stale = "select family_id, tenant_id, user_id, refresh_sealed from control.sso_sessions
                  where refresh_sealed is not null and encode(substring(refresh_sealed from 2 for 4), 'hex') <> $1
                    for update";
    for row in tx.query(stale, &[&current]).await? {
        let c = Columns::of(&row, "sso::rotation::sessions");
        let (family, tenant_id, user_id): (Uuid, Uuid, Uuid) =
            (c.try_get("family_id")?, c.try_get("tenant_id")?, c.try_get("user_id")?);
        let sealed: Vec<u8> = c.try_get("refresh_sealed")?;
        let aad = refresh_aad(tenant_id, user_id);
        let Ok(plain) = keys.decrypt(&sealed, &aad) else {
            tracing::error!(tenant.id = %tenant_id, "cannot re-encrypt an SSO session's provider token");
            done.unreadable += 1;
            continue;
        };
        tx.execute(
            "update control.sso_sessions set refresh_sealed = $2 where family_id = $1",
            &[&family, &keys.encrypt(&plain, &aad)],
        )
        .await?;
        done.reencrypted += 1;
    }
    tx.commit().await?;
    Ok(done)
}
