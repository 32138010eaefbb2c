//! Request ids, metrics, CORS, security headers, panics and the memory check, in process.

use axum::routing::get;
use serde_json::json;

use crate::helpers::{As, spawn_app, spawn_app_with, spawn_app_with_routes};

#[tokio::test]
async fn a_well_formed_client_request_id_is_echoed_and_a_malformed_one_replaced() {
    let app = spawn_app().await;
    let url = format!("{}/livez", app.address);
    let kept = app.client.get(&url).header("x-request-id", "trace-42.a_b:c").send().await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-42.a_b:c");

    for bad in ["has spaces", "quote\"brace}", &"x".repeat(65)] {
        let replaced = app.client.get(&url).header("x-request-id", bad).send().await.unwrap();
        let id = replaced.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok(), "a fresh id replaces {bad:?}: {id}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_matched_route_and_never_by_raw_path() {
    let app = spawn_app().await;
    let owner = app.sign_up("ann").await;
    app.create_tenant(&owner, "acme").await;
    for _ in 0..2 {
        app.graphql(As::member(&owner, "acme"), "{ projects { id } }", json!({})).await;
    }
    app.graphql(As::default(), "{ nope }", json!({})).await;
    app.get("/livez").await;
    app.get("/no/such/path/12345").await;

    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    for series in [
        r#"http_requests_total{method="GET",route="/livez",status="200"}"#,
        r#"http_requests_total{method="POST",route="/graphql",status="200"}"#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/livez",le="0.005"}"#,
        r#"graphql_operations_total{type="query",outcome="ok"}"#,
        r#"graphql_operations_total{type="mutation",outcome="ok"}"#,
        r#"graphql_errors_total{code="VALIDATION"}"#,
        r#"cache_lookups_total{cache="tenant",result="miss"}"#,
        r#"cache_lookups_total{cache="access",result="hit"}"#,
        r#"tenants{status="active"}"#,
        r#"tenants{status="suspended"}"#,
        "db_pool_connections_max",
        "db_pool_connections_in_use",
        "db_pool_waiting",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(series), "no {series} in\n{text}");
    }
    assert!(!text.contains("12345"), "a raw path became a label");
    assert!(!text.contains(&app.user_id(&owner).await), "a user id became a label");
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_configured() {
    let app = spawn_app_with(|c| c.metrics_token = Some("scrape-secret".into())).await;
    let url = format!("{}/metrics", app.address);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(app.client.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
    let ok = app.client.get(&url).bearer_auth("scrape-secret").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("http_requests_total"));
}

#[tokio::test]
async fn a_panicking_handler_answers_500_with_the_request_id_and_the_server_keeps_serving() {
    let routes = axum::Router::new().route(
        "/boom",
        get(|| async {
            if std::hint::black_box(true) {
                panic!("this handler fails on purpose");
            }
            "unreachable"
        }),
    );
    let app = spawn_app_with_routes(|_| {}, routes).await;
    let res = app
        .client
        .get(format!("{}/boom", app.address))
        .header("x-request-id", "boom-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-request-id"], "boom-1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("boom-1"), "{body}");

    assert_eq!(app.get("/livez").await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"http_requests_total{method="GET",route="/boom",status="500"}"#));
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let app = spawn_app_with(|c| c.cors_origins = vec!["https://app.example.com".into()]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type,x-tenant")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    let methods = allowed.headers()["access-control-allow-methods"].to_str().unwrap().to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let refused = preflight("https://evil.example.net").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    let default_app = spawn_app().await;
    let res = default_app
        .client
        .get(format!("{}/livez", default_app.address))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none(), "no origin is allowed by default");
}

#[tokio::test]
async fn responses_carry_security_headers() {
    let app = spawn_app().await;
    let res = app.get("/api/health").await;
    let headers = res.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert!(headers.contains_key("strict-transport-security"));
}

#[tokio::test]
async fn the_memory_check_turns_unhealthy_past_the_configured_limit() {
    let app = spawn_app_with(|c| c.memory_limit_mb = Some(1)).await;
    let res = app.get("/api/health").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["memory"]["status"], "unhealthy");
    assert_eq!(body["checks"]["memory"]["limit_bytes"], 1024 * 1024);

    let roomy = spawn_app_with(|c| c.memory_limit_mb = Some(1024 * 1024)).await;
    let body: serde_json::Value = roomy.get("/api/health").await.json().await.unwrap();
    assert_eq!(body["checks"]["memory"]["status"], "healthy", "{body}");
}
