//! Sessions: opaque refresh tokens, stored hashed, rotated on every use. Presenting a token that
//! was already rotated means it was copied: the whole family (one sign-in) is revoked.

use chrono::{Duration, Utc};
use deadpool_postgres::{GenericClient, Pool};
use uuid::Uuid;

use super::secret::{hash_secret, new_secret};
use super::token::TokenKeys;
use crate::db::rows::Columns;
use crate::error::AppError;

/// How long a refresh token stays usable (each rotation starts a new period).
pub const REFRESH_TTL: Duration = Duration::days(30);

/// A fresh token pair.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

/// Starts a new session family for `user_id` (a sign-in).
pub async fn start(db: &impl GenericClient, keys: &TokenKeys, user_id: Uuid) -> Result<Tokens, AppError> {
    issue(db, keys, user_id, Uuid::new_v4()).await
}

async fn issue(
    db: &impl GenericClient,
    keys: &TokenKeys,
    user_id: Uuid,
    family: Uuid,
) -> Result<Tokens, AppError> {
    let refresh_token = new_secret();
    db.execute(
        "insert into control.sessions (id, family_id, user_id, token_hash, expires_at)
         values ($1, $2, $3, $4, $5)",
        &[&Uuid::new_v4(), &family, &user_id, &hash_secret(&refresh_token), &(Utc::now() + REFRESH_TTL)],
    )
    .await?;
    Ok(Tokens { access_token: keys.issue(user_id)?, refresh_token })
}

/// Why a refresh token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshError {
    Unknown,
    Revoked,
    Expired,
    /// Already rotated: presented twice, so the family is revoked.
    Reused,
}

impl From<RefreshError> for AppError {
    fn from(err: RefreshError) -> Self {
        AppError::Unauthenticated(match err {
            RefreshError::Unknown | RefreshError::Revoked => "the refresh token is not valid; sign in again",
            RefreshError::Expired => "the session has expired; sign in again",
            RefreshError::Reused => {
                "this refresh token was already used, so the session was revoked for safety; sign in again"
            }
        })
    }
}

/// Exchanges a refresh token for a new pair; returns the user id with it.
#[tracing::instrument(skip_all)]
pub async fn refresh(pool: &Pool, keys: &TokenKeys, refresh_token: &str) -> Result<(Uuid, Tokens), AppError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "select id, family_id, user_id, expires_at, rotated_at, revoked_at from control.sessions
             where token_hash = $1 for update",
            &[&hash_secret(refresh_token)],
        )
        .await?
        .ok_or(RefreshError::Unknown)?;
    let c = Columns::of(&row, "auth::session::refresh");
    let (id, family, user_id): (Uuid, Uuid, Uuid) =
        (c.try_get("id")?, c.try_get("family_id")?, c.try_get("user_id")?);
    let rotated = c.try_get::<Option<chrono::DateTime<Utc>>>("rotated_at")?.is_some();
    let revoked = c.try_get::<Option<chrono::DateTime<Utc>>>("revoked_at")?.is_some();
    if revoked {
        return Err(RefreshError::Revoked.into());
    }
    if rotated {
        revoke_family(&tx, family).await?;
        tx.commit().await?;
        tracing::warn!(user.id = %user_id, "refresh token reused; session family revoked");
        return Err(RefreshError::Reused.into());
    }
    if c.try_get::<chrono::DateTime<Utc>>("expires_at")? <= Utc::now() {
        return Err(RefreshError::Expired.into());
    }
    tx.execute("update control.sessions set rotated_at = now() where id = $1", &[&id]).await?;
    let tokens = issue(&tx, keys, user_id, family).await?;
    tx.commit().await?;
    Ok((user_id, tokens))
}

/// Ends the session the token belongs to (its whole family). Unknown tokens are ignored.
pub async fn sign_out(pool: &Pool, refresh_token: &str) -> Result<(), AppError> {
    let client = pool.get().await?;
    client
        .execute(
            "update control.sessions set revoked_at = now()
             where revoked_at is null
               and family_id = (select family_id from control.sessions where token_hash = $1)",
            &[&hash_secret(refresh_token)],
        )
        .await?;
    Ok(())
}

async fn revoke_family(db: &impl GenericClient, family: Uuid) -> Result<(), AppError> {
    db.execute(
        "update control.sessions set revoked_at = now() where family_id = $1 and revoked_at is null",
        &[&family],
    )
    .await?;
    Ok(())
}

/// Revokes every session of a user (after a password change or reset).
pub async fn revoke_all(db: &impl GenericClient, user_id: Uuid) -> Result<(), AppError> {
    db.execute(
        "update control.sessions set revoked_at = now() where user_id = $1 and revoked_at is null",
        &[&user_id],
    )
    .await?;
    Ok(())
}
