//! Mailed single-use tokens: email verification (3 days) and password reset (30 minutes).

use chrono::{Duration, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::secret::{hash_secret, new_secret};
use crate::db::rows::Columns;
use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    fn as_db(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }

    pub fn ttl(self) -> Duration {
        match self {
            Self::VerifyEmail => Duration::days(3),
            Self::ResetPassword => Duration::minutes(30),
        }
    }
}

/// Issues a token for `purpose`; earlier unused ones for the same purpose stop working.
pub async fn issue(db: &impl GenericClient, user_id: Uuid, purpose: Purpose) -> Result<String, AppError> {
    db.execute(
        "update control.email_tokens set used_at = now()
         where user_id = $1 and purpose = $2 and used_at is null",
        &[&user_id, &purpose.as_db()],
    )
    .await?;
    let token = new_secret();
    db.execute(
        "insert into control.email_tokens (id, user_id, purpose, token_hash, expires_at)
         values ($1, $2, $3, $4, $5)",
        &[&Uuid::new_v4(), &user_id, &purpose.as_db(), &hash_secret(&token), &(Utc::now() + purpose.ttl())],
    )
    .await?;
    Ok(token)
}

/// Why a mailed token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Unknown,
    Used,
    Expired,
}

impl From<TokenError> for AppError {
    fn from(err: TokenError) -> Self {
        let message = match err {
            TokenError::Unknown => "this link is not valid; request a new one",
            TokenError::Used => "this link was already used; request a new one if needed",
            TokenError::Expired => "this link has expired; request a new one",
        };
        AppError::validation("token", message)
    }
}

/// Uses up a token: returns its user if it is valid, unused and unexpired.
pub async fn consume(db: &impl GenericClient, token: &str, purpose: Purpose) -> Result<Uuid, AppError> {
    let row = db
        .query_opt(
            "select id, user_id, expires_at, used_at from control.email_tokens
             where token_hash = $1 and purpose = $2 for update",
            &[&hash_secret(token), &purpose.as_db()],
        )
        .await?
        .ok_or(TokenError::Unknown)?;
    let c = Columns::of(&row, "auth::email_token::consume");
    if c.try_get::<Option<chrono::DateTime<Utc>>>("used_at")?.is_some() {
        return Err(TokenError::Used.into());
    }
    if c.try_get::<chrono::DateTime<Utc>>("expires_at")? <= Utc::now() {
        return Err(TokenError::Expired.into());
    }
    let id: Uuid = c.try_get("id")?;
    db.execute("update control.email_tokens set used_at = now() where id = $1", &[&id]).await?;
    Ok(c.try_get("user_id")?)
}
