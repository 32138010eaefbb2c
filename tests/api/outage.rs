//! Database outages: 503 `DATABASE_UNAVAILABLE` with `Retry-After` while PostgreSQL is gone,
//! recovery by itself when it is back — the embedded cluster restarted by its supervisor, an
//! external server by the pool reconnecting.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tenantry::app::Application;
use tenantry::config::Config;
use tenantry::db::embedded::{Durability, EmbeddedPostgres};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::helpers::{error_code, eventually, scratch_dir, test_config};

const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// A server on its own configuration; `stop` it to release its database.
struct Server {
    address: String,
    client: reqwest::Client,
    stop: oneshot::Sender<()>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(config: Config) -> Self {
        let app = Application::build(config).await.expect("server starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self { address, client: reqwest::Client::new(), stop, running }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.running.await.unwrap().expect("clean shutdown");
    }

    /// A `signUp` (it reads and writes the database): status, `Retry-After`, body.
    async fn sign_up(&self) -> (StatusCode, Option<String>, Value) {
        let query = "mutation($email: String!) { signUp(email: $email, password: \"correct horse\", name: \"Tester\") { accessToken } }";
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let res = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": { "email": email } }))
            .send()
            .await
            .expect("request sent");
        let status = res.status();
        let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_owned());
        (status, retry_after, res.json().await.expect("JSON body"))
    }

    async fn status_of(&self, path: &str) -> StatusCode {
        self.client.get(format!("{}{path}", self.address)).send().await.expect("request sent").status()
    }

    /// Waits for a request to meet the outage, then checks how it is answered.
    async fn assert_unavailable(&self) {
        let ((retry_after, body), _) = eventually(RECOVERY_LIMIT, || async {
            let (status, retry_after, body) = self.sign_up().await;
            (status == StatusCode::SERVICE_UNAVAILABLE).then_some((retry_after, body))
        })
        .await;
        assert_eq!(error_code(&body), Some("DATABASE_UNAVAILABLE"), "{body}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("retry"), "{body}");
        let seconds: u64 = retry_after.expect("Retry-After is set").parse().expect("Retry-After in seconds");
        assert!(seconds > 0);
        assert_eq!(self.status_of("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(self.status_of("/livez").await, StatusCode::OK);
    }

    /// Waits for requests to succeed again.
    async fn assert_recovers(&self) {
        let (body, took) = eventually(RECOVERY_LIMIT, || async {
            let (status, _, body) = self.sign_up().await;
            (status == StatusCode::OK).then_some(body)
        })
        .await;
        assert!(body["data"]["signUp"]["accessToken"].is_string(), "{body}");
        assert_eq!(self.status_of("/readyz").await, StatusCode::OK);
        eprintln!("requests succeeded again {took:?} after the database could return");
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn kill_postmaster(pgdata: &Path) {
    let pid_file = std::fs::read_to_string(pgdata.join("postmaster.pid")).unwrap();
    let pid: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[tokio::test]
async fn a_killed_embedded_postgres_answers_503_then_is_restarted() {
    let data_dir = scratch_dir();
    let server = Server::start(test_config(None, &data_dir)).await;
    assert_eq!(server.sign_up().await.0, StatusCode::OK);

    let pgdata = data_dir.join("postgres");
    // The cluster directory is unreachable until the test gives it back, so the supervisor's
    // restarts fail meanwhile and the outage can be observed.
    set_mode(&pgdata, 0o000);
    kill_postmaster(&pgdata);
    server.assert_unavailable().await;

    set_mode(&pgdata, 0o700);
    server.assert_recovers().await;
    server.stop().await;
    assert!(!pgdata.join("postmaster.pid").exists(), "the restarted cluster stops with the server");
    std::fs::remove_dir_all(data_dir).unwrap();
}

#[tokio::test]
async fn an_external_database_stopped_and_started_again_is_used_again() {
    let pg_dir = scratch_dir();
    let start = {
        let pg_dir = pg_dir.clone();
        move || EmbeddedPostgres::start(&pg_dir, Durability::Throwaway).expect("test-owned PostgreSQL")
    };
    let mut pg = tokio::task::spawn_blocking(start.clone()).await.unwrap();
    let config = test_config(Some(&pg.connection_string("postgres")), &scratch_dir());
    let server = Server::start(config).await;
    assert_eq!(server.sign_up().await.0, StatusCode::OK);

    pg = tokio::task::spawn_blocking(move || {
        pg.stop().expect("stopping the test-owned PostgreSQL");
        pg
    })
    .await
    .unwrap();
    server.assert_unavailable().await;

    drop(pg);
    let pg = tokio::task::spawn_blocking(start).await.unwrap();
    server.assert_recovers().await;
    server.stop().await;
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    std::fs::remove_dir_all(pg_dir).unwrap();
}

#[tokio::test]
async fn start_up_as_root_names_a_data_dir_the_postgres_user_cannot_reach() {
    // Only root hands the cluster to the `postgres` user; the reachability rule itself is unit
    // tested in `db::embedded` for any user.
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    let private = scratch_dir().join("private");
    std::fs::create_dir_all(&private).unwrap();
    set_mode(&private, 0o700);
    let config = test_config(None, &private.join("data"));
    let err = match Application::build(config).await {
        Ok(_) => panic!("start-up must fail"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("`postgres` OS user") && err.contains(&private.display().to_string()), "{err}");
    assert!(err.contains("chmod o+x"), "{err}");
}

#[tokio::test]
async fn errors_during_an_outage_capture_no_backtrace_even_with_rust_backtrace_set() {
    let db = crate::helpers::TestDb::migrated().await;
    // Hosts and containers often run with this set; panics keep their backtraces, errors must not
    // pay for one (and, once printed, megabytes of symbol tables stay resident).
    let server = crate::process::ServerProcess::start(
        &db.url,
        &[("RUST_BACKTRACE", "1"), ("USAGE_FLUSH_MS", "50"), ("JOBS_POLL_MS", "50")],
    )
    .await;
    let who = crate::helpers::As::default();
    let sign_up = "mutation { signUp(email: \"a@example.com\", password: \"correct horse\", name: \"A\") { accessToken } }";
    // The database goes away under the running server: connections refused, open ones ended.
    crate::helpers::admin(&format!("alter database {} with allow_connections false", db.name)).await;
    // A connection being opened as the setting changed may slip past one sweep: sweep again.
    for _ in 0..3 {
        crate::helpers::admin(&format!(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{}'",
            db.name
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Requests meet the outage too (their answers are the outage tests' business above).
    for _ in 0..5 {
        let _ = server.graphql(who.clone(), sign_up, json!({})).await;
    }
    // Background work (job polling, usage flushes) meets the outage too, and logs it.
    let (errors, _) = crate::helpers::eventually(Duration::from_secs(30), || {
        let lines = server.log_lines();
        async move {
            let errors: Vec<Value> =
                lines.into_iter().filter(|l| l["level"] == "WARN" || l["level"] == "ERROR").collect();
            (errors.len() >= 3).then_some(errors)
        }
    })
    .await;
    let text = server.log_text();
    assert!(
        !text.contains("Stack backtrace") && !text.contains("stack backtrace") && !text.contains("/rustc/"),
        "an error captured a backtrace ({} warnings/errors), the log begins:\n{}",
        errors.len(),
        text.chars().take(3000).collect::<String>()
    );
    crate::helpers::admin(&format!("alter database {} with allow_connections true", db.name)).await;
}
