//! What a handler gets (`JobCtx`), what it returns (`JobError`), and the `Registry` of handlers
//! and recurring schedules a worker runs.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::db::{SchemaName, TenantPool, TenantTx};
use crate::error::AppError;

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub tenant_id: Option<Uuid>,
    pub payload: serde_json::Value,
    pub sealed: Option<Vec<u8>>,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    /// False when the job's tenant is deleted or purged: the job ends without running.
    pub tenant_live: bool,
}

/// A running job's view of the world.
pub struct JobCtx {
    pub job: Job,
    pool: Pool,
    tenant_pool: TenantPool,
}

impl JobCtx {
    pub(crate) fn new(job: Job, pool: Pool, tenant_pool: TenantPool) -> Self {
        Self { job, pool, tenant_pool }
    }

    /// The worker's control-plane pool (its own, so jobs never wait for request connections).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The job's tenant, or a permanent error for a job enqueued without one.
    pub fn tenant_id(&self) -> Result<Uuid, JobError> {
        self.job
            .tenant_id
            .ok_or_else(|| JobError::permanent("this job kind needs a tenant; it was enqueued without one"))
    }

    /// A transaction on the job's own tenant schema: the only way a job reaches tenant data.
    /// The schema is derived from the job's tenant id, never from its payload.
    pub async fn tenant_tx(&self) -> Result<TenantTx, JobError> {
        let schema = SchemaName::for_tenant(self.tenant_id()?);
        Ok(TenantTx::begin(&self.tenant_pool, &schema).await?)
    }

    /// The decrypted sealed payload.
    pub fn open_sealed(&self, keys: &Keyring) -> Result<Vec<u8>, JobError> {
        let sealed =
            self.job.sealed.as_deref().ok_or_else(|| JobError::permanent("the job has no sealed payload"))?;
        keys.decrypt(sealed, &super::sealed_aad(self.job.id)).map_err(|err| {
            JobError::permanent(format!(
                "{err}; configure the key (OLD_ENCRYPTION_KEYS) and run `tenantry jobs retry {}`",
                self.job.id
            ))
        })
    }
}

/// Why a job did not finish. The message is stored as the job's last error and logged: it must
/// never contain a token, password, email address or payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Worth another attempt after a backoff (until the attempts run out).
    Retry(String),
    /// Will never succeed as enqueued: dead at once.
    Permanent(String),
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self::Retry(message.into())
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Retry(m) | Self::Permanent(m) => m,
        }
    }
}

impl From<AppError> for JobError {
    fn from(err: AppError) -> Self {
        match err {
            // The internal detail (a database error) is what an operator needs to see.
            AppError::Internal(inner) => Self::Retry(format!("{inner:#}")),
            other => Self::Retry(other.message()),
        }
    }
}

/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(JobCtx) -> HandlerFuture + Send + Sync>;

/// A recurring job: `kind` is enqueued once per `period` across the cluster.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub kind: String,
    pub period: Duration,
}

/// Handlers by kind, and the recurring schedules.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
    schedules: Vec<Schedule>,
}

impl Registry {
    /// Runs `handler` for jobs of `kind`.
    pub fn handle<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(JobCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.handlers.insert(kind.to_owned(), Arc::new(move |ctx| Box::pin(handler(ctx))));
        self
    }

    /// Enqueues a job of `kind` every `period` (at least a second), once per period cluster-wide.
    pub fn every(mut self, kind: &str, period: Duration) -> Self {
        let period = period.max(Duration::from_secs(1));
        self.schedules.retain(|s| s.name != kind);
        self.schedules.push(Schedule { name: kind.to_owned(), kind: kind.to_owned(), period });
        self
    }

    /// Adds `other`'s handlers and schedules (they win on a clash).
    pub fn merge(mut self, other: Registry) -> Self {
        self.handlers.extend(other.handlers);
        for schedule in other.schedules {
            self.schedules.retain(|s| s.name != schedule.name);
            self.schedules.push(schedule);
        }
        self
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind)
    }

    /// The kinds this registry runs (a worker claims only these).
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    pub fn schedules(&self) -> &[Schedule] {
        &self.schedules
    }
}
