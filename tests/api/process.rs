//! The real `tenantry` binary as a child process, its stderr (the log) kept in a file.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{eventually, scratch_dir};

pub struct ServerProcess {
    pub child: Child,
    pub address: String,
    pub log: PathBuf,
    pub mail_dir: PathBuf,
    pub client: reqwest::Client,
}

impl ServerProcess {
    /// Starts `tenantry serve` on `db_url` on a free port; `env` adds or overrides variables.
    pub async fn start(db_url: &str, env: &[(&str, &str)]) -> Self {
        let dir = scratch_dir();
        let log = dir.join("stderr.log");
        let mail_dir = dir.join("mail");
        let secret = tenantry::config::Config::for_tests(None, dir.clone()).jwt_secret.unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantry"));
        command
            .arg("serve")
            .env("DATABASE_URL", db_url)
            .env("BIND", "127.0.0.1:0")
            .env("DATA_DIR", &dir)
            .env("JWT_SECRET", secrecy::ExposeSecret::expose_secret(&secret))
            .env("MAILER", format!("file:{}", mail_dir.display()))
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        command.envs(crate::helpers::TEST_LIMITS.iter().copied());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("starting the tenantry binary");
        let mut server =
            Self { child, address: String::new(), log, mail_dir, client: reqwest::Client::new() };
        // The port is the one the server says it bound.
        let (address, _) = eventually(Duration::from_secs(60), || {
            let lines = server.log_lines();
            async move { lines.iter().find(|l| l["message"] == "serving").map(|l| l["address"].clone()) }
        })
        .await;
        server.address = format!("http://{}", address.as_str().unwrap());
        server
    }

    /// Everything logged so far that parses as a JSON line.
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text().lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn graphql(
        &self,
        token: Option<&str>,
        tenant: Option<&str>,
        query: &str,
        vars: Value,
    ) -> Value {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": vars }));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(tenant) = tenant {
            req = req.header("x-tenant", tenant);
        }
        req.send().await.expect("request sent").json().await.expect("a JSON body")
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
