//! `tenantry serve` as a child process, configured as the in-process test server is (so tokens
//! are valid at both), its stderr (the log, JSON lines) kept in a file.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{As, eventually, post_graphql, scratch_dir, test_env};

pub struct ServerProcess {
    pub child: Child,
    pub address: String,
    pub log: PathBuf,
    pub mail_dir: PathBuf,
    pub client: reqwest::Client,
}

impl ServerProcess {
    /// Starts `tenantry serve` on `db_url` on a free port, with the test settings, its own data
    /// dir and mail spool, logging at `info`; `env` adds or overrides variables (a `RUST_LOG`
    /// must keep `info` for `tenantry::app`: the port is read from its "serving" line).
    pub async fn start(db_url: &str, env: &[(&str, &str)]) -> Self {
        let dir = scratch_dir();
        let log = dir.join("stderr.log");
        let mail_dir = dir.join("mail");
        let child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(test_env(Some(db_url), &dir))
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting the tenantry binary");
        let mut server =
            Self { child, address: String::new(), log, mail_dir, client: reqwest::Client::new() };
        let started = Instant::now();
        server.address = loop {
            if let Some(line) = server.log_lines().into_iter().find(|l| l["message"] == "serving") {
                break format!("http://{}", line["address"].as_str().unwrap());
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("tenantry serve exited ({status}) before serving:\n{}", server.log_text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "tenantry serve did not serve within 60 s:\n{}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        server
    }

    /// Another replica of a test's in-process server on `db_url`: it serves requests and runs no
    /// jobs (mail above all), which the test's own server runs with the spool and key it reads.
    pub async fn replica(db_url: &str, env: &[(&str, &str)]) -> Self {
        let mut with_env = vec![("JOBS_CONCURRENCY", "0")];
        with_env.extend_from_slice(env);
        Self::start(db_url, &with_env).await
    }

    /// POSTs a GraphQL request to this process; returns the HTTP status and the JSON body.
    pub async fn graphql(&self, who: As<'_>, query: &str, variables: Value) -> (StatusCode, Value) {
        post_graphql(&self.client, &self.address, who, query, variables).await
    }

    /// Everything logged so far that parses as a JSON line.
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text().lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `token` of the latest mail to `to` with `subject`, waiting for it.
    pub async fn mailed_token(&self, to: &str, subject: &str) -> String {
        eventually(Duration::from_secs(10), || async {
            let mut files: Vec<_> = std::fs::read_dir(&self.mail_dir).ok()?.filter_map(Result::ok).collect();
            files.sort_by_key(|f| f.path());
            files.iter().rev().find_map(|f| {
                let mail: Value = serde_json::from_slice(&std::fs::read(f.path()).ok()?).ok()?;
                (mail["to"] == to && mail["subject"] == subject)
                    .then(|| mail["token"].as_str().unwrap().to_owned())
            })
        })
        .await
        .0
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits for the process to exit (at most 60 s) and returns whether it exited cleanly.
    pub async fn wait(&mut self) -> bool {
        let (status, _) = eventually(Duration::from_secs(60), || {
            let status = self.child.try_wait().unwrap();
            async move { status }
        })
        .await;
        status.success()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
