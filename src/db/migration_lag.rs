//! How many tenants lag behind the tenant migrations this binary was built with.
//!
//! `serve` counts them at start and then periodically; the number is in `/readyz` and is the
//! gauge `tenants_migration_lagging`. A lagging tenant is still served (expand/contract keeps
//! old schemas readable), but the operator should run `tenantry migrate`.

use std::sync::atomic::{AtomicI64, Ordering};

use deadpool_postgres::Pool;

use super::rows::Columns;
use crate::error::AppError;

/// The metric name of the count.
pub const GAUGE: &str = "tenants_migration_lagging";

/// The last count; unknown until the first one succeeds.
#[derive(Debug)]
pub struct MigrationLag {
    target: i32,
    lagging: AtomicI64,
}

impl MigrationLag {
    /// Counts tenants below `target`, the latest version this binary knows.
    pub fn new(target: i32) -> Self {
        Self { target, lagging: AtomicI64::new(-1) }
    }

    /// The version tenants are compared with.
    pub fn target(&self) -> i32 {
        self.target
    }

    /// Tenants below the target at the last count; `None` before the first count.
    pub fn lagging(&self) -> Option<u64> {
        u64::try_from(self.lagging.load(Ordering::Relaxed)).ok()
    }

    /// Counts again (one indexed query), stores the count and sets the gauge.
    pub async fn refresh(&self, pool: &Pool) -> Result<u64, AppError> {
        let client = pool.get().await?;
        let row = client
            .query_one(
                "select count(*) as lagging from control.tenants where migration_version < $1 and deleted_at is null",
                &[&self.target],
            )
            .await?;
        let count: i64 = Columns::of(&row, "db::migration_lag::refresh").try_get("lagging")?;
        self.lagging.store(count, Ordering::Relaxed);
        metrics::gauge!(GAUGE).set(count as f64);
        Ok(u64::try_from(count).unwrap_or_default())
    }
}
