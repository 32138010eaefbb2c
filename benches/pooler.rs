//! `cargo bench --bench pooler`: the tenant-scoped GraphQL read (`project(id)`, spread over the
//! bench tenants) direct to PostgreSQL against the same read through PgBouncer in transaction
//! pooling mode (docs/BENCHMARKS.md, run F).
//!
//! Three servers, one after the other, on the same data: direct with cached prepared statements
//! (the default), direct with `DATABASE_POOLER=transaction` (what unnamed statements cost by
//! themselves), and through PgBouncer with `DATABASE_POOLER=transaction`.

#[allow(dead_code, reason = "each bench target uses its own part of the shared harness")]
mod support;

use std::time::Duration;

use clap::Parser;
use support::load::{self, Load, LoadResult};
use support::pgbouncer::PgBouncer;
use support::report::{self, Figure};
use support::{BenchDb, Common, read_request, setup};
use tenantry::db::migrate::MigrationSet;

#[derive(Debug, Parser)]
#[command(about = "The GraphQL read direct and through PgBouncer (transaction pooling)")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Tenants the reads are spread over (created if missing).
    #[arg(long, default_value_t = 200)]
    tenants: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// PgBouncer's server connections (`default_pool_size`).
    #[arg(long, default_value_t = 8)]
    server_connections: u16,
    /// Seconds each measured run lasts.
    #[arg(long, default_value_t = 8)]
    duration: u64,
    /// Seconds of unmeasured load before each run.
    #[arg(long, default_value_t = 4)]
    warmup: u64,
}

/// An environment variable for the server under test.
type Env<'a> = (&'a str, &'a str);

fn main() -> anyhow::Result<()> {
    support::init_logs();
    let args = Args::parse();
    tokio::runtime::Runtime::new()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let db = BenchDb::open(&args.common).await?;
    setup::ensure_tenants(&db.pool, &MigrationSet::tenant(), args.tenants, 10, 4).await?;
    let bouncer = PgBouncer::start(&db.url, args.server_connections).await?;
    let pool_size = args.common.db_pool_size;
    let authorization = read_request::authorization()?;
    let shots = read_request::shots(0..args.tenants)?;
    let measured =
        Load { connections: args.connections, duration: Duration::from_secs(args.duration), rate: None };
    let warm = Load { duration: Duration::from_secs(args.warmup), ..measured };

    let bouncer_url = bouncer.url();
    let runs: [(&'static str, &str, &[Env]); 3] = [
        ("direct, cached statements", &db.url, &[]),
        (
            "direct, unnamed statements",
            &db.url,
            &[("DATABASE_POOLER", "transaction"), ("DATABASE_DIRECT_URL", &db.url)],
        ),
        (
            "PgBouncer, unnamed statements",
            &bouncer_url,
            &[("DATABASE_POOLER", "transaction"), ("DATABASE_DIRECT_URL", &db.url)],
        ),
    ];
    let mut results: Vec<(&'static str, LoadResult)> = Vec::new();
    for (name, url, envs) in runs {
        eprintln!("{name}");
        let server = read_request::spawn_server(url, pool_size, envs, &[]).await?;
        let target = read_request::target(server.addr, &authorization, &shots);
        load::run(&target, warm).await?;
        let result = load::run(&target, measured).await?;
        eprintln!(
            "  {:.0} req/s, {} errors, p50 {:.2} ms, p99 {:.2} ms",
            result.rps(),
            result.errors,
            result.percentile_ms(0.5),
            result.percentile_ms(0.99)
        );
        server.stop().await?;
        results.push((name, result));
    }
    let direct = results[0].1.rps();
    let figures: Vec<Figure> = results
        .iter()
        .map(|(name, r)| Figure {
            name,
            measured: format!(
                "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                r.rps(),
                r.percentile_ms(0.5),
                r.percentile_ms(0.99),
                r.errors
            ),
            baseline: format!("{direct:.0} req/s"),
            ratio: Some(r.rps() / direct),
            target: "",
            met: None,
        })
        .collect();
    report::print(
        &format!(
            "GraphQL read, {} tenants, {} connections, PgBouncer {} server connections",
            args.tenants, args.connections, args.server_connections
        ),
        &figures,
    );
    Ok(())
}
