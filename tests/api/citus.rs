//! Opt-in, against a two-node Citus cluster (`scripts/citus-cluster.sh test` starts one and runs
//! these with `CITUS_URL` set to the coordinator's database; docs/SCALING.md). Without
//! `CITUS_URL` they print why they did not run and pass.
//!
//! A tenant moves to the other node and back with `tenantry tenants move` while four clients
//! read and write it: every request answers without an error and every acknowledged write is
//! there afterwards. Warm schemas are distributed schemas, and a tenant whose role was made
//! ahead is served as that role on the worker it moved to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tenantry::db::SchemaName;
use tenantry::db::citus::{Node, placement};

use crate::helpers::As;
use crate::process::ServerProcess;

const SIGN_UP: &str = "mutation($e: String!) { signUp(email: $e, password: \"correct horse\", name: \"Owner\") { accessToken } }";
const VERIFY: &str = "mutation($t: String!) { verifyEmail(token: $t) { emailVerified } }";
const CREATE_TENANT: &str = "mutation($s: String!) { createTenant(name: \"Moving\", subdomain: $s) { id } }";
const CREATE_PROJECT: &str = "mutation($n: String!) { createProject(name: $n) { id } }";
const PROJECTS: &str = "{ projects { name } }";
const CLIENTS: usize = 4;

/// The tests share the cluster's one database, with its job queue, warm pool and roles made
/// ahead: they run one at a time. (Two test servers at once would each run the other's mail jobs,
/// encrypted under another generated key, into their own mail spool.)
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn citus_url() -> Option<String> {
    let url = std::env::var("CITUS_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("skipped: set CITUS_URL to a Citus coordinator's database (scripts/citus-cluster.sh test)");
    }
    url
}

/// Signs up a verified owner on `server` and creates a tenant `<prefix>-<12 hex>`: the owner's
/// token, the subdomain and the tenant's id.
async fn owner_with_tenant(server: &ServerProcess, prefix: &str) -> (String, String, uuid::Uuid) {
    let subdomain = format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let email = format!("owner@{subdomain}.example.com");
    let body = server.graphql(As::default(), SIGN_UP, json!({ "e": email })).await.1;
    let token = body["data"]["signUp"]["accessToken"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned();
    let verification = server.mailed_token(&email, "Confirm your email address").await;
    server.graphql(As::default(), VERIFY, json!({ "t": verification })).await;
    let body = server.graphql(As::user(&token), CREATE_TENANT, json!({ "s": subdomain })).await.1;
    let id = body["data"]["createTenant"]["id"].as_str().unwrap_or_else(|| panic!("{body}"));
    let id = uuid::Uuid::parse_str(id).unwrap();
    (token, subdomain, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_between_nodes_and_back_while_served_with_no_failed_request_and_no_lost_write() {
    let Some(url) = citus_url() else { return };
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = ServerProcess::start(&url, &[]).await;
    let (token, subdomain, id) = owner_with_tenant(&server, "move").await;
    let schema = SchemaName::for_tenant(id);

    // The clients' burst is above the free plan's rate limit.
    let pool = tenantry::db::build_pool(&url, 1).unwrap();
    let client = pool.get().await.unwrap();
    client.execute("update control.tenants set plan = 'enterprise' where id = $1", &[&id]).await.unwrap();
    client.execute("select pg_notify('tenant_changed', $1::text)", &[&id.to_string()]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let nodes: Vec<Node> = client
        .query("select nodename, nodeport from pg_dist_node where isactive and noderole = 'primary'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| Node { host: r.get("nodename"), port: u16::try_from(r.get::<_, i32>("nodeport")).unwrap() })
        .collect();
    assert_eq!(nodes.len(), 2, "the suite needs a coordinator and one worker: {nodes:?}");
    let home = placement(&**client, &schema).await.unwrap().expect("the tenant's schema is distributed");
    let away = nodes.iter().find(|n| **n != home).unwrap().clone();

    // A node the cluster does not know is refused, naming the ones it does.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["tenants", "move", &subdomain, "--to", "127.0.0.1:1"])
        .env("DATABASE_URL", &url)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not an active primary node") && stderr.contains(&away.to_string()),
        "{stderr}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let server = Arc::new(server);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (server, stop, token, subdomain) =
                (server.clone(), stop.clone(), token.clone(), subdomain.clone());
            tokio::spawn(async move { steady_client(c, &server, &token, &subdomain, &stop).await })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    for target in [&away, &home] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["tenants", "move", &subdomain, "--to", &target.to_string()])
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "error")
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
        assert_eq!(placement(&**client, &schema).await.unwrap().as_ref(), Some(target));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut acknowledged = Vec::new();
    let mut failures = Vec::new();
    for c in clients {
        let (acked, failed) = c.await.unwrap();
        acknowledged.extend(acked);
        failures.extend(failed);
    }
    assert!(failures.is_empty(), "{} failed requests, first: {}", failures.len(), failures[0]);
    assert!(
        acknowledged.len() > CLIENTS,
        "the clients wrote too little to prove anything: {}",
        acknowledged.len()
    );
    // Read from the tenant's table (wherever Citus now routes it), not a page of `projects`.
    let stored: Vec<String> = client
        .query(&format!("select name from {}.projects", schema.quoted()), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<_> = acknowledged.iter().filter(|name| !stored.contains(name)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost: {lost:?}", lost.len(), acknowledged.len());
    eprintln!("{} acknowledged writes, all present; 0 failed requests", acknowledged.len());
}

/// Writes a project, then reads the list, until told to stop. Returns the acknowledged project
/// names and every failed request's answer.
async fn steady_client(
    c: usize,
    server: &ServerProcess,
    token: &str,
    subdomain: &str,
    stop: &AtomicBool,
) -> (Vec<String>, Vec<String>) {
    let (mut acknowledged, mut failures) = (Vec::new(), Vec::new());
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("c{c}-{n}");
        n += 1;
        let (status, body) =
            server.graphql(As::member(token, subdomain), CREATE_PROJECT, json!({ "n": name })).await;
        if failed(status, &body) {
            failures.push(format!("{status} {body}"));
        } else {
            acknowledged.push(name);
        }
        let (status, body) = server.graphql(As::member(token, subdomain), PROJECTS, json!({})).await;
        if failed(status, &body) {
            failures.push(format!("{status} {body}"));
        }
    }
    (acknowledged, failures)
}

fn failed(status: reqwest::StatusCode, body: &Value) -> bool {
    !status.is_success() || body.get("errors").is_some()
}

#[tokio::test]
async fn warm_schemas_are_distributed_schemas_and_a_claimed_one_serves_its_tenant() {
    let Some(url) = citus_url() else { return };
    let _turn = ONE_AT_A_TIME.lock().await;
    let pool = tenantry::db::build_pool(&url, 2).unwrap();
    tenantry::db::migrate::migrate_control(&pool).await.unwrap();
    let set = tenantry::db::migrate::MigrationSet::tenant();
    tenantry::tenancy::warm::refill(&pool, &set, 1, 0).await.unwrap();
    let sub = format!("warm-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let new = tenantry::tenancy::provision::NewTenant {
        name: tenantry::tenancy::model::TenantName::parse("Warm").unwrap(),
        subdomain: tenantry::tenancy::model::Subdomain::parse(&sub).unwrap(),
        owner: None,
    };
    let tenant = tenantry::tenancy::provision::provision(&pool, &set, new).await.unwrap();
    let client = pool.get().await.unwrap();
    let distributed = client
        .query_opt(
            "select 1 from pg_dist_schema where schemaid = $1::text::regnamespace",
            &[&tenant.schema.as_str()],
        )
        .await
        .unwrap();
    assert!(distributed.is_some(), "{} is not a distributed schema", tenant.schema);
    assert!(placement(&**client, &tenant.schema).await.unwrap().is_some());
    let mut tx = tenantry::db::TenantTx::begin(&pool, &tenant.schema).await.unwrap();
    tx.execute("insert into projects (id, name) values (gen_random_uuid(), 'w')", &[]).await.unwrap();
    tx.commit().await.unwrap();
    // It runs as its tenant role on Citus too: `control` is refused by PostgreSQL.
    let mut tx = tenantry::db::TenantTx::begin(&pool, &tenant.schema).await.unwrap();
    let refused = tx.query("select count(*) from control.tenants", &[]).await.unwrap_err();
    let refused = format!("{refused:?}");
    assert!(refused.contains("42501") || refused.contains("permission denied"), "{refused}");
    drop(tx);
    tenantry::tenancy::purge(&pool, &tenant).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_provisioned_with_a_role_made_ahead_is_served_on_the_worker_after_a_move() {
    let Some(url) = citus_url() else { return };
    let _turn = ONE_AT_A_TIME.lock().await;
    let pool = tenantry::db::build_pool(&url, 2).unwrap();
    tenantry::db::migrate::migrate_control(&pool).await.unwrap();
    // A batch of roles made ahead, as the refill job makes them: the tenant takes one of these.
    tenantry::db::tenant_role::make_ahead(&pool, 2, 2).await.unwrap();
    let client = pool.get().await.unwrap();
    let ahead: Vec<uuid::Uuid> = client
        .query("select tenant_id from control.warm_roles", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("tenant_id"))
        .collect();

    let server = ServerProcess::start(&url, &[]).await;
    let (token, subdomain, id) = owner_with_tenant(&server, "ahead").await;
    assert!(ahead.contains(&id), "tenant {id} did not take a role made ahead: {ahead:?}");
    let schema = SchemaName::for_tenant(id);

    // To the coordinator first (nothing to do if it is there), then to the worker: a real move.
    let nodes: Vec<Node> = client
        .query(
            "select nodename, nodeport from pg_dist_node where isactive and noderole = 'primary' order by groupid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Node { host: r.get("nodename"), port: u16::try_from(r.get::<_, i32>("nodeport")).unwrap() })
        .collect();
    let [coordinator, worker] = &nodes[..] else {
        panic!("the suite needs a coordinator and one worker: {nodes:?}")
    };
    for target in [coordinator, worker] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["tenants", "move", &subdomain, "--to", &target.to_string()])
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "error")
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
        assert_eq!(placement(&**client, &schema).await.unwrap().as_ref(), Some(target));
    }

    // The role came to the worker with its batch, able to log in (Citus connects as it).
    let on_worker: String = client
        .query_one(
            "select result from run_command_on_workers(
                 format('select count(*) from pg_roles where rolname = %L and rolcanlogin', $1::text))
              where nodeport = $2",
            &[&schema.as_str(), &i32::from(worker.port)],
        )
        .await
        .unwrap()
        .get("result");
    assert_eq!(on_worker, "1", "{} is not a login role on the worker", schema.as_str());

    // Served: a write and a read through the server.
    let body =
        server.graphql(As::member(&token, &subdomain), CREATE_PROJECT, json!({ "n": "after" })).await.1;
    assert!(body["data"]["createProject"]["id"].is_string(), "{body}");
    let body = server.graphql(As::member(&token, &subdomain), PROJECTS, json!({})).await.1;
    assert_eq!(body["data"]["projects"], json!([{ "name": "after" }]), "{body}");
    // As its role: a statement on its table, routed to the worker, runs as it; `control` is refused.
    let mut tx = tenantry::db::TenantTx::begin(&pool, &schema).await.unwrap();
    let row = tx.query_one("select current_user::text as role from projects limit 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>("role"), schema.as_str());
    let refused = tx.query("select count(*) from control.tenants", &[]).await.unwrap_err();
    let refused = format!("{refused:?}");
    assert!(refused.contains("42501") || refused.contains("permission denied"), "{refused}");
}
