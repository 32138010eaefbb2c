//! Plans: the catalog, feature guards, plan changes reaching every process, single-flight loads.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};
use tenantry::plans::{self, PlanCatalog};
use tenantry::tenancy;

use crate::helpers::{As, error_code, eventually, scratch_dir, spawn_app};
use crate::process::ServerProcess;

const SET_DOMAIN: &str =
    "mutation($d: String) { updateTenant(domain: $d) { domain customDomain { domain status } } }";

#[tokio::test]
async fn the_plans_query_returns_the_catalog_with_null_for_unlimited() {
    let app = spawn_app().await;
    let query = "{ plans { id name priceCents currency interval features
                  limits { maxMembers maxStorageBytes maxApiRequests requestsPerSecond } } }";
    let (_, body) = app.graphql(As::default(), query, json!({})).await;
    let plans = body["data"]["plans"].as_array().unwrap_or_else(|| panic!("{body}"));
    let ids: Vec<_> = plans.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["free", "pro", "enterprise"]);
    assert_eq!(plans[0]["limits"]["maxMembers"], 3);
    assert_eq!(plans[1]["priceCents"], 2999);
    assert_eq!(plans[1]["limits"]["maxStorageBytes"], json!(107_374_182_400_i64), "BigInt is a JSON number");
    assert_eq!(
        plans[2]["limits"],
        json!({
            "maxMembers": null, "maxStorageBytes": null, "maxApiRequests": null, "requestsPerSecond": null
        })
    );
    assert!(plans[2]["features"].as_array().unwrap().contains(&json!("sla")));
}

#[tokio::test]
async fn a_custom_domain_needs_a_plan_with_the_feature_to_be_claimed() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    app.create_project(&ann, "acme", "launch").await;

    let (status, body) =
        app.graphql(As::member(&ann, "acme"), SET_DOMAIN, json!({ "d": "app.acme.io" })).await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&body), Some("FEATURE_NOT_IN_PLAN"), "{body}");
    let ext = &body["errors"][0]["extensions"];
    assert_eq!(
        (ext["feature"].as_str(), ext["requiredPlan"].as_str()),
        (Some("custom_domain"), Some("enterprise"))
    );
    // Renaming is not gated.
    let (_, body) = app
        .graphql(
            As::member(&ann, "acme"),
            "mutation { updateTenant(name: \"Acme Ltd\") { name } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["updateTenant"]["name"], "Acme Ltd", "{body}");

    app.set_plan("acme", "enterprise").await;
    let (body, _) = eventually(Duration::from_secs(10), || async {
        let (_, body) =
            app.graphql(As::member(&ann, "acme"), SET_DOMAIN, json!({ "d": "App.Acme.io" })).await;
        body["data"]["updateTenant"].is_object().then_some(body)
    })
    .await;
    // Claimed, not yet proven (routing once proven: `domains::a_claimed_domain_routes_…`).
    let claimed = &body["data"]["updateTenant"]["customDomain"];
    assert_eq!((&claimed["domain"], &claimed["status"]), (&json!("app.acme.io"), &json!("PENDING")));

    // A downgraded tenant keeps its domain but cannot set a new one; it can still remove it.
    app.set_plan("acme", "free").await;
    let (body, _) = eventually(Duration::from_secs(10), || async {
        let (_, body) =
            app.graphql(As::member(&ann, "acme"), SET_DOMAIN, json!({ "d": "new.acme.io" })).await;
        (error_code(&body) == Some("FEATURE_NOT_IN_PLAN")).then_some(body)
    })
    .await;
    assert!(body["data"].is_null());
    let (_, body) = app.graphql(As::member(&ann, "acme"), SET_DOMAIN, json!({ "d": null })).await;
    assert_eq!(body["data"]["updateTenant"]["customDomain"], Value::Null, "{body}");
}

/// A second server process on the same database, killed on drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_made_through_one_process_reaches_another_processs_guards() {
    let a = spawn_app().await;
    let ann = a.sign_up("ann").await;
    a.create_tenant(&ann, "acme").await;
    let b = ServerProcess::replica(&a.db.url, &[]).await;
    let ask_b = || async {
        let res = a
            .client
            .post(format!("{}/graphql", b.address))
            .bearer_auth(&ann)
            .header("x-tenant", "acme")
            .json(&json!({ "query": SET_DOMAIN, "variables": { "d": "app.acme.io" } }))
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()
    };
    // B has now cached the tenant on the free plan.
    assert_eq!(error_code(&ask_b().await), Some("FEATURE_NOT_IN_PLAN"));

    let changed = Instant::now();
    a.set_plan("acme", "enterprise").await;
    // Well inside the 60 s cache TTL: only the notification can explain B noticing.
    let (_, _) = eventually(Duration::from_secs(10), || async {
        ask_b().await["data"]["updateTenant"].is_object().then_some(())
    })
    .await;
    eprintln!("plan change visible in the other process after {:?}", changed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_for_a_cold_tenant_load_its_access_once() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    // Pro has `unlimited_api`: 200 requests at once are not rate limited. Set in SQL, without a
    // notification that could arrive after the caches are cleared and cost a second load.
    let client = app.pool.get().await.unwrap();
    client.execute("update control.tenants set plan = 'pro' where subdomain = 'acme'", &[]).await.unwrap();
    app.state.access.clear();
    app.state.tenants.clear();
    let before = app.state.access.loads();

    let requests =
        (0..200).map(|_| app.graphql(As::member(&ann, "acme"), "{ tenant { plan { id } } }", json!({})));
    let responses = join_all(requests).await;
    assert!(
        responses
            .iter()
            .all(|(status, body)| *status == 200 && body["data"]["tenant"]["plan"]["id"] == "pro")
    );
    assert_eq!(
        app.state.access.loads() - before,
        1,
        "a cold tenant must be loaded once, not once per request"
    );
}

#[test]
fn a_broken_plans_file_stops_start_up_naming_the_file_line_and_problem() {
    let dir = scratch_dir();
    let file = dir.join("plans.toml");
    std::fs::write(&file, "[plans.free]\nname = \"Free\"\nprice_cents = 0\nfeatures = [\"teleport\"]\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("serve")
        .env("PLANS_FILE", &file)
        .env("DATA_DIR", &dir)
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("invalid plans file {}: line 4:", file.display())), "{stderr}");
    assert!(stderr.contains("teleport"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_its_connection_is_killed_and_invalidation_resumes() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    app.graphql(As::member(&ann, "acme"), "{ tenant { id } }", json!({})).await;

    let client = app.pool.get().await.unwrap();
    let killed = client
        .query(
            "select pg_terminate_backend(pid) from pg_stat_activity
             where datname = current_database() and query ilike 'listen %'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "exactly one listener connection per process");

    // Wait for the new LISTEN connection, then change the plan: the running server must notice.
    eventually(Duration::from_secs(10), || async {
        let row = client
            .query_one(
                "select count(*) from pg_stat_activity where datname = current_database() and query ilike 'listen %'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) == 1).then_some(())
    })
    .await;
    let tenant = tenancy::by_subdomain(&app.pool, "acme").await.unwrap();
    plans::change_plan(&app.pool, &PlanCatalog::builtin(), tenant.id, "pro").await.unwrap();
    eventually(Duration::from_secs(10), || async {
        let (_, body) = app.graphql(As::member(&ann, "acme"), "{ tenant { plan { id } } }", json!({})).await;
        (body["data"]["tenant"]["plan"]["id"] == "pro").then_some(())
    })
    .await;
}
