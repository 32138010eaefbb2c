//! GraphQL: `createTenant`, `updateTenant`, `myTenants`, `tenant`.

use std::sync::Arc;

use async_graphql::{Context, ID, MaybeUndefined, Object};
use chrono::{DateTime, Utc};

use crate::error::AppError;
use crate::graphql::billing::BillingObject;
use crate::graphql::plans::PlanObject;
use crate::members::Role;
use crate::plans::{Feature, TenantAccess};
use crate::request::context::RequestCtx;
use crate::request::guards::{FeatureGuard, RoleGuard};
use crate::tenancy::domains::{self, CustomDomain};
use crate::tenancy::model::TenantStatus;
use crate::tenancy::repo;

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
    /// The tenant's verified custom domain, the one requests are routed by (needs the
    /// `custom_domain` feature to set).
    async fn domain(&self) -> Option<&str> {
        self.access.tenant.domain.as_deref()
    }
    /// The custom domain claimed last: pending with its proof instructions, or verified.
    async fn custom_domain(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CustomDomain>> {
        let rc = ctx.data::<RequestCtx>()?;
        let client = rc.state.pool.get().await.map_err(AppError::from)?;
        Ok(domains::custom_domain(&client, self.access.tenant.id).await?)
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
    /// The tenant's Stripe subscription, as Stripe last reported it.
    async fn billing(&self, ctx: &Context<'_>) -> async_graphql::Result<BillingObject> {
        let rc = ctx.data::<RequestCtx>()?;
        Ok(crate::graphql::billing::billing_of(rc, self.access.tenant.id).await?)
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
        let tenant =
            crate::tenancy::create_for_user(rc.state.provisioning(), rc.user_id()?, &name, &subdomain)
                .await?;
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
        let own_hosts = (rc.state.base_domain.as_str(), rc.state.public_url.as_str());
        let tenant = crate::tenancy::update(
            &mut tx,
            own_hosts,
            rc.actor()?,
            current,
            name.as_deref(),
            domain.as_opt_deref(),
        )
        .await?;
        tx.commit().await?;
        let access = Arc::new(TenantAccess::new(tenant, &rc.state.plans));
        Ok(TenantObject { access, role: Some(rc.role().await?) })
    }

    /// Proves the claimed custom domain: `http://<domain>/.well-known/tenantry-challenge/<token>`
    /// must answer 200 with exactly the token (see `Tenant.customDomain`). From then on
    /// requests to the domain are routed to the tenant. OWNER or ADMIN.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin).and(FeatureGuard::new(Feature::CustomDomain))")]
    async fn verify_domain(&self, ctx: &Context<'_>) -> async_graphql::Result<TenantObject> {
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        let claim = {
            let client = rc.state.pool.get().await.map_err(AppError::from)?;
            domains::pending_claim(&client, tenant_id).await?
        };
        rc.state.domain_proof.check(&claim.0, &claim.1).await?;
        let mut tx = rc.tenant_tx().await?;
        let tenant = domains::mark_verified(&mut tx, rc.actor()?, tenant_id, &claim).await?;
        tx.commit().await?;
        // The notification reaches this replica a moment later; the caller's next request
        // on the domain must already route.
        rc.state.tenants.clear();
        rc.state.access.invalidate(tenant_id).await;
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
        crate::tenancy::soft_delete(&mut tx, rc.actor()?, tenant_id).await?;
        tx.commit().await?;
        rc.state.access.invalidate(tenant_id).await;
        rc.state.tenants.clear();
        Ok(ID(tenant_id.to_string()))
    }
}
