//! GraphQL: `usage(period)`, `subscription { usageUpdated }`, and the `UsageReport` type.

use std::sync::Arc;

use async_graphql::{Context, Object, SimpleObject, Subscription};
use chrono::{NaiveDate, Utc};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::error::AppError;
use crate::graphql::plans::PlanObject;
use crate::graphql::scalars::BigInt;
use crate::members::Role;
use crate::plans::{Feature, Resource, TenantAccess};
use crate::request::context::{Caller, RequestCtx};
use crate::request::guards::{FeatureGuard, RoleGuard};
use crate::request::tenant as resolve;
use crate::state::AppState;
use crate::usage::meter::Totals;
use crate::usage::{UsagePeriod, month_start, repo};

/// One metric against its plan limit.
#[derive(SimpleObject)]
pub struct UsageMetric {
    /// `api_requests`, `storage` (bytes) or `members` (active plus pending invitations).
    metric: &'static str,
    value: BigInt,
    /// `null`: unlimited.
    limit: Option<BigInt>,
    /// At or past the limit: more requests, data or members are refused.
    exceeded: bool,
}

/// API requests on one day.
#[derive(SimpleObject)]
pub struct UsageDay {
    day: NaiveDate,
    api_requests: BigInt,
}

/// A tenant's usage over a period, against its plan.
pub struct UsageReport {
    period: UsagePeriod,
    access: Arc<TenantAccess>,
    today: NaiveDate,
    metrics: Vec<UsageMetric>,
}

impl UsageReport {
    /// `api`: cluster API request totals; storage and members come from the cached gauges.
    async fn build(
        state: &AppState,
        access: Arc<TenantAccess>,
        period: UsagePeriod,
        api: Totals,
    ) -> Result<Self, AppError> {
        let tenant = access.tenant.id;
        let api_requests = match period {
            UsagePeriod::Day => api.today,
            UsagePeriod::Month => api.month,
        };
        let values = [
            (Resource::ApiRequests, api_requests),
            (Resource::StorageBytes, state.usage.gauges.storage(&state.pool, tenant).await?),
            (Resource::Members, state.usage.gauges.members(&state.pool, tenant).await?),
        ];
        let metrics = values
            .into_iter()
            .map(|(resource, value)| {
                // The monthly quota is the only API request limit; a day is reported against it too.
                let limit = access.plan.limit(resource);
                UsageMetric {
                    metric: resource.as_str(),
                    value: BigInt(value),
                    limit: limit.map(BigInt),
                    exceeded: limit.is_some_and(|limit| value >= limit),
                }
            })
            .collect();
        Ok(Self { period, access, today: api.day, metrics })
    }
}

#[Object]
impl UsageReport {
    async fn period(&self) -> UsagePeriod {
        self.period
    }
    /// The first day the report covers (UTC).
    async fn from(&self) -> NaiveDate {
        match self.period {
            UsagePeriod::Day => self.today,
            UsagePeriod::Month => month_start(self.today),
        }
    }
    async fn plan(&self) -> PlanObject {
        PlanObject(self.access.plan.clone())
    }
    async fn metrics(&self) -> &[UsageMetric] {
        &self.metrics
    }
    /// Whether any metric is at or past its limit.
    async fn exceeded(&self) -> bool {
        self.metrics.iter().any(|m| m.exceeded)
    }
    /// API requests per day of the period (days without requests omitted). Needs `advanced_analytics`.
    #[graphql(guard = "FeatureGuard::new(Feature::AdvancedAnalytics)")]
    async fn days(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<UsageDay>> {
        let rc = ctx.data::<RequestCtx>()?;
        let from = match self.period {
            UsagePeriod::Day => self.today,
            UsagePeriod::Month => month_start(self.today),
        };
        let client = rc.state.pool.get().await.map_err(AppError::from)?;
        let days = repo::daily(&client, self.access.tenant.id, from, self.today).await?;
        Ok(days.into_iter().map(|(day, n)| UsageDay { day, api_requests: BigInt(n) }).collect())
    }
}

/// Refuses a write that adds data while the tenant's storage is at or past its plan's limit
/// (`PLAN_LIMIT_EXCEEDED`). Put it on mutations that create or grow tenant data.
pub struct StorageRoomGuard;

impl async_graphql::Guard for StorageRoomGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let rc = ctx.data::<RequestCtx>()?;
        Ok(crate::usage::require_storage_room(&rc.state.usage, &rc.state.pool, rc.tenant()?).await?)
    }
}

#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// The tenant's usage today or this month, as of the last flush (at most `USAGE_FLUSH_MS` old).
    #[graphql(guard = "RoleGuard::at_least(Role::Viewer)")]
    async fn usage(&self, ctx: &Context<'_>, period: UsagePeriod) -> async_graphql::Result<UsageReport> {
        let rc = ctx.data::<RequestCtx>()?;
        let access = rc.tenant()?.clone();
        let today = Utc::now().date_naive();
        let client = rc.state.pool.get().await.map_err(AppError::from)?;
        let api = repo::totals(&client, &[access.tenant.id], today).await?[0].1;
        drop(client);
        Ok(UsageReport::build(&rc.state, access, period, api).await?)
    }
}

#[derive(Default)]
pub struct UsageSubscription;

#[Subscription]
impl UsageSubscription {
    /// The tenant's monthly usage after every flush that counted its requests, on any replica.
    /// Ends with an error when the caller loses access (removed, suspended).
    async fn usage_updated(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<UsageReport>> + use<>> {
        let rc = ctx.data::<RequestCtx>()?;
        rc.role().await?;
        let tenant = rc.tenant()?.tenant.id;
        let (state, caller) = (rc.state.clone(), rc.caller);
        let updates = state.usage.live.subscribe(tenant);
        // Measure the tenant's gauges now, so the first update does not wait for the database
        // (after a flush, every subscribed tenant's report is built at once). Concurrent calls
        // for one tenant share one measurement; a failure is retried by the report itself.
        let warm = state.clone();
        tokio::spawn(async move {
            let _ = warm.usage.gauges.storage(&warm.pool, tenant).await;
            let _ = warm.usage.gauges.members(&warm.pool, tenant).await;
        });
        Ok(futures::stream::unfold(Some(updates), move |updates| {
            let state = state.clone();
            async move {
                let mut updates = updates?;
                loop {
                    let totals = match updates.recv().await {
                        Ok(totals) => totals,
                        Err(RecvError::Lagged(skipped)) => {
                            metrics::counter!("usage_updates_skipped_total").increment(skipped);
                            continue;
                        }
                        Err(RecvError::Closed) => return None,
                    };
                    let today = Utc::now().date_naive();
                    let report = match still_allowed(&state, tenant, caller).await {
                        Ok(access) => {
                            UsageReport::build(&state, access, UsagePeriod::Month, totals.as_of(today)).await
                        }
                        Err(err) => Err(err),
                    };
                    return match report {
                        Ok(report) => Some((Ok(report), Some(updates))),
                        // One error saying why, then the stream ends.
                        Err(err) => Some((Err(err.into()), None)),
                    };
                }
            }
        }))
    }
}

/// The tenant's access if the subscriber may still see it: tenant open, caller still a member.
async fn still_allowed(
    state: &AppState,
    tenant: uuid::Uuid,
    caller: Caller,
) -> Result<Arc<TenantAccess>, AppError> {
    let access = resolve::by_id(state, tenant).await?.ok_or(AppError::NotFound("tenant"))?;
    if let Caller::User(user) = caller
        && state.members.role(&state.pool, tenant, user).await?.is_none()
    {
        return Err(AppError::Forbidden("you are no longer a member of this tenant"));
    }
    Ok(access)
}
