//! Identity: users, password sign-in and access tokens.

pub mod email;
pub mod graphql;
pub mod password;
pub mod repo;
pub mod token;

use deadpool_postgres::Pool;

use self::email::EmailAddress;
use self::password::Password;
use self::repo::User;
use crate::error::AppError;

const BAD_CREDENTIALS: &str = "the email or password is incorrect";

/// Creates an account. The email is normalised; a taken email is `CONFLICT`.
#[tracing::instrument(skip_all)]
pub async fn sign_up(pool: &Pool, email: &str, password: &str, name: &str) -> Result<User, AppError> {
    let email = EmailAddress::parse(email)?;
    let password = Password::parse(password)?;
    let name = name.trim();
    if !(1..=100).contains(&name.chars().count()) {
        return Err(AppError::validation("name", "must be 1 to 100 characters long"));
    }
    let hash = password::hash(password).await?;
    let client = pool.get().await?;
    let user = repo::insert(&client, &email, name, &hash).await?;
    tracing::info!(user.id = %user.id, "user signed up");
    Ok(user)
}

/// Checks credentials. Unknown email and wrong password fail alike, in message and in time.
#[tracing::instrument(skip_all)]
pub async fn sign_in(pool: &Pool, email: &str, password: &str) -> Result<User, AppError> {
    let Ok(email) = EmailAddress::parse(email) else {
        return Err(AppError::Unauthenticated(BAD_CREDENTIALS));
    };
    let client = pool.get().await?;
    let found = repo::find_credentials(&client, &email).await?;
    drop(client);
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    match (password::verify(password.to_owned(), hash).await?, user) {
        (true, Some(user)) => Ok(user),
        _ => Err(AppError::Unauthenticated(BAD_CREDENTIALS)),
    }
}
