//! GraphQL: `integrationSecrets` (names and dates only), `setIntegrationSecret`,
//! `deleteIntegrationSecret`. OWNER and ADMIN; setting needs the `custom_integrations` feature.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::members::Role;
use crate::plans::Feature;
use crate::request::context::RequestCtx;
use crate::request::guards::{FeatureGuard, RoleGuard};
use crate::secrets::{SecretInfo, SecretName};

/// A stored secret. Its value is write-only: it is never returned.
#[derive(SimpleObject)]
pub struct IntegrationSecret {
    name: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SecretInfo> for IntegrationSecret {
    fn from(s: SecretInfo) -> Self {
        Self { name: s.name, created_at: s.created_at, updated_at: s.updated_at }
    }
}

#[derive(Default)]
pub struct SecretQuery;

#[Object]
impl SecretQuery {
    /// The tenant's integration secrets: names and dates, never values.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn integration_secrets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<IntegrationSecret>> {
        let rc = ctx.data::<RequestCtx>()?;
        let secrets = crate::secrets::list(&rc.state.pool, rc.tenant()?.tenant.id).await?;
        Ok(secrets.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct SecretMutation;

#[Object]
impl SecretMutation {
    /// Stores a secret (encrypted at rest), replacing any value under the same name.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin).and(FeatureGuard::new(Feature::CustomIntegrations))")]
    async fn set_integration_secret(
        &self,
        ctx: &Context<'_>,
        name: String,
        value: String,
    ) -> async_graphql::Result<IntegrationSecret> {
        let name = SecretName::parse(&name)?;
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        Ok(crate::secrets::set(&rc.state.pool, &rc.state.keys, tenant_id, &name, &value).await?.into())
    }

    /// Deletes a secret; `NOT_FOUND` if there is none by that name.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn delete_integration_secret(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<bool> {
        let name = SecretName::parse(&name)?;
        let rc = ctx.data::<RequestCtx>()?;
        crate::secrets::delete(&rc.state.pool, rc.tenant()?.tenant.id, &name).await?;
        Ok(true)
    }
}
