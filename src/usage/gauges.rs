//! Gauges read from the database rather than counted: a tenant's storage (bytes of its schema)
//! and members (active plus pending invitations). Cached, refreshed after writes, never per request.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Pool;
use moka::future::Cache;
use uuid::Uuid;

use super::repo;
use crate::db::SchemaName;
use crate::error::AppError;

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
                repo::members(&client, tenant).await
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

    /// Measures every tenant written to since the last refresh; returns how many.
    pub async fn refresh_written(&self, pool: &Pool) -> Result<usize, AppError> {
        let tenants: Vec<Uuid> = self.dirty.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        for (i, &tenant) in tenants.iter().enumerate() {
            match measure_storage(pool, tenant).await {
                Ok(bytes) => self.storage.insert(tenant, bytes).await,
                Err(err) => {
                    // Keep the rest for the next round.
                    self.dirty.lock().unwrap_or_else(|p| p.into_inner()).extend(&tenants[i..]);
                    return Err(err);
                }
            }
        }
        Ok(tenants.len())
    }
}

async fn measure_storage(pool: &Pool, tenant: Uuid) -> Result<i64, AppError> {
    let client = pool.get().await?;
    repo::schema_bytes(&client, &SchemaName::for_tenant(tenant)).await
}
