//! Tenant isolation over HTTP: members see only their tenant, whatever they send.

use std::time::Duration;

use serde_json::json;
use tenantry::db::TenantTx;
use tenantry::tenancy::{self, model::TenantStatus};

use crate::helpers::{As, TestApp, error_code, eventually, project_names, spawn_app};

const PROJECTS: &str = "{ projects { id name } }";

/// Two tenants, a user in each, two projects in each.
async fn two_tenants(app: &TestApp) -> (String, String) {
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    app.create_tenant(&ann, "alpha").await;
    app.create_tenant(&bob, "bravo").await;
    for (token, tenant) in [(&ann, "alpha"), (&bob, "bravo")] {
        for n in 1..=2 {
            app.create_project(token, tenant, &format!("{tenant} project {n}")).await;
        }
    }
    (ann, bob)
}

#[tokio::test]
async fn each_member_sees_only_their_own_tenants_projects() {
    let app = spawn_app().await;
    let (ann, bob) = two_tenants(&app).await;

    let (status, body) = app.graphql(As::member(&ann, "alpha"), PROJECTS, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(project_names(&body), ["alpha project 1", "alpha project 2"]);

    let (_, body) = app.graphql(As::member(&bob, "bravo"), PROJECTS, json!({})).await;
    assert_eq!(project_names(&body), ["bravo project 1", "bravo project 2"]);
}

#[tokio::test]
async fn a_member_of_tenant_a_naming_tenant_b_in_x_tenant_is_forbidden() {
    let app = spawn_app().await;
    let (ann, _) = two_tenants(&app).await;

    let (_, body) = app.graphql(As::member(&ann, "bravo"), PROJECTS, json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    assert!(body["data"].is_null(), "{body}");

    let (_, body) = app
        .graphql(
            As::member(&ann, "bravo"),
            "mutation { createProject(name: \"intruder\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}

#[tokio::test]
async fn a_member_of_tenant_a_on_tenant_bs_host_is_forbidden() {
    let app = spawn_app().await;
    let (ann, _) = two_tenants(&app).await;
    let on_host = |sub: &str| As { token: Some(&ann), tenant: None, host: Some(format!("{sub}.localhost")) };

    let (_, body) = app.graphql(on_host("alpha"), PROJECTS, json!({})).await;
    assert_eq!(project_names(&body), ["alpha project 1", "alpha project 2"]);

    let (_, body) = app.graphql(on_host("bravo"), PROJECTS, json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}

#[tokio::test]
async fn a_project_id_of_tenant_b_asked_for_under_tenant_a_is_not_found() {
    let app = spawn_app().await;
    let (ann, bob) = two_tenants(&app).await;
    let bravo_project = app.create_project(&bob, "bravo", "secret plans").await;

    let query = "query($id: ID!) { project(id: $id) { name } }";
    let (_, body) = app.graphql(As::member(&bob, "bravo"), query, json!({ "id": bravo_project })).await;
    assert_eq!(body["data"]["project"]["name"], "secret plans");

    let (_, body) = app.graphql(As::member(&ann, "alpha"), query, json!({ "id": bravo_project })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");

    let update = "mutation($id: ID!) { updateProject(id: $id, name: \"pwned\") { id } }";
    let (_, body) = app.graphql(As::member(&ann, "alpha"), update, json!({ "id": bravo_project })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
    let delete = "mutation($id: ID!) { deleteProject(id: $id) }";
    let (_, body) = app.graphql(As::member(&ann, "alpha"), delete, json!({ "id": bravo_project })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");

    let (_, body) = app.graphql(As::member(&bob, "bravo"), query, json!({ "id": bravo_project })).await;
    assert_eq!(body["data"]["project"]["name"], "secret plans", "tenant B's project was changed");
}

#[tokio::test]
async fn tenant_data_without_a_token_is_unauthenticated() {
    let app = spawn_app().await;
    two_tenants(&app).await;
    let anonymous = As { tenant: Some("alpha"), ..As::default() };
    let (_, body) = app.graphql(anonymous, PROJECTS, json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");

    let forged =
        As { token: Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA"), tenant: Some("alpha"), host: None };
    let (_, body) = app.graphql(forged, PROJECTS, json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
}

#[tokio::test]
async fn tenant_data_without_a_tenant_explains_how_to_name_one() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    let (_, body) = app.graphql(As::user(&ann), PROJECTS, json!({})).await;
    assert_eq!(error_code(&body), Some("TENANT_NOT_FOUND"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("X-Tenant"), "{body}");
}

#[tokio::test]
async fn an_unknown_tenant_is_a_404_before_graphql_runs() {
    let app = spawn_app().await;
    let (status, body) =
        app.graphql(As { tenant: Some("nobody"), ..As::default() }, "{ health { status } }", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), Some("TENANT_NOT_FOUND"), "{body}");

    let on_host = As { host: Some("nobody.localhost".into()), ..As::default() };
    let (status, _) = app.graphql(on_host, "{ health { status } }", json!({})).await;
    assert_eq!(status, 404);

    for host in ["localhost", "www.localhost"] {
        let bare = As { host: Some(host.into()), ..As::default() };
        let (status, body) = app.graphql(bare, "{ health { status } }", json!({})).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
}

/// Polls until the server's answer changes: status changes reach the server by NOTIFY.
async fn status_after_change(app: &TestApp, token: &str, expected: u16) -> serde_json::Value {
    eventually(Duration::from_secs(5), || async {
        let (status, body) = app.graphql(As::member(token, "alpha"), PROJECTS, json!({})).await;
        (status == expected).then_some(body)
    })
    .await
    .0
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_with_403_until_resumed() {
    let app = spawn_app().await;
    let (ann, _) = two_tenants(&app).await;
    // Warm the cache, so only the notification can make the server notice.
    app.graphql(As::member(&ann, "alpha"), PROJECTS, json!({})).await;

    tenancy::set_status(&app.pool, "alpha", TenantStatus::Suspended).await.unwrap();
    let body = status_after_change(&app, &ann, 403).await;
    assert_eq!(error_code(&body), Some("TENANT_SUSPENDED"), "{body}");

    tenancy::set_status(&app.pool, "alpha", TenantStatus::Active).await.unwrap();
    let body = status_after_change(&app, &ann, 200).await;
    assert_eq!(project_names(&body).len(), 2);
}

#[tokio::test]
async fn an_expired_tenant_is_refused_with_subscription_expired() {
    let app = spawn_app().await;
    let (ann, _) = two_tenants(&app).await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute(
            "update control.tenants set expires_at = now() - interval '1 day' where subdomain = 'alpha';
             select pg_notify('tenant_changed', 'alpha')",
        )
        .await
        .unwrap();
    let body = status_after_change(&app, &ann, 403).await;
    assert_eq!(error_code(&body), Some("SUBSCRIPTION_EXPIRED"), "{body}");
}

/// Asserts a pooled connection is clean: default search_path and no open transaction.
async fn assert_clean(pool: &deadpool_postgres::Pool) {
    let client = pool.get().await.unwrap();
    let path: String = client.query_one("show search_path", &[]).await.unwrap().get(0);
    assert_eq!(path, "\"$user\", public");
    // Outside a transaction a simple query starts its own, so now() is exactly its start time.
    let rows = client.simple_query("select now() = statement_timestamp()").await.unwrap();
    let fresh = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(fresh.as_deref(), Some("t"), "the connection came back inside a transaction");
}

#[tokio::test]
async fn a_tenant_transaction_sees_only_its_schema_and_leaves_nothing_on_the_connection() {
    let app = spawn_app().await;
    two_tenants(&app).await;
    let alpha = tenancy::by_subdomain(&app.pool, "alpha").await.unwrap();
    // One connection, so every checkout below reuses the tenant transaction's connection.
    let pool = tenantry::db::build_pool(&app.db.url, 1).unwrap();

    let mut tx = TenantTx::begin(&pool, &alpha.schema).await.unwrap();
    let row = tx.query_one("select current_schemas(false)::text[]", &[]).await.unwrap();
    assert_eq!(row.get::<_, Vec<String>>(0), vec![alpha.schema.as_str().to_owned()]);
    let err = tx.query("select * from users", &[]).await.unwrap_err();
    assert_eq!(err.code(), "INTERNAL", "control tables must not resolve inside a tenant");
    drop(tx); // rolled back off the caller's path, before the connection is reused
    assert_clean(&pool).await;

    let mut tx = TenantTx::begin(&pool, &alpha.schema).await.unwrap();
    assert_eq!(tx.query("select * from projects", &[]).await.unwrap().len(), 2);
    tx.commit().await.unwrap();
    assert_clean(&pool).await;
}
