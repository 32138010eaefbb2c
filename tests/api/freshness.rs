//! Tenant state is never stale beyond a notification: changes made through one process are
//! refused by another within a second, and a tenant answers as soon as it is created.

use std::time::Duration;

use serde_json::{Value, json};
use tenantry::tenancy::{self, model::TenantStatus};

use crate::helpers::{As, TestApp, error_code, eventually, spawn_app};
use crate::process::ServerProcess;

const PROJECTS: &str = "{ projects { id } }";
const WITHIN: Duration = Duration::from_secs(1);

/// Waits (at most a second) until `ask` answers with the error `code`.
async fn refused_within_a_second<F: Future<Output = (reqwest::StatusCode, Value)>>(
    code: &str,
    ask: impl Fn() -> F,
) {
    eventually(WITHIN, || async { (error_code(&ask().await.1) == Some(code)).then_some(()) }).await;
}

/// A server, a second server process on its database, and an owner `ann` of tenant `acme`.
async fn two_replicas() -> (TestApp, ServerProcess, String) {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let other = ServerProcess::replica(&app.db.url, &[]).await;
    (app, other, ann)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subdomain_queried_before_it_exists_serves_right_after_create_tenant() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    let other = ServerProcess::replica(&app.db.url, &[]).await;
    let tenant_query = "{ tenant { subdomain } }";
    for (status, body) in [
        app.graphql(As::member(&ann, "newco"), tenant_query, json!({})).await,
        other.graphql(As::member(&ann, "newco"), tenant_query, json!({})).await,
    ] {
        assert_eq!((status.as_u16(), error_code(&body)), (404, Some("TENANT_NOT_FOUND")), "{body}");
    }

    app.create_tenant(&ann, "newco").await;
    let (status, body) = app.graphql(As::member(&ann, "newco"), tenant_query, json!({})).await;
    assert_eq!((status.as_u16(), &body["data"]["tenant"]["subdomain"]), (200, &json!("newco")), "{body}");
    eventually(WITHIN, || async {
        let (_, body) = other.graphql(As::member(&ann, "newco"), tenant_query, json!({})).await;
        (body["data"]["tenant"]["subdomain"] == "newco").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_refused_by_another_process_within_a_second() {
    let (app, other, ann) = two_replicas().await;
    let bob = app.member_of(&ann, "acme", "bob", "MEMBER").await;
    let (status, body) = other.graphql(As::member(&bob, "acme"), PROJECTS, json!({})).await;
    assert!(status == 200 && body.get("errors").is_none(), "{body}");

    let bob_id = app.user_id(&bob).await;
    let remove = "mutation($u: ID!) { removeMember(userId: $u) }";
    let (_, body) = app.graphql(As::member(&ann, "acme"), remove, json!({ "u": bob_id })).await;
    assert!(body["data"]["removeMember"].is_string(), "{body}");
    refused_within_a_second("FORBIDDEN", || other.graphql(As::member(&bob, "acme"), PROJECTS, json!({})))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_tenant_is_refused_by_another_process_within_a_second() {
    let (app, other, ann) = two_replicas().await;
    let (status, _) = other.graphql(As::member(&ann, "acme"), PROJECTS, json!({})).await;
    assert_eq!(status, 200);

    tenancy::set_status(&app.pool, "acme", TenantStatus::Suspended).await.unwrap();
    refused_within_a_second("TENANT_SUSPENDED", || {
        other.graphql(As::member(&ann, "acme"), PROJECTS, json!({}))
    })
    .await;
    let (status, _) = other.graphql(As::member(&ann, "acme"), PROJECTS, json!({})).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_api_key_is_refused_by_another_process_within_a_second() {
    let (app, other, ann) = two_replicas().await;
    app.set_plan("acme", "pro").await;
    let create = "mutation { createApiKey(name: \"ci\", role: MEMBER) { key apiKey { id } } }";
    let (_, body) = app.graphql(As::member(&ann, "acme"), create, json!({})).await;
    let key = body["data"]["createApiKey"]["key"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned();
    let id = body["data"]["createApiKey"]["apiKey"]["id"].clone();
    let (status, body) = other.graphql(As::member(&key, "acme"), PROJECTS, json!({})).await;
    assert!(status == 200 && body.get("errors").is_none(), "{body}");

    let revoke = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }";
    let (_, body) = app.graphql(As::member(&ann, "acme"), revoke, json!({ "id": id })).await;
    assert!(body["data"]["revokeApiKey"]["revokedAt"].is_string(), "{body}");
    refused_within_a_second("UNAUTHENTICATED", || {
        other.graphql(As::member(&key, "acme"), PROJECTS, json!({}))
    })
    .await;
}
