//! The product's jobs on the queue: mail survives a restart and a killed worker, secrets are
//! sealed, storage is measured per tenant, deduplicated.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tenantry::jobs::NewJob;
use uuid::Uuid;

use crate::helpers::{As, eventually, spawn_app, spawn_app_with};
use crate::jobs::{enqueue, state_of, wait_for_state};
use crate::migrations::{control_db, provision_many};

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
    let body = doomed.graphql(As::default(), sign_up, json!({})).await.1;
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
        c.database_url = Some(app.db.url.clone().into());
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
        c.database_url = Some(db_url.into());
        c.mailer = format!("file:{}", data_dir.join("mail").display()).into();
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
