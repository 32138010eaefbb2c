//! The product's own jobs, each run by the feature that owns it: mail, tenant purge, dunning,
//! storage measurement, pruning finished jobs, and refilling the warm pool of tenant schemas.

use std::time::Duration;

use crate::jobs::{JobCtx, JobError, Registry, repo};
use crate::state::AppState;
use crate::tenancy::warm;

/// Purges tenants deleted longer ago than `TENANT_PURGE_AFTER_DAYS` (hourly).
pub const PURGE_TENANTS: &str = "tenants.purge";
/// Suspends tenants past their payment grace period (every `BILLING_CHECK_INTERVAL_SECS`).
pub const SUSPEND_OVERDUE: &str = "billing.suspend_overdue";
/// Deletes finished jobs older than `KEEP_FINISHED` (hourly).
pub const PRUNE_JOBS: &str = "jobs.prune";

/// How long done and cancelled jobs stay listed.
const KEEP_FINISHED: Duration = Duration::from_secs(7 * 24 * 3600);
const HOURLY: Duration = Duration::from_secs(3600);
/// How often the warm pool is checked besides after each claim (replaces what a migration made stale).
const WARM_POOL_CHECK: Duration = Duration::from_secs(60);

/// Wraps a handler that needs the application state.
fn with_state<F, Fut>(state: &AppState, f: F) -> impl Fn(JobCtx) -> Fut + Send + Sync + 'static
where
    F: Fn(AppState, JobCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    let state = state.clone();
    move |ctx| f(state.clone(), ctx)
}

/// Every job the product runs, and its recurring schedules.
pub fn registry(state: &AppState) -> Registry {
    Registry::default()
        .handle(
            crate::mail::outbox::SEND_MAIL,
            with_state(
                state,
                |s, ctx| async move { crate::mail::outbox::deliver(ctx, &s.mailer, &s.keys).await },
            ),
        )
        .handle(crate::usage::gauges::MEASURE_STORAGE, crate::usage::gauges::measure_storage_job)
        .handle(
            PURGE_TENANTS,
            with_state(state, |s, ctx| async move {
                let purged = crate::tenancy::purge_deleted(ctx.pool(), s.purge_after).await?;
                if purged > 0 {
                    tracing::info!(tenants.purged = purged, "purged deleted tenants");
                }
                Ok(())
            }),
        )
        .every(PURGE_TENANTS, HOURLY)
        .handle(
            SUSPEND_OVERDUE,
            with_state(state, |s, ctx| async move {
                crate::billing::suspend_overdue(ctx.pool(), &s.plans, s.billing.grace).await?;
                Ok(())
            }),
        )
        .every(SUSPEND_OVERDUE, state.billing.check_interval)
        .handle(PRUNE_JOBS, |ctx: JobCtx| async move {
            let client = ctx.pool().get().await.map_err(crate::error::AppError::from)?;
            repo::prune(&client, KEEP_FINISHED).await?;
            Ok(())
        })
        .every(PRUNE_JOBS, HOURLY)
        .handle(
            warm::REFILL,
            with_state(state, |s, ctx| async move {
                let done = warm::refill(ctx.pool(), &s.tenant_migrations, s.warm_pool, s.roles_ahead).await?;
                if done != warm::Refilled::default() {
                    tracing::info!(
                        warm.dropped = done.dropped,
                        warm.created = done.created,
                        warm.roles = done.roles,
                        "warm pool refilled"
                    );
                }
                Ok(())
            }),
        )
        .every(warm::REFILL, WARM_POOL_CHECK)
}
