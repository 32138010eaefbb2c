//! Health endpoints: detail, liveness, readiness.

use serde_json::{Value, json};

use crate::helpers::{As, spawn_app};

#[tokio::test]
async fn api_health_reports_each_check() {
    let app = spawn_app().await;
    let res = app.get("/api/health").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["checks"]["database"]["status"], "healthy");
    assert!(body["checks"]["database"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(body["checks"]["memory"]["rss_bytes"].as_u64().unwrap() > 0);
    assert_eq!(body["checks"]["tenants"]["total"], 0);
    assert!(body["uptime"].is_u64() && body["version"].is_string(), "{body}");

    let (_, body) = app.graphql(As::default(), "{ health { status version } }", json!({})).await;
    assert_eq!(body["data"]["health"]["status"], "healthy");
}

#[tokio::test]
async fn readyz_turns_503_when_the_database_goes_away() {
    let app = spawn_app().await;
    assert_eq!(app.get("/livez").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);

    let name = app.db.name.clone();
    crate::helpers::drop_database(&name).await;
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/api/health").await.status(), 503);
    assert_eq!(app.get("/livez").await.status(), 200, "liveness must not depend on the database");
}
