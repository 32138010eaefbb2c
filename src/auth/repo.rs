//! SQL for `control.users`.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::email::EmailAddress;
use crate::db::rows::Columns;
use crate::error::AppError;

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

impl User {
    fn from_row(row: &Row) -> Result<Self, AppError> {
        let c = Columns::of(row, "User::from_row");
        Ok(Self {
            id: c.try_get("id")?,
            email: c.try_get("email")?,
            name: c.try_get("name")?,
            email_verified: c.try_get::<Option<DateTime<Utc>>>("email_verified_at")?.is_some(),
            created_at: c.try_get("created_at")?,
        })
    }
}

/// Inserts an account; `None` when the address already has one (the caller answers alike).
pub async fn insert(
    db: &impl GenericClient,
    email: &EmailAddress,
    name: &str,
    password_hash: &str,
) -> Result<Option<User>, AppError> {
    let row = db
        .query_opt(
            "insert into control.users (id, email, name, password_hash) values ($1, $2, $3, $4)
             on conflict on constraint users_email_key do nothing
             returning id, email, name, email_verified_at, created_at",
            &[&Uuid::new_v4(), &email.as_str(), &name, &password_hash],
        )
        .await?;
    row.as_ref().map(User::from_row).transpose()
}

/// What `signUp` shows for an address that already has an account: a user nobody stored.
pub fn unsaved(email: &EmailAddress, name: &str) -> User {
    User {
        id: Uuid::new_v4(),
        email: email.as_str().to_owned(),
        name: name.to_owned(),
        email_verified: false,
        created_at: Utc::now(),
    }
}

/// The user and their password hash, for sign-in.
pub async fn find_credentials(
    db: &impl GenericClient,
    email: &EmailAddress,
) -> Result<Option<(User, String)>, AppError> {
    let row = db.query_opt("select id, email, name, email_verified_at, created_at, password_hash from control.users where email = $1", &[&email.as_str()]).await?;
    let credentials = |row: &Row| -> Result<(User, String), AppError> {
        let password_hash = Columns::of(row, "auth::repo::find_credentials").try_get("password_hash")?;
        Ok((User::from_row(row)?, password_hash))
    };
    row.as_ref().map(credentials).transpose()
}

/// The user behind a valid token; an account deleted since then is `UNAUTHENTICATED`.
pub async fn require(db: &impl GenericClient, id: Uuid) -> Result<User, AppError> {
    // Worded like an ended session: `signUp` of a taken address hands out tokens of no account.
    find(db, id).await?.ok_or(AppError::Unauthenticated("this session has ended; sign in again"))
}

pub async fn find(db: &impl GenericClient, id: Uuid) -> Result<Option<User>, AppError> {
    let row = db
        .query_opt(
            "select id, email, name, email_verified_at, created_at from control.users where id = $1",
            &[&id],
        )
        .await?;
    row.as_ref().map(User::from_row).transpose()
}

pub async fn mark_verified(db: &impl GenericClient, id: Uuid) -> Result<(), AppError> {
    db.execute(
        "update control.users set email_verified_at = coalesce(email_verified_at, now()) where id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

pub async fn set_password(db: &impl GenericClient, id: Uuid, password_hash: &str) -> Result<(), AppError> {
    db.execute("update control.users set password_hash = $2 where id = $1", &[&id, &password_hash]).await?;
    Ok(())
}
