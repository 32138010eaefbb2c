//! The worker: claims due jobs in batches, runs up to `concurrency` at once, extends their
//! leases while they run, records the outcome (done, retry after a backoff, dead), fires
//! recurring schedules and requeues jobs whose worker died. Woken by `NOTIFY jobs` (through the
//! process's notification bus), and polls every `poll` in case a notification was missed.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use deadpool_postgres::Pool;
use futures::FutureExt;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use super::completions::{Completions, Held};
use super::context::{Job, JobCtx, JobError, Registry};
use super::{JobState, repo};
use crate::config::Config;
use crate::db::TenantPool;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs run at once (`JOBS_CONCURRENCY`; 0: this process runs no jobs).
    pub concurrency: usize,
    /// Jobs claimed per round trip (at least `concurrency`).
    pub batch: usize,
    /// How often to look for due jobs without a notification (`JOBS_POLL_MS`).
    pub poll: Duration,
    /// How long a claimed job stays reserved without a sign of life (`JOBS_LEASE_SECS`).
    pub lease: Duration,
    /// The first retry's delay; each further one doubles, up to an hour (`JOBS_RETRY_BASE_MS`).
    pub retry_base: Duration,
    /// How long shutdown waits for running jobs before giving them back to the queue.
    pub shutdown_grace: Duration,
}

impl WorkerSettings {
    pub fn from_config(config: &Config) -> Self {
        let concurrency = config.jobs_concurrency;
        Self {
            concurrency,
            batch: (concurrency * 4).max(1),
            poll: Duration::from_millis(config.jobs_poll_ms.max(10)),
            lease: Duration::from_secs(config.jobs_lease_secs.max(1)),
            retry_base: Duration::from_millis(config.jobs_retry_base_ms.max(1)),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` failed: exponential with jitter.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let skip = usize::try_from(attempt.saturating_sub(1)).unwrap_or_default();
        ExponentialBuilder::default()
            .with_min_delay(self.retry_base)
            .with_max_delay(Duration::from_secs(3600))
            .with_jitter()
            .without_max_times()
            .build()
            .nth(skip)
            .unwrap_or(Duration::from_secs(3600))
    }
}

/// A worker, not started yet.
pub struct Worker {
    pool: Pool,
    tenant_pool: TenantPool,
    registry: Registry,
    settings: WorkerSettings,
    wake: Arc<Notify>,
}

struct Shared {
    pool: Pool,
    tenant_pool: TenantPool,
    registry: Registry,
    settings: WorkerSettings,
    /// Names this worker in `locked_by`.
    name: String,
    wake: Arc<Notify>,
    /// Jobs this worker holds (id → attempt), given back if shutdown cuts them short.
    held: Held,
    completions: Completions,
}

/// A started worker: wake it, or shut it down.
pub struct WorkerHandle {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    /// `tenant_pool`: a plain pool is a direct connection (see `TenantPool`).
    pub fn new(
        pool: Pool,
        tenant_pool: impl Into<TenantPool>,
        registry: Registry,
        settings: WorkerSettings,
    ) -> Self {
        let tenant_pool = tenant_pool.into();
        Self { pool, tenant_pool, registry, settings, wake: Arc::new(Notify::new()) }
    }

    /// Adds handlers and schedules (an embedding application's own jobs).
    pub fn with(mut self, registry: Registry) -> Self {
        self.registry = self.registry.merge(registry);
        self
    }

    /// The signal that makes the worker look for jobs now (the bus calls it on `NOTIFY jobs`).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(false);
        let wake = self.wake.clone();
        let held = Held::default();
        let completions = Completions::spawn(self.pool.clone(), held.clone());
        let shared = Arc::new(Shared {
            pool: self.pool,
            tenant_pool: self.tenant_pool,
            registry: self.registry,
            settings: self.settings,
            name: format!("{}:{}", hostname(), Uuid::new_v4().simple()),
            wake: self.wake,
            held,
            completions,
        });
        let task = tokio::spawn(run(shared, stopped));
        WorkerHandle { wake, stop, task }
    }
}

impl WorkerHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming, lets running jobs finish within the grace period, gives the rest back.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.task.await {
            tracing::error!(error = ?err, "the job worker ended abnormally");
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".to_owned())
}

async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let settings = &shared.settings;
    let kinds = shared.registry.kinds();
    let names: Vec<String> = shared.registry.schedules().iter().map(|s| s.name.clone()).collect();
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut running = JoinSet::new();
    let mut schedules_saved = names.is_empty();
    let mut next_upkeep = Instant::now();
    tracing::info!(worker = %shared.name, concurrency = settings.concurrency, "job worker started");
    while !*stop.borrow() {
        // Let jobs that are about to finish do so: one claim then fills several slots.
        tokio::task::yield_now().await;
        while running.try_join_next().is_some() {}
        if Instant::now() >= next_upkeep {
            next_upkeep = Instant::now() + settings.poll;
            upkeep(&shared, &names, &mut schedules_saved).await;
        }
        // Only as many as can start now: a claimed job waiting for a slot would not have its
        // lease extended, and could be taken by another worker and run twice.
        let want = slots.available_permits().min(settings.batch.max(1));
        let mut claimed_all = false;
        if want > 0 {
            match claim(&shared, &kinds, want).await {
                Ok(jobs) => {
                    claimed_all = jobs.len() == want;
                    for job in jobs {
                        let permit =
                            slots.clone().try_acquire_owned().expect("claimed no more than the free slots");
                        let shared = shared.clone();
                        running.spawn(async move {
                            run_one(&shared, job).await;
                            drop(permit);
                        });
                    }
                }
                Err(err) => {
                    tracing::warn!(error = ?err, "claiming jobs failed; retrying after the poll interval")
                }
            }
        }
        if claimed_all && slots.available_permits() > 0 {
            continue; // more may be due right now
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            () = tokio::time::sleep_until(next_upkeep.into()) => {}
            _ = stop.changed() => {}
        }
    }
    drain(&shared, running).await;
}

async fn claim(shared: &Shared, kinds: &[String], want: usize) -> Result<Vec<Job>, crate::error::AppError> {
    let client = shared.pool.get().await?;
    let limit = i64::try_from(want).unwrap_or(i64::MAX);
    let jobs = repo::claim(&client, &shared.name, kinds, limit, shared.settings.lease).await?;
    let mut held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
    for job in &jobs {
        held.insert(job.id, job.attempt);
    }
    Ok(jobs)
}

/// Recurring schedules and expired leases, every poll interval.
async fn upkeep(shared: &Shared, names: &[String], schedules_saved: &mut bool) {
    let result = async {
        let client = shared.pool.get().await?;
        if !*schedules_saved {
            repo::upsert_schedules(&client, shared.registry.schedules()).await?;
            *schedules_saved = true;
        }
        if !names.is_empty() {
            repo::fire_recurring(&client, names).await?;
        }
        let reaped = repo::reap_expired(&client).await?;
        if reaped > 0 {
            tracing::warn!(jobs = reaped, "requeued jobs whose worker stopped (lease expired)");
        }
        Ok::<_, crate::error::AppError>(())
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(error = ?err, "job upkeep (recurring schedules, expired leases) failed");
    }
}

/// Shutdown: no more claims; running jobs get the grace period; the rest go back to the queue.
async fn drain(shared: &Arc<Shared>, mut running: JoinSet<()>) {
    let finished = tokio::time::timeout(shared.settings.shutdown_grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
    shared.completions.flush().await;
    if finished.is_err() {
        let held: Vec<(Uuid, i32)> = shared.held.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        for (id, attempt) in held {
            tracing::warn!(job.id = %id, "job still running at shutdown; given back to the queue");
            give_back(shared, id, attempt).await;
        }
    }
    tracing::info!(worker = %shared.name, "job worker stopped");
}

async fn give_back(shared: &Shared, id: Uuid, attempt: i32) {
    let result = async { repo::release(&shared.pool.get().await?, id, attempt).await }.await;
    if let Err(err) = result {
        // Its lease expires and another worker takes it then.
        tracing::warn!(job.id = %id, error = ?err, "giving a job back failed");
    }
    shared.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
}

/// Said of a job that ended without running because its tenant is gone.
const TENANT_GONE: &str = "skipped: its tenant was deleted";

/// Runs one claimed job and records how it went.
async fn run_one(shared: &Arc<Shared>, job: Job) {
    let started = Instant::now();
    let (id, attempt, kind, tenant) = (job.id, job.attempt, job.kind.clone(), job.tenant_id);
    let outcome = if !job.tenant_live {
        Outcome::TenantGone
    } else if let Some(handler) = shared.registry.get(&job.kind) {
        let work =
            AssertUnwindSafe(handler(JobCtx::new(job, shared.pool.clone(), shared.tenant_pool.clone())))
                .catch_unwind();
        Outcome::Ran(tokio::select! {
            result = work => result.unwrap_or_else(|_| Err(JobError::retry("the job panicked"))),
            () = keep_leased(shared, id, attempt) => Err(JobError::retry("the job lost its lease")),
        })
    } else {
        Outcome::Ran(Err(JobError::retry(format!("no handler for job kind {kind:?} in this worker"))))
    };
    metrics::histogram!("jobs_duration_seconds", "kind" => kind.clone())
        .record(started.elapsed().as_secs_f64());
    if matches!(outcome, Outcome::Ran(Ok(()))) {
        metrics::counter!("jobs_finished_total", "kind" => kind, "outcome" => "done").increment(1);
        shared.completions.done(id, attempt);
        return;
    }
    let recorded = record(shared, RanJob { id, attempt, kind: &kind, tenant }, outcome).await;
    if let Err(err) = recorded {
        // The lease runs out and the job runs again: jobs run at least once (handlers are idempotent).
        tracing::error!(job.id = %id, job.kind = %kind, error = ?err, "recording a job's outcome failed");
    }
    shared.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
}

enum Outcome {
    Ran(Result<(), JobError>),
    TenantGone,
}

struct RanJob<'a> {
    id: Uuid,
    attempt: i32,
    kind: &'a str,
    tenant: Option<Uuid>,
}

/// Records an outcome other than success (those go through `Completions`).
async fn record(shared: &Shared, job: RanJob<'_>, outcome: Outcome) -> Result<(), crate::error::AppError> {
    let RanJob { id, attempt, kind, tenant } = job;
    let client = shared.pool.get().await?;
    let mut outcome = outcome;
    // A job that failed because its tenant went away meanwhile ends like one that found it gone.
    if let (Outcome::Ran(Err(_)), Some(tenant)) = (&outcome, tenant)
        && !repo::tenant_live(&client, tenant).await?
    {
        outcome = Outcome::TenantGone;
    }
    let label = match outcome {
        Outcome::Ran(Ok(())) => {
            repo::complete(&client, id, attempt, None).await?;
            "done"
        }
        Outcome::TenantGone => {
            repo::complete(&client, id, attempt, Some(TENANT_GONE)).await?;
            "skipped"
        }
        Outcome::Ran(Err(err)) => {
            let permanent = matches!(err, JobError::Permanent(_));
            let delay = shared.settings.backoff(attempt);
            let state = repo::fail(&client, id, attempt, err.message(), permanent, delay).await?;
            let dead = state == Some(JobState::Dead);
            let error = err.message();
            if dead {
                tracing::error!(job.id = %id, job.kind = kind, job.attempt = attempt, error, "job failed for good (dead)");
            } else {
                let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(job.id = %id, job.kind = kind, job.attempt = attempt, retry_in_ms, error, "job failed; will retry");
            }
            if dead { "dead" } else { "retry" }
        }
    };
    metrics::counter!("jobs_finished_total", "kind" => kind.to_owned(), "outcome" => label).increment(1);
    Ok(())
}

/// Extends the lease every third of it while the job runs; ends if the lease was lost.
async fn keep_leased(shared: &Shared, id: Uuid, attempt: i32) {
    let lease = shared.settings.lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        let extended = async { repo::extend(&shared.pool.get().await?, id, attempt, lease).await }.await;
        match extended {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => tracing::warn!(job.id = %id, error = ?err, "extending a job's lease failed"),
        }
    }
}
