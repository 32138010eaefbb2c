//! Sessions, email verification, password reset and sign-in throttling, over HTTP.

use serde_json::{Value, json};

use crate::helpers::{As, TestApp, error_code, spawn_app};

const REFRESH: &str =
    "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }";
const SIGN_IN: &str =
    "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken refreshToken } }";

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.graphql(As::default(), REFRESH, json!({ "t": token })).await.1
}

fn refresh_token(body: &Value, field: &str) -> String {
    body["data"][field]["refreshToken"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> (reqwest::StatusCode, Value) {
    app.graphql(As::default(), SIGN_IN, json!({ "e": email, "p": password })).await
}

#[tokio::test]
async fn a_refresh_token_gives_a_new_pair_once() {
    let app = spawn_app().await;
    let first = app.sign_up_unverified("ann").await["refreshToken"].as_str().unwrap().to_owned();

    let body = refresh(&app, &first).await;
    let second = refresh_token(&body, "refreshSession");
    assert_ne!(first, second);
    let access = body["data"]["refreshSession"]["accessToken"].as_str().unwrap();
    let (_, me) = app.graphql(As::user(access), "{ me { email } }", json!({})).await;
    assert_eq!(me["data"]["me"]["email"], "ann@example.com");

    let body = refresh(&app, &second).await;
    assert!(body["data"]["refreshSession"].is_object(), "the rotated token keeps working: {body}");
}

#[tokio::test]
async fn a_refresh_token_used_twice_revokes_the_session() {
    let app = spawn_app().await;
    let stolen = app.sign_up_unverified("ann").await["refreshToken"].as_str().unwrap().to_owned();
    let legit = refresh_token(&refresh(&app, &stolen).await, "refreshSession");

    // The thief replays the old token: refused, and the whole session family dies with it.
    let body = refresh(&app, &stolen).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("already used"), "{body}");
    let body = refresh(&app, &legit).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "the newer token must be revoked too: {body}");

    // Other sign-ins are separate families and unaffected.
    let (_, other) = sign_in(&app, "ann@example.com", "correct horse").await;
    let body = refresh(&app, &refresh_token(&other, "signIn")).await;
    assert!(body["data"]["refreshSession"].is_object(), "{body}");
}

#[tokio::test]
async fn signing_out_revokes_the_refresh_token() {
    let app = spawn_app().await;
    let token = app.sign_up_unverified("ann").await["refreshToken"].as_str().unwrap().to_owned();
    let (_, body) = app
        .graphql(As::default(), "mutation($t: String!) { signOut(refreshToken: $t) }", json!({ "t": token }))
        .await;
    assert_eq!(body["data"]["signOut"], true);
    assert_eq!(error_code(&refresh(&app, &token).await), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn changing_the_password_revokes_every_session() {
    let app = spawn_app().await;
    let signed_up = app.sign_up_unverified("ann").await;
    let (_, other_device) = sign_in(&app, "ann@example.com", "correct horse").await;
    let access = signed_up["accessToken"].as_str().unwrap();

    let change = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) { refreshToken } }";
    let (_, body) =
        app.graphql(As::user(access), change, json!({ "c": "wrong one!", "n": "battery staple" })).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "the current password is checked: {body}");
    let (_, body) =
        app.graphql(As::user(access), change, json!({ "c": "correct horse", "n": "battery staple" })).await;
    let fresh = refresh_token(&body, "changePassword");

    for old in
        [signed_up["refreshToken"].as_str().unwrap().to_owned(), refresh_token(&other_device, "signIn")]
    {
        assert_eq!(error_code(&refresh(&app, &old).await), Some("UNAUTHENTICATED"));
    }
    assert!(refresh(&app, &fresh).await["data"]["refreshSession"].is_object());
    assert_eq!(
        error_code(&sign_in(&app, "ann@example.com", "correct horse").await.1),
        Some("UNAUTHENTICATED")
    );
    assert!(sign_in(&app, "ann@example.com", "battery staple").await.1["data"]["signIn"].is_object());
}

#[tokio::test]
async fn creating_a_tenant_needs_a_verified_email_and_the_link_works_once() {
    let app = spawn_app().await;
    let token = app.sign_up_unverified("ann").await["accessToken"].as_str().unwrap().to_owned();
    let create = "mutation { createTenant(name: \"Acme\", subdomain: \"acme\") { id } }";
    let (_, body) = app.graphql(As::user(&token), create, json!({})).await;
    assert_eq!(error_code(&body), Some("EMAIL_NOT_VERIFIED"), "{body}");

    let mail = app.last_mail_to("ann@example.com").await;
    assert!(mail["link"].as_str().unwrap().starts_with("http://app.test/verify-email?token="), "{mail}");
    let verify = "mutation($t: String!) { verifyEmail(token: $t) { emailVerified } }";
    let (_, body) = app.graphql(As::default(), verify, json!({ "t": mail["token"] })).await;
    assert_eq!(body["data"]["verifyEmail"]["emailVerified"], true);
    let (_, body) = app.graphql(As::default(), verify, json!({ "t": mail["token"] })).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("already used"), "{body}");

    let (_, body) = app.graphql(As::user(&token), create, json!({})).await;
    assert!(body["data"]["createTenant"]["id"].is_string(), "{body}");
}

#[tokio::test]
async fn a_password_reset_answers_alike_for_unknown_emails_and_works_once() {
    let app = spawn_app().await;
    let signed_up = app.sign_up_unverified("ann").await;
    let request = "mutation($e: String!) { requestPasswordReset(email: $e) }";
    let (_, known) = app.graphql(As::default(), request, json!({ "e": "ann@example.com" })).await;
    let (_, unknown) = app.graphql(As::default(), request, json!({ "e": "zed@example.com" })).await;
    assert_eq!(known, unknown);

    let mail = app.wait_for_mail("ann@example.com", "Reset your password").await;
    assert!(mail["link"].as_str().is_some_and(|l| l.contains("/reset-password?token=")), "{mail}");
    assert!(app.mail_to("zed@example.com").await.is_empty());

    let reset = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }";
    let (_, body) = app.graphql(As::default(), reset, json!({ "t": mail["token"], "p": "12345678" })).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "a common password is refused: {body}");
    let (_, body) =
        app.graphql(As::default(), reset, json!({ "t": mail["token"], "p": "battery staple" })).await;
    assert_eq!(body["data"]["resetPassword"], true, "{body}");
    let (_, body) =
        app.graphql(As::default(), reset, json!({ "t": mail["token"], "p": "another one!" })).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "a reset link works once: {body}");

    assert_eq!(
        error_code(&refresh(&app, signed_up["refreshToken"].as_str().unwrap()).await),
        Some("UNAUTHENTICATED")
    );
    assert!(sign_in(&app, "ann@example.com", "battery staple").await.1["data"]["signIn"].is_object());
}

#[tokio::test]
async fn an_expired_reset_link_is_refused() {
    let app = spawn_app().await;
    app.sign_up_unverified("ann").await;
    let (_, _) = app
        .graphql(As::default(), "mutation { requestPasswordReset(email: \"ann@example.com\") }", json!({}))
        .await;
    let token = app.wait_for_mail("ann@example.com", "Reset your password").await["token"].clone();
    let client = app.pool.get().await.unwrap();
    client.execute("update control.email_tokens set expires_at = now() - interval '1 minute' where purpose = 'reset_password'", &[]).await.unwrap();
    let reset = "mutation($t: String!) { resetPassword(token: $t, newPassword: \"battery staple\") }";
    let (_, body) = app.graphql(As::default(), reset, json!({ "t": token })).await;
    assert_eq!(error_code(&body), Some("VALIDATION"));
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("expired"), "{body}");
}

#[tokio::test]
async fn an_expired_access_token_is_unauthenticated() {
    let app = spawn_app().await;
    let user_id = app.user_id(app.sign_up_unverified("ann").await["accessToken"].as_str().unwrap()).await;
    let secret = crate::helpers::TEST_JWT_SECRET;
    let claims = json!({
        "sub": user_id, "iss": "http://app.test", "aud": "tenantry", "iat": 1_000_000_000, "exp": 1_000_000_600
    });
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let (_, body) = app.graphql(As::user(&expired), "{ me { id } }", json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("expired"), "{body}");
}

#[tokio::test]
async fn repeated_sign_ins_for_one_email_are_refused_with_429() {
    let app = spawn_app().await;
    app.sign_up_unverified("ann").await;
    for _ in 0..10 {
        let (status, body) = sign_in(&app, "ann@example.com", "wrong password").await;
        assert_eq!((status.as_u16(), error_code(&body)), (200, Some("UNAUTHENTICATED")));
    }
    let (status, body) = sign_in(&app, "ann@example.com", "correct horse").await;
    assert_eq!(status, 429);
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    // Another email is not affected.
    app.sign_up_unverified("bob").await;
    assert!(sign_in(&app, "bob@example.com", "correct horse").await.1["data"]["signIn"].is_object());
}
