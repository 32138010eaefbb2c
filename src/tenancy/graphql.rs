//! GraphQL: `createTenant`, `updateTenant`, `myTenants`, `tenant`.

use std::sync::Arc;

use async_graphql::{Context, ID, MaybeUndefined, Object};
use chrono::{DateTime, Utc};

use super::model::TenantStatus;
use super::repo;
use crate::graphql::context::RequestCtx;
use crate::graphql::guards::{FeatureGuard, RoleGuard};
use crate::members::Role;
use crate::plans::graphql::PlanObject;
use crate::plans::{Feature, TenantAccess};

/// A customer organisation, with its plan and the caller's role in it.
pub struct TenantObject {
    access: Arc<TenantAccess>,
    role: Option<Role>,
}

impl TenantObject {
    pub fn new(access: Arc<TenantAccess>, role: Option<Role>) -> Self {
        Self { access, role }
    }
}

#[Object(name = "Tenant")]
impl TenantObject {
    async fn id(&self) -> ID {
        ID(self.access.tenant.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.access.tenant.name
    }
    async fn subdomain(&self) -> &str {
        &self.access.tenant.subdomain
    }
    /// The tenant's custom domain, if any (needs the `custom_domain` feature to set).
    async fn domain(&self) -> Option<&str> {
        self.access.tenant.domain.as_deref()
    }
    async fn plan(&self) -> PlanObject {
        PlanObject(self.access.plan.clone())
    }
    async fn status(&self) -> TenantStatus {
        self.access.tenant.status
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.access.tenant.expires_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.access.tenant.created_at
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
        let client = rc.connection().await?;
        let rows = repo::list_for_user(&*client, rc.user_id()?).await?;
        rows.into_iter()
            .map(|(tenant, role)| {
                Ok(TenantObject {
                    access: Arc::new(TenantAccess::new(tenant, &rc.state.plans)),
                    role: Some(Role::from_db(&role)?),
                })
            })
            .collect()
    }

    /// The request's tenant (members only).
    #[graphql(guard = "RoleGuard::at_least(Role::Viewer)")]
    async fn tenant(&self, ctx: &Context<'_>) -> async_graphql::Result<TenantObject> {
        let rc = ctx.data::<RequestCtx>()?;
        Ok(TenantObject { access: rc.tenant()?.clone(), role: Some(rc.role().await?) })
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
        let access = Arc::new(TenantAccess::new(tenant, &rc.state.plans));
        Ok(TenantObject { access, role: Some(Role::Owner) })
    }

    /// Renames the request's tenant and/or sets its custom domain (`null` removes it). Setting a
    /// domain needs the `custom_domain` feature. OWNER or ADMIN.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)
        .and(FeatureGuard::new(Feature::CustomDomain).only_if(domain.is_value()))")]
    async fn update_tenant(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        domain: MaybeUndefined<String>,
    ) -> async_graphql::Result<TenantObject> {
        let rc = ctx.data::<RequestCtx>()?;
        let current = &rc.tenant()?.tenant;
        let mut tx = rc.tenant_tx().await?;
        let base = &rc.state.base_domain;
        let tenant =
            super::update(&mut tx, base, rc.actor()?, current, name.as_deref(), domain.as_opt_deref())
                .await?;
        tx.commit().await?;
        let access = Arc::new(TenantAccess::new(tenant, &rc.state.plans));
        Ok(TenantObject { access, role: Some(rc.role().await?) })
    }

    /// Deletes the request's tenant (OWNER only). It disappears at once; its data is purged
    /// after the grace period (TENANT_PURGE_AFTER_DAYS). Returns the tenant's id.
    #[graphql(guard = "RoleGuard::at_least(Role::Owner)")]
    async fn delete_tenant(&self, ctx: &Context<'_>) -> async_graphql::Result<ID> {
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        let mut tx = rc.tenant_tx().await?;
        super::soft_delete(&mut tx, rc.actor()?, tenant_id).await?;
        tx.commit().await?;
        rc.state.access.invalidate(tenant_id).await;
        rc.state.tenants.clear();
        Ok(ID(tenant_id.to_string()))
    }
}
