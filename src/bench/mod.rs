//! `tenantry bench …`: benchmarks that set up their own data, load a started server over
//! loopback and print a table (see `docs/BENCHMARKS.md` and `scripts/bench.sh`).

mod baseline;
mod cache;
mod load;
mod read;
mod report;
mod scale;
mod server;
mod setup;

use std::process::ExitCode;

use clap::Subcommand;

use crate::app::Database;
use crate::config::Config;
use crate::db::embedded::Durability;
use crate::db::migrate::migrate_control;
use crate::db::{build_pool, check_reachable};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// B1–B5: the tenant-scoped GraphQL read against pgbench and a plain handler, spread over
    /// many tenants and on one, latency at half the peak rate, server memory.
    Read(read::ReadArgs),
    /// Operations at 10,000 tenants: provisioning, a no-op migrate, a new migration, and
    /// PostgreSQL backend memory after touching every tenant.
    Scale(scale::ScaleArgs),
    /// Plan guards: TenantAccess cache hit and miss, and invalidation delay across replicas.
    Cache(cache::CacheArgs),
    /// The plain axum + tokio-postgres baseline server (started by `bench read`).
    #[command(hide = true)]
    PlainServer {
        #[arg(long)]
        tenants: usize,
    },
}

pub async fn run(config: Config, cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let database = Database::open(&config, Durability::Durable).await?;
    let outcome = match cmd {
        BenchCommand::PlainServer { tenants } => {
            baseline::serve_plain(&database.url, config.bind, tenants, config.db_pool_size).await
        }
        BenchCommand::Read(args) => {
            let pool = control_pool(&database.url).await?;
            read::run(&database.url, &pool, config.db_pool_size, args).await
        }
        BenchCommand::Cache(args) => {
            let pool = control_pool(&database.url).await?;
            cache::run(&database.url, &pool, args).await
        }
        BenchCommand::Scale(args) => {
            let pool = control_pool(&database.url).await?;
            scale::run(&database.url, &pool, args).await
        }
    };
    database.close().await?;
    outcome.map(|()| ExitCode::SUCCESS)
}

/// A pool for set-up work, with the control schema migrated.
async fn control_pool(url: &str) -> anyhow::Result<deadpool_postgres::Pool> {
    let pool = build_pool(url, 16)?;
    check_reachable(&pool).await?;
    migrate_control(&pool).await?;
    Ok(pool)
}
