//! The connection pool and the control-plane connection handle.

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// Builds a pool for `url` (a `postgres://` URL or a libpq key=value string).
pub fn build_pool(url: &str, max_size: usize) -> anyhow::Result<Pool> {
    let pg: tokio_postgres::Config = url.parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        NoTls,
        // TenantTx rolls back any transaction it leaves open, so a checkout needs no probe query.
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .context("building the database pool")
}

/// Connects once and runs `select 1`, so start-up fails early with a readable message.
pub async fn check_reachable(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await.context("cannot connect to PostgreSQL (check DATABASE_URL)")?;
    client.simple_query("select 1").await.context("PostgreSQL did not answer `select 1`")?;
    Ok(())
}
