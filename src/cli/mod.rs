//! The command line: `serve` (default), `migrate`, `tenants …`, `billing …`, `jobs …`, `keys rotate`,
//! `schema`. Benchmarks are not part of the product: they live in `benches/` (docs/BENCHMARKS.md).

mod billing;
mod jobs;
mod keys;
mod migrate;
mod tenants;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{Application, Database};
use crate::config::Config;
use crate::db::embedded::Durability;
use crate::db::migrate::migrate_control;
use crate::db::{build_pool, check_reachable};
use crate::plans::PlanCatalog;

#[derive(Debug, Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Multi-tenant SaaS backend: GraphQL API, a PostgreSQL schema per tenant"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server (the default).
    Serve,
    /// Apply control migrations, then bring every tenant schema to the latest version.
    Migrate(migrate::MigrateArgs),
    /// Create, list, suspend, resume, migrate or delete tenants.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Stripe billing: `sync-prices` creates the plans' products and prices in Stripe.
    #[command(subcommand)]
    Billing(billing::BillingCommand),
    /// Background jobs: `list` (optionally by state), `retry` a dead job, `cancel` a queued one.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Encryption keys: `keys rotate` re-encrypts stored secrets under MASTER_ENCRYPTION_KEY.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Print the GraphQL schema (SDL); `schema.graphql` is this output.
    Schema,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            Application::build(cli.config).await?.run().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => {
            let config = &cli.config;
            with_database(config, usize::from(args.jobs) + 2, |pool, _| migrate::run(pool, config, args))
                .await
        }
        Command::Billing(cmd) => billing::run(&cli.config, cmd).await,
        Command::Jobs(cmd) => with_database(&cli.config, 2, |pool, _| jobs::run(pool, cmd)).await,
        Command::Keys(cmd) => {
            let keys = crate::app::services::keyring(&cli.config)?;
            with_database(&cli.config, 2, |pool, _| keys::run(pool, keys, cmd)).await
        }
        Command::Tenants(cmd) => {
            let catalog = PlanCatalog::load(cli.config.plans_file.as_deref())?;
            let grace = cli.config.tenant_purge_after_days;
            let lock = migrate::lock_policy(&cli.config);
            with_database(&cli.config, 4, |pool, url| tenants::run(pool, url, catalog, grace, lock, cmd))
                .await
        }
    }
}

/// Opens the database (embedded or DATABASE_URL), applies control migrations, runs `f`, closes.
async fn with_database<F, Fut>(config: &Config, pool_size: usize, f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(deadpool_postgres::Pool, String) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let database = Database::open(config, Durability::Durable).await?;
    let pool = build_pool(&database.url, pool_size)?;
    check_reachable(&pool).await?;
    migrate_control(&pool).await?;
    let outcome = f(pool.clone(), database.url.clone()).await;
    pool.close();
    database.close().await?;
    outcome
}
