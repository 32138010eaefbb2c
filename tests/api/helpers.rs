//! `spawn_app()`: a real server on a random port, on its own database, dropped afterwards.
//!
//! The database server is `DATABASE_URL` when set; otherwise one embedded cluster shared by all
//! tests under `target/tmp/pg` (started once, left running for the next run; `.ci/run` stops it).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenantry::app::{AppState, Application};
use tenantry::config::Config;
use tenantry::db::build_pool;
use tenantry::db::embedded::{Durability, EmbeddedPostgres};
use tenantry::db::migrate::migrate_control;
use tokio::sync::oneshot;
use uuid::Uuid;

pub use crate::bench_support::settings::{TEST_JWT_SECRET, test_config, test_env};

/// A connection string (URL or key=value) for database `dbname` on the test server.
fn server_url(dbname: &str) -> String {
    static EMBEDDED: OnceLock<EmbeddedPostgres> = OnceLock::new();
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return with_dbname(&url, dbname);
    }
    EMBEDDED
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pg");
            std::fs::create_dir_all(&dir).unwrap();
            // Test processes may start together (nextest): one of them creates the cluster.
            let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
            lock.lock().unwrap();
            let pg =
                EmbeddedPostgres::start(&dir, Durability::Throwaway).expect("embedded PostgreSQL for tests");
            // Never stopped: statics are not dropped, so the cluster outlives the test process.
            drop(lock);
            pg
        })
        .connection_string(dbname)
}

fn with_dbname(url: &str, dbname: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
        let scheme_end = base.find("://").unwrap() + 3;
        let host_part = &base[scheme_end..];
        let host = host_part.split_once('/').map_or(host_part, |(h, _)| h);
        let mut out = format!("{}{host}/{dbname}", &base[..scheme_end]);
        if let Some(query) = query {
            out = format!("{out}?{query}");
        }
        out
    } else {
        format!("{url} dbname={dbname}")
    }
}

/// Runs `sql` on the test server's `postgres` database, as its superuser.
pub async fn admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(&server_url("postgres"), tokio_postgres::NoTls)
        .await
        .expect("connecting to the test PostgreSQL server");
    let driver = tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = driver.await;
}

/// A fresh database, dropped with the guard.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// An empty database.
    pub async fn create() -> Self {
        let name = format!("tenantry_test_{}", Uuid::new_v4().simple());
        admin(&format!("create database {name}")).await;
        Self { url: server_url(&name), name }
    }

    /// A database whose control schema is migrated, as a server leaves it on its first start:
    /// a copy of a template migrated once (see `migrated_template`).
    pub async fn migrated() -> Self {
        let template = migrated_template().await;
        let name = format!("tenantry_test_{}", Uuid::new_v4().simple());
        admin(&format!("create database {name} template {template}")).await;
        Self { url: server_url(&name), name }
    }
}

/// Advisory lock key under which one test process builds the template ("tmpl" in ASCII).
const TEMPLATE_LOCK: i64 = 0x746d_706c;

/// The database `TestDb::migrated` copies: the control migrations applied by `migrate_control`.
/// Its name carries a hash of `migrations/control`, so a changed or added migration makes a new
/// template. Built once per server: test processes running at once (nextest) take an advisory
/// lock, and the first builds it under a temporary name and renames it when complete.
async fn migrated_template() -> &'static str {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("tenantry_template_{}", control_migrations_hash());
            let (client, connection) =
                tokio_postgres::connect(&server_url("postgres"), tokio_postgres::NoTls)
                    .await
                    .expect("connecting to the test PostgreSQL server");
            let driver = tokio::spawn(connection);
            client.execute("select pg_advisory_lock($1)", &[&TEMPLATE_LOCK]).await.unwrap();
            let exists = "select 1 from pg_database where datname = $1";
            if client.query_opt(exists, &[&name]).await.unwrap().is_none() {
                build_template(&client, &name).await;
            }
            client.execute("select pg_advisory_unlock($1)", &[&TEMPLATE_LOCK]).await.unwrap();
            drop(client);
            let _ = driver.await;
            name
        })
        .await
}

/// Migrates `<name>_building` and renames it to `name`, refusing connections from then on
/// (a database with a session on it cannot be copied).
async fn build_template(client: &tokio_postgres::Client, name: &str) {
    let building = format!("{name}_building");
    client.batch_execute(&format!("drop database if exists {building} with (force)")).await.unwrap();
    client.batch_execute(&format!("create database {building}")).await.unwrap();
    let pool = build_pool(&server_url(&building), 1).unwrap();
    migrate_control(&pool).await.expect("migrating the template database");
    pool.close();
    drop(pool);
    client.batch_execute(&format!("alter database {building} allow_connections false")).await.unwrap();
    // A closed connection's backend may linger a moment; rename once it is gone.
    let terminate = "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1";
    eventually(Duration::from_secs(30), || async {
        client.execute(terminate, &[&building]).await.unwrap();
        client.batch_execute(&format!("alter database {building} rename to {name}")).await.ok()
    })
    .await;
}

/// The first 16 hex digits of a SHA-256 over `migrations/control` (file names and contents).
fn control_migrations_hash() -> String {
    use sha2::{Digest, Sha256};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/control");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.file_name().unwrap().as_encoded_bytes());
        hash.update(std::fs::read(&file).unwrap());
    }
    hex::encode(hash.finalize())[..16].to_owned()
}

/// Drops the tenant roles (cluster-wide) that no database grants anything to any more: those of
/// dropped test databases. A role in use always has a grant on its schema, committed with it;
/// a role made ahead has none yet, and is told by its comment (dropped with its database).
const DROP_ORPHAN_TENANT_ROLES: &str = "do $$ declare r record; begin
    for r in select rolname from pg_roles a where rolname ~ '^t_[0-9a-f]{32}$'
        and not exists (select 1 from pg_shdepend d where d.refclassid = 'pg_authid'::regclass and d.refobjid = a.oid)
        and shobj_description(a.oid, 'pg_authid') is null
    loop
        begin execute format('drop role %I', r.rolname); exception when others then null; end;
    end loop;
end $$";

/// Drops a test database now, closing its connections, and the tenant roles it leaves unused
/// (those it made ahead included).
pub async fn drop_database(name: &str) {
    let ahead = roles_made_ahead(name).await;
    admin(&format!("drop database if exists {name} with (force)")).await;
    for role in ahead {
        admin(&format!("drop role if exists \"{role}\"")).await;
    }
    admin(DROP_ORPHAN_TENANT_ROLES).await;
}

/// The names of the tenant roles database `name` made ahead (none if it has no control schema).
async fn roles_made_ahead(name: &str) -> Vec<String> {
    let Ok((client, connection)) = tokio_postgres::connect(&server_url(name), tokio_postgres::NoTls).await
    else {
        return Vec::new();
    };
    let driver = tokio::spawn(connection);
    let rows = client.query("select tenant_id from control.warm_roles", &[]).await.unwrap_or_default();
    drop(client);
    let _ = driver.await;
    rows.iter().map(|r| format!("t_{}", r.get::<_, Uuid>(0).simple())).collect()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a fresh one on another thread can block freely.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(drop_database(&name));
        })
        .join()
        .unwrap();
    }
}

pub fn scratch_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("run-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// A separate pool on the app's database, for assertions and set-up.
    pub pool: Pool,
    pub db: TestDb,
    /// Where the file mailer writes one JSON file per message.
    pub mail_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_routes(configure, axum::Router::new()).await
}

/// A server with `routes` added through `Application::with_routes` (what an embedding app does).
pub async fn spawn_app_with_routes(configure: impl FnOnce(&mut Config), routes: axum::Router) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        tenantry::telemetry::init(tenantry::config::LogFormat::Pretty);
    }
    let db = TestDb::migrated().await;
    let mut config = test_config(Some(&db.url), &scratch_dir());
    configure(&mut config);
    let mail_dir = config.data_dir.join("mail");
    let app = Application::build(config).await.expect("building the application").with_routes(routes);
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        pool: build_pool(&db.url, 4).unwrap(),
        db,
        mail_dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    /// Shuts the server down the way a signal does, and waits until it has stopped.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task").expect("a clean shutdown");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Headers naming a tenant and a caller.
#[derive(Default, Clone)]
pub struct As<'a> {
    pub token: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub host: Option<String>,
}

impl<'a> As<'a> {
    pub fn user(token: &'a str) -> Self {
        Self { token: Some(token), ..Self::default() }
    }
    pub fn member(token: &'a str, tenant: &'a str) -> Self {
        Self { token: Some(token), tenant: Some(tenant), host: None }
    }
}

/// POSTs a GraphQL request to the server at `address`; returns the HTTP status and the JSON body.
pub async fn post_graphql(
    client: &reqwest::Client,
    address: &str,
    who: As<'_>,
    query: &str,
    variables: Value,
) -> (StatusCode, Value) {
    {
        // A current GraphQL client: request errors are 4xx (legacy `application/json` gets 200).
        let mut req = client
            .post(format!("{address}/graphql"))
            .header("accept", "application/graphql-response+json, application/json;q=0.9")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = who.token {
            req = req.bearer_auth(token);
        }
        if let Some(tenant) = who.tenant {
            req = req.header("x-tenant", tenant);
        }
        if let Some(host) = who.host {
            req = req.header("host", host);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        (status, res.json().await.expect("JSON body"))
    }
}

impl TestApp {
    /// POSTs a GraphQL request; returns the HTTP status and the JSON body.
    pub async fn graphql(&self, who: As<'_>, query: &str, variables: Value) -> (StatusCode, Value) {
        post_graphql(&self.client, &self.address, who, query, variables).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.address)).send().await.expect("request sent")
    }

    /// Signs up `<name>@example.com` without verifying; returns the `signUp` payload.
    pub async fn sign_up_unverified(&self, name: &str) -> Value {
        let (_, body) = self
            .graphql(
                As::default(),
                "mutation($email: String!) { signUp(email: $email, password: \"correct horse\", name: \"Tester\") { accessToken refreshToken user { id } } }",
                json!({ "email": format!("{name}@example.com") }),
            )
            .await;
        assert!(body["data"]["signUp"].is_object(), "signUp failed: {body}");
        body["data"]["signUp"].clone()
    }

    /// A verified user `<name>@example.com` (name "Tester", password "correct horse"), as
    /// `signUp` and `verifyEmail` leave one; returns an access token. Seeded: the row is inserted
    /// with a hash computed once per test process and the token is minted with the server's
    /// keys, so no argon2 round and no mail. Tests of signing up use `sign_up_unverified`.
    pub async fn sign_up(&self, name: &str) -> String {
        let id = Uuid::new_v4();
        let email = format!("{name}@example.com").to_lowercase();
        let insert = "insert into control.users (id, email, name, password_hash, email_verified_at) \
                      values ($1, $2, 'Tester', $3, now())";
        let client = self.pool.get().await.unwrap();
        client.execute(insert, &[&id, &email, &correct_horse_hash()]).await.unwrap();
        self.state.tokens.issue(id).unwrap()
    }

    /// Waits until no mail job is queued or running (mail goes out through the job queue).
    pub async fn mail_settled(&self) {
        let client = self.pool.get().await.unwrap();
        eventually(Duration::from_secs(10), || async {
            let row = client
                .query_one(
                    "select count(*) from control.jobs where kind = 'send_mail' and state in ('queued', 'running')",
                    &[],
                )
                .await
                .unwrap();
            (row.get::<_, i64>(0) == 0).then_some(())
        })
        .await;
    }

    /// All mail sent to `to`, oldest first, once the mail queue is settled.
    pub async fn mail_to(&self, to: &str) -> Vec<Value> {
        self.mail_settled().await;
        self.mail_in_spool(to)
    }

    /// The mail to `to` written so far, oldest first (without waiting for the queue).
    pub fn mail_in_spool(&self, to: &str) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(&self.mail_dir)
            .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|x| x == "json"));
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice::<Value>(&std::fs::read(p).unwrap()).unwrap())
            .filter(|m| m["to"] == to)
            .collect()
    }

    /// The first mail to `to` with `subject`, waiting for it (some mail is sent in the background).
    pub async fn wait_for_mail(&self, to: &str, subject: &str) -> Value {
        eventually(std::time::Duration::from_secs(5), || async {
            self.mail_to(to).await.into_iter().find(|m| m["subject"] == subject)
        })
        .await
        .0
    }

    /// The latest mail sent to `to`, once the mail queue is settled.
    pub async fn last_mail_to(&self, to: &str) -> Value {
        self.mail_to(to).await.pop().unwrap_or_else(|| panic!("no mail to {to}"))
    }

    /// Creates a tenant owned by the token's user; returns its id.
    pub async fn create_tenant(&self, token: &str, subdomain: &str) -> String {
        let (_, body) = self
            .graphql(
                As::user(token),
                "mutation($s: String!) { createTenant(name: \"Tenant\", subdomain: $s) { id } }",
                json!({ "s": subdomain }),
            )
            .await;
        body["data"]["createTenant"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("createTenant failed: {body}"))
            .to_owned()
    }

    pub async fn create_project(&self, token: &str, tenant: &str, name: &str) -> String {
        let (_, body) = self
            .graphql(
                As::member(token, tenant),
                "mutation($n: String!) { createProject(name: $n) { id } }",
                json!({ "n": name }),
            )
            .await;
        body["data"]["createProject"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("createProject failed: {body}"))
            .to_owned()
    }
}

impl TestApp {
    /// Invites `<name>@example.com` into `tenant` as `role`; returns the `inviteMember` result or errors.
    pub async fn invite(&self, token: &str, tenant: &str, name: &str, role: &str) -> Value {
        let query = "mutation($e: String!, $r: Role!) { inviteMember(email: $e, role: $r) { id email role expiresAt } }";
        let vars = json!({ "e": format!("{name}@example.com"), "r": role });
        self.graphql(As::member(token, tenant), query, vars).await.1
    }

    /// Accepts an invitation token as the caller.
    pub async fn accept(&self, token: &str, invitation_token: &str) -> Value {
        let query = "mutation($t: String!) { acceptInvitation(token: $t) { subdomain role } }";
        self.graphql(As::user(token), query, json!({ "t": invitation_token })).await.1
    }

    /// A new verified user `<name>` who joined `tenant` as `role` by invitation; returns their token.
    pub async fn member_of(&self, owner: &str, tenant: &str, name: &str, role: &str) -> String {
        let invited = self.invite(owner, tenant, name, role).await;
        assert!(invited["data"]["inviteMember"].is_object(), "{invited}");
        let invitation = self.last_mail_to(&format!("{name}@example.com")).await;
        let user = self.sign_up(name).await;
        let accepted = self.accept(&user, invitation["token"].as_str().unwrap()).await;
        assert_eq!(accepted["data"]["acceptInvitation"]["role"], role, "{accepted}");
        user
    }

    /// The user id behind an access token.
    pub async fn user_id(&self, token: &str) -> String {
        let (_, body) = self.graphql(As::user(token), "{ me { id } }", json!({})).await;
        body["data"]["me"]["id"].as_str().unwrap().to_owned()
    }

    /// Moves a tenant to `plan` the way an operator or billing would.
    pub async fn set_plan(&self, subdomain: &str, plan: &str) {
        let tenant = tenantry::tenancy::by_subdomain(&self.pool, subdomain).await.unwrap();
        tenantry::plans::change_plan(&self.pool, &self.state.plans, tenant.id, plan).await.unwrap();
        // This process hears its own notification; wait until its cache reflects the change.
        for _ in 0..200 {
            let access = self.state.access.get(&self.pool, &self.state.plans, tenant.id).await.unwrap();
            if access.is_some_and(|a| a.plan.id == plan) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("plan change never reached the cache");
    }
}

/// Whether to skip a test that needs `program`, an optional tool (README, "Running the tests")
/// found at `path`, or not installed (`None`). Not installed, the test fails at once when tools
/// are required (`CI` or `TENANTRY_REQUIRE_TOOLS` set, as `.ci/run` does), and is otherwise
/// skipped: it prints a notice naming the program and how to install it, and returns.
pub fn skip_without(program: &str, path: Option<&Path>, install: &str) -> bool {
    if path.is_some() {
        return false;
    }
    let missing = format!("`{program}` is not installed (install it: {install})");
    assert!(!tools_required(), "{missing}; with CI or TENANTRY_REQUIRE_TOOLS set every test runs");
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    // To the stderr handle itself: the harness captures `eprintln!` of a passing test.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {missing}");
    true
}

/// Whether every optional tool must be installed: `CI` or `TENANTRY_REQUIRE_TOOLS` is set (not
/// empty, `0` or `false`).
fn tools_required() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    set("CI") || set("TENANTRY_REQUIRE_TOOLS")
}

/// The argon2id hash (the product's parameters) of "correct horse", computed once per process.
fn correct_horse_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default().hash_password(b"correct horse").unwrap().to_string()
    })
}

/// Polls `f` until it returns `Some`, for at most `limit`; returns the value and the time it took.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> (T, Duration) {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(value) = f().await {
            return (value, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within {limit:?}");
}

/// The `extensions.code` of the first error, if any.
pub fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// Names of the projects in a `projects` response.
pub fn project_names(body: &Value) -> Vec<String> {
    body["data"]["projects"]
        .as_array()
        .unwrap_or_else(|| panic!("no projects in {body}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}
