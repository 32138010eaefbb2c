//! Supervision of the embedded PostgreSQL: when its postmaster dies, it is started again.
//!
//! In-process rather than exiting for an outside supervisor: `cargo run` and a bare binary
//! recover too, and requests meanwhile get `DATABASE_UNAVAILABLE` instead of a dead process.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::embedded::Cluster;

/// How often the supervisor looks at the cluster.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Restarts a cluster this process started, until it is stopped on purpose.
#[derive(Debug)]
pub struct Supervisor {
    cluster: Cluster,
    stopped: Arc<Mutex<bool>>,
}

impl Supervisor {
    pub(super) fn new(cluster: Cluster, stopped: Arc<Mutex<bool>>) -> Self {
        Self { cluster, stopped }
    }

    /// Starts the cluster if it is not running (and was not stopped on purpose); `true` when
    /// it was started. Blocks while `pg_ctl` runs.
    pub fn revive(&self) -> anyhow::Result<bool> {
        // Held throughout, so a concurrent `stop` waits for a restart in progress, then wins.
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        if *stopped || self.cluster.is_running() {
            return Ok(false);
        }
        tracing::warn!("the embedded PostgreSQL is not running; starting it again");
        self.cluster.pg_ctl_start()?;
        Ok(true)
    }

    /// Checks every `CHECK_EVERY` and restarts as needed; runs until aborted.
    pub async fn watch(self) {
        let this = Arc::new(self);
        let mut every = tokio::time::interval(CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let supervisor = this.clone();
            match tokio::task::spawn_blocking(move || supervisor.revive()).await {
                Ok(Ok(true)) => tracing::info!("the embedded PostgreSQL is back"),
                Ok(Ok(false)) => {}
                // Tried again at the next check; requests answer DATABASE_UNAVAILABLE meanwhile.
                Ok(Err(err)) => {
                    tracing::error!(error = format!("{err:#}"), "restarting the embedded PostgreSQL failed")
                }
                Err(err) => tracing::error!(error = %err, "the supervisor's check panicked"),
            }
        }
    }
}
