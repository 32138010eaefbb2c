//! Background jobs: a durable queue in `control.jobs`. A job is enqueued inside its cause's
//! transaction (it exists only if that commits), claimed by workers with `FOR UPDATE SKIP
//! LOCKED` under a lease, retried with exponential backoff up to a maximum number of attempts,
//! then kept as `dead` with its last error. Jobs may be scheduled (`run_at`) or recurring (once
//! per period, cluster-wide). Why our own queue rather than a crate: docs/jobs.md.

mod completions;
pub mod context;
pub mod repo;
pub mod worker;

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use self::context::{Job, JobCtx, JobError, Registry};
pub use self::worker::{Worker, WorkerHandle, WorkerSettings};
use crate::crypto::Keyring;
use crate::db::Statements;
use crate::error::AppError;

/// Attempts a job gets unless it says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

/// A job to enqueue. Build it with `NewJob::new(kind)` and the setters below.
#[derive(Debug, Clone)]
pub struct NewJob {
    id: Uuid,
    kind: String,
    tenant_id: Option<Uuid>,
    payload: serde_json::Value,
    sealed: Option<Vec<u8>>,
    run_at: Option<DateTime<Utc>>,
    max_attempts: i32,
    unique_key: Option<String>,
}

impl NewJob {
    /// A job of `kind` (the name a handler is registered under), due now.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            id: Uuid::new_v4(),
            kind: kind.into(),
            tenant_id: None,
            payload: serde_json::Value::Object(serde_json::Map::new()),
            sealed: None,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            unique_key: None,
        }
    }

    /// The job's id (known before it is enqueued).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The tenant the job works for: its handler reaches tenant data only through this
    /// tenant's `TenantTx`, and the job ends without running once the tenant is deleted.
    pub fn for_tenant(mut self, tenant_id: Uuid) -> Self {
        self.tenant_id = Some(tenant_id);
        self
    }

    /// Plain JSON arguments. Never put secrets here: they are stored and listed as they are.
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    /// Secret arguments, stored encrypted with the keyring and bound to this job's id.
    pub fn sealed(mut self, keys: &Keyring, plaintext: &[u8]) -> Self {
        self.sealed = Some(keys.encrypt(plaintext, &sealed_aad(self.id)));
        self
    }

    /// Runs no earlier than `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Runs no earlier than `delay` from now.
    pub fn delay(self, delay: Duration) -> Self {
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        self.run_at(Utc::now() + delay)
    }

    /// Attempts before the job is declared dead (at least 1).
    pub fn max_attempts(mut self, attempts: i32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// At most one queued job per key: enqueueing while one waits does nothing.
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
}

/// Associated data of a job's sealed payload: copied into another row, it does not decrypt.
pub fn sealed_aad(id: Uuid) -> Vec<u8> {
    format!("job\0{id}").into_bytes()
}

/// Inserts the job and, in the same statement, notifies workers (delivered on commit). Returns
/// a row only when the job was inserted (not deduplicated by its unique key).
const INSERT: &str = "with inserted as (
        insert into control.jobs (id, kind, tenant_id, payload, sealed, run_at, max_attempts, unique_key)
        values ($1, $2, $3, $4, $5, coalesce($6, now()), $7, $8)
        on conflict (unique_key) where state = 'queued' do nothing
        returning id)
    select id, pg_notify('jobs', '')::text from inserted";

impl NewJob {
    /// The parameters of `INSERT`, in its order.
    fn insert_params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 8] {
        [
            &self.id,
            &self.kind,
            &self.tenant_id,
            &self.payload,
            &self.sealed,
            &self.run_at,
            &self.max_attempts,
            &self.unique_key,
        ]
    }
}

/// Enqueues `job` in the caller's transaction (or on its own on a plain connection). Returns
/// false when a queued job with the same unique key already exists.
///
/// In a tenant transaction (`&mut TenantTx`) the job commits or rolls back with the tenant's data.
pub async fn enqueue(mut db: impl Statements, job: &NewJob) -> Result<bool, AppError> {
    let rows = db.query(INSERT, &job.insert_params()).await?;
    Ok(!rows.is_empty())
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobState {
    /// Waiting for `run_at` and a worker.
    Queued,
    /// Claimed by a worker under a lease.
    Running,
    /// Finished (or skipped because its tenant is gone).
    Done,
    /// Out of attempts, or failed permanently; keeps the last error. `jobs retry` requeues it.
    Dead,
    /// Cancelled by an operator, or superseded by a queued job with the same unique key.
    Cancelled,
}

impl JobState {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// Fails closed on a state this build does not know.
    pub fn from_db(raw: &str) -> Result<Self, AppError> {
        Ok(match raw {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "dead" => Self::Dead,
            "cancelled" => Self::Cancelled,
            other => return Err(AppError::internal(anyhow::anyhow!("unknown job state {other:?}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_unknown_ones_fail_closed() {
        for state in
            [JobState::Queued, JobState::Running, JobState::Done, JobState::Dead, JobState::Cancelled]
        {
            assert_eq!(JobState::from_db(state.as_db()).unwrap(), state);
        }
        assert!(JobState::from_db("paused").is_err());
    }

    #[test]
    fn a_sealed_payload_opens_only_for_its_own_job() {
        let keys = Keyring::new([3; 32], &[]).unwrap();
        let job = NewJob::new("send_mail").sealed(&keys, b"token");
        let sealed = job.sealed.clone().unwrap();
        assert_eq!(keys.decrypt(&sealed, &sealed_aad(job.id())).unwrap(), b"token");
        assert!(keys.decrypt(&sealed, &sealed_aad(Uuid::new_v4())).is_err());
    }
}
