//! `cargo bench --bench read`: B1–B5, the tenant-scoped GraphQL read against its baselines,
//! all in one run on the same data (docs/BENCHMARKS.md).

#[allow(dead_code, reason = "each bench target uses its own part of the shared harness")]
mod support;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use support::load::{self, Load, LoadResult, Shot, Target};
use support::pgbench::{self, Spread};
use support::report::{self, Figure, mib};
use support::server::ChildServer;
use support::{BenchDb, Common, plain, read_request, setup};
use tenantry::db::migrate::MigrationSet;

#[derive(Debug, Parser)]
#[command(about = "B1–B5: the GraphQL read against pgbench and a plain handler")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Tenants the spread runs cover (created if missing).
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Projects in each tenant.
    #[arg(long, default_value_t = 10)]
    projects: i64,
    /// Concurrent connections (HTTP and pgbench clients alike).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds each measured run lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of unmeasured load before each run (fills PostgreSQL's catalog caches, the
    /// statement caches and the server's caches; a thousand cold schemas take a while).
    #[arg(long, default_value_t = 15)]
    warmup: u64,
    /// Tenants provisioned at once during set-up.
    #[arg(long, default_value_t = 4)]
    setup_jobs: usize,
    /// Send the GraphQL read as a trusted document (`documentId`, from a manifest the server
    /// loads) instead of its text.
    #[arg(long)]
    trusted: bool,
}

fn main() -> anyhow::Result<()> {
    if plain::serve_if_asked()? {
        return Ok(());
    }
    support::init_logs();
    let args = Args::parse();
    tokio::runtime::Runtime::new()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let db = BenchDb::open(&args.common).await?;
    let (url, pool_size) = (db.url.as_str(), args.common.db_pool_size);
    let setup = setup::ensure_tenants(
        &db.pool,
        &MigrationSet::tenant(),
        args.tenants,
        args.projects,
        args.setup_jobs,
    )
    .await?;
    eprintln!(
        "set-up: {} tenants created in {:.1} s ({} already there)",
        setup.created,
        setup.total.as_secs_f64(),
        args.tenants - setup.created
    );
    let duration = Duration::from_secs(args.duration);
    let manifest_dir = std::env::temp_dir().join(format!("tenantry-read-{}", std::process::id()));
    std::fs::create_dir_all(&manifest_dir)?;
    let manifest = read_request::manifest(&manifest_dir)?.to_string_lossy().into_owned();
    let envs: &[(&str, &str)] =
        if args.trusted { &[("TRUSTED_DOCUMENTS_FILE", manifest.as_str())] } else { &[] };
    let server = read_request::spawn_server(url, pool_size, envs, &[]).await?;
    let plain = plain::spawn(url, args.tenants, pool_size, &[]).await?;

    let authorization = read_request::authorization()?;
    let shots = if args.trusted { read_request::trusted_shots } else { read_request::shots };
    let spread = shots(0..args.tenants)?;
    let one = shots(0..1)?;
    let target = |addr, shots: &Arc<Vec<Shot>>| read_request::target(addr, &authorization, shots);
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
        pgbench::run(url, Spread::Tenants(args.tenants), args.connections, warm.duration, duration).await?;
    eprintln!("  {pgbench_tps:.0} tps");
    eprintln!("pgbench, one tenant");
    let pgbench_one = pgbench::run(url, Spread::One, args.connections, warm.duration, duration).await?;
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
    let _ = std::fs::remove_dir_all(&manifest_dir);
    Ok(())
}
