//! `TenantAccess`: what a tenant may do now (plan, features, limits, status, expiry), cached
//! per tenant with single-flight loading and invalidated by `tenant_changed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use moka::future::Cache;
use uuid::Uuid;

use super::{Feature, Plan, PlanCatalog, Resource};
use crate::error::AppError;
use crate::tenancy::model::Tenant;
use crate::tenancy::repo;

/// A tenant together with the plan it is on.
#[derive(Debug)]
pub struct TenantAccess {
    pub tenant: Tenant,
    pub plan: Arc<Plan>,
}

impl TenantAccess {
    pub fn new(tenant: Tenant, catalog: &PlanCatalog) -> Self {
        let plan = catalog.get(&tenant.plan).cloned().unwrap_or_else(|| {
            tracing::warn!(tenant.id = %tenant.id, plan = tenant.plan, "tenant is on a plan the catalog lacks; applying free");
            catalog.free().clone()
        });
        Self { tenant, plan }
    }

    pub fn has(&self, feature: Feature) -> bool {
        self.plan.features.contains(&feature)
    }

    /// `FEATURE_NOT_IN_PLAN`, naming the cheapest plan with the feature, unless the plan has it.
    pub fn require(&self, feature: Feature, catalog: &PlanCatalog) -> Result<(), AppError> {
        if self.has(feature) {
            return Ok(());
        }
        Err(AppError::FeatureNotInPlan {
            feature: feature.as_str(),
            plan: self.plan.id.clone(),
            cheapest: catalog.cheapest_with(feature).map(|p| p.id.clone()),
        })
    }

    /// The one limit check: refuses growing `resource` from `current` by `adding` past the plan's
    /// limit. A tenant already over (after a downgrade) can shrink, not grow.
    pub fn check_room(&self, resource: Resource, current: i64, adding: i64) -> Result<(), AppError> {
        match self.plan.limit(resource) {
            Some(limit) if current.saturating_add(adding) > limit => Err(AppError::PlanLimitExceeded {
                resource: resource.as_str(),
                limit,
                plan: self.plan.id.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// `tenant id → TenantAccess` (absent: no such tenant).
#[derive(Clone)]
pub struct AccessCache {
    cache: Cache<Uuid, Option<Arc<TenantAccess>>>,
    loads: Arc<AtomicU64>,
}

impl AccessCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            cache: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            loads: Arc::default(),
        }
    }

    /// The tenant's access; concurrent misses for one tenant share a single query.
    pub async fn get(
        &self,
        pool: &Pool,
        catalog: &PlanCatalog,
        id: Uuid,
    ) -> Result<Option<Arc<TenantAccess>>, AppError> {
        let mut hit = true;
        let found = self
            .cache
            .try_get_with(id, async {
                hit = false;
                self.loads.fetch_add(1, Ordering::Relaxed);
                let client = pool.get().await?;
                let tenant = repo::find_by_id(&client, id).await?;
                Ok::<_, AppError>(tenant.map(|t| Arc::new(TenantAccess::new(t, catalog))))
            })
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("tenant access lookup: {err:?}")));
        crate::telemetry::metrics::cache_lookup("access", hit);
        found
    }

    /// How many times an access was loaded from the database (cache misses).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    pub async fn invalidate(&self, id: Uuid) {
        self.cache.invalidate(&id).await;
    }

    pub fn clear(&self) {
        self.cache.invalidate_all();
    }
}
