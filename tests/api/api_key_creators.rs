//! API keys answer to the member who created them: removal revokes them, a demotion revokes
//! those above the new role, and `apiKeys` shows the creator.

use serde_json::{Value, json};

use crate::api_keys::{CREATE_KEY, create_key, key_of};
use crate::helpers::{As, TestApp, error_code, spawn_app};

const KEYS: &str = "{ apiKeys { name role createdBy revokedAt creator { email role } } }";

async fn keys(app: &TestApp, owner: &str) -> Vec<Value> {
    let (_, body) = app.graphql(As::member(owner, "acme"), KEYS, json!({})).await;
    body["data"]["apiKeys"].as_array().unwrap_or_else(|| panic!("{body}")).clone()
}

fn named<'a>(keys: &'a [Value], name: &str) -> &'a Value {
    keys.iter().find(|k| k["name"] == name).unwrap_or_else(|| panic!("no key {name} in {keys:?}"))
}

/// Whether `key` may still invite someone into `acme` (an ADMIN's power).
async fn can_invite(app: &TestApp, key: &str, who: &str) -> Value {
    app.invite(key, "acme", who, "ADMIN").await
}

#[tokio::test]
async fn a_removed_admins_keys_are_refused_and_keys_show_their_creator() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    app.set_plan("acme", "pro").await;
    let dave = app.member_of(&ann, "acme", "dave", "ADMIN").await;
    let dave_id = app.user_id(&dave).await;
    let key = key_of(&create_key(&app, &dave, "acme", "ADMIN").await);
    // A key made by that key is dave's too: it must not outlive him either.
    let (_, body) =
        app.graphql(As::member(&key, "acme"), CREATE_KEY, json!({ "n": "child", "r": "ADMIN" })).await;
    let child = key_of(&body);

    let listed = keys(&app, &ann).await;
    for name in ["ci", "child"] {
        let k = named(&listed, name);
        assert_eq!(k["createdBy"], dave_id.as_str(), "{k}");
        assert_eq!(k["creator"], json!({ "email": "dave@example.com", "role": "ADMIN" }), "{k}");
    }
    let invited = can_invite(&app, &key, "erin").await;
    assert!(invited["data"]["inviteMember"].is_object(), "the key works while dave is an ADMIN: {invited}");

    let remove = "mutation($u: ID!) { removeMember(userId: $u) }";
    let (_, body) = app.graphql(As::member(&ann, "acme"), remove, json!({ "u": dave_id })).await;
    assert_eq!(body["data"]["removeMember"], dave_id.as_str(), "{body}");

    for k in [&key, &child] {
        let refused = can_invite(&app, k, "mallory").await;
        assert_eq!(
            error_code(&refused),
            Some("UNAUTHENTICATED"),
            "a removed admin's key still works: {refused}"
        );
    }
    let listed = keys(&app, &ann).await;
    for name in ["ci", "child"] {
        let k = named(&listed, name);
        assert!(k["revokedAt"].is_string(), "{k}");
        assert_eq!((&k["createdBy"], &k["creator"]), (&json!(dave_id), &Value::Null), "{k}");
    }
    assert!(app.mail_to("mallory@example.com").await.is_empty());
}

#[tokio::test]
async fn a_demotion_revokes_the_keys_above_the_new_role_and_keeps_the_others() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    app.set_plan("acme", "pro").await;
    let dave = app.member_of(&ann, "acme", "dave", "ADMIN").await;
    let admin_key = key_of(&create_key(&app, &dave, "acme", "ADMIN").await);
    let viewer_key = key_of(&create_key(&app, &dave, "acme", "VIEWER").await);
    let owner_key = key_of(&create_key(&app, &ann, "acme", "ADMIN").await);

    let demote = "mutation($u: ID!) { changeMemberRole(userId: $u, role: MEMBER) { role } }";
    let dave_id = app.user_id(&dave).await;
    let (_, body) = app.graphql(As::member(&ann, "acme"), demote, json!({ "u": dave_id })).await;
    assert_eq!(body["data"]["changeMemberRole"]["role"], "MEMBER", "{body}");

    let refused = can_invite(&app, &admin_key, "mallory").await;
    assert_eq!(
        error_code(&refused),
        Some("UNAUTHENTICATED"),
        "an ADMIN key outlived its creator's ADMIN role: {refused}"
    );
    let (_, body) = app.graphql(As::user(&viewer_key), "{ projects { name } }", json!({})).await;
    assert!(body["data"]["projects"].is_array(), "a VIEWER key of a MEMBER keeps working: {body}");
    let invited = can_invite(&app, &owner_key, "erin").await;
    assert!(invited["data"]["inviteMember"].is_object(), "other members' keys are untouched: {invited}");
}
