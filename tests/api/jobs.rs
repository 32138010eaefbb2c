//! Background jobs: transactional enqueue, retries, dead letters, exactly-one claim across
//! workers, leases, recurring schedules, tenant scoping, graceful shutdown, and mail on the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::json;
use tenantry::jobs::{self, JobError, NewJob, Registry, Worker, WorkerHandle, WorkerSettings};
use uuid::Uuid;

use crate::helpers::{As, eventually, spawn_app, spawn_app_with};
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

async fn state_of(pool: &Pool, id: Uuid) -> (String, i32, Option<String>) {
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one("select state, attempts, last_error from control.jobs where id = $1", &[&id])
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn wait_for_state(pool: &Pool, id: Uuid, state: &str) -> (String, i32, Option<String>) {
    eventually(Duration::from_secs(15), || async {
        let now = state_of(pool, id).await;
        (now.0 == state).then_some(now)
    })
    .await
    .0
}

async fn enqueue(pool: &Pool, job: &NewJob) {
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

/// An SMTP server that accepts connections and never answers.
async fn silent_smtp() -> (u16, Arc<Mutex<u32>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            *counter.lock().unwrap() += 1;
            held.push(stream);
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_mail_job_is_picked_up_after_its_lease() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let (port, accepted) = silent_smtp().await;
    // Replica one sends through an SMTP server that never answers, then is killed mid-send.
    let app = spawn_app_with(|c| {
        c.jobs_concurrency = 0;
        c.master_encryption_key = Some(key.into());
    })
    .await;
    let smtp = format!("smtp://127.0.0.1:{port}");
    let env = [
        ("MAILER", smtp.as_str()),
        ("MASTER_ENCRYPTION_KEY", key),
        ("JOBS_LEASE_SECS", "2"),
        ("JOBS_POLL_MS", "100"),
    ];
    let mut doomed = crate::process::ServerProcess::start(&app.db.url, &env).await;
    let sign_up = "mutation { signUp(email: \"ann@example.com\", password: \"correct horse\", name: \"Ann\") { user { id } } }";
    let body = doomed.graphql(None, None, sign_up, json!({})).await;
    assert!(body["data"]["signUp"]["user"]["id"].is_string(), "signUp waits for no mail server: {body}");
    let client = app.pool.get().await.unwrap();
    let job: Uuid = eventually(Duration::from_secs(15), || async {
        let row = client
            .query_opt("select id from control.jobs where kind = 'send_mail' and state = 'running'", &[])
            .await
            .unwrap()?;
        (*accepted.lock().unwrap() > 0).then(|| row.get(0))
    })
    .await
    .0;
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    assert_eq!(state_of(&app.pool, job).await.0, "running", "a killed worker leaves its job leased");

    // Replica two (file mailer) takes the job once the lease has expired.
    let rescuer = spawn_app_with(|c| {
        c.database_url = Some(app.db.url.clone());
        c.master_encryption_key = Some(key.into());
    })
    .await;
    let (_, attempts, _) = wait_for_state(&app.pool, job, "done").await;
    assert_eq!(attempts, 2);
    let mail = rescuer.mail_in_spool("ann@example.com");
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["subject"], "Confirm your email address");
}

#[tokio::test]
async fn a_mail_job_survives_a_restart_and_its_secrets_are_sealed() {
    let mut first = spawn_app_with(|c| c.jobs_concurrency = 0).await;
    first.sign_up_unverified("ann").await;
    let client = first.pool.get().await.unwrap();
    let row = client
        .query_one("select payload::text, sealed, state from control.jobs where kind = 'send_mail'", &[])
        .await
        .unwrap();
    let (payload, sealed, state): (String, Vec<u8>, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(state, "queued");
    assert!(!payload.contains("example.com") && !payload.contains("token"), "{payload}");
    assert!(!String::from_utf8_lossy(&sealed).contains("ann@example.com"), "the mail is stored in clear");
    let metrics = first.get("/metrics").await.text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("jobs_queued ") && !l.ends_with(" 0")), "{metrics}");
    first.stop().await;
    assert!(
        first.mail_dir.read_dir().map(|d| d.count() == 0).unwrap_or(true),
        "mail went out before the restart"
    );

    // The restarted server (same database, data dir and key) sends it.
    let data_dir = first.mail_dir.parent().unwrap().to_owned();
    let db_url = first.db.url.clone();
    let _second = spawn_app_with(move |c| {
        c.database_url = Some(db_url);
        c.mailer = format!("file:{}", data_dir.join("mail").display());
        c.data_dir = data_dir;
    })
    .await;
    let mail = first.last_mail_to("ann@example.com").await;
    let verify = "mutation($t: String!) { verifyEmail(token: $t) { emailVerified } }";
    let (_, body) = _second.graphql(As::default(), verify, json!({ "t": mail["token"] })).await;
    assert_eq!(body["data"]["verifyEmail"]["emailVerified"], true, "{body}");
}

#[tokio::test]
async fn a_tenant_has_at_most_one_storage_measurement_queued() {
    let (_db, pool) = control_db().await;
    provision_many(&pool, &["acme"]).await;
    let tenant = tenantry::tenancy::by_subdomain(&pool, "acme").await.unwrap().id;
    let gauges = tenantry::usage::gauges::Gauges::default();
    for _ in 0..3 {
        gauges.written(tenant);
        assert_eq!(gauges.enqueue_written(&pool).await.unwrap(), 1);
    }
    let client = pool.get().await.unwrap();
    let queued: i64 = client
        .query_one(
            "select count(*) from control.jobs where kind = 'usage.measure_storage' and tenant_id = $1 and state = 'queued'",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 1);
}

#[tokio::test]
async fn storage_is_measured_by_a_job_and_every_replica_hears_the_figure() {
    let app = spawn_app().await;
    let owner = app.sign_up("ann").await;
    let tenant: Uuid = app.create_tenant(&owner, "acme").await.parse().unwrap();
    let gauges = &app.state.usage.gauges;
    gauges.set_storage(tenant, 1).await; // a stale figure the job must replace
    let job = NewJob::new(tenantry::usage::gauges::MEASURE_STORAGE).for_tenant(tenant);
    enqueue(&app.pool, &job).await;
    wait_for_state(&app.pool, job.id(), "done").await;
    let schema = tenantry::db::SchemaName::for_tenant(tenant);
    let client = app.pool.get().await.unwrap();
    let measured = tenantry::usage::repo::schema_bytes(&client, &schema).await.unwrap();
    assert!(measured > 1);
    eventually(Duration::from_secs(10), || async {
        (gauges.storage(&app.pool, tenant).await.unwrap() == measured).then_some(())
    })
    .await;
}
