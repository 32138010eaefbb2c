//! GraphQL: `createTenant`, `myTenants`, `tenant`.

use std::sync::Arc;

use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};

use super::model::{Tenant, TenantStatus};
use super::repo;
use crate::error::AppError;
use crate::graphql::context::RequestCtx;
use crate::graphql::guards::RoleGuard;
use crate::members::Role;

/// A customer organisation, with the caller's role in it.
pub struct TenantObject {
    tenant: Arc<Tenant>,
    role: Option<Role>,
}

#[Object(name = "Tenant")]
impl TenantObject {
    async fn id(&self) -> ID {
        ID(self.tenant.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.tenant.name
    }
    async fn subdomain(&self) -> &str {
        &self.tenant.subdomain
    }
    async fn domain(&self) -> Option<&str> {
        self.tenant.domain.as_deref()
    }
    async fn plan(&self) -> &str {
        &self.tenant.plan
    }
    async fn status(&self) -> TenantStatus {
        self.tenant.status
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.tenant.expires_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.tenant.created_at
    }
    /// The caller's role in this tenant.
    async fn role(&self) -> Option<Role> {
        self.role
    }
}

#[derive(Default)]
pub struct TenantQuery;

#[Object]
impl TenantQuery {
    /// Tenants the signed-in user belongs to.
    async fn my_tenants(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TenantObject>> {
        let rc = ctx.data::<RequestCtx>()?;
        let client = rc.state.pool.get().await.map_err(AppError::from)?;
        let rows = repo::list_for_user(&client, rc.user_id()?).await?;
        Ok(rows
            .into_iter()
            .map(|(tenant, role)| TenantObject {
                tenant: Arc::new(tenant),
                role: Role::from_db(&role),
            })
            .collect())
    }

    /// The request's tenant (members only).
    #[graphql(guard = "RoleGuard::at_least(Role::Viewer)")]
    async fn tenant(&self, ctx: &Context<'_>) -> async_graphql::Result<TenantObject> {
        let rc = ctx.data::<RequestCtx>()?;
        Ok(TenantObject {
            tenant: rc.tenant()?.clone(),
            role: Some(rc.role().await?),
        })
    }
}

#[derive(Default)]
pub struct TenantMutation;

#[Object]
impl TenantMutation {
    /// Creates a tenant with its own schema; the caller becomes its OWNER.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        name: String,
        subdomain: String,
    ) -> async_graphql::Result<TenantObject> {
        let rc = ctx.data::<RequestCtx>()?;
        let tenant = super::create_for_user(&rc.state, rc.user_id()?, &name, &subdomain).await?;
        Ok(TenantObject {
            tenant: Arc::new(tenant),
            role: Some(Role::Owner),
        })
    }
}
