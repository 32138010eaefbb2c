//! GraphQL: `createApiKey`, `apiKeys`, `revokeApiKey` (OWNER and ADMIN; creating needs `api_access`).

use async_graphql::{ComplexObject, Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::api_keys::repo::{self, ApiKey};
use crate::error::AppError;
use crate::graphql::members::MemberObject;
use crate::members::{Role, repo as members};
use crate::plans::Feature;
use crate::request::context::{Caller, RequestCtx};
use crate::request::guards::{FeatureGuard, RoleGuard};

#[derive(SimpleObject)]
#[graphql(name = "ApiKey", complex)]
pub struct ApiKeyObject {
    id: ID,
    name: String,
    role: Role,
    /// The visible part of the key (`tk_<prefix>_…`), to tell keys apart.
    prefix: String,
    /// The user id of the member who created the key (a key made by a key names that key's
    /// creator); null when unknown, e.g. the account was deleted.
    created_by: Option<ID>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    creator_id: Option<Uuid>,
}

#[ComplexObject]
impl ApiKeyObject {
    /// The creator as a member of this tenant; null once they are no longer one.
    async fn creator(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<MemberObject>> {
        let Some(user_id) = self.creator_id else { return Ok(None) };
        let rc = ctx.data::<RequestCtx>()?;
        let client = rc.connection().await?;
        let member = members::find(&*client, rc.tenant()?.tenant.id, user_id).await?;
        Ok(member.map(Into::into))
    }
}

impl From<ApiKey> for ApiKeyObject {
    fn from(k: ApiKey) -> Self {
        Self {
            id: ID(k.id.to_string()),
            name: k.name,
            role: k.role,
            prefix: k.prefix,
            created_by: k.created_by.map(|id| ID(id.to_string())),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
            creator_id: k.created_by,
        }
    }
}

#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The full key. Shown only now: store it; only a hash is kept.
    key: String,
    api_key: ApiKeyObject,
}

#[derive(Default)]
pub struct ApiKeyQuery;

#[Object]
impl ApiKeyQuery {
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKeyObject>> {
        let rc = ctx.data::<RequestCtx>()?;
        let client = rc.connection().await?;
        let keys = repo::list(&*client, rc.tenant()?.tenant.id).await?;
        Ok(keys.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct ApiKeyMutation;

#[Object]
impl ApiKeyMutation {
    #[graphql(guard = "RoleGuard::at_least(Role::Admin).and(FeatureGuard::new(Feature::ApiAccess))")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        name: String,
        role: Role,
    ) -> async_graphql::Result<CreatedApiKey> {
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        let created_by = match rc.caller {
            Caller::User(id) => Some(id),
            Caller::ApiKey(key) => key.created_by,
            Caller::Anonymous | Caller::Rejected(_) => None,
        };
        let mut tx = rc.tenant_tx().await?;
        let (key, api_key) =
            crate::api_keys::create(&mut tx, tenant_id, rc.actor()?, created_by, &name, role).await?;
        tx.commit().await?;
        Ok(CreatedApiKey { key, api_key: api_key.into() })
    }

    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKeyObject> {
        let rc = ctx.data::<RequestCtx>()?;
        let id = id.parse().map_err(|_| AppError::NotFound("API key"))?;
        let tenant_id = rc.tenant()?.tenant.id;
        let mut tx = rc.tenant_tx().await?;
        let key = crate::api_keys::revoke(&mut tx, tenant_id, rc.actor()?, id).await?;
        tx.commit().await?;
        rc.state.api_keys.forget(&key.prefix).await;
        Ok(key.into())
    }
}
