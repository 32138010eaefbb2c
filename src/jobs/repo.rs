//! The queue's SQL (`control.jobs`, `control.recurring_jobs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::JobState;
use super::context::{Job, Schedule};
use crate::db::rows::Columns;
use crate::error::AppError;

/// The state a job returns to the queue in: `cancelled` instead when another job with its
/// unique key is queued meanwhile (that one does the same work; two may not be queued).
const REQUEUED: &str = "case when j.unique_key is not null and exists (
        select 1 from control.jobs o where o.unique_key = j.unique_key and o.state = 'queued' and o.id <> j.id)
     then 'cancelled' else 'queued' end";

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Claims up to `limit` due jobs of `kinds` for `worker`, leased for `lease`.
pub async fn claim(
    db: &impl GenericClient,
    worker: &str,
    kinds: &[String],
    limit: i64,
    lease: Duration,
) -> Result<Vec<Job>, AppError> {
    let rows = db
        .query(
            "update control.jobs j
                set state = 'running', attempts = j.attempts + 1, locked_by = $1,
                    locked_until = now() + make_interval(secs => $2), started_at = now()
              where j.id = any(array(
                    select id from control.jobs
                     where state = 'queued' and run_at <= now() and kind = any($3)
                     order by run_at limit $4 for update skip locked))
          returning j.id, j.kind, j.tenant_id, j.payload, j.sealed, j.attempts, j.max_attempts, j.created_at,
                    (j.tenant_id is null or exists (
                        select 1 from control.tenants t where t.id = j.tenant_id and t.deleted_at is null)) as tenant_live",
            &[&worker, &secs(lease), &kinds, &limit],
        )
        .await?;
    rows.iter().map(job_from_row).collect()
}

fn job_from_row(row: &Row) -> Result<Job, AppError> {
    let c = Columns::of(row, "jobs::repo::claim");
    Ok(Job {
        id: c.try_get("id")?,
        kind: c.try_get("kind")?,
        tenant_id: c.try_get("tenant_id")?,
        payload: c.try_get("payload")?,
        sealed: c.try_get("sealed")?,
        attempt: c.try_get("attempts")?,
        max_attempts: c.try_get("max_attempts")?,
        created_at: c.try_get("created_at")?,
        tenant_live: c.try_get("tenant_live")?,
    })
}

/// Whether a tenant exists and is not deleted.
pub async fn tenant_live(db: &impl GenericClient, tenant: Uuid) -> Result<bool, AppError> {
    let row = db
        .query_opt("select 1 from control.tenants where id = $1 and deleted_at is null", &[&tenant])
        .await?;
    Ok(row.is_some())
}

/// Extends a running job's lease; false when the job is no longer this attempt's.
pub async fn extend(
    db: &impl GenericClient,
    id: Uuid,
    attempt: i32,
    lease: Duration,
) -> Result<bool, AppError> {
    let n = db
        .execute(
            "update control.jobs set locked_until = now() + make_interval(secs => $3)
              where id = $1 and attempts = $2 and state = 'running'",
            &[&id, &attempt, &secs(lease)],
        )
        .await?;
    Ok(n == 1)
}

/// Marks an attempt done; `note` says why when it was skipped.
pub async fn complete(
    db: &impl GenericClient,
    id: Uuid,
    attempt: i32,
    note: Option<&str>,
) -> Result<(), AppError> {
    db.execute(
        "update control.jobs set state = 'done', finished_at = now(), locked_by = null, locked_until = null,
                last_error = $3
          where id = $1 and attempts = $2 and state = 'running'",
        &[&id, &attempt, &note],
    )
    .await?;
    Ok(())
}

/// Marks many attempts done in one statement (each only if it still holds its job).
pub async fn complete_many(db: &impl GenericClient, ids: &[Uuid], attempts: &[i32]) -> Result<u64, AppError> {
    Ok(db
        .execute(
            "update control.jobs j
                set state = 'done', finished_at = now(), locked_by = null, locked_until = null, last_error = null
               from unnest($1::uuid[], $2::int[]) as d(id, attempt)
              where j.id = d.id and j.attempts = d.attempt and j.state = 'running'",
            &[&ids, &attempts],
        )
        .await?)
}

/// Records a failed attempt: back to the queue after `delay`, or dead when `permanent` or out
/// of attempts. Returns the state the job is now in.
pub async fn fail(
    db: &impl GenericClient,
    id: Uuid,
    attempt: i32,
    error: &str,
    permanent: bool,
    delay: Duration,
) -> Result<Option<JobState>, AppError> {
    let sql = format!(
        "update control.jobs j
            set state = case when $4 or j.attempts >= j.max_attempts then 'dead' else {REQUEUED} end,
                run_at = now() + make_interval(secs => $5), last_error = $3,
                locked_by = null, locked_until = null,
                finished_at = case when $4 or j.attempts >= j.max_attempts then now() end
          where j.id = $1 and j.attempts = $2 and j.state = 'running'
      returning j.state"
    );
    let row = db.query_opt(&sql, &[&id, &attempt, &truncate(error), &permanent, &secs(delay)]).await?;
    row.map(|r| JobState::from_db(Columns::of(&r, "jobs::repo::fail").try_get("state")?)).transpose()
}

/// Gives a job back unfinished (shutdown): queued again at once, the attempt not counted.
pub async fn release(db: &impl GenericClient, id: Uuid, attempt: i32) -> Result<(), AppError> {
    let sql = format!(
        "update control.jobs j
            set state = {REQUEUED}, attempts = j.attempts - 1, run_at = now(),
                locked_by = null, locked_until = null
          where j.id = $1 and j.attempts = $2 and j.state = 'running'"
    );
    db.execute(&sql, &[&id, &attempt]).await?;
    Ok(())
}

/// Puts jobs whose lease expired (their worker died) back in the queue, or dead when that was
/// their last attempt. Returns how many.
pub async fn reap_expired(db: &impl GenericClient) -> Result<u64, AppError> {
    let sql = format!(
        "update control.jobs j
            set state = case when j.attempts >= j.max_attempts then 'dead' else {REQUEUED} end,
                last_error = 'the worker stopped before finishing it (its lease expired)',
                run_at = now(), locked_by = null, locked_until = null,
                finished_at = case when j.attempts >= j.max_attempts then now() end
          where j.id = any(array(
                select id from control.jobs where state = 'running' and locked_until < now()
                for update skip locked))"
    );
    Ok(db.execute(&sql, &[]).await?)
}

/// Creates or updates the recurring schedules; a shortened period takes effect at once.
pub async fn upsert_schedules(db: &impl GenericClient, schedules: &[Schedule]) -> Result<(), AppError> {
    let names: Vec<&str> = schedules.iter().map(|s| s.name.as_str()).collect();
    let kinds: Vec<&str> = schedules.iter().map(|s| s.kind.as_str()).collect();
    let periods: Vec<i32> =
        schedules.iter().map(|s| i32::try_from(s.period.as_secs()).unwrap_or(i32::MAX).max(1)).collect();
    db.execute(
        "insert into control.recurring_jobs (name, kind, period_secs)
         select s.name, s.kind, s.period_secs
         from unnest($1::text[], $2::text[], $3::int[]) as s (name, kind, period_secs)
         on conflict (name) do update
            set kind = excluded.kind, period_secs = excluded.period_secs,
                next_run_at = least(control.recurring_jobs.next_run_at,
                                    now() + make_interval(secs => excluded.period_secs))",
        &[&names, &kinds, &periods],
    )
    .await?;
    Ok(())
}

/// Enqueues every due recurring job of `names` and moves its schedule to the next period after
/// now, in one statement: a schedule row locked by another worker is skipped, so each period's
/// job is enqueued once across the cluster. Returns how many were enqueued.
pub async fn fire_recurring(db: &impl GenericClient, names: &[String]) -> Result<u64, AppError> {
    Ok(db
        .execute(
            "with due as (
                select name, kind, period_secs, next_run_at from control.recurring_jobs
                 where next_run_at <= now() and name = any($1) for update skip locked),
             moved as (
                update control.recurring_jobs r
                   set next_run_at = due.next_run_at + make_interval(secs => due.period_secs
                       * (floor(extract(epoch from now() - due.next_run_at) / due.period_secs) + 1))
                  from due where r.name = due.name)
             insert into control.jobs (id, kind, payload, unique_key)
             select gen_random_uuid(), due.kind, jsonb_build_object('slot', due.next_run_at),
                    'recurring:' || due.name
               from due
             on conflict (unique_key) where state = 'queued' do nothing",
            &[&names],
        )
        .await?)
}

/// Deletes finished jobs older than `keep`, a bounded batch at a time; returns how many.
pub async fn prune(db: &impl GenericClient, keep: Duration) -> Result<u64, AppError> {
    Ok(db
        .execute(
            "delete from control.jobs where id = any(array(
                select id from control.jobs
                 where state in ('done', 'cancelled') and finished_at < now() - make_interval(secs => $1)
                 limit 10000))",
            &[&secs(keep)],
        )
        .await?)
}

/// A job as `jobs list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobInfo {
    pub id: Uuid,
    pub kind: String,
    pub tenant_id: Option<Uuid>,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// Jobs, newest first, optionally in one state.
pub async fn list(
    db: &impl GenericClient,
    state: Option<JobState>,
    limit: i64,
) -> Result<Vec<JobInfo>, AppError> {
    let rows = db
        .query(
            "select id, kind, tenant_id, state, attempts, max_attempts, run_at, created_at, finished_at, last_error
               from control.jobs where ($1::text is null or state = $1)
              order by created_at desc limit $2",
            &[&state.map(JobState::as_db), &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let c = Columns::of(r, "jobs::repo::list");
            Ok(JobInfo {
                id: c.try_get("id")?,
                kind: c.try_get("kind")?,
                tenant_id: c.try_get("tenant_id")?,
                state: c.try_get("state")?,
                attempts: c.try_get("attempts")?,
                max_attempts: c.try_get("max_attempts")?,
                run_at: c.try_get("run_at")?,
                created_at: c.try_get("created_at")?,
                finished_at: c.try_get("finished_at")?,
                last_error: c.try_get("last_error")?,
            })
        })
        .collect()
}

/// The state of one job, if it exists.
pub async fn state_of(db: &impl GenericClient, id: Uuid) -> Result<Option<JobState>, AppError> {
    let row = db.query_opt("select state from control.jobs where id = $1", &[&id]).await?;
    row.map(|r| JobState::from_db(Columns::of(&r, "jobs::repo::state_of").try_get("state")?)).transpose()
}

/// Requeues a dead or cancelled job with fresh attempts; false if it is in another state.
pub async fn retry(db: &impl GenericClient, id: Uuid) -> Result<bool, AppError> {
    let n = db
        .execute(
            "update control.jobs set state = 'queued', attempts = 0, run_at = now(), finished_at = null
              where id = $1 and state in ('dead', 'cancelled')",
            &[&id],
        )
        .await?;
    if n == 1 {
        crate::db::notify::publish(db, crate::db::notify::JOBS, "").await?;
    }
    Ok(n == 1)
}

/// Cancels a queued or dead job; false if it is in another state.
pub async fn cancel(db: &impl GenericClient, id: Uuid) -> Result<bool, AppError> {
    let n = db
        .execute(
            "update control.jobs set state = 'cancelled', finished_at = now()
              where id = $1 and state in ('queued', 'dead')",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Queue figures for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub queued: i64,
    pub running: i64,
    pub dead: i64,
    /// Seconds the longest-waiting due job has waited past its `run_at`.
    pub oldest_age_secs: f64,
}

pub async fn stats(db: &impl GenericClient) -> Result<Stats, AppError> {
    let row = db
        .query_one(
            "select count(*) filter (where state = 'queued') as queued,
                    count(*) filter (where state = 'running') as running,
                    count(*) filter (where state = 'dead') as dead,
                    coalesce(extract(epoch from now() - min(run_at) filter (where state = 'queued' and run_at <= now())), 0)::float8
                      as oldest_age_secs
               from control.jobs where state in ('queued', 'running', 'dead')",
            &[],
        )
        .await?;
    let c = Columns::of(&row, "jobs::repo::stats");
    Ok(Stats {
        queued: c.try_get("queued")?,
        running: c.try_get("running")?,
        dead: c.try_get("dead")?,
        oldest_age_secs: c.try_get("oldest_age_secs")?,
    })
}

/// Error text is stored bounded.
fn truncate(error: &str) -> String {
    const MAX: usize = 1000;
    match error.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &error[..at]),
        None => error.to_owned(),
    }
}
