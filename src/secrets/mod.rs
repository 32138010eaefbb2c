//! Tenant integration secrets: named values (outgoing webhook signing secrets, third-party API
//! tokens) stored encrypted with the keyring (`crate::crypto`). Listing shows names and dates;
//! only server code (`reveal`) ever sees a value again.

pub mod repo;

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::error::AppError;
pub use repo::SecretInfo;

/// Longest value accepted, in bytes (tokens and signing secrets are far shorter).
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// A secret's name: `[a-z][a-z0-9_]{0,62}`, e.g. `stripe_webhook` or `slack_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let ok = (1..=63).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(AppError::validation(
                "name",
                "use 1–63 characters: lowercase letters, digits and _, starting with a letter",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Ties a ciphertext to its row: copied to another tenant or name, it does not decrypt.
fn aad(tenant_id: Uuid, name: &str) -> Vec<u8> {
    format!("tenant_secret\0{tenant_id}\0{name}").into_bytes()
}

/// Stores (or replaces) a secret, encrypted under the current key.
pub async fn set(
    pool: &Pool,
    keys: &Keyring,
    tenant_id: Uuid,
    name: &SecretName,
    value: &str,
) -> Result<SecretInfo, AppError> {
    if value.is_empty() || value.len() > MAX_VALUE_BYTES {
        return Err(AppError::validation("value", format!("give 1 to {MAX_VALUE_BYTES} bytes")));
    }
    let sealed = keys.encrypt(value.as_bytes(), &aad(tenant_id, name.as_str()));
    let client = pool.get().await?;
    repo::upsert(&client, tenant_id, name.as_str(), &sealed, &keys.current_id().hex()).await
}

pub async fn list(pool: &Pool, tenant_id: Uuid) -> Result<Vec<SecretInfo>, AppError> {
    repo::list(&pool.get().await?, tenant_id).await
}

/// Deletes a secret; `NOT_FOUND` if there was none.
pub async fn delete(pool: &Pool, tenant_id: Uuid, name: &SecretName) -> Result<(), AppError> {
    if repo::delete(&pool.get().await?, tenant_id, name.as_str()).await? {
        Ok(())
    } else {
        Err(AppError::NotFound("secret"))
    }
}

/// The plaintext of a secret, for server code that uses it (e.g. to sign an outgoing webhook).
pub async fn reveal(
    pool: &Pool,
    keys: &Keyring,
    tenant_id: Uuid,
    name: &SecretName,
) -> Result<Option<String>, AppError> {
    let Some(sealed) = repo::ciphertext(&pool.get().await?, tenant_id, name.as_str()).await? else {
        return Ok(None);
    };
    let plain = keys
        .decrypt(&sealed, &aad(tenant_id, name.as_str()))
        .map_err(|err| AppError::internal(anyhow::anyhow!("tenant secret {}: {err}", name.as_str())))?;
    String::from_utf8(plain).map(Some).map_err(AppError::internal)
}

/// What a rotation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    pub reencrypted: u64,
    /// Rows under a key that is no longer configured: left as they are, reported.
    pub unreadable: u64,
}

/// Re-encrypts every secret not under the current key, `batch` rows per transaction. Safe to
/// stop and rerun (each batch commits; rows already under the current key are skipped) and to
/// run twice at once (rows are locked with `skip locked`).
pub async fn rotate(
    pool: &Pool,
    keys: &Keyring,
    batch: i64,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Rotation> {
    let current = keys.current_id().hex();
    let mut done = Rotation::default();
    let mut skip: Vec<(Uuid, String)> = Vec::new();
    loop {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let rows = repo::lock_stale(&tx, &current, batch + skip.len() as i64)
            .await
            .map_err(AppError::into_anyhow)?;
        let rows: Vec<_> =
            rows.into_iter().filter(|r| !skip.contains(&(r.tenant_id, r.name.clone()))).collect();
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(done);
        }
        for row in rows {
            let aad = aad(row.tenant_id, &row.name);
            match keys.decrypt(&row.ciphertext, &aad) {
                Ok(plain) => {
                    let sealed = keys.encrypt(&plain, &aad);
                    repo::reseal(&tx, row.tenant_id, &row.name, &sealed, &current)
                        .await
                        .map_err(AppError::into_anyhow)?;
                    done.reencrypted += 1;
                }
                Err(err) => {
                    tracing::error!(tenant.id = %row.tenant_id, secret = %row.name, error = %err, "cannot re-encrypt secret");
                    done.unreadable += 1;
                    skip.push((row.tenant_id, row.name));
                }
            }
        }
        tx.commit().await?;
        progress(done.reencrypted);
    }
}

/// Rows still under another key than the current one.
pub async fn stale_count(pool: &Pool, keys: &Keyring) -> anyhow::Result<i64> {
    repo::count_stale(&pool.get().await?, &keys.current_id().hex()).await.map_err(AppError::into_anyhow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_plain_identifiers() {
        assert!(SecretName::parse("stripe_webhook").is_ok());
        assert!(SecretName::parse("a").is_ok());
        for bad in ["", "Upper", "1st", "with-dash", "space here", &"a".repeat(64)] {
            assert!(SecretName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
