//! Identity: accounts, password sign-in, sessions, email verification and password reset.

pub mod email;
pub mod email_token;
pub mod hasher;
pub mod password;
pub mod repo;
pub mod secret;
pub mod session;
pub mod throttle;
pub mod token;

use std::net::IpAddr;

use deadpool_postgres::Pool;
use uuid::Uuid;

use self::email::EmailAddress;
use self::email_token::Purpose;
use self::hasher::Hasher;
use self::password::Password;
use self::repo::User;
use self::session::Tokens;
use self::throttle::{Bucket, Throttles};
use self::token::TokenKeys;
use crate::crypto::Keyring;
use crate::error::AppError;
use crate::mail::{Message, outbox};

/// The handles identity operations use, lent by the caller (the request layer builds it from
/// `AppState`).
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub pool: &'a Pool,
    pub tokens: &'a TokenKeys,
    /// Seals mails in the outbox.
    pub keys: &'a Keyring,
    pub hasher: &'a Hasher,
    pub throttles: &'a Throttles,
    /// Base URL for mailed links.
    pub public_url: &'a str,
}

const BAD_CREDENTIALS: &str = "the email or password is incorrect";

/// Creates an account, signs it in and mails a verification link.
///
/// An address that already has an account is answered the same way (a payload whose tokens open
/// no session), and its owner is mailed instead, so `signUp` does not tell who has an account.
/// Both cost the same: the password is hashed either way. Throttled per client IP and per
/// address, cluster-wide.
#[tracing::instrument(skip_all)]
pub async fn sign_up(
    state: Handles<'_>,
    client_ip: Option<IpAddr>,
    email: &str,
    password: &str,
    name: &str,
) -> Result<(User, Tokens), AppError> {
    let email = EmailAddress::parse(email)?;
    let password = Password::parse(password)?;
    let name = name.trim();
    if !(1..=100).contains(&name.chars().count()) {
        return Err(AppError::validation("name", "must be 1 to 100 characters long"));
    }
    let ip = throttle::ip_key(client_ip);
    let keys = [(Bucket::SignUpIp, ip.as_str()), (Bucket::SignUpAddress, email.as_str())];
    state.throttles.hit(&state.pool.get().await?, &keys).await?;
    let hash = password::hash(state.hasher, password).await?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let Some(user) = repo::insert(&tx, &email, name, &hash).await? else {
        if let Some((owner, _)) = repo::find_credentials(&tx, &email).await? {
            tracing::info!(user.id = %owner.id, "sign-up attempted for an existing account");
            outbox::enqueue(&tx, state.keys, None, &taken_mail(state, &owner)).await?;
        }
        tx.commit().await?;
        let tokens =
            Tokens { access_token: state.tokens.issue(Uuid::new_v4())?, refresh_token: secret::new_secret() };
        return Ok((repo::unsaved(&email, name), tokens));
    };
    let tokens = session::start(&tx, state.tokens, user.id).await?;
    let token = email_token::issue(&tx, user.id, Purpose::VerifyEmail).await?;
    // Sent by a job that exists only if the account does; signing up never waits for SMTP.
    outbox::enqueue(&tx, state.keys, None, &verification_mail(state, &user, token)).await?;
    tx.commit().await?;
    tracing::info!(user.id = %user.id, "user signed up");
    Ok((user, tokens))
}

/// Tells the owner of an address that someone tried to sign up with it.
fn taken_mail(state: Handles<'_>, owner: &User) -> Message {
    let link = format!("{}/sign-in", state.public_url);
    Message {
        to: owner.email.clone(),
        subject: "Someone tried to sign up with your address".into(),
        text: format!(
            "Hello {},\n\nsomeone tried to create an account with this address, which already has one.\n\
             If it was you, sign in ({link}) or, if you forgot your password, ask for a reset link.\n\
             If it was not you, ignore this mail: nothing was changed.\n",
            owner.name
        ),
        link,
        token: String::new(),
    }
}

fn verification_mail(state: Handles<'_>, user: &User, token: String) -> Message {
    let link = format!("{}/verify-email?token={token}", state.public_url);
    Message {
        to: user.email.clone(),
        subject: "Confirm your email address".into(),
        text: format!("Hello {},\n\nconfirm your email address within 3 days:\n{link}\n", user.name),
        link,
        token,
    }
}

/// Checks credentials. Unknown email and wrong password fail alike, in message and in time;
/// more than 10 attempts a minute for one email, or `SIGN_INS_PER_IP_PER_MINUTE` from one
/// client, are refused with `RATE_LIMITED`.
#[tracing::instrument(skip_all)]
pub async fn sign_in(
    state: Handles<'_>,
    client_ip: Option<IpAddr>,
    email: &str,
    password: &str,
) -> Result<(User, Tokens), AppError> {
    let Ok(email) = EmailAddress::parse(email) else {
        return Err(AppError::Unauthenticated(BAD_CREDENTIALS));
    };
    // The IP first, so a flood from one client does not use up its victims' attempts.
    let ip = throttle::ip_key(client_ip);
    let keys = [(Bucket::SignInIp, ip.as_str()), (Bucket::SignInAddress, email.as_str())];
    let client = state.pool.get().await?;
    state.throttles.hit(&client, &keys).await?;
    let found = repo::find_credentials(&client, &email).await?;
    drop(client);
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    // No connection is held while the deliberately slow hash runs.
    match (password::verify(state.hasher, password.to_owned(), hash).await?, user) {
        (true, Some(user)) => {
            let tokens = session::start(&state.pool.get().await?, state.tokens, user.id).await?;
            Ok((user, tokens))
        }
        _ => Err(AppError::Unauthenticated(BAD_CREDENTIALS)),
    }
}

/// Marks the token's user as verified.
pub async fn verify_email(state: Handles<'_>, token: &str) -> Result<User, AppError> {
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let user_id = email_token::consume(&tx, token, Purpose::VerifyEmail).await?;
    repo::mark_verified(&tx, user_id).await?;
    let user = repo::find(&tx, user_id).await?.ok_or(AppError::NotFound("user"))?;
    tx.commit().await?;
    Ok(user)
}

/// Mails a new verification link to the signed-in user (earlier links stop working).
/// Counts against the address's mail throttle.
pub async fn resend_verification(state: Handles<'_>, user_id: Uuid) -> Result<(), AppError> {
    let mut client = state.pool.get().await?;
    let user = repo::require(&client, user_id).await?;
    if user.email_verified {
        return Ok(());
    }
    state.throttles.hit(&client, &[(Bucket::MailAddress, user.email.as_str())]).await?;
    let tx = client.transaction().await?;
    let token = email_token::issue(&tx, user.id, Purpose::VerifyEmail).await?;
    outbox::enqueue(&tx, state.keys, None, &verification_mail(state, &user, token)).await?;
    tx.commit().await?;
    Ok(())
}

/// Mails a reset link if the email has an account. Throttled per client IP and per address
/// (cluster-wide; neither reveals whether the account exists). Otherwise it answers at once
/// and the same either way: the lookup and the mail happen in the background.
pub async fn request_password_reset(
    state: Handles<'_>,
    client_ip: Option<IpAddr>,
    email: &str,
) -> Result<(), AppError> {
    let Ok(email) = EmailAddress::parse(email) else { return Ok(()) };
    let ip = throttle::ip_key(client_ip);
    let keys = [(Bucket::ResetIp, ip.as_str()), (Bucket::MailAddress, email.as_str())];
    state.throttles.hit(&state.pool.get().await?, &keys).await?;
    let (pool, keys, public_url) = (state.pool.clone(), state.keys.clone(), state.public_url.to_owned());
    tokio::spawn(async move {
        let result = async {
            let mut client = pool.get().await?;
            let Some((user, _)) = repo::find_credentials(&client, &email).await? else { return Ok(()) };
            let tx = client.transaction().await?;
            let token = email_token::issue(&tx, user.id, Purpose::ResetPassword).await?;
            let link = format!("{public_url}/reset-password?token={token}");
            let text = format!("Hello {},\n\nset a new password within 30 minutes:\n{link}\n\nIf you did not ask for this, ignore this mail.\n", user.name);
            let message = Message { to: user.email, subject: "Reset your password".into(), text, link, token };
            outbox::enqueue(&tx, &keys, None, &message).await?;
            tx.commit().await?;
            Ok::<_, AppError>(())
        }
        .await;
        if let Err(err) = result {
            tracing::error!(error = ?err, "password reset mail failed");
        }
    });
    Ok(())
}

/// Sets a new password from a reset link; every session of the user ends.
pub async fn reset_password(state: Handles<'_>, token: &str, new_password: &str) -> Result<(), AppError> {
    let password = Password::parse(new_password)?;
    let hash = password::hash(state.hasher, password).await?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let user_id = email_token::consume(&tx, token, Purpose::ResetPassword).await?;
    repo::set_password(&tx, user_id, &hash).await?;
    // The link reached the mailbox, which proves the address.
    repo::mark_verified(&tx, user_id).await?;
    session::revoke_all(&tx, user_id).await?;
    tx.commit().await?;
    Ok(())
}

/// Changes the password of a signed-in user; every other session ends, a new one starts.
pub async fn change_password(
    state: Handles<'_>,
    user_id: Uuid,
    current: &str,
    new_password: &str,
) -> Result<(User, Tokens), AppError> {
    let password = Password::parse(new_password)?;
    let (user, stored) = {
        let client = state.pool.get().await?;
        let user = repo::require(&client, user_id).await?;
        let email = EmailAddress::parse(&user.email)?;
        let stored = repo::find_credentials(&client, &email).await?.map(|(_, hash)| hash);
        (user, stored)
    };
    if !password::verify(state.hasher, current.to_owned(), stored).await? {
        return Err(AppError::validation("currentPassword", "is not the current password"));
    }
    let hash = password::hash(state.hasher, password).await?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    repo::set_password(&tx, user_id, &hash).await?;
    session::revoke_all(&tx, user_id).await?;
    let tokens = session::start(&tx, state.tokens, user_id).await?;
    tx.commit().await?;
    Ok((user, tokens))
}
