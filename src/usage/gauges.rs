//! Gauges read from the database rather than counted: a tenant's storage (bytes of its schema)
//! and members (active plus pending invitations). Cached, refreshed after writes, never per request.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Pool;
use moka::future::Cache;
use uuid::Uuid;

use super::repo;
use crate::db::{SchemaName, notify};
use crate::error::AppError;
use crate::jobs::{self, JobCtx, JobError, NewJob};

pub struct Gauges {
    storage: Cache<Uuid, i64>,
    members: Cache<Uuid, i64>,
    /// Tenants written to since their storage was last measured.
    dirty: Mutex<HashSet<Uuid>>,
}

impl Default for Gauges {
    fn default() -> Self {
        Self {
            // A write marks the tenant for re-measurement within seconds; the TTL catches
            // everything else (autovacuum, truncation by an operator).
            storage: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(300)).build(),
            members: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
            dirty: Mutex::default(),
        }
    }
}

impl Gauges {
    /// Bytes used by the tenant's schema, measured at most every few minutes (or after writes).
    pub async fn storage(&self, pool: &Pool, tenant: Uuid) -> Result<i64, AppError> {
        self.storage
            .try_get_with(tenant, measure_storage(pool, tenant))
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("storage gauge: {err:?}")))
    }

    /// Active members plus pending invitations.
    pub async fn members(&self, pool: &Pool, tenant: Uuid) -> Result<i64, AppError> {
        self.members
            .try_get_with(tenant, async {
                let client = pool.get().await?;
                crate::members::repo::seats_taken(&client, tenant).await
            })
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("members gauge: {err:?}")))
    }

    /// Notes that a tenant wrote data; its storage is measured again on the next refresh.
    pub fn written(&self, tenant: Uuid) {
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant);
    }

    /// Membership changed: count again on next use.
    pub async fn members_changed(&self, tenant: Uuid) {
        self.members.invalidate(&tenant).await;
    }

    /// A storage figure measured anywhere in the cluster (heard on the bus).
    pub async fn set_storage(&self, tenant: Uuid, bytes: i64) {
        self.storage.insert(tenant, bytes).await;
    }

    /// Enqueues a storage measurement for every tenant written to since the last round (at
    /// most one queued per tenant, cluster-wide); returns how many tenants.
    pub async fn enqueue_written(&self, pool: &Pool) -> Result<usize, AppError> {
        let tenants: Vec<Uuid> = self.dirty.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        if tenants.is_empty() {
            return Ok(0);
        }
        let enqueued = async {
            let client = pool.get().await?;
            for &tenant in &tenants {
                jobs::enqueue(&client, &measure_job(tenant)).await?;
            }
            Ok::<_, AppError>(())
        }
        .await;
        if let Err(err) = enqueued {
            // Keep them for the next round (the unique key absorbs the ones already queued).
            self.dirty.lock().unwrap_or_else(|p| p.into_inner()).extend(&tenants);
            return Err(err);
        }
        Ok(tenants.len())
    }
}

/// The job kind that measures one tenant's storage.
pub const MEASURE_STORAGE: &str = "usage.measure_storage";

fn measure_job(tenant: Uuid) -> NewJob {
    NewJob::new(MEASURE_STORAGE)
        .for_tenant(tenant)
        .unique(format!("{MEASURE_STORAGE}:{tenant}"))
        .max_attempts(3)
}

/// The `usage.measure_storage` job: measures the job's tenant's schema in its own `TenantTx`
/// and tells every replica the figure.
pub async fn measure_storage_job(ctx: JobCtx) -> Result<(), JobError> {
    let tenant = ctx.tenant_id()?;
    let mut tx = ctx.tenant_tx().await?;
    let bytes = repo::current_schema_bytes(&mut tx).await?;
    notify::publish(tx.control(), notify::STORAGE, &format!("{tenant}:{bytes}")).await?;
    tx.commit().await?;
    Ok(())
}

async fn measure_storage(pool: &Pool, tenant: Uuid) -> Result<i64, AppError> {
    let client = pool.get().await?;
    repo::schema_bytes(&client, &SchemaName::for_tenant(tenant)).await
}
