//! Usage metering, quotas, rate limits and storage limits, over HTTP against real PostgreSQL.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{As, TestApp, error_code, eventually, scratch_dir, spawn_app, spawn_app_with};
use crate::process::ServerProcess;

const REPORT: &str = "query($p: UsagePeriod!) { usage(period: $p) {
    period plan { id } exceeded metrics { metric value limit exceeded } } }";

/// A cheap tenant request: no resolver touches the database.
pub async fn ping(app: &TestApp, address: &str, token: &str, tenant: &str) -> reqwest::Response {
    app.client
        .post(format!("{address}/graphql"))
        .bearer_auth(token)
        .header("x-tenant", tenant)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("request sent")
}

/// The value of `metric` in a usage report body.
fn metric(body: &Value, metric: &str) -> Value {
    body["data"]["usage"]["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("no usage report in {body}"))
        .iter()
        .find(|m| m["metric"] == metric)
        .cloned()
        .unwrap_or_else(|| panic!("no {metric} in {body}"))
}

/// Sets this month's API request count of a tenant directly, as if earlier flushes had written it.
async fn seed_requests(app: &TestApp, subdomain: &str, count: i64) {
    let tenant = tenantry::tenancy::by_subdomain(&app.pool, subdomain).await.unwrap();
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "insert into control.usage_counters (tenant_id, metric, day, value)
             values ($1, 'api_requests', (now() at time zone 'utc')::date, $2)",
            &[&tenant.id, &count],
        )
        .await
        .unwrap();
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers().get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_across_five_tenants_are_each_counted_once_with_one_write_per_tenant() {
    // Flushed by hand below, so the counts are known exactly when the reports are read.
    let app = spawn_app_with(|c| c.usage_flush_ms = 3_600_000).await;
    let ann = app.sign_up("ann").await;
    let tenants = ["ten1", "ten2", "ten3", "ten4", "ten5"];
    for tenant in tenants {
        app.create_tenant(&ann, tenant).await;
        app.set_plan(tenant, "enterprise").await;
    }
    let statuses: Vec<u16> = futures::stream::iter(0..10_000)
        .map(|i| {
            let (app, ann) = (&app, &ann);
            async move { ping(app, &app.address, ann, tenants[i % 5]).await.status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|&s| s == 200));

    let flushed = app.state.usage.flush(&app.state.pool).await.unwrap();
    assert_eq!(flushed.rows, 5, "one counter row per tenant for the whole flush");
    for tenant in tenants {
        let (_, body) = app.graphql(As::member(&ann, tenant), REPORT, json!({ "p": "MONTH" })).await;
        assert_eq!(metric(&body, "api_requests")["value"], 2_000, "{tenant}: {body}");
        let (_, body) = app.graphql(As::member(&ann, tenant), REPORT, json!({ "p": "DAY" })).await;
        assert_eq!(metric(&body, "api_requests")["value"], 2_000, "{tenant}: {body}");
    }
    let client = app.pool.get().await.unwrap();
    let total: i64 =
        client.query_one("select sum(value)::bigint from control.usage_counters", &[]).await.unwrap().get(0);
    assert_eq!(total, 10_000, "the report queries themselves are not flushed yet");
}

#[tokio::test]
async fn a_free_tenant_past_its_quota_gets_quota_exceeded_with_headers_and_a_pro_tenant_does_not() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "small").await;
    app.create_tenant(&ann, "big").await;
    app.set_plan("big", "pro").await;
    seed_requests(&app, "small", 998).await;
    seed_requests(&app, "big", 998).await;

    let res = ping(&app, &app.address, &ann, "small").await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-ratelimit-limit"), "1000");
    assert_eq!(header(&res, "x-ratelimit-remaining"), "1");
    assert_eq!(ping(&app, &app.address, &ann, "small").await.status(), 200);
    let res = ping(&app, &app.address, &ann, "small").await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "x-ratelimit-limit"), "1000");
    assert_eq!(header(&res, "x-ratelimit-remaining"), "0");
    let reset: u64 = header(&res, "x-ratelimit-reset").parse().unwrap();
    let retry: u64 = header(&res, "retry-after").parse().unwrap();
    assert!(reset > 0 && reset <= 31 * 86_400 && retry == reset, "reset {reset}, retry {retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(error_code(&body), Some("QUOTA_EXCEEDED"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["limit"], 1000);

    let res = ping(&app, &app.address, &ann, "big").await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-ratelimit-limit"), "100000");
    assert_eq!(header(&res, "x-ratelimit-remaining"), "99001");
    // Requests without a tenant (the caller's own account) are not the tenant's to pay for.
    let (status, _) = app.graphql(As::user(&ann), "{ me { id } }", json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn within_one_process_the_quota_admits_exactly_its_limit_under_concurrency() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "small").await;
    seed_requests(&app, "small", 995).await;
    // Five left and a burst of five allowed: 40 concurrent requests get exactly 5 through.
    let statuses: Vec<u16> = futures::future::join_all(
        (0..40).map(|_| async { ping(&app, &app.address, &ann, "small").await.status().as_u16() }),
    )
    .await;
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 5, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200 || s == 429));
    app.state.usage.flush_all(&app.state.pool).await.unwrap();
    let client = app.pool.get().await.unwrap();
    let counted: i64 =
        client.query_one("select sum(value)::bigint from control.usage_counters", &[]).await.unwrap().get(0);
    assert_eq!(counted, 1_000, "refused requests are not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_tenant_above_five_requests_a_second_is_rate_limited_and_an_enterprise_one_never() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "small").await;
    app.create_tenant(&ann, "large").await;
    app.set_plan("large", "enterprise").await;

    let responses = futures::future::join_all((0..20).map(|_| ping(&app, &app.address, &ann, "small"))).await;
    let limited: Vec<_> = responses.iter().filter(|r| r.status() == 429).collect();
    assert!(!limited.is_empty(), "20 requests at once exceed 5 a second");
    let res = limited[0];
    assert_eq!(header(res, "x-ratelimit-limit"), "5");
    assert_eq!(header(res, "x-ratelimit-remaining"), "0");
    assert!(header(res, "retry-after").parse::<u64>().unwrap() >= 1);
    let body: Value = responses.into_iter().find(|r| r.status() == 429).unwrap().json().await.unwrap();
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");

    let statuses = futures::future::join_all(
        (0..200).map(|_| async { ping(&app, &app.address, &ann, "large").await.status().as_u16() }),
    )
    .await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}

/// `free` has unlimited storage here; `tiny` allows one byte.
const TINY_STORAGE: &str = r#"
[plans.free]
name = "Free"
price_cents = 0
[plans.tiny]
name = "Tiny"
price_cents = 1
features = []
[plans.tiny.limits]
max_storage_bytes = 1
"#;

#[tokio::test]
async fn a_tenant_over_its_storage_limit_can_read_and_delete_but_not_add_data() {
    let plans = scratch_dir().join("plans.toml");
    std::fs::write(&plans, TINY_STORAGE).unwrap();
    let app = spawn_app_with(|c| c.plans_file = Some(plans)).await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let id = app.create_project(&ann, "acme", "launch").await;
    app.set_plan("acme", "tiny").await;

    let create = "mutation { createProject(name: \"more\") { id } }";
    let (status, body) = app.graphql(As::member(&ann, "acme"), create, json!({})).await;
    assert_eq!((status.as_u16(), error_code(&body)), (200, Some("PLAN_LIMIT_EXCEEDED")), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["resource"], "storage");
    let (_, body) = app.graphql(As::member(&ann, "acme"), "{ projects { name } }", json!({})).await;
    assert_eq!(body["data"]["projects"][0]["name"], "launch", "{body}");
    let (_, body) = app.graphql(As::member(&ann, "acme"), REPORT, json!({ "p": "MONTH" })).await;
    let storage = metric(&body, "storage");
    assert!(storage["value"].as_i64().unwrap() > 1 && storage["exceeded"] == true, "{body}");
    assert_eq!(body["data"]["usage"]["exceeded"], true);
    let delete = "mutation($id: ID!) { deleteProject(id: $id) }";
    let (_, body) = app.graphql(As::member(&ann, "acme"), delete, json!({ "id": id })).await;
    assert_eq!(body["data"]["deleteProject"], id, "{body}");
}

#[tokio::test]
async fn the_usage_report_gives_each_metric_with_its_limit_and_days_need_advanced_analytics() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    app.invite(&ann, "acme", "bea", "MEMBER").await;
    let (_, body) = app.graphql(As::member(&ann, "acme"), REPORT, json!({ "p": "DAY" })).await;
    assert_eq!(body["data"]["usage"]["period"], "DAY", "{body}");
    assert_eq!(body["data"]["usage"]["plan"]["id"], "free");
    assert_eq!(
        metric(&body, "members"),
        json!({ "metric": "members", "value": 2, "limit": 3, "exceeded": false })
    );
    assert_eq!(metric(&body, "api_requests")["limit"], 1000);
    assert_eq!(metric(&body, "storage")["limit"], json!(1_073_741_824_i64));
    assert_eq!(body["data"]["usage"]["exceeded"], false);

    let days = "{ usage(period: MONTH) { days { day apiRequests } } }";
    let (_, body) = app.graphql(As::member(&ann, "acme"), days, json!({})).await;
    assert_eq!(error_code(&body), Some("FEATURE_NOT_IN_PLAN"), "{body}");
    app.set_plan("acme", "pro").await;
    let (body, _) = eventually(Duration::from_secs(5), || async {
        let (_, body) = app.graphql(As::member(&ann, "acme"), days, json!({})).await;
        let days = body["data"]["usage"]["days"].as_array()?.clone();
        (!days.is_empty()).then_some(days)
    })
    .await;
    assert!(body[0]["apiRequests"].as_i64().unwrap() >= 1, "{body:?}");
    // Someone who is not a member sees nothing.
    let eve = app.sign_up("eve").await;
    let (_, body) = app.graphql(As::member(&eve, "acme"), REPORT, json!({ "p": "DAY" })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_during_load_the_counted_total_equals_the_requests_that_got_a_response() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    app.set_plan("acme", "enterprise").await;
    // A long flush interval: only the shutdown flush can write the counts.
    let server = ServerProcess::replica(&app.db.url, &[("USAGE_FLUSH_MS", "600000")]).await;
    let answered = AtomicI64::new(0);
    // Sixteen clients send until the server stops answering (connection refused or closed).
    let worker = || async {
        loop {
            let sent = app
                .client
                .post(format!("{}/graphql", server.address))
                .bearer_auth(&ann)
                .header("x-tenant", "acme")
                .json(&json!({ "query": "{ __typename }" }))
                .send()
                .await;
            let Ok(res) = sent else { break };
            assert_eq!(res.status(), 200);
            if res.bytes().await.is_err() {
                break;
            }
            answered.fetch_add(1, Ordering::Relaxed);
        }
    };
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    let stop = async {
        eventually(Duration::from_secs(30), || async {
            (answered.load(Ordering::Relaxed) >= 300).then_some(())
        })
        .await;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    };
    tokio::join!(stop, futures::future::join_all((0..16).map(|_| worker())));
    let mut server = server;
    let status = tokio::task::spawn_blocking(move || server.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the server exits cleanly after SIGTERM: {status:?}");
    let client = app.pool.get().await.unwrap();
    let counted: i64 = client
        .query_one("select coalesce(sum(value), 0)::bigint from control.usage_counters", &[])
        .await
        .unwrap()
        .get(0);
    let answered = answered.load(Ordering::Relaxed);
    assert!(answered >= 300);
    assert_eq!(counted, answered, "every answered request counted, nothing else");
}
