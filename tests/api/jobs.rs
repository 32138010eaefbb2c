//! The job queue: transactional enqueue, retries, dead letters, exactly-one claim across
//! workers, recurring schedules, tenant scoping, graceful shutdown (the product's own jobs:
//! `jobs_product.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tenantry::jobs::{self, JobError, NewJob, Registry, Worker, WorkerHandle, WorkerSettings};
use uuid::Uuid;

use crate::helpers::eventually;
use crate::migrations::{control_db, provision_many};
use crate::tenants::{stdout, tenantry};

fn settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: 4,
        batch: 16,
        poll: Duration::from_millis(50),
        lease: Duration::from_secs(5),
        retry_base: Duration::from_millis(10),
        shutdown_grace: Duration::from_secs(2),
    }
}

fn start(pool: &Pool, registry: Registry, settings: WorkerSettings) -> WorkerHandle {
    Worker::new(pool.clone(), pool.clone(), registry, settings).spawn()
}

/// Runs of each job id, as handlers saw them.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<Uuid, u32>>>);

impl Runs {
    fn record(&self, id: Uuid) -> u32 {
        let mut runs = self.0.lock().unwrap();
        let n = runs.entry(id).or_default();
        *n += 1;
        *n
    }
    fn of(&self, id: Uuid) -> u32 {
        self.0.lock().unwrap().get(&id).copied().unwrap_or_default()
    }
    fn all(&self) -> HashMap<Uuid, u32> {
        self.0.lock().unwrap().clone()
    }
}

/// A registry whose `count` jobs record their runs and succeed.
fn counting(runs: &Runs) -> Registry {
    let runs = runs.clone();
    Registry::default().handle("count", move |ctx| {
        runs.record(ctx.job.id);
        async { Ok(()) }
    })
}

pub async fn state_of(pool: &Pool, id: Uuid) -> (String, i32, Option<String>) {
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one("select state, attempts, last_error from control.jobs where id = $1", &[&id])
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

pub async fn wait_for_state(pool: &Pool, id: Uuid, state: &str) -> (String, i32, Option<String>) {
    eventually(Duration::from_secs(15), || async {
        let now = state_of(pool, id).await;
        (now.0 == state).then_some(now)
    })
    .await
    .0
}

pub async fn enqueue(pool: &Pool, job: &NewJob) {
    assert!(jobs::enqueue(&pool.get().await.unwrap(), job).await.unwrap());
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_runs() {
    let (_db, pool) = control_db().await;
    let runs = Runs::default();
    let rolled_back = NewJob::new("count");
    let committed = NewJob::new("count");
    {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        jobs::enqueue(&tx, &rolled_back).await.unwrap();
        tx.rollback().await.unwrap();
        let tx = client.transaction().await.unwrap();
        jobs::enqueue(&tx, &committed).await.unwrap();
        tx.commit().await.unwrap();
    }
    let worker = start(&pool, counting(&runs), settings());
    wait_for_state(&pool, committed.id(), "done").await;
    worker.shutdown().await;
    assert_eq!(runs.of(committed.id()), 1);
    assert_eq!(runs.of(rolled_back.id()), 0, "the rolled-back job ran");
    let client = pool.get().await.unwrap();
    let left = client.query("select 1 from control.jobs where id = $1", &[&rolled_back.id()]).await.unwrap();
    assert!(left.is_empty(), "the rolled-back job exists");
}

#[tokio::test]
async fn a_job_that_fails_twice_then_succeeds_runs_three_times() {
    let (_db, pool) = control_db().await;
    let runs = Runs::default();
    let registry = {
        let runs = runs.clone();
        Registry::default().handle("flaky", move |ctx| {
            let n = runs.record(ctx.job.id);
            async move { if n < 3 { Err(JobError::retry(format!("failure {n}"))) } else { Ok(()) } }
        })
    };
    let job = NewJob::new("flaky");
    enqueue(&pool, &job).await;
    let worker = start(&pool, registry, settings());
    let (_, attempts, _) = wait_for_state(&pool, job.id(), "done").await;
    worker.shutdown().await;
    assert_eq!(runs.of(job.id()), 3);
    assert_eq!(attempts, 3);
}

#[tokio::test]
async fn a_job_out_of_attempts_is_dead_with_its_last_error_and_operators_retry_or_cancel_it() {
    let (db, pool) = control_db().await;
    let runs = Runs::default();
    let registry = {
        let runs = runs.clone();
        Registry::default().handle("doomed", move |ctx| {
            let n = runs.record(ctx.job.id);
            async move { if n <= 2 { Err(JobError::retry(format!("smtp said no ({n})"))) } else { Ok(()) } }
        })
    };
    let job = NewJob::new("doomed").max_attempts(2);
    let waiting = NewJob::new("doomed").delay(Duration::from_secs(3600));
    enqueue(&pool, &job).await;
    enqueue(&pool, &waiting).await;
    let worker = start(&pool, registry, settings());
    let (_, attempts, error) = wait_for_state(&pool, job.id(), "dead").await;
    assert_eq!((attempts, error.as_deref()), (2, Some("smtp said no (2)")));

    let listed = tenantry(&db.url, &["jobs", "list", "--state", "dead"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(stdout(&listed).contains(&job.id().to_string()), "{listed:?}");
    assert!(stdout(&listed).contains("smtp said no (2)"), "{listed:?}");
    assert!(!stdout(&listed).contains(&waiting.id().to_string()), "only dead jobs: {listed:?}");

    let refused = tenantry(&db.url, &["jobs", "retry", &waiting.id().to_string()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is queued"), "{refused:?}");
    assert!(tenantry(&db.url, &["jobs", "retry", &job.id().to_string()]).status.success());
    wait_for_state(&pool, job.id(), "done").await;
    assert_eq!(runs.of(job.id()), 3, "a retried job gets fresh attempts");

    assert!(tenantry(&db.url, &["jobs", "cancel", &waiting.id().to_string()]).status.success());
    assert_eq!(state_of(&pool, waiting.id()).await.0, "cancelled");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_workers_each_job_runs_once() {
    let (db, pool) = control_db().await;
    let runs = Runs::default();
    let ids: Vec<Uuid> = {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..300 {
            let job = NewJob::new("count");
            jobs::enqueue(&tx, &job).await.unwrap();
            ids.push(job.id());
        }
        tx.commit().await.unwrap();
        ids
    };
    // Two workers, each with its own pool: two processes as far as PostgreSQL can tell.
    let other_pool = tenantry::db::build_pool(&db.url, 8).unwrap();
    let first = start(&pool, counting(&runs), settings());
    let second = start(&other_pool, counting(&runs), settings());
    eventually(Duration::from_secs(30), || async {
        let client = pool.get().await.unwrap();
        let row =
            client.query_one("select count(*) from control.jobs where state = 'done'", &[]).await.unwrap();
        (row.get::<_, i64>(0) == 300).then_some(())
    })
    .await;
    first.shutdown().await;
    second.shutdown().await;
    let runs = runs.all();
    assert_eq!(runs.len(), 300);
    assert!(ids.iter().all(|id| runs.get(id) == Some(&1)), "some job ran twice: {runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurring_job_runs_once_per_period_across_two_workers() {
    let (db, pool) = control_db().await;
    let slots = Arc::new(Mutex::new(Vec::<String>::new()));
    let registry = |slots: &Arc<Mutex<Vec<String>>>| {
        let slots = slots.clone();
        Registry::default()
            .handle("tick", move |ctx| {
                slots.lock().unwrap().push(ctx.job.payload["slot"].to_string());
                async { Ok(()) }
            })
            .every("tick", Duration::from_secs(1))
    };
    let other_pool = tenantry::db::build_pool(&db.url, 8).unwrap();
    let first = start(&pool, registry(&slots), settings());
    let second = start(&other_pool, registry(&slots), settings());
    eventually(Duration::from_secs(20), || async { (slots.lock().unwrap().len() >= 3).then_some(()) }).await;
    first.shutdown().await;
    second.shutdown().await;
    let mut seen = slots.lock().unwrap().clone();
    let runs = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), runs, "a period ran twice: {seen:?}");
}

#[tokio::test]
async fn a_tenant_job_runs_in_its_own_tenant_schema_and_ends_cleanly_once_the_tenant_is_gone() {
    let (_db, pool) = control_db().await;
    provision_many(&pool, &["acme", "globex"]).await;
    let acme = tenantry::tenancy::by_subdomain(&pool, "acme").await.unwrap();
    let globex = tenantry::tenancy::by_subdomain(&pool, "globex").await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::<(Uuid, String)>::new()));
    let registry = {
        let seen = seen.clone();
        Registry::default().handle("whoami", move |ctx| {
            let seen = seen.clone();
            async move {
                let mut tx = ctx.tenant_tx().await?;
                let schema: String = tx.query_one("select current_schema()::text", &[]).await?.get(0);
                tx.commit().await?;
                seen.lock().unwrap().push((ctx.tenant_id()?, schema));
                Ok(())
            }
        })
    };
    let for_acme = NewJob::new("whoami").for_tenant(acme.id);
    let for_globex = NewJob::new("whoami").for_tenant(globex.id);
    enqueue(&pool, &for_acme).await;
    enqueue(&pool, &for_globex).await;
    let worker = start(&pool, registry, settings());
    wait_for_state(&pool, for_acme.id(), "done").await;
    wait_for_state(&pool, for_globex.id(), "done").await;
    let mut saw = seen.lock().unwrap().clone();
    saw.sort();
    let mut expected =
        vec![(acme.id, acme.schema.as_str().to_owned()), (globex.id, globex.schema.as_str().to_owned())];
    expected.sort();
    assert_eq!(saw, expected);

    // Deleted (soft), then purged: the job ends as done without running, no retries.
    let client = pool.get().await.unwrap();
    client.execute("update control.tenants set deleted_at = now() where id = $1", &[&acme.id]).await.unwrap();
    tenantry::tenancy::purge(&pool, &globex).await.unwrap();
    let after_delete = NewJob::new("whoami").for_tenant(acme.id);
    let after_purge = NewJob::new("whoami").for_tenant(globex.id);
    enqueue(&pool, &after_delete).await;
    enqueue(&pool, &after_purge).await;
    for id in [after_delete.id(), after_purge.id()] {
        let (_, attempts, note) = wait_for_state(&pool, id, "done").await;
        assert_eq!((attempts, note.as_deref()), (1, Some("skipped: its tenant was deleted")));
    }
    worker.shutdown().await;
    assert_eq!(seen.lock().unwrap().len(), 2, "a job ran for a gone tenant");
}

#[tokio::test]
async fn shutdown_gives_a_job_that_does_not_finish_in_time_back_to_the_queue() {
    let (_db, pool) = control_db().await;
    let registry = Registry::default().handle("slow", |_| async {
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok(())
    });
    let job = NewJob::new("slow");
    enqueue(&pool, &job).await;
    let worker =
        start(&pool, registry, WorkerSettings { shutdown_grace: Duration::from_millis(200), ..settings() });
    wait_for_state(&pool, job.id(), "running").await;
    worker.shutdown().await;
    let (state, attempts, _) = state_of(&pool, job.id()).await;
    assert_eq!((state.as_str(), attempts), ("queued", 0), "released, the attempt not counted");
}
