//! Members, roles and invitations over HTTP.

use serde_json::json;

use crate::helpers::{As, TestApp, error_code, spawn_app};

const CHANGE_ROLE: &str = "mutation($u: ID!, $r: Role!) { changeMemberRole(userId: $u, role: $r) { role } }";
const REMOVE: &str = "mutation($u: ID!) { removeMember(userId: $u) }";

/// An owner with tenant `acme`.
async fn owner(app: &TestApp) -> String {
    let owner = app.sign_up("owner").await;
    app.create_tenant(&owner, "acme").await;
    owner
}

#[tokio::test]
async fn an_admin_cannot_remove_or_demote_the_owner() {
    let app = spawn_app().await;
    let owner = owner(&app).await;
    let admin = app.member_of(&owner, "acme", "admin", "ADMIN").await;
    let owner_id = app.user_id(&owner).await;

    let (_, body) = app.graphql(As::member(&admin, "acme"), REMOVE, json!({ "u": owner_id })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let (_, body) =
        app.graphql(As::member(&admin, "acme"), CHANGE_ROLE, json!({ "u": owner_id, "r": "MEMBER" })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let admin_id = app.user_id(&admin).await;
    let (_, body) =
        app.graphql(As::member(&admin, "acme"), CHANGE_ROLE, json!({ "u": admin_id, "r": "OWNER" })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "an ADMIN cannot make anyone OWNER: {body}");
}

#[tokio::test]
async fn the_last_owner_cannot_be_removed_or_demoted() {
    let app = spawn_app().await;
    let owner = owner(&app).await;
    let owner_id = app.user_id(&owner).await;
    let (_, body) =
        app.graphql(As::member(&owner, "acme"), CHANGE_ROLE, json!({ "u": owner_id, "r": "ADMIN" })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("last OWNER"), "{body}");
    let (_, body) = app.graphql(As::member(&owner, "acme"), REMOVE, json!({ "u": owner_id })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");

    // With a second owner, the first can step down.
    let second = app.member_of(&owner, "acme", "second", "OWNER").await;
    let (_, body) =
        app.graphql(As::member(&second, "acme"), CHANGE_ROLE, json!({ "u": owner_id, "r": "ADMIN" })).await;
    assert_eq!(body["data"]["changeMemberRole"]["role"], "ADMIN", "{body}");
}

#[tokio::test]
async fn a_viewer_cannot_write_tenant_data_and_a_role_change_applies_at_once() {
    let app = spawn_app().await;
    let owner = owner(&app).await;
    let member = app.member_of(&owner, "acme", "member", "MEMBER").await;
    let create = "mutation { createProject(name: \"p\") { id } }";
    let (_, body) = app.graphql(As::member(&member, "acme"), create, json!({})).await;
    assert!(body["data"]["createProject"]["id"].is_string(), "{body}");

    let member_id = app.user_id(&member).await;
    let (_, body) =
        app.graphql(As::member(&owner, "acme"), CHANGE_ROLE, json!({ "u": member_id, "r": "VIEWER" })).await;
    assert_eq!(body["data"]["changeMemberRole"]["role"], "VIEWER", "{body}");
    let (_, body) = app.graphql(As::member(&member, "acme"), create, json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let (_, body) = app.graphql(As::member(&member, "acme"), "{ projects { id } }", json!({})).await;
    assert_eq!(body["data"]["projects"].as_array().map(Vec::len), Some(1), "a viewer still reads: {body}");
}

#[tokio::test]
async fn members_cannot_manage_members_and_a_removed_member_loses_access_at_once() {
    let app = spawn_app().await;
    let owner = owner(&app).await;
    // More requests in a row than the free plan's burst allows: pro has no per-second limit.
    app.set_plan("acme", "pro").await;
    let member = app.member_of(&owner, "acme", "member", "MEMBER").await;
    let other = app.member_of(&owner, "acme", "other", "VIEWER").await;
    let other_id = app.user_id(&other).await;
    let (_, body) = app.graphql(As::member(&member, "acme"), REMOVE, json!({ "u": other_id })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let body = app.invite(&member, "acme", "friend", "VIEWER").await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");

    let (_, body) = app.graphql(As::member(&other, "acme"), "{ members { email role } }", json!({})).await;
    assert_eq!(body["data"]["members"].as_array().map(Vec::len), Some(3), "{body}");
    let (_, body) = app.graphql(As::member(&owner, "acme"), REMOVE, json!({ "u": other_id })).await;
    assert_eq!(body["data"]["removeMember"], other_id, "{body}");
    let (_, body) = app.graphql(As::member(&other, "acme"), "{ members { email } }", json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}

#[tokio::test]
async fn an_invitation_is_mailed_and_accepted_by_the_invited_address_only() {
    let app = spawn_app().await;
    let owner = owner(&app).await;
    let invited = app.invite(&owner, "acme", "bea", "MEMBER").await;
    assert_eq!(invited["data"]["inviteMember"]["email"], "bea@example.com", "{invited}");
    let mail = app.last_mail_to("bea@example.com").await;
    assert!(mail["link"].as_str().unwrap().starts_with("http://app.test/accept-invitation?token="), "{mail}");
    let token = mail["token"].as_str().unwrap();

    let mallory = app.sign_up("mallory").await;
    let body = app.accept(&mallory, token).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("another email"), "{body}");

    let bea = app.sign_up("bea").await;
    let body = app.accept(&bea, token).await;
    assert_eq!(body["data"]["acceptInvitation"], json!({ "subdomain": "acme", "role": "MEMBER" }));
    let body = app.accept(&bea, token).await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "an accepted invitation cannot be reused: {body}");
    let (_, body) = app.graphql(As::user(&bea), "{ myTenants { subdomain role } }", json!({})).await;
    assert_eq!(body["data"]["myTenants"], json!([{ "subdomain": "acme", "role": "MEMBER" }]));
}

#[tokio::test]
async fn expired_and_revoked_invitations_cannot_be_accepted() {
    let app = spawn_app().await;
    let owner = owner(&app).await;
    let bea = app.sign_up("bea").await;
    let cyd = app.sign_up("cyd").await;

    app.invite(&owner, "acme", "bea", "MEMBER").await;
    let client = app.pool.get().await.unwrap();
    client
        .execute("update control.invitations set expires_at = now() - interval '1 hour'", &[])
        .await
        .unwrap();
    let body = app.accept(&bea, app.last_mail_to("bea@example.com").await["token"].as_str().unwrap()).await;
    assert_eq!(error_code(&body), Some("VALIDATION"));
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("expired"), "{body}");

    let invited = app.invite(&owner, "acme", "cyd", "VIEWER").await;
    let id = invited["data"]["inviteMember"]["id"].as_str().unwrap();
    let revoke = "mutation($id: ID!) { revokeInvitation(id: $id) { id } }";
    let (_, body) = app.graphql(As::member(&owner, "acme"), revoke, json!({ "id": id })).await;
    assert_eq!(body["data"]["revokeInvitation"]["id"], id, "{body}");
    let body = app.accept(&cyd, app.last_mail_to("cyd@example.com").await["token"].as_str().unwrap()).await;
    assert_eq!(error_code(&body), Some("VALIDATION"));
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("revoked"), "{body}");
    let body = app.accept(&cyd, "made-up-token").await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
}

#[tokio::test]
async fn resending_an_invitation_kills_the_old_link_and_reinviting_does_not_duplicate() {
    let app = spawn_app().await;
    let owner = owner(&app).await;
    let first = app.invite(&owner, "acme", "bea", "MEMBER").await;
    let again = app.invite(&owner, "acme", "bea", "MEMBER").await;
    assert_eq!(first["data"]["inviteMember"]["id"], again["data"]["inviteMember"]["id"]);
    assert_eq!(
        app.mail_to("bea@example.com").await.len(),
        1,
        "re-inviting a pending address sends nothing new"
    );
    let (_, list) = app.graphql(As::member(&owner, "acme"), "{ invitations { email } }", json!({})).await;
    assert_eq!(list["data"]["invitations"], json!([{ "email": "bea@example.com" }]));

    let old_token = app.last_mail_to("bea@example.com").await["token"].as_str().unwrap().to_owned();
    let resend = "mutation($id: ID!) { resendInvitation(id: $id) { id } }";
    let (_, body) = app
        .graphql(As::member(&owner, "acme"), resend, json!({ "id": first["data"]["inviteMember"]["id"] }))
        .await;
    assert!(body["data"]["resendInvitation"].is_object(), "{body}");
    let new_token = app.last_mail_to("bea@example.com").await["token"].as_str().unwrap().to_owned();
    assert_ne!(old_token, new_token);

    let bea = app.sign_up("bea").await;
    assert_eq!(error_code(&app.accept(&bea, &old_token).await), Some("NOT_FOUND"));
    assert!(app.accept(&bea, &new_token).await["data"]["acceptInvitation"].is_object());
}

#[tokio::test]
async fn an_invitation_beyond_the_plan_seat_limit_is_refused() {
    let app = spawn_app().await;
    let owner = owner(&app).await;
    // Free: 3 seats. The owner holds one; pending invitations hold the rest.
    for name in ["bea", "cyd"] {
        let body = app.invite(&owner, "acme", name, "MEMBER").await;
        assert!(body["data"]["inviteMember"].is_object(), "{body}");
    }
    let body = app.invite(&owner, "acme", "dee", "MEMBER").await;
    assert_eq!(error_code(&body), Some("PLAN_LIMIT_EXCEEDED"), "{body}");
    let ext = &body["errors"][0]["extensions"];
    assert_eq!(
        (ext["resource"].as_str(), ext["limit"].as_i64(), ext["plan"].as_str()),
        (Some("members"), Some(3), Some("free"))
    );
}

#[tokio::test]
async fn a_tenant_downgraded_below_its_seats_keeps_reading_but_cannot_invite() {
    let app = spawn_app().await;
    let owner = owner(&app).await;
    app.set_plan("acme", "pro").await;
    let mut members = Vec::new();
    for name in ["bea", "cyd", "dee"] {
        members.push(app.member_of(&owner, "acme", name, "MEMBER").await);
    }
    app.set_plan("acme", "free").await;

    let body = app.invite(&owner, "acme", "eve", "MEMBER").await;
    assert_eq!(error_code(&body), Some("PLAN_LIMIT_EXCEEDED"), "{body}");
    let (_, body) = app.graphql(As::member(&owner, "acme"), "{ members { email } }", json!({})).await;
    assert_eq!(body["data"]["members"].as_array().map(Vec::len), Some(4), "reads keep working: {body}");
    // Shrinking is allowed, and once under the limit growth is too.
    for token in &members[1..] {
        let id = app.user_id(token).await;
        let (_, body) = app.graphql(As::member(&owner, "acme"), REMOVE, json!({ "u": id })).await;
        assert!(body["data"]["removeMember"].is_string(), "{body}");
    }
    assert!(app.invite(&owner, "acme", "eve", "MEMBER").await["data"]["inviteMember"].is_object());
}
