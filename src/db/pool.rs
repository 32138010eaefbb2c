//! The connection pool and the control-plane connection handle.

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Hook, HookError, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// When a pooled connection is closed instead of reused.
///
/// A PostgreSQL backend caches catalog entries for every schema it touches and never gives that
/// memory back; with thousands of tenants a connection grows with the tenants it has served.
/// Retiring connections after some uses and some age bounds each backend's memory.
#[derive(Debug, Clone, Copy)]
pub struct Retire {
    pub max_age: Duration,
    pub max_uses: usize,
}

impl Default for Retire {
    fn default() -> Self {
        Self { max_age: Duration::from_secs(30 * 60), max_uses: 20_000 }
    }
}

/// Builds a pool for `url` (a `postgres://` URL or a libpq key=value string).
pub fn build_pool(url: &str, max_size: usize) -> anyhow::Result<Pool> {
    build_pool_retiring(url, max_size, Retire::default())
}

/// Builds a pool whose connections are retired as `retire` says.
pub fn build_pool_retiring(url: &str, max_size: usize, retire: Retire) -> anyhow::Result<Pool> {
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
        // Runs before the manager's (fast) recycle; an error drops the connection and the
        // caller gets a fresh one. Nothing else about recycling changes.
        .pre_recycle(Hook::sync_fn(move |_, metrics| {
            // Past half its uses a connection may retire at any checkout, so connections opened
            // together do not all retire (and start with cold caches) at the same moment.
            let half = retire.max_uses / 2;
            let early = metrics.recycle_count >= half
                && rand::random_ratio(1, u32::try_from(half.max(1)).unwrap_or(u32::MAX));
            if early || metrics.recycle_count >= retire.max_uses || metrics.age() >= retire.max_age {
                return Err(HookError::Message("connection retired".into()));
            }
            Ok(())
        }))
        .build()
        .context("building the database pool")
}

/// Connects once and runs `select 1`, so start-up fails early with a readable message.
pub async fn check_reachable(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await.context("cannot connect to PostgreSQL (check DATABASE_URL)")?;
    client.simple_query("select 1").await.context("PostgreSQL did not answer `select 1`")?;
    Ok(())
}
