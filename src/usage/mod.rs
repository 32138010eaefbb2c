//! Usage: API requests counted in memory and flushed in batches, storage and member gauges,
//! monthly quotas and per-second rate limits, and live totals for subscribers.

pub mod gauges;
pub mod limits;
pub mod live;
pub mod meter;
pub mod repo;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use deadpool_postgres::Pool;

use self::gauges::Gauges;
use self::limits::RateLimits;
use self::live::LiveHub;
use self::meter::{Flushed, Meter};
use crate::db::notify;
use crate::error::AppError;
use crate::plans::{Feature, Resource, TenantAccess};

/// The window a usage report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum UsagePeriod {
    /// Today (UTC).
    Day,
    /// The calendar month so far (UTC).
    Month,
}

/// The first day of `day`'s month.
pub fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).expect("every month has a first day")
}

/// Whole seconds from `now` until the next month starts (UTC), when quotas reset.
fn until_next_month(now: DateTime<Utc>) -> u64 {
    let start = month_start(now.date_naive());
    let next = start.checked_add_months(chrono::Months::new(1)).unwrap_or(start);
    let next = next.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    (next - now).num_seconds().max(1) as u64
}

/// `X-RateLimit-*` values for a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: i64,
    pub remaining: i64,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

/// A request the plan does not allow now, with the headers that explain it.
#[derive(Debug)]
pub struct Refusal {
    pub error: AppError,
    pub headers: Option<RateHeaders>,
}

impl From<AppError> for Refusal {
    fn from(error: AppError) -> Self {
        Self { error, headers: None }
    }
}

/// Everything usage-related a process holds.
pub struct Usage {
    pub meter: Meter,
    pub limits: RateLimits,
    pub gauges: Gauges,
    pub live: LiveHub,
    pub flush_every: Duration,
    /// Off only to measure what metering costs (benchmarks); requests then pass uncounted.
    metering: AtomicBool,
}

impl Usage {
    pub fn new(flush_every: Duration) -> Self {
        Self {
            meter: Meter::default(),
            limits: RateLimits::default(),
            gauges: Gauges::default(),
            live: LiveHub::default(),
            flush_every,
            metering: AtomicBool::new(true),
        }
    }

    /// Whether requests are counted and limited (always, except in the on/off benchmark).
    pub fn metering(&self) -> bool {
        self.metering.load(Ordering::Relaxed)
    }

    /// Turns counting and limiting off or on (benchmarks compare the two in one run).
    pub fn set_metering(&self, on: bool) {
        self.metering.store(on, Ordering::Relaxed);
    }

    /// Admits and counts one request of a tenant: the per-second bucket first (skipped with
    /// `unlimited_api`), then the monthly quota (skipped when unlimited). Headers describe the
    /// monthly quota when there is one.
    pub async fn admit(&self, pool: &Pool, access: &TenantAccess) -> Result<Option<RateHeaders>, Refusal> {
        let tenant = access.tenant.id;
        if let Some(per_second) = access.plan.limits.requests_per_second
            && !access.has(Feature::UnlimitedApi)
            && let Err(wait) = self.limits.check(tenant, u32::try_from(per_second).unwrap_or(u32::MAX))
        {
            let secs = (wait.as_secs_f64().ceil() as u64).max(1);
            metrics::counter!("rate_limited_total", "reason" => "rate").increment(1);
            return Err(Refusal {
                error: AppError::RateLimited { retry_after_secs: secs },
                headers: Some(RateHeaders { limit: per_second, remaining: 0, reset_secs: secs }),
            });
        }
        let now = Utc::now();
        let today = now.date_naive();
        let quota = access.plan.limit(Resource::ApiRequests);
        if quota.is_some() {
            self.meter.ensure_loaded(pool, tenant, today).await?;
        }
        match (self.meter.count(tenant, today, quota), quota) {
            (Ok(used), Some(limit)) => Ok(Some(RateHeaders {
                limit,
                remaining: (limit - used).max(0),
                reset_secs: until_next_month(now),
            })),
            (Ok(_), None) => Ok(None),
            (Err(_), limit) => {
                let limit = limit.unwrap_or_default();
                let reset_secs = until_next_month(now);
                metrics::counter!("rate_limited_total", "reason" => "quota").increment(1);
                Err(Refusal {
                    error: AppError::QuotaExceeded {
                        limit,
                        plan: access.plan.id.clone(),
                        retry_after_secs: reset_secs,
                    },
                    headers: Some(RateHeaders { limit, remaining: 0, reset_secs }),
                })
            }
        }
    }

    /// One flush: counts to the database, fresh totals back, totals out to every replica.
    pub async fn flush(&self, pool: &Pool) -> Result<Flushed, AppError> {
        let started = Instant::now();
        let today = Utc::now().date_naive();
        let result = self.meter.flush(pool, today).await;
        metrics::histogram!("usage_flush_duration_seconds").record(started.elapsed().as_secs_f64());
        let flushed = match result {
            Ok(flushed) => flushed,
            Err(err) => {
                metrics::counter!("usage_flushes_total", "outcome" => "failed").increment(1);
                return Err(err);
            }
        };
        if flushed.totals.is_empty() {
            return Ok(flushed);
        }
        metrics::counter!("usage_flushes_total", "outcome" => "written").increment(1);
        metrics::counter!("usage_flush_rows_total").increment(flushed.rows);
        // Every replica, this one included, hears the totals on the bus and updates its subscribers.
        let client = pool.get().await?;
        for payload in live::encode(today, &flushed.totals) {
            notify::publish(&client, notify::USAGE, &payload).await?;
        }
        Ok(flushed)
    }

    /// Flushes until nothing is left (shutdown); gives up after a few failed attempts.
    pub async fn flush_all(&self, pool: &Pool) -> Result<(), AppError> {
        let mut failures = 0;
        while !self.meter.is_idle() {
            if let Err(err) = self.flush(pool).await {
                failures += 1;
                if failures >= 3 {
                    return Err(err);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Takes in totals another replica (or this one) published.
    pub fn on_notice(&self, payload: &str) {
        match live::decode(payload) {
            Some(totals) => {
                self.meter.learn(&totals);
                self.live.publish(&totals);
            }
            None => tracing::warn!("ignoring a malformed usage notification"),
        }
    }
}

/// Refuses a write that adds data when the tenant's storage is at or past its plan's limit.
/// Deleting and reading stay allowed, so a tenant over its limit can free space.
pub async fn require_storage_room(usage: &Usage, pool: &Pool, access: &TenantAccess) -> Result<(), AppError> {
    if access.plan.limit(Resource::StorageBytes).is_none() {
        return Ok(());
    }
    let bytes = usage.gauges.storage(pool, access.tenant.id).await?;
    access.check_room(Resource::StorageBytes, bytes, 1)
}

/// How often tenants that wrote data get their storage measured again.
pub const STORAGE_REFRESH: Duration = Duration::from_secs(5);

/// Hourly: forget idle tenants' totals and refilled buckets, and old flush ids.
pub async fn prune(usage: &Usage, pool: &Pool) {
    usage.meter.prune(Utc::now().date_naive());
    usage.limits.prune();
    if let Ok(client) = pool.get().await
        && let Err(err) = repo::prune_flushes(&client).await
    {
        tracing::warn!(error = ?err, "pruning usage flush ids failed");
    }
}
