//! Behind PgBouncer in transaction pooling mode (`DATABASE_POOLER=transaction`): the
//! mixed-tenant load sees no foreign row and no error, with fewer server connections than
//! clients so transactions keep moving between server connections.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{TestDb, eventually};
use crate::process::ServerProcess;

/// A private PgBouncer in front of the test database. Stopped on drop.
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl PgBouncer {
    /// `pool_mode = transaction` with `server_connections` server connections for `db_url`.
    pub async fn start(db_url: &str, server_connections: u16) -> Self {
        let pg: tokio_postgres::Config = db_url.parse().unwrap();
        let host = match &pg.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let user = pg.get_user().unwrap_or("postgres").to_owned();
        let dbname = pg.get_dbname().unwrap().to_owned();
        let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Outside the worktree: PgBouncer runs as `postgres` when we are root and must read it.
        let dir = std::env::temp_dir().join(format!("tenantry-pgbouncer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n")).unwrap();
        let ini = format!(
            "[databases]\n{dbname} = host={host} port={port} dbname={dbname} user={user}\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
             default_pool_size = {server_connections}\nmax_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        let root = nix::unistd::geteuid().is_root();
        let mut command = if root {
            let postgres = nix::unistd::User::from_name("postgres").unwrap().expect("a postgres OS user");
            nix::unistd::chown(&dir, Some(postgres.uid), Some(postgres.gid)).unwrap();
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pgbouncer"]);
            c
        } else {
            Command::new("pgbouncer")
        };
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pgbouncer (apt-get install pgbouncer)");
        let bouncer = Self { child, dir, port: listen };
        eventually(Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", listen)).await.ok()
        })
        .await;
        bouncer
    }

    pub fn url(&self, db_url: &str) -> String {
        let pg: tokio_postgres::Config = db_url.parse().unwrap();
        let user = pg.get_user().unwrap_or("postgres");
        format!("host=127.0.0.1 port={} user={user} dbname={}", self.port, pg.get_dbname().unwrap())
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Under runuser the pgbouncer process is a grandchild: signal it by its pid file.
        let pid = std::fs::read_to_string(self.dir.join("pgbouncer.pid"));
        if let Some(pid) = pid.ok().and_then(|pid| pid.trim().parse::<i32>().ok()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const SIGN_UP: &str = "mutation($e: String!) { signUp(email: $e, password: \"correct horse\", name: \"Owner\") { accessToken } }";
const VERIFY: &str = "mutation($t: String!) { verifyEmail(token: $t) { emailVerified } }";
const CREATE_TENANT: &str = "mutation($s: String!) { createTenant(name: \"Tenant\", subdomain: $s) { id } }";
const CREATE_PROJECT: &str = "mutation($n: String!) { createProject(name: $n) { id name } }";
const PROJECTS: &str = "{ projects { name } }";

async fn owner_of(server: &ServerProcess, tenant: &str) -> String {
    let email = format!("owner@{tenant}.example.com");
    let body = server.graphql(None, None, SIGN_UP, json!({ "e": email })).await;
    let token = body["data"]["signUp"]["accessToken"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned();
    let verification = server.mailed_token(&email, "Confirm your email address").await;
    server.graphql(None, None, VERIFY, json!({ "t": verification })).await;
    let body = server.graphql(Some(&token), None, CREATE_TENANT, json!({ "s": tenant })).await;
    assert!(body["data"]["createTenant"]["id"].is_string(), "{body}");
    token
}

fn names(body: &Value) -> Vec<String> {
    body["data"]["projects"].as_array().map_or_else(Vec::new, |projects| {
        projects.iter().map(|p| p["name"].as_str().unwrap_or_default().to_owned()).collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_tenant_load_through_pgbouncer_transaction_pooling_sees_no_foreign_row_and_no_error() {
    let db = TestDb::create().await;
    let bouncer = PgBouncer::start(&db.url, 3).await;
    let server = ServerProcess::start(
        &bouncer.url(&db.url),
        &[("DATABASE_POOLER", "transaction"), ("DATABASE_DIRECT_URL", &db.url), ("DB_POOL_SIZE", "12")],
    )
    .await;
    let tenants = ["pb-one", "pb-two", "pb-three", "pb-four", "pb-five"];
    let mut owners = Vec::new();
    for tenant in tenants {
        owners.push(owner_of(&server, tenant).await);
    }

    // Reads and writes of five tenants interleaved: 12 client connections share 3 servers.
    let requests = (0..300).map(|i| {
        let (tenant, token) = (tenants[i % tenants.len()], owners[i % tenants.len()].clone());
        let server = &server;
        async move {
            let body = if i % 3 == 0 {
                let vars = json!({ "n": format!("{tenant}/{i}") });
                server.graphql(Some(&token), Some(tenant), CREATE_PROJECT, vars).await
            } else {
                server.graphql(Some(&token), Some(tenant), PROJECTS, json!({})).await
            };
            (tenant, body)
        }
    });
    let responses = join_all(requests).await;
    let mut errors = Vec::new();
    for (tenant, body) in &responses {
        if body.get("errors").is_some() {
            errors.push(body.to_string());
        }
        let foreign: Vec<String> =
            names(body).into_iter().filter(|n| !n.starts_with(&format!("{tenant}/"))).collect();
        assert!(foreign.is_empty(), "{tenant} saw {foreign:?}");
        if let Some(created) = body["data"]["createProject"]["name"].as_str() {
            assert!(created.starts_with(&format!("{tenant}/")), "{tenant} created {created}");
        }
    }
    assert!(errors.is_empty(), "{} errors, e.g. {:?}", errors.len(), errors.first());

    for (tenant, token) in tenants.iter().zip(&owners) {
        let body = server.graphql(Some(token), Some(tenant), PROJECTS, json!({})).await;
        let expected = (0..300).filter(|i| i % 3 == 0 && tenants[i % tenants.len()] == *tenant).count();
        assert_eq!(names(&body).len(), expected, "{tenant}: {body}");
    }
    drop(server);
}
