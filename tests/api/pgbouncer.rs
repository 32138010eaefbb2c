//! Behind PgBouncer in transaction pooling mode (`DATABASE_POOLER=transaction`): the
//! mixed-tenant load sees no foreign row and no error, with fewer server connections than
//! clients so transactions keep moving between server connections.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::bench_support::pgbouncer::{self, PgBouncer};
use crate::helpers::{As, TestDb, skip_without};
use crate::process::ServerProcess;

const SIGN_UP: &str = "mutation($e: String!) { signUp(email: $e, password: \"correct horse\", name: \"Owner\") { accessToken } }";
const VERIFY: &str = "mutation($t: String!) { verifyEmail(token: $t) { emailVerified } }";
const CREATE_TENANT: &str = "mutation($s: String!) { createTenant(name: \"Tenant\", subdomain: $s) { id } }";
const CREATE_PROJECT: &str = "mutation($n: String!) { createProject(name: $n) { id name } }";
const PROJECTS: &str = "{ projects { name } }";

async fn owner_of(server: &ServerProcess, tenant: &str) -> String {
    let email = format!("owner@{tenant}.example.com");
    let body = server.graphql(As::default(), SIGN_UP, json!({ "e": email })).await.1;
    let token = body["data"]["signUp"]["accessToken"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned();
    let verification = server.mailed_token(&email, "Confirm your email address").await;
    server.graphql(As::default(), VERIFY, json!({ "t": verification })).await;
    let body = server.graphql(As::user(&token), CREATE_TENANT, json!({ "s": tenant })).await.1;
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
    if skip_without("pgbouncer", pgbouncer::program().as_deref(), pgbouncer::INSTALL) {
        return;
    }
    let db = TestDb::migrated().await;
    let bouncer = PgBouncer::start(&db.url, 3).await.expect("a private PgBouncer");
    let server = ServerProcess::start(
        &bouncer.url(),
        &[("DATABASE_POOLER", "transaction"), ("DATABASE_DIRECT_URL", &db.url), ("DB_POOL_SIZE", "12")],
    )
    .await;
    let tenants = ["pb-one", "pb-two", "pb-three", "pb-four", "pb-five"];
    let mut owners = Vec::new();
    for tenant in tenants {
        owners.push(owner_of(&server, tenant).await);
    }
    // A burst of 300 requests is above the free plan's rate limit: the tenants are on pro (no
    // per-second limit), set before any of their requests loads the plan into a cache.
    let pool = tenantry::db::build_pool(&db.url, 1).unwrap();
    let client = pool.get().await.unwrap();
    client.execute("update control.tenants set plan = 'pro'", &[]).await.unwrap();
    // And tell the server, in case it had cached them already.
    client.query("select pg_notify('tenant_changed', id::text) from control.tenants", &[]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(client);

    // Reads and writes of five tenants interleaved: 12 client connections share 3 servers.
    let requests = (0..300).map(|i| {
        let (tenant, token) = (tenants[i % tenants.len()], owners[i % tenants.len()].clone());
        let server = &server;
        async move {
            let body = if i % 3 == 0 {
                let vars = json!({ "n": format!("{tenant}/{i}") });
                server.graphql(As::member(&token, tenant), CREATE_PROJECT, vars).await.1
            } else {
                server.graphql(As::member(&token, tenant), PROJECTS, json!({})).await.1
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
        let body = server.graphql(As::member(token, tenant), PROJECTS, json!({})).await.1;
        let expected = (0..300).filter(|i| i % 3 == 0 && tenants[i % tenants.len()] == *tenant).count();
        assert_eq!(names(&body).len(), expected, "{tenant}: {body}");
    }
    drop(server);
}
