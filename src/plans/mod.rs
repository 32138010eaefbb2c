//! Plans: the catalog, each tenant's cached access (plan, features, limits), and plan changes.

pub mod access;
pub mod catalog;
pub mod graphql;

use std::collections::BTreeSet;

use deadpool_postgres::Pool;
use serde::Deserialize;
use uuid::Uuid;

pub use self::access::{AccessCache, TenantAccess};
pub use self::catalog::PlanCatalog;
use crate::error::AppError;
use crate::tenancy::model::Tenant;

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

/// Moves a tenant to another plan (operators; billing calls the same function). Downgrading
/// below current usage is allowed: the tenant is then over limit, and growing writes are refused.
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id, plan = plan_id))]
pub async fn change_plan(
    pool: &Pool,
    catalog: &PlanCatalog,
    tenant_id: Uuid,
    plan_id: &str,
) -> Result<Tenant, AppError> {
    if catalog.get(plan_id).is_none() {
        let known: Vec<_> = catalog.all().map(|p| p.id.as_str()).collect();
        return Err(AppError::validation(
            "plan",
            format!("unknown plan; choose one of {}", known.join(", ")),
        ));
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "update control.tenants set plan = $2, updated_at = now() where id = $1 returning {}",
                crate::tenancy::model::TENANT_COLUMNS
            ),
            &[&tenant_id, &plan_id],
        )
        .await?
        .ok_or(AppError::NotFound("tenant"))?;
    crate::db::notify::tenant_changed(&tx, tenant_id).await?;
    tx.commit().await?;
    tracing::info!("tenant plan changed");
    Tenant::from_row(&row)
}
