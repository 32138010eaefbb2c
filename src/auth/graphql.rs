//! GraphQL: `signUp`, `signIn`, `me`.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::repo::{self, User};
use crate::error::AppError;
use crate::graphql::context::RequestCtx;

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

/// The result of signing up or in.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <accessToken>`; valid for 15 minutes.
    access_token: String,
    /// Sessions with refresh tokens arrive with the identity work; null until then.
    refresh_token: Option<String>,
    user: UserObject,
}

fn payload(ctx: &RequestCtx, user: User) -> Result<AuthPayload, AppError> {
    let access_token = ctx.state.tokens.issue(user.id)?;
    Ok(AuthPayload { access_token, refresh_token: None, user: user.into() })
}

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<UserObject> {
        let rc = ctx.data::<RequestCtx>()?;
        let user_id = rc.user_id()?;
        let client = rc.state.pool.get().await.map_err(AppError::from)?;
        let user = repo::find(&client, user_id)
            .await?
            .ok_or(AppError::Unauthenticated("this account no longer exists"))?;
        Ok(user.into())
    }
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Creates an account and signs it in.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        email: String,
        #[graphql(secret)] password: String,
        name: String,
    ) -> async_graphql::Result<AuthPayload> {
        let rc = ctx.data::<RequestCtx>()?;
        let user = super::sign_up(&rc.state.pool, &email, &password, &name).await?;
        Ok(payload(rc, user)?)
    }

    /// Exchanges email and password for an access token.
    async fn sign_in(
        &self,
        ctx: &Context<'_>,
        email: String,
        #[graphql(secret)] password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let rc = ctx.data::<RequestCtx>()?;
        let user = super::sign_in(&rc.state.pool, &email, &password).await?;
        Ok(payload(rc, user)?)
    }
}
