//! GraphQL: `signUp`, `signIn`, `me`.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::auth::repo::{self, User};
use crate::auth::session::{self, Tokens};
use crate::error::AppError;
use crate::request::context::RequestCtx;

/// An account.
#[derive(SimpleObject)]
#[graphql(name = "User")]
pub struct UserObject {
    id: ID,
    email: String,
    name: String,
    email_verified: bool,
    created_at: DateTime<Utc>,
}

impl From<User> for UserObject {
    fn from(user: User) -> Self {
        Self {
            id: ID(user.id.to_string()),
            email: user.email,
            name: user.name,
            email_verified: user.email_verified,
            created_at: user.created_at,
        }
    }
}

/// The result of signing up or in, or of a refresh.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <accessToken>`; valid for 15 minutes.
    access_token: String,
    /// Exchange with `refreshSession` for a new pair; single use, valid for 30 days.
    refresh_token: String,
    user: UserObject,
}

impl AuthPayload {
    pub(crate) fn new(user: User, tokens: Tokens) -> Self {
        Self { access_token: tokens.access_token, refresh_token: tokens.refresh_token, user: user.into() }
    }
}

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<UserObject> {
        let rc = ctx.data::<RequestCtx>()?;
        let user_id = rc.user_id()?;
        let client = rc.connection().await?;
        let user = repo::require(&*client, user_id).await?;
        Ok(user.into())
    }
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Creates an account, signs it in, and mails a link to verify the email address. For an
    /// address that already has an account the answer looks the same, but its tokens open no
    /// session, and the owner is mailed instead.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        email: String,
        #[graphql(secret)] password: String,
        name: String,
    ) -> async_graphql::Result<AuthPayload> {
        let rc = ctx.data::<RequestCtx>()?;
        rc.spend_costly("signUp")?;
        crate::sso::enforcement::password_allowed(rc.state.single_sign_on(), &email).await?;
        let (user, tokens) =
            crate::auth::sign_up(rc.state.identity(), rc.client_ip(), &email, &password, &name).await?;
        Ok(AuthPayload::new(user, tokens))
    }

    /// Exchanges email and password for a token pair.
    async fn sign_in(
        &self,
        ctx: &Context<'_>,
        email: String,
        #[graphql(secret)] password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let rc = ctx.data::<RequestCtx>()?;
        rc.spend_costly("signIn")?;
        crate::sso::enforcement::password_allowed(rc.state.single_sign_on(), &email).await?;
        let (user, tokens) =
            crate::auth::sign_in(rc.state.identity(), rc.client_ip(), &email, &password).await?;
        Ok(AuthPayload::new(user, tokens))
    }

    /// Rotates a refresh token: returns a new pair; the old refresh token stops working, and
    /// presenting it again revokes the whole session.
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let rc = ctx.data::<RequestCtx>()?;
        crate::sso::enforcement::before_refresh(rc.state.single_sign_on(), &refresh_token).await?;
        let (user_id, tokens) = session::refresh(&rc.state.pool, &rc.state.tokens, &refresh_token).await?;
        let client = rc.state.pool.get().await.map_err(AppError::from)?;
        let user = repo::require(&client, user_id).await?;
        Ok(AuthPayload::new(user, tokens))
    }

    /// Ends the session of this refresh token. Access tokens already issued expire on their own.
    async fn sign_out(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] refresh_token: String,
    ) -> async_graphql::Result<bool> {
        let rc = ctx.data::<RequestCtx>()?;
        session::sign_out(&rc.state.pool, &refresh_token).await?;
        Ok(true)
    }

    /// Confirms an email address with the token from the mailed link.
    async fn verify_email(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
    ) -> async_graphql::Result<UserObject> {
        let rc = ctx.data::<RequestCtx>()?;
        Ok(crate::auth::verify_email(rc.state.identity(), &token).await?.into())
    }

    /// Mails the signed-in user a new verification link.
    async fn resend_verification_email(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let rc = ctx.data::<RequestCtx>()?;
        let user_id = rc.user_id()?;
        rc.spend_costly("resendVerificationEmail")?;
        crate::auth::resend_verification(rc.state.identity(), user_id).await?;
        Ok(true)
    }

    /// Mails a password reset link if the address has an account. Answers `true` whether or
    /// not it has one; `RATE_LIMITED` past the per-address or per-IP hourly limit.
    async fn request_password_reset(&self, ctx: &Context<'_>, email: String) -> async_graphql::Result<bool> {
        let rc = ctx.data::<RequestCtx>()?;
        rc.spend_costly("requestPasswordReset")?;
        crate::auth::request_password_reset(rc.state.identity(), rc.client_ip(), &email).await?;
        Ok(true)
    }

    /// Sets a new password with the token from the mailed link; all sessions end.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
        #[graphql(secret)] new_password: String,
    ) -> async_graphql::Result<bool> {
        let rc = ctx.data::<RequestCtx>()?;
        rc.spend_costly("resetPassword")?;
        crate::auth::reset_password(rc.state.identity(), &token, &new_password).await?;
        Ok(true)
    }

    /// Changes the signed-in user's password; other sessions end and a new pair is returned.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] current_password: String,
        #[graphql(secret)] new_password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let rc = ctx.data::<RequestCtx>()?;
        let user_id = rc.user_id()?;
        rc.spend_costly("changePassword")?;
        let (user, tokens) =
            crate::auth::change_password(rc.state.identity(), user_id, &current_password, &new_password)
                .await?;
        Ok(AuthPayload::new(user, tokens))
    }
}
