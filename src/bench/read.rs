//! `tenantry bench read`: B1–B5, the tenant-scoped GraphQL read against its baselines, all in
//! one run on the same data.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use hyper::header::HeaderValue;
use serde_json::json;

use super::baseline::{self, Spread};
use super::load::{self, Load, LoadResult, Shot, Target};
use super::report::{self, Figure, mib};
use super::server::ChildServer;
use super::setup;
use crate::auth::token::TokenKeys;
use crate::db::migrate::MigrationSet;

/// The read the server answers: one project of the tenant, authenticated.
const QUERY: &str = "query($id: ID!) { project(id: $id) { id name } }";
/// Both servers answer a found project with a body starting like this.
const OK_PREFIX: &[u8] = b"{\"data\":{\"project\":{";
/// A throwaway secret shared by the harness (which signs) and the server under test.
const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Tenants the spread runs cover (created if missing).
    #[arg(long, default_value_t = 1000)]
    pub tenants: usize,
    /// Projects in each tenant.
    #[arg(long, default_value_t = 10)]
    pub projects: i64,
    /// Concurrent connections (HTTP and pgbench clients alike).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds each measured run lasts.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of unmeasured load before each run (fills PostgreSQL's catalog caches, the
    /// statement caches and the server's caches; a thousand cold schemas take a while).
    #[arg(long, default_value_t = 15)]
    pub warmup: u64,
    /// Tenants provisioned at once during set-up.
    #[arg(long, default_value_t = 4)]
    pub setup_jobs: usize,
}

pub async fn run(
    url: &str,
    pool: &deadpool_postgres::Pool,
    pool_size: usize,
    args: ReadArgs,
) -> anyhow::Result<()> {
    let setup =
        setup::ensure_tenants(pool, &MigrationSet::tenant(), args.tenants, args.projects, args.setup_jobs)
            .await?;
    eprintln!(
        "set-up: {} tenants created in {:.1} s ({} already there)",
        setup.created,
        setup.total.as_secs_f64(),
        args.tenants - setup.created
    );
    let duration = Duration::from_secs(args.duration);
    let pool_size = pool_size.to_string();
    let tenants = args.tenants.to_string();
    let common = [("DATABASE_URL", url), ("DB_POOL_SIZE", pool_size.as_str())];
    let mut envs = common.to_vec();
    envs.push(("JWT_SECRET", JWT_SECRET));
    let server = ChildServer::spawn(&["serve"], &envs).await?;
    let plain = ChildServer::spawn(&["bench", "plain-server", "--tenants", &tenants], &common).await?;

    let token = TokenKeys::new(JWT_SECRET.as_bytes()).issue(setup::USER_ID).map_err(|e| e.into_anyhow())?;
    let authorization = HeaderValue::from_str(&format!("Bearer {token}"))?;
    let spread = shots(0..args.tenants)?;
    let one = shots(0..1)?;
    let target = |addr, shots: &Arc<Vec<Shot>>| Target {
        addr,
        authorization: authorization.clone(),
        shots: shots.clone(),
        expect_prefix: OK_PREFIX,
    };
    let closed = Load { connections: args.connections, duration, rate: None };
    let warm = Load { duration: Duration::from_secs(args.warmup), ..closed };
    // Each run also reports the server's CPU time per request, which other load on the
    // machine hardly changes (throughput it changes a lot).
    let measure =
        async |server: &ChildServer, target: &Target, load: Load| -> anyhow::Result<(LoadResult, f64)> {
            if args.warmup > 0 {
                load::run(target, warm).await?;
            }
            let cpu0 = server.cpu_time()?;
            let result = load::run(target, load).await?;
            let cpu_us = (server.cpu_time()? - cpu0).as_secs_f64() * 1e6 / result.ok.max(1) as f64;
            eprintln!(
                "  {:.0} req/s, {} errors, p50 {:.2} ms, p99 {:.2} ms",
                result.rps(),
                result.errors,
                result.percentile_ms(0.5),
                result.percentile_ms(0.99)
            );
            eprintln!("  server CPU {cpu_us:.0} µs per request");
            Ok((result, cpu_us))
        };

    let rss_idle = server.rss_bytes()?;
    eprintln!("pgbench, spread over {} tenants", args.tenants);
    let pgbench_tps =
        baseline::pgbench(url, Spread::Tenants(args.tenants), args.connections, warm.duration, duration)
            .await?;
    eprintln!("  {pgbench_tps:.0} tps");
    eprintln!("pgbench, one tenant");
    let pgbench_one = baseline::pgbench(url, Spread::One, args.connections, warm.duration, duration).await?;
    eprintln!("  {pgbench_one:.0} tps");
    eprintln!("GraphQL, spread");
    let sampler = server.sample_peak_rss()?;
    let (gql_spread, gql_cpu) = measure(&server, &target(server.addr, &spread), closed).await?;
    let rss_load = sampler.finish();
    eprintln!("plain handler, spread");
    let (plain_spread, plain_cpu) = measure(&plain, &target(plain.addr, &spread), closed).await?;
    eprintln!("GraphQL, one tenant");
    let (gql_one, one_cpu) = measure(&server, &target(server.addr, &one), closed).await?;
    let half = gql_spread.rps() / 2.0;
    eprintln!("GraphQL, spread, at {half:.0} req/s");
    let (paced, _) =
        measure(&server, &target(server.addr, &spread), Load { rate: Some(half), ..closed }).await?;
    let rss_after = server.rss_bytes()?;
    server.stop().await?;
    plain.stop().await?;

    let c = args.connections;
    let figures = vec![
        Figure::ratio(
            "B1 GraphQL read ÷ pgbench, same SQL",
            gql_spread.rps(),
            pgbench_tps,
            "req/s",
            "≥ 0.70",
            0.70,
        ),
        Figure::ratio(
            "B2 GraphQL read ÷ plain axum handler",
            gql_spread.rps(),
            plain_spread.rps(),
            "req/s",
            "≥ 0.80",
            0.80,
        ),
        Figure::ratio(
            "B3 spread over tenants ÷ one tenant",
            gql_spread.rps(),
            gql_one.rps(),
            "req/s",
            "≥ 0.85",
            0.85,
        ),
        Figure::ratio(
            "    pgbench: spread ÷ one tenant (PostgreSQL's own cost)",
            pgbench_tps,
            pgbench_one,
            "tps",
            "",
            0.0,
        ),
        Figure::plain(
            "    server CPU per request: GraphQL spread / one tenant / plain",
            format!("{gql_cpu:.0} / {one_cpu:.0} / {plain_cpu:.0} µs"),
        ),
        Figure::plain(
            "B4 p50 / p99 at half peak",
            format!(
                "{:.2} / {:.2} ms at {half:.0} req/s ({:.0} served)",
                paced.percentile_ms(0.5),
                paced.percentile_ms(0.99),
                paced.rps()
            ),
        ),
        Figure::plain(
            "    p50 / p99 at peak (closed loop)",
            format!("{:.2} / {:.2} ms", gql_spread.percentile_ms(0.5), gql_spread.percentile_ms(0.99)),
        ),
        Figure::plain(
            "B5 server RSS idle / peak under load / after",
            format!("{} / {} / {}", mib(rss_idle), mib(rss_load), mib(rss_after)),
        ),
        Figure::plain(
            "    errors (all HTTP runs)",
            (gql_spread.errors + plain_spread.errors + gql_one.errors + paced.errors).to_string(),
        ),
    ];
    report::print(
        &format!("Read path: {} tenants, {c} connections, {} s per run", args.tenants, args.duration),
        &figures,
    );
    Ok(())
}

/// One request per tenant in `range`, each asking for that tenant's bench project.
fn shots(range: std::ops::Range<usize>) -> anyhow::Result<Arc<Vec<Shot>>> {
    let shots = range
        .map(|i| {
            let body = json!({ "query": QUERY, "variables": { "id": setup::project_id(i) } });
            Ok(Shot {
                tenant: HeaderValue::from_str(&setup::subdomain(i))?,
                body: Bytes::from(serde_json::to_vec(&body)?),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Arc::new(shots))
}
