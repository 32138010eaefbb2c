//! Health: the report behind `/api/health`, `/readyz` and the `health` query (the routes are in
//! `http::health`, the query in `graphql::health`).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::state::AppState;
use crate::tenancy::repo as tenants_repo;

const DB_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
pub struct HealthReport {
    /// `healthy` or `unhealthy`.
    pub status: &'static str,
    pub checks: Checks,
    /// Seconds since the process started.
    pub uptime: u64,
    pub version: &'static str,
    pub timestamp: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize)]
pub struct Checks {
    pub database: DatabaseCheck,
    pub memory: MemoryCheck,
    pub tenants: TenantsCheck,
}

#[derive(Debug, Serialize)]
pub struct DatabaseCheck {
    pub status: &'static str,
    pub latency_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct MemoryCheck {
    pub status: &'static str,
    pub rss_bytes: Option<u64>,
    /// MEMORY_LIMIT_MB, else the cgroup limit; `null` when neither is known.
    pub limit_bytes: Option<u64>,
}

/// Past this share of the limit the memory check is unhealthy: the kernel's OOM killer is near.
const MEMORY_HIGH_WATER: f64 = 0.9;

impl MemoryCheck {
    pub fn new(rss_bytes: Option<u64>, limit_bytes: Option<u64>) -> Self {
        let ok = match (rss_bytes, limit_bytes) {
            (Some(rss), Some(limit)) => (rss as f64) < limit as f64 * MEMORY_HIGH_WATER,
            _ => true,
        };
        Self { status: status(ok), rss_bytes, limit_bytes }
    }
}

#[derive(Debug, Serialize)]
pub struct TenantsCheck {
    pub status: &'static str,
    pub total: Option<i64>,
    pub active: Option<i64>,
}

fn status(ok: bool) -> &'static str {
    if ok { "healthy" } else { "unhealthy" }
}

/// Round-trip time of `select 1` through the pool, or `None` if the database is unreachable.
pub async fn database_latency(state: &AppState) -> Option<Duration> {
    let started = Instant::now();
    let probe = async {
        let client = state.pool.get().await.ok()?;
        client.simple_query("select 1").await.ok()
    };
    tokio::time::timeout(DB_TIMEOUT, probe).await.ok().flatten().map(|_| started.elapsed())
}

pub async fn report(state: &AppState) -> HealthReport {
    let latency = database_latency(state).await;
    let counts = match latency {
        Some(_) => match state.pool.get().await {
            Ok(client) => tenants_repo::count(&client).await.ok(),
            Err(_) => None,
        },
        None => None,
    };
    let memory = MemoryCheck::new(rss_bytes(), state.memory_limit_bytes);
    HealthReport {
        status: status(latency.is_some() && memory.status == "healthy"),
        checks: Checks {
            database: DatabaseCheck {
                status: status(latency.is_some()),
                latency_ms: latency.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0),
            },
            memory,
            tenants: TenantsCheck {
                status: status(counts.is_some()),
                total: counts.map(|c| c.0),
                active: counts.map(|c| c.1),
            },
        },
        uptime: state.started_at.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        timestamp: chrono::Utc::now(),
    }
}

/// Resident set size, from /proc (Linux); `None` elsewhere.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The cgroup v2 memory limit of this process, when it runs under one (`max` means none).
pub fn cgroup_memory_limit() -> Option<u64> {
    std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_unhealthy_past_ninety_percent_of_the_limit() {
        assert_eq!(MemoryCheck::new(Some(800), Some(1000)).status, "healthy");
        assert_eq!(MemoryCheck::new(Some(950), Some(1000)).status, "unhealthy");
        assert_eq!(MemoryCheck::new(Some(950), None).status, "healthy");
    }
}
