//! Enterprise SSO against a real OpenID Provider (tests/oidc-provider): sign-in of new and
//! existing users, every refusal of the ID token and the flow, enforcement, deprovisioning,
//! isolation between tenants' connections, and the provider's key rotation.

use serde_json::json;

use crate::helpers::{As, error_code};
use crate::sso_support::{BETA, COMPLETE, CONFIGURE, World, pair};

const ROLE: &str = "{ tenant { role } }";
const REFRESH: &str =
    "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }";

#[tokio::test]
async fn a_new_user_signs_in_through_the_tenants_provider_and_becomes_a_member() {
    let Some(w) = World::new().await else { return };
    let payload = w.signed_in("alice@example.com", None).await;
    assert_eq!(payload["user"]["email"], "alice@example.com");
    assert_eq!(payload["user"]["emailVerified"], true);
    let token = payload["accessToken"].as_str().unwrap();
    let body = w.app.graphql(As::member(token, "acme"), ROLE, json!({})).await.1;
    assert_eq!(body["data"]["tenant"]["role"], "MEMBER", "{body}");
    // The stored secret never comes back, and the connection shows how to register the client.
    let body = w
        .app
        .graphql(As::member(&w.owner, "acme"), "{ sso { clientId callbackUrl enforced } }", json!({}))
        .await
        .1;
    assert_eq!(body["data"]["sso"]["callbackUrl"], "http://app.test/sso/callback", "{body}");
    assert!(!body.to_string().contains("acme-secret"), "{body}");
}

#[tokio::test]
async fn an_existing_user_signs_in_to_the_same_account() {
    let Some(w) = World::new().await else { return };
    let before = w.app.sign_up("bob").await;
    let id = w.app.user_id(&before).await;
    let payload = w.signed_in("bob@example.com", Some("acme")).await;
    assert_eq!(payload["user"]["id"], id.as_str());
}

/// Signs in as alice with the provider's next ID tokens re-signed (with its own key) with
/// `claims` changed; returns the error code and message the frontend is sent, if any.
async fn tampered(claims: serde_json::Value) -> Option<(Option<String>, String)> {
    let w = World::new().await?;
    w.provider.admin("tamper", json!({ "claims": claims })).await;
    let (fragment, _) = w.sign_in("alice@example.com", None).await;
    Some((pair(&fragment, "error"), pair(&fragment, "message").unwrap_or_default()))
}

#[tokio::test]
async fn an_id_token_re_signed_unchanged_is_accepted() {
    // The refusals below come from the changed claim, not from the re-signing.
    let Some((code, message)) = tampered(json!({})).await else { return };
    assert_eq!(code, None, "{message}");
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    let Some((code, message)) = tampered(json!({ "aud": "someone-else" })).await else { return };
    assert_eq!(code.as_deref(), Some("SSO_TOKEN_INVALID"));
    assert!(message.contains("audience"), "{message}");
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    let Some((code, message)) = tampered(json!({ "exp": -600, "iat": -1200 })).await else { return };
    assert_eq!(code.as_deref(), Some("SSO_TOKEN_INVALID"));
    assert!(message.contains("Expired"), "{message}");
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    let Some((code, message)) = tampered(json!({ "nonce": "not-the-flows-nonce" })).await else { return };
    assert_eq!(code.as_deref(), Some("SSO_TOKEN_INVALID"));
    assert!(message.contains("nonce"), "{message}");
}

#[tokio::test]
async fn a_replayed_state_is_refused() {
    let Some(w) = World::new().await else { return };
    let started = w.start(Some("alice@example.com"), None).await;
    let url = started["data"]["startSsoSignIn"]["authorizationUrl"].as_str().unwrap().to_owned();
    let callback = w.at_provider(&url, "alice@example.com").await;
    let (_, first, _) = w.callback(&callback).await;
    assert!(pair(&first, "code").is_some(), "{first:?}");
    let (status, again, body) = w.callback(&callback).await;
    assert_eq!((status, again.len()), (400, 0));
    assert_eq!(error_code(&body), Some("SSO_STATE_INVALID"), "{body}");
}

#[tokio::test]
async fn only_the_browser_that_started_can_complete_and_only_once() {
    let Some(w) = World::new().await else { return };
    let (fragment, key) = w.sign_in("alice@example.com", None).await;
    let code = pair(&fragment, "code").unwrap();
    let other = w.app.graphql(As::default(), COMPLETE, json!({ "c": code, "k": "another-browser" })).await.1;
    assert_eq!(error_code(&other), Some("SSO_STATE_INVALID"), "{other}");
    let ok = w.app.graphql(As::default(), COMPLETE, json!({ "c": code, "k": key })).await.1;
    assert!(ok["data"]["completeSsoSignIn"]["accessToken"].is_string(), "{ok}");
    let twice = w.app.graphql(As::default(), COMPLETE, json!({ "c": code, "k": key })).await.1;
    assert_eq!(error_code(&twice), Some("SSO_STATE_INVALID"), "{twice}");
}

#[tokio::test]
async fn an_email_the_provider_has_not_verified_is_refused() {
    let Some(w) = World::new().await else { return };
    let (fragment, _) = w.sign_in("mallory@example.com", None).await;
    assert_eq!(pair(&fragment, "error").as_deref(), Some("EMAIL_NOT_VERIFIED"), "{fragment:?}");
}

#[tokio::test]
async fn an_email_domain_the_tenant_has_not_verified_is_refused() {
    let Some(w) = World::new().await else { return };
    let (fragment, _) = w.sign_in("carol@other.test", Some("acme")).await;
    assert_eq!(pair(&fragment, "error").as_deref(), Some("SSO_DOMAIN_NOT_VERIFIED"), "{fragment:?}");
    let client = w.app.pool.get().await.unwrap();
    let row =
        client.query_one("select count(*) from control.users where email = 'carol@other.test'", &[]).await;
    assert_eq!(row.unwrap().get::<_, i64>(0), 0, "no account was created");
}

#[tokio::test]
async fn enforced_sso_refuses_password_sign_in_and_older_api_keys() {
    let Some(w) = World::new().await else { return };
    let key = w
        .app
        .graphql(
            As::member(&w.owner, "acme"),
            "mutation { createApiKey(name: \"ci\", role: MEMBER) { key } }",
            json!({}),
        )
        .await
        .1;
    let key = key["data"]["createApiKey"]["key"].as_str().unwrap().to_owned();
    let sign_in = "mutation { signIn(email: \"owner@example.com\", password: \"correct horse\") { accessToken refreshToken } }";
    let before = w.app.graphql(As::default(), sign_in, json!({})).await.1;
    assert!(before["data"]["signIn"]["accessToken"].is_string(), "{before}");
    let input = json!({ "issuer": w.provider.issuer, "clientId": "acme-client", "domains": ["example.com"], "enforced": true });
    let body = w.app.graphql(As::member(&w.owner, "acme"), CONFIGURE, json!({ "i": input })).await.1;
    assert_eq!(body["data"]["configureSso"]["enforced"], true, "{body}");
    let after = w.app.graphql(As::default(), sign_in, json!({})).await.1;
    assert_eq!(error_code(&after), Some("SSO_REQUIRED"), "{after}");
    let with_key = w.app.graphql(As::user(&key), "{ projects { id } }", json!({})).await.1;
    assert_eq!(error_code(&with_key), Some("UNAUTHENTICATED"), "{with_key}");
    // A password session opened before enforcement cannot be refreshed.
    let refresh = before["data"]["signIn"]["refreshToken"].as_str().unwrap();
    let refreshed = w.app.graphql(As::default(), REFRESH, json!({ "t": refresh })).await.1;
    assert_eq!(error_code(&refreshed), Some("SSO_REQUIRED"), "{refreshed}");
    // SSO itself still signs in.
    w.signed_in("alice@example.com", None).await;
}

#[tokio::test]
async fn a_second_tenants_connection_is_not_usable_for_the_first() {
    let Some(w) = World::new().await else { return };
    let beta_owner = w.app.sign_up("beta-owner").await;
    w.app.create_tenant(&beta_owner, "beta").await;
    w.app.set_plan("beta", "enterprise").await;
    // example.com is acme's: beta cannot claim it.
    let input = json!({ "issuer": w.provider.issuer, "clientId": BETA.0, "clientSecret": BETA.1, "domains": ["example.com"] });
    let taken = w.app.graphql(As::member(&beta_owner, "beta"), CONFIGURE, json!({ "i": input })).await.1;
    assert_eq!(error_code(&taken), Some("CONFLICT"), "{taken}");
    w.connect(&beta_owner, "beta", BETA, "other.test", false).await;
    // A code beta's sign-in obtained, delivered with acme's state, does not sign in to acme.
    let acme = w.start(None, Some("acme")).await;
    let acme_url =
        url::Url::parse(acme["data"]["startSsoSignIn"]["authorizationUrl"].as_str().unwrap()).unwrap();
    let acme_state = acme_url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let beta = w.start(Some("carol@other.test"), None).await;
    let beta_url = beta["data"]["startSsoSignIn"]["authorizationUrl"].as_str().unwrap();
    let callback = w.at_provider(beta_url, "carol@other.test").await;
    let mut swapped = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            (k.clone().into_owned(), if k == "state" { acme_state.clone() } else { v.into_owned() })
        })
        .collect();
    swapped.query_pairs_mut().clear().extend_pairs(pairs);
    let (_, fragment, _) = w.callback(&swapped).await;
    assert_eq!(pair(&fragment, "code"), None, "{fragment:?}");
    assert_eq!(pair(&fragment, "error").as_deref(), Some("SSO_TOKEN_INVALID"), "{fragment:?}");
    // Through beta's own flow carol signs in to beta, and is no member of acme.
    let carol = w.signed_in("carol@other.test", None).await;
    let token = carol["accessToken"].as_str().unwrap();
    let in_beta = w.app.graphql(As::member(token, "beta"), ROLE, json!({})).await.1;
    assert_eq!(in_beta["data"]["tenant"]["role"], "MEMBER", "{in_beta}");
    let in_acme = w.app.graphql(As::member(token, "acme"), ROLE, json!({})).await.1;
    assert_eq!(error_code(&in_acme), Some("FORBIDDEN"), "{in_acme}");
}

#[tokio::test]
async fn a_new_signing_key_at_the_provider_is_used_without_restart() {
    let Some(w) = World::new().await else { return };
    w.signed_in("alice@example.com", None).await;
    w.provider.admin("rotate", json!({})).await;
    let payload = w.signed_in("bob@example.com", None).await;
    assert_eq!(payload["user"]["email"], "bob@example.com");
}

#[tokio::test]
async fn a_user_the_provider_refuses_later_loses_the_session() {
    let Some(w) = World::new().await else { return };
    let payload = w.signed_in("alice@example.com", None).await;
    let refresh = payload["refreshToken"].as_str().unwrap();
    let body = w.app.graphql(As::default(), REFRESH, json!({ "t": refresh })).await.1;
    let refresh = body["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    w.provider.admin("refuse", json!({ "email": "alice@example.com" })).await;
    let body = w.app.graphql(As::default(), REFRESH, json!({ "t": refresh })).await.1;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    let again = w.app.graphql(As::default(), REFRESH, json!({ "t": refresh })).await.1;
    assert_eq!(error_code(&again), Some("UNAUTHENTICATED"), "the session stays ended: {again}");
}

#[tokio::test]
async fn sso_needs_the_plan_feature() {
    let Some(w) = World::new().await else { return };
    w.app.set_plan("acme", "pro").await;
    let body = w.app.graphql(As::member(&w.owner, "acme"), "{ sso { clientId } }", json!({})).await.1;
    assert_eq!(error_code(&body), Some("FEATURE_NOT_IN_PLAN"), "{body}");
    let started = w.start(Some("alice@example.com"), None).await;
    assert_eq!(error_code(&started), Some("FEATURE_NOT_IN_PLAN"), "{started}");
}
