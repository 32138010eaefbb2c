//! Plans: the catalog, each tenant's cached access (plan, features, limits), and plan changes.

pub mod access;
pub mod catalog;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::Deserialize;
use uuid::Uuid;

pub use self::access::{AccessCache, TenantAccess};
pub use self::catalog::PlanCatalog;
use crate::error::AppError;
use crate::tenancy::model::{Tenant, TenantStatus};

/// A feature flag a plan may include.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    ApiAccess,
    PrioritySupport,
    AdvancedAnalytics,
    UnlimitedApi,
    CustomIntegrations,
    DedicatedSupport,
    Sla,
    CustomDomain,
    /// Enterprise single sign-on (OpenID Connect) and verified email domains.
    Sso,
}

impl Feature {
    /// The flag's name, as in `plans.toml` and the `features` GraphQL field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiAccess => "api_access",
            Self::PrioritySupport => "priority_support",
            Self::AdvancedAnalytics => "advanced_analytics",
            Self::UnlimitedApi => "unlimited_api",
            Self::CustomIntegrations => "custom_integrations",
            Self::DedicatedSupport => "dedicated_support",
            Self::Sla => "sla",
            Self::CustomDomain => "custom_domain",
            Self::Sso => "sso",
        }
    }
}

/// A plan's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_members: Option<i64>,
    pub max_storage_bytes: Option<i64>,
    /// Per calendar month.
    pub max_api_requests: Option<i64>,
    pub requests_per_second: Option<i64>,
}

/// A metered resource with a plan limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Members,
    StorageBytes,
    ApiRequests,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Members => "members",
            Self::StorageBytes => "storage",
            Self::ApiRequests => "api_requests",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    /// `month` or `year`.
    pub interval: String,
    /// Stripe price lookup key, for checkout.
    pub stripe_price: Option<String>,
    pub features: BTreeSet<Feature>,
    pub limits: Limits,
}

impl Plan {
    pub fn limit(&self, resource: Resource) -> Option<i64> {
        match resource {
            Resource::Members => self.limits.max_members,
            Resource::StorageBytes => self.limits.max_storage_bytes,
            Resource::ApiRequests => self.limits.max_api_requests,
        }
    }
}

/// A change to what a tenant may do; `None` leaves that column as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantChange {
    pub plan: Option<String>,
    pub status: Option<TenantStatus>,
    /// `Some(None)` clears the expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

impl TenantChange {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The plan-change service: applies `change` inside the caller's transaction and announces it
/// on `tenant_changed`, so every replica drops its cached access when the transaction commits.
/// Operators (`set-plan`) and billing both change tenants only through here.
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id))]
pub async fn apply_change(
    db: &impl GenericClient,
    catalog: &PlanCatalog,
    tenant_id: Uuid,
    change: &TenantChange,
) -> Result<(), AppError> {
    if let Some(plan) = &change.plan
        && catalog.get(plan).is_none()
    {
        let known: Vec<_> = catalog.all().map(|p| p.id.as_str()).collect();
        return Err(AppError::validation(
            "plan",
            format!("unknown plan; choose one of {}", known.join(", ")),
        ));
    }
    let updated = db
        .execute(
            "update control.tenants set plan = coalesce($2, plan), status = coalesce($3, status),
                 expires_at = case when $4 then $5 else expires_at end, updated_at = now()
             where id = $1",
            &[
                &tenant_id,
                &change.plan,
                &change.status.map(TenantStatus::as_db),
                &change.expires_at.is_some(),
                &change.expires_at.flatten(),
            ],
        )
        .await?;
    if updated == 0 {
        return Err(AppError::NotFound("tenant"));
    }
    crate::db::notify::tenant_changed(db, tenant_id).await?;
    tracing::info!(
        plan = change.plan.as_deref(),
        status = change.status.map(TenantStatus::as_db),
        "tenant changed"
    );
    Ok(())
}

/// Moves a tenant to another plan (operators; billing uses `apply_change` in its own
/// transaction). Downgrading below current usage is allowed: the tenant is then over limit,
/// and growing writes are refused.
pub async fn change_plan(
    pool: &Pool,
    catalog: &PlanCatalog,
    tenant_id: Uuid,
    plan_id: &str,
) -> Result<Tenant, AppError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let change = TenantChange { plan: Some(plan_id.to_owned()), ..TenantChange::default() };
    apply_change(&tx, catalog, tenant_id, &change).await?;
    let tenant =
        crate::tenancy::repo::find_by_id(&tx, tenant_id).await?.ok_or(AppError::NotFound("tenant"))?;
    tx.commit().await?;
    Ok(tenant)
}
