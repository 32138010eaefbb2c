//! What every bench target shares (`mod support;` at the top of a file in `benches/`): the
//! command-line basics, the bench database and its guard, bench tenants, child servers, the
//! loopback load generator and the Markdown report. Only tenantry's public library API is used.

pub mod app_server;
pub mod fleet;
pub mod guard;
pub mod load;
pub mod pgbench;
pub mod pgbouncer;
pub mod plain;
pub mod read_request;
pub mod report;
pub mod server;
pub mod settings;
pub mod setup;

use std::path::Path;

use clap::Args;
use deadpool_postgres::Pool;
use tenantry::db::migrate::migrate_control;
use tenantry::db::{build_pool, check_reachable};

/// Flags every bench takes (flatten into the bench's own `clap::Parser`).
#[derive(Debug, Args)]
pub struct Common {
    /// The bench's own database: empty, or made by an earlier bench run (see `guard`).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Pool size of the servers under test.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 32)]
    pub db_pool_size: usize,
    /// `cargo bench` appends `--bench` to every bench's arguments; it means nothing here.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// The bench database, claimed by the guard, with the control schema migrated.
pub struct BenchDb {
    pub url: String,
    /// For set-up work (16 connections).
    pub pool: Pool,
}

impl BenchDb {
    /// Opens `common.database_url`, refuses it unless it holds only bench data, and migrates
    /// the control schema.
    pub async fn open(common: &Common) -> anyhow::Result<Self> {
        let url = common.database_url.clone();
        let pool = build_pool(&url, 16)?;
        check_reachable(&pool).await?;
        guard::claim(&pool).await?;
        migrate_control(&pool).await?;
        Ok(Self { url, pool })
    }
}

/// The product binary, built by cargo next to the benches (`CARGO_BIN_EXE_*`).
pub fn tenantry_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tenantry"))
}

/// Logs go to stderr at `RUST_LOG` (default `warn`), so the tables on stdout stay clean.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
