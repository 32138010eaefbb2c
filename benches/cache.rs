//! `cargo bench --bench cache`: what the plan guards cost — a `TenantAccess` cache hit, a miss, and
//! how long a plan change takes to invalidate another replica's cache through NOTIFY.

#[allow(dead_code, reason = "each bench target uses its own part of the shared harness")]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use deadpool_postgres::Pool;
use hdrhistogram::Histogram;
use support::report::{self, Figure};
use support::{BenchDb, Common, setup};
use tenantry::db::migrate::MigrationSet;
use tenantry::db::notify::{self, BusEvent};
use tenantry::error::AppError;
use tenantry::plans::{self, AccessCache, PlanCatalog};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
#[command(about = "Plan guards: TenantAccess cache hit and miss, invalidation across replicas")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Cache hits to time.
    #[arg(long, default_value_t = 1_000_000)]
    hits: u64,
    /// Plan changes whose invalidation delay is timed.
    #[arg(long, default_value_t = 100)]
    changes: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_logs();
    let args = Args::parse();
    let db = BenchDb::open(&args.common).await?;
    run(&db.url, &db.pool, args).await
}

async fn run(url: &str, pool: &Pool, args: Args) -> anyhow::Result<()> {
    setup::ensure_tenants(pool, &MigrationSet::tenant(), 1, 1, 1).await?;
    let tenant = setup::tenant_id(0);
    let catalog = PlanCatalog::builtin();
    let cache = AccessCache::new(Duration::from_secs(60));

    let started = Instant::now();
    cache.get(pool, &catalog, tenant).await.map_err(AppError::into_anyhow)?;
    let miss = started.elapsed();

    let mut hits = Histogram::<u64>::new(3)?;
    let all = Instant::now();
    for _ in 0..args.hits {
        let one = Instant::now();
        let access = cache.get(pool, &catalog, tenant).await.map_err(AppError::into_anyhow)?;
        hits.record(u64::try_from(one.elapsed().as_nanos())?)?;
        std::hint::black_box(access);
    }
    let mean_ns = all.elapsed().as_nanos() as f64 / args.hits as f64;

    // A second "replica": its own LISTEN connection and cache, reporting when it drops the entry.
    let (seen, mut invalidated) = mpsc::unbounded_channel();
    let replica = Arc::new(AccessCache::new(Duration::from_secs(60)));
    let listener = notify::spawn_listener(url.parse()?, {
        let replica = replica.clone();
        move |event| {
            let (replica, seen) = (replica.clone(), seen.clone());
            async move {
                if let BusEvent::Notice { channel, payload } = event
                    && channel == notify::TENANT_CHANGED
                    && let Ok(id) = payload.parse()
                {
                    replica.invalidate(id).await;
                    let _ = seen.send(Instant::now());
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut delays = Histogram::<u64>::new(3)?;
    for i in 0..args.changes {
        let plan = if i % 2 == 0 { "pro" } else { "free" };
        // From the start of the change (its transaction included): the notice often arrives
        // before the committing call has even returned.
        let started = Instant::now();
        plans::change_plan(pool, &catalog, tenant, plan).await.map_err(AppError::into_anyhow)?;
        let at = tokio::time::timeout(Duration::from_secs(5), invalidated.recv()).await?.unwrap_or(started);
        delays.record(u64::try_from(at.saturating_duration_since(started).as_micros())?)?;
    }
    listener.abort();
    plans::change_plan(pool, &catalog, tenant, "free").await.map_err(AppError::into_anyhow)?;

    let us = |ns: u64| format!("{:.2} µs", ns as f64 / 1000.0);
    report::print(
        "Plan guards: TenantAccess cache and cross-replica invalidation",
        &[
            Figure::plain(
                "cache miss (one control-plane query)",
                format!("{:.2} ms", miss.as_secs_f64() * 1e3),
            ),
            Figure::plain("cache hit, mean over all hits", format!("{:.0} ns", mean_ns)),
            Figure::plain(
                "cache hit p50 / p99 (each timed alone, timer included)",
                format!("{} / {}", us(hits.value_at_quantile(0.5)), us(hits.value_at_quantile(0.99))),
            ),
            Figure::plain(
                "plan change started → other replica invalidated, p50 / p99",
                format!(
                    "{:.2} / {:.2} ms",
                    delays.value_at_quantile(0.5) as f64 / 1e3,
                    delays.value_at_quantile(0.99) as f64 / 1e3
                ),
            ),
        ],
    );
    Ok(())
}
