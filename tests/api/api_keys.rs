//! API keys, the audit log and tenant deletion, over HTTP.

use serde_json::{Value, json};

use crate::helpers::{As, TestApp, error_code, project_names, scratch_dir, spawn_app, spawn_app_with};

pub const CREATE_KEY: &str =
    "mutation($n: String!, $r: Role!) { createApiKey(name: $n, role: $r) { key apiKey { id prefix role } } }";

/// Owner tokens of `acme` (pro, so it has `api_access`) and `globex` (pro), with a project each.
async fn two_pro_tenants(app: &TestApp) -> (String, String) {
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    for (token, tenant) in [(&ann, "acme"), (&bob, "globex")] {
        app.create_tenant(token, tenant).await;
        app.set_plan(tenant, "pro").await;
        app.create_project(token, tenant, &format!("{tenant} plans")).await;
    }
    (ann, bob)
}

pub async fn create_key(app: &TestApp, owner: &str, tenant: &str, role: &str) -> Value {
    let (_, body) = app.graphql(As::member(owner, tenant), CREATE_KEY, json!({ "n": "ci", "r": role })).await;
    body
}

pub fn key_of(body: &Value) -> String {
    body["data"]["createApiKey"]["key"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned()
}

#[tokio::test]
async fn an_api_key_is_shown_once_and_acts_as_a_member_of_its_tenant() {
    let app = spawn_app().await;
    let (ann, _) = two_pro_tenants(&app).await;
    let body = create_key(&app, &ann, "acme", "MEMBER").await;
    let key = key_of(&body);
    assert!(
        key.starts_with(&format!(
            "tk_{}_",
            body["data"]["createApiKey"]["apiKey"]["prefix"].as_str().unwrap()
        ))
    );

    // The key names its tenant by itself, or with the matching header.
    let (_, body) = app.graphql(As::user(&key), "{ projects { name } }", json!({})).await;
    assert_eq!(project_names(&body), ["acme plans"]);
    let (_, body) = app
        .graphql(
            As::member(&key, "acme"),
            "mutation { createProject(name: \"by key\") { createdBy } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["createProject"]["createdBy"], Value::Null, "{body}");

    let (_, body) =
        app.graphql(As::member(&ann, "acme"), "{ apiKeys { name prefix role lastUsedAt } }", json!({})).await;
    let listed = &body["data"]["apiKeys"][0];
    assert_eq!((listed["name"].as_str(), listed["role"].as_str()), (Some("ci"), Some("MEMBER")), "{body}");
    assert!(!body.to_string().contains(&key), "the secret is never listed");
    // User-only operations are not for keys.
    let (_, body) = app.graphql(As::user(&key), "{ me { id } }", json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}

#[tokio::test]
async fn an_api_key_of_tenant_a_cannot_read_tenant_b() {
    let app = spawn_app().await;
    let (ann, _) = two_pro_tenants(&app).await;
    let key = key_of(&create_key(&app, &ann, "acme", "ADMIN").await);
    let (_, body) = app.graphql(As::member(&key, "globex"), "{ projects { name } }", json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let on_host = As { token: Some(&key), tenant: None, host: Some("globex.localhost".into()) };
    let (_, body) = app.graphql(on_host, "{ projects { name } }", json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}

#[tokio::test]
async fn a_revoked_or_forged_api_key_is_refused_and_a_viewer_key_cannot_write() {
    let app = spawn_app().await;
    let (ann, _) = two_pro_tenants(&app).await;
    let viewer = key_of(&create_key(&app, &ann, "acme", "VIEWER").await);
    let (_, body) =
        app.graphql(As::user(&viewer), "mutation { createProject(name: \"x\") { id } }", json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");

    let body = create_key(&app, &ann, "acme", "MEMBER").await;
    let (key, id) = (key_of(&body), body["data"]["createApiKey"]["apiKey"]["id"].clone());
    let forged = format!("{}x", &key[..key.len() - 1]);
    let (_, body) = app.graphql(As::user(&forged), "{ projects { name } }", json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");

    let revoke = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }";
    let (_, body) = app.graphql(As::member(&ann, "acme"), revoke, json!({ "id": id })).await;
    assert!(body["data"]["revokeApiKey"]["revokedAt"].is_string(), "{body}");
    let (_, body) = app.graphql(As::user(&key), "{ projects { name } }", json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
}

/// A catalog whose free plan lacks `api_access` (the shipped free plan has it).
const NO_API_FREE: &str = r#"
[plans.free]
name = "Free"
price_cents = 0
features = []
[plans.pro]
name = "Pro"
price_cents = 2999
features = ["api_access"]
"#;

#[tokio::test]
async fn api_keys_need_a_plan_with_api_access_and_an_owner_key_is_refused() {
    let plans = scratch_dir().join("plans.toml");
    std::fs::write(&plans, NO_API_FREE).unwrap();
    let app = spawn_app_with(|c| c.plans_file = Some(plans)).await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let body = create_key(&app, &ann, "acme", "MEMBER").await;
    assert_eq!(error_code(&body), Some("FEATURE_NOT_IN_PLAN"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["feature"], "api_access");

    app.set_plan("acme", "pro").await;
    assert_eq!(error_code(&create_key(&app, &ann, "acme", "OWNER").await), Some("VALIDATION"));
    let key = key_of(&create_key(&app, &ann, "acme", "MEMBER").await);
    // After a downgrade the key stops working rather than outliving the feature.
    app.set_plan("acme", "free").await;
    let (_, body) = app.graphql(As::user(&key), "{ projects { name } }", json!({})).await;
    assert_eq!(error_code(&body), Some("FEATURE_NOT_IN_PLAN"), "{body}");
}

#[tokio::test]
async fn a_free_tenant_can_create_an_api_key() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    app.create_project(&ann, "acme", "launch").await;
    let key = key_of(&create_key(&app, &ann, "acme", "MEMBER").await);
    let (_, body) = app.graphql(As::user(&key), "{ projects { name } }", json!({})).await;
    assert_eq!(project_names(&body), ["launch"]);
}

#[tokio::test]
async fn changes_are_in_the_audit_log_for_owners_and_admins_only() {
    let app = spawn_app().await;
    let (ann, _) = two_pro_tenants(&app).await;
    let member = app.member_of(&ann, "acme", "mo", "MEMBER").await;
    let member_id = app.user_id(&member).await;
    let change = "mutation($u: ID!) { changeMemberRole(userId: $u, role: VIEWER) { role } }";
    app.graphql(As::member(&ann, "acme"), change, json!({ "u": member_id })).await;
    create_key(&app, &ann, "acme", "MEMBER").await;
    app.graphql(
        As::member(&ann, "acme"),
        "mutation { updateTenant(name: \"Acme Ltd\") { name } }",
        json!({}),
    )
    .await;

    let page = "query($after: String) { auditLog(first: 2, after: $after) { entries { action actorKind targetId } nextCursor } }";
    let mut actions = Vec::new();
    let mut after = Value::Null;
    loop {
        let (_, body) = app.graphql(As::member(&ann, "acme"), page, json!({ "after": after })).await;
        let log = &body["data"]["auditLog"];
        actions.extend(
            log["entries"]
                .as_array()
                .unwrap_or_else(|| panic!("{body}"))
                .iter()
                .map(|e| e["action"].as_str().unwrap().to_owned()),
        );
        if log["nextCursor"].is_null() {
            break;
        }
        after = log["nextCursor"].clone();
    }
    assert_eq!(
        actions,
        ["tenant.updated", "api_key.created", "member.role_changed", "member.added", "invitation.sent"]
    );

    let (_, body) = app.graphql(As::member(&member, "acme"), page, json!({ "after": null })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}

#[tokio::test]
async fn the_owner_deletes_a_tenant_and_it_is_gone_for_everyone_at_once() {
    let app = spawn_app().await;
    let (ann, _) = two_pro_tenants(&app).await;
    let admin = app.member_of(&ann, "acme", "ada", "ADMIN").await;
    let delete = "mutation { deleteTenant }";
    let (_, body) = app.graphql(As::member(&admin, "acme"), delete, json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "only the OWNER deletes: {body}");

    let (_, body) = app.graphql(As::member(&ann, "acme"), delete, json!({})).await;
    assert!(body["data"]["deleteTenant"].is_string(), "{body}");
    let (status, body) = app.graphql(As::member(&admin, "acme"), "{ projects { name } }", json!({})).await;
    assert_eq!((status.as_u16(), error_code(&body)), (404, Some("TENANT_NOT_FOUND")));
    let (_, body) = app.graphql(As::user(&ann), "{ myTenants { subdomain } }", json!({})).await;
    assert_eq!(body["data"]["myTenants"], json!([]), "{body}");
}
