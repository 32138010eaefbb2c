//! `cargo bench --bench scale`: operations over many tenants (10,000 by default): provisioning, a
//! no-op `tenantry migrate`, a new `alter table … add column` migration, and PostgreSQL backend
//! memory after touching every tenant, with and without connection retirement.

#[allow(dead_code, reason = "each bench target uses its own part of the shared harness")]
mod support;

use std::time::{Duration, Instant};

use clap::Parser;
use deadpool_postgres::Pool;
use futures::StreamExt;
use support::report::{self, Figure, mib};
use support::{BenchDb, Common, fleet, setup};
use tenantry::db::migrate::MigrationSet;
use tenantry::db::{Retire, SchemaName, TenantTx, build_pool_retiring};

/// The first bench migration's version. A high version keeps it clear of real ones.
const BENCH_VERSION: i32 = 9001;

/// The bench migrations up to `version`: refinery-style name and SQL. Each run of the bench adds
/// the next one, so runs at growing tenant counts on one database (a three-point series) each
/// measure an added column over every tenant.
fn bench_migrations(upto: i32) -> anyhow::Result<MigrationSet> {
    let mut set = MigrationSet::tenant();
    for version in BENCH_VERSION..=upto {
        set = if version == BENCH_VERSION {
            set.with("V9001__bench_add_column", "alter table projects add column bench_note text")?
        } else {
            let column = version - BENCH_VERSION + 1;
            set.with(
                &format!("V{version}__bench_add_column_{column}"),
                &format!("alter table projects add column bench_note_{column} text"),
            )?
        };
    }
    Ok(set)
}

/// The highest bench migration a tenant of this database has, or `BENCH_VERSION - 1`.
async fn applied_bench_version(pool: &Pool) -> anyhow::Result<i32> {
    let row = pool
        .get()
        .await?
        .query_one("select coalesce(max(migration_version), 0) from control.tenants", &[])
        .await?;
    Ok(row.get::<_, i32>(0).max(BENCH_VERSION - 1))
}

#[derive(Debug, Parser)]
#[command(about = "Operations over many tenants: provisioning, migrate, backend memory")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Tenants to provision (created if missing) and operate on.
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Tenants provisioned at once.
    #[arg(long, default_value_t = 4)]
    provision_jobs: usize,
    /// Tenants migrated at once (`tenantry migrate --jobs`).
    #[arg(long, default_value_t = 8)]
    jobs: u16,
    /// Connections retire after this many uses in the bounded-memory run.
    #[arg(long, default_value_t = 1_000)]
    retire_after: usize,
    /// Tenants provisioned one at a time for the cold and the warm latency (then purged).
    #[arg(long, default_value_t = 100)]
    latency_tenants: usize,
    /// Provision up to `--tenants` and stop: grows a database in steps (for example at a low
    /// priority, while the machine does other work) before a measured run at that count.
    #[arg(long)]
    provision_only: bool,
    /// Reads a second over every tenant while the new migration runs.
    #[arg(long, default_value_t = 200.0)]
    serve_rate: f64,
    /// Only this, after provisioning: N tenants provisioned while serving reads, with their roles
    /// made one per tenant and then made ahead in one batch (read latency of each); run it as a
    /// non-superuser login role, whose membership list PostgreSQL rebuilds after each change.
    #[arg(long, default_value_t = 0)]
    provision_while_serving: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_logs();
    let args = Args::parse();
    let db = BenchDb::open(&args.common).await?;
    run(&db.url, &db.pool, args).await
}

async fn run(url: &str, pool: &Pool, args: Args) -> anyhow::Result<()> {
    let mut figures = Vec::new();
    eprintln!("provisioning up to {} tenants", args.tenants);
    // New tenants join at the version the earlier ones have (earlier runs' bench migrations).
    let applied = applied_bench_version(pool).await?;
    let current = bench_migrations(applied)?;
    let setup = setup::ensure_tenants(pool, &current, args.tenants, 1, args.provision_jobs).await?;
    let h = &setup.per_tenant;
    figures.push(Figure::plain(
        "provision: tenants created, total",
        format!("{} in {:.1} s ({} jobs)", setup.created, setup.total.as_secs_f64(), args.provision_jobs),
    ));
    let (p50, p99) = (ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)));
    figures.push(Figure {
        met: Some(setup.created > 0 && p50 < 50.0),
        target: "p50 < 50 ms",
        ..Figure::plain("provision: per tenant p50 / p99", format!("{p50:.1} / {p99:.1} ms"))
    });
    if args.provision_while_serving > 0 {
        let count = args.provision_while_serving;
        for ahead in [false, true] {
            let how = if ahead { "roles made ahead in one batch" } else { "a role made per tenant" };
            eprintln!("{count} tenants provisioned while serving {} reads/s, {how}", args.serve_rate);
            let served = fleet::provision_while_serving(
                url,
                pool,
                &MigrationSet::tenant(),
                args.tenants,
                args.serve_rate,
                count,
                ahead,
            )
            .await?;
            let name = if ahead {
                "tenants provisioned while serving, roles made ahead in one batch"
            } else {
                "tenants provisioned while serving, a role made per tenant"
            };
            figures.push(Figure::plain(
                name,
                format!(
                    "{count} in {:.1} s; reads meanwhile: {} ok, {} failed, p50 / p99 / max {:.1} / {:.1} / {:.1} ms",
                    served.took.as_secs_f64(),
                    served.ok,
                    served.errors,
                    served.p50_ms,
                    served.p99_ms,
                    served.max_ms
                ),
            ));
        }
        report::print(&format!("Provisioning while serving: {} tenants", args.tenants), &figures);
        return Ok(());
    }
    if args.provision_only {
        report::print(&format!("Provisioned: {} tenants", args.tenants), &figures);
        return Ok(());
    }

    eprintln!("tenantry migrate (no-op)");
    let noop = timed_cli_migrate(url, args.jobs).await?;
    figures.push(Figure {
        met: Some(noop < Duration::from_secs(10)),
        target: "< 10 s",
        ..Figure::plain("`tenantry migrate`, nothing to do", format!("{:.2} s", noop.as_secs_f64()))
    });

    eprintln!("createTenant latency at {} tenants, cold then warm", args.tenants);
    let (cold, warm, refill) =
        fleet::provision_latency(pool, &MigrationSet::tenant(), args.latency_tenants).await?;
    figures.push(Figure {
        met: Some(cold.p50_ms < 50.0),
        target: "p50 < 50 ms",
        ..Figure::plain(
            "createTenant cold (no warm schema): p50 / p99",
            format!("{:.1} / {:.1} ms ({} one at a time)", cold.p50_ms, cold.p99_ms, args.latency_tenants),
        )
    });
    figures.push(Figure {
        met: Some(warm.p50_ms < 10.0 && warm.p99_ms < 30.0),
        target: "p50 < 10 ms, p99 < 30 ms",
        ..Figure::plain(
            "createTenant warm (claims a warm schema): p50 / p99",
            format!("{:.1} / {:.1} ms ({} one at a time)", warm.p50_ms, warm.p99_ms, args.latency_tenants),
        )
    });
    figures.push(Figure::plain(
        "warm pool refill",
        format!("{} schemas in {:.1} s", args.latency_tenants, refill.as_secs_f64()),
    ));

    eprintln!(
        "new migration over every tenant, {} jobs, while serving {} reads/s",
        args.jobs, args.serve_rate
    );
    let set = bench_migrations(applied + 1)?;
    let served =
        fleet::migrate_while_serving(url, &set, usize::from(args.jobs), args.tenants, args.serve_rate)
            .await?;
    figures.push(Figure {
        met: Some(served.failed_tenants == 0 && served.errors == 0),
        target: "0 failed tenants, 0 failed reads",
        ..Figure::plain(
            "new migration (add column) while serving",
            format!(
                "{:.1} s: {} migrated, {} failed, --jobs {}; reads meanwhile: {} ok, {} failed",
                served.took.as_secs_f64(),
                served.migrated,
                served.failed_tenants,
                args.jobs,
                served.ok,
                served.errors
            ),
        )
    });

    let catalog = fleet::catalog(pool).await?;
    figures.push(Figure::plain(
        "catalog: pg_class rows / pg_attribute rows / catalog tables",
        format!(
            "{} / {} / {}",
            catalog.pg_class_rows,
            catalog.pg_attribute_rows,
            mib(catalog.catalog_bytes as u64)
        ),
    ));
    figures.push(Figure::plain("database size", mib(catalog.database_bytes as u64)));
    if let Some(pg_dump) = tenantry::db::pg_bin::find_program("pg_dump") {
        eprintln!("pg_dump --schema-only");
        let took =
            fleet::timed(&pg_dump, &["--schema-only", "--dbname", url, "--file", "/dev/null"], &[]).await?;
        figures.push(Figure::plain("pg_dump --schema-only", format!("{:.1} s", took.as_secs_f64())));
    }
    let list =
        fleet::timed(support::tenantry_exe(), &["tenants", "list", "--json"], &[("DATABASE_URL", url)])
            .await?;
    figures.push(Figure::plain("`tenantry tenants list --json`", format!("{:.2} s", list.as_secs_f64())));
    let start = fleet::server_start(url).await?;
    figures.push(Figure::plain("server start (to /livez)", format!("{:.2} s", start.as_secs_f64())));

    eprintln!("backend memory after touching every tenant");
    let never = Retire { max_age: Duration::MAX, max_uses: usize::MAX };
    let (fresh, unbounded) = touch_all(url, args.tenants, never).await?;
    figures.push(Figure::plain(
        "backend memory, fresh / after all tenants, no retirement",
        format!("{} / {}", mib(fresh), mib(unbounded)),
    ));
    let retiring = Retire { max_uses: args.retire_after, ..Retire::default() };
    let (_, bounded) = touch_all(url, args.tenants, retiring).await?;
    figures.push(Figure::plain(
        "backend memory after all tenants, retiring after N uses",
        format!("{} (N = {})", mib(bounded), args.retire_after),
    ));
    report::print(&format!("Scale: {} tenants", args.tenants), &figures);
    Ok(())
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Wall time of `tenantry migrate --jobs N` as a separate process, start-up included.
async fn timed_cli_migrate(url: &str, jobs: u16) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let output = tokio::process::Command::new(support::tenantry_exe())
        .args(["migrate", "--json", "--jobs", &jobs.to_string()])
        .env("DATABASE_URL", url)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    let took = t0.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "tenantry migrate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(took)
}

/// Reads one project count in every tenant through a 4-connection pool, then reports the
/// largest backend's private memory before and after.
async fn touch_all(url: &str, tenants: usize, retire: Retire) -> anyhow::Result<(u64, u64)> {
    const CONNECTIONS: usize = 4;
    let pool = build_pool_retiring(url, CONNECTIONS, retire)?;
    let before = max_backend_memory(&pool, CONNECTIONS).await?;
    let mut touched = futures::stream::iter(0..tenants)
        .map(|i| {
            let pool = &pool;
            async move {
                let schema = SchemaName::for_tenant(setup::tenant_id(i));
                let mut tx = TenantTx::begin(pool, &schema).await?;
                tx.query_one("select count(*) from projects", &[]).await?;
                tx.commit().await
            }
        })
        .buffer_unordered(CONNECTIONS);
    while let Some(result) = touched.next().await {
        result.map_err(|e| e.into_anyhow())?;
    }
    drop(touched);
    let after = max_backend_memory(&pool, CONNECTIONS).await?;
    pool.close();
    Ok((before, after))
}

/// The largest `pg_backend_memory_contexts` total among the pool's live connections.
async fn max_backend_memory(pool: &Pool, connections: usize) -> anyhow::Result<u64> {
    // Holding all of them at once makes the pool hand out each connection exactly once.
    let clients = futures::future::try_join_all((0..connections).map(|_| pool.get())).await?;
    let mut max = 0;
    for client in &clients {
        let bytes: i64 = client
            .query_one("select sum(total_bytes)::bigint from pg_backend_memory_contexts", &[])
            .await?
            .get(0);
        max = max.max(u64::try_from(bytes)?);
    }
    Ok(max)
}
