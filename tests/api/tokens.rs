//! Access tokens are for this server only and short-lived; introspection is off in production.

use serde_json::json;

use crate::helpers::{As, error_code, spawn_app, spawn_app_with};

fn sign(claims: &serde_json::Value) -> String {
    let secret = crate::helpers::TEST_JWT_SECRET;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn tokens_for_another_issuer_audience_or_with_a_long_life_are_refused() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    let user = app.user_id(&ann).await;
    let now = chrono::Utc::now().timestamp();
    let good =
        json!({ "sub": user, "iss": "http://app.test", "aud": "tenantry", "iat": now, "exp": now + 600 });
    let (_, body) = app.graphql(As::user(&sign(&good)), "{ me { id } }", json!({})).await;
    assert_eq!(body["data"]["me"]["id"], user.as_str(), "a well-formed token works: {body}");
    for (what, change) in [
        ("another issuer", json!({ "iss": "https://elsewhere.test" })),
        ("another audience", json!({ "aud": "billing" })),
        ("a year's life", json!({ "exp": now + 365 * 24 * 3600 })),
        ("no iat", json!({ "iat": null })),
    ] {
        let mut claims = good.clone();
        for (key, value) in change.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        let (_, body) = app.graphql(As::user(&sign(&claims)), "{ me { id } }", json!({})).await;
        assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{what}: {body}");
    }
}

fn in_production(config: &mut tenantry::config::Config) {
    config.app_env = tenantry::config::AppEnv::Production;
    config.master_encryption_key = Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
}

#[tokio::test]
async fn introspection_is_off_in_production_unless_enabled() {
    let query = "{ __schema { queryType { name } } }";
    let production = spawn_app_with(in_production).await;
    let (_, body) = production.graphql(As::default(), query, json!({})).await;
    assert!(body["data"]["__schema"].is_null(), "{body}");
    let enabled = spawn_app_with(|c| {
        in_production(c);
        c.introspection = Some(true);
    })
    .await;
    let (_, body) = enabled.graphql(As::default(), query, json!({})).await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "QueryRoot", "{body}");
    let development = spawn_app().await;
    let (_, body) = development.graphql(As::default(), query, json!({})).await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "QueryRoot", "{body}");
}

#[tokio::test]
async fn field_suggestions_are_given_only_where_introspection_is_on() {
    // `plan` is one letter from `plans`: async-graphql would suggest it.
    let query = "{ plan { id } }";
    let production = spawn_app_with(in_production).await;
    let (_, body) = production.graphql(As::default(), query, json!({})).await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("Unknown field"), "{body}");
    assert!(!message.contains("Did you mean"), "production names no fields: {body}");
    let development = spawn_app().await;
    let (_, body) = development.graphql(As::default(), query, json!({})).await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Did you mean"), "development suggests: {body}");
}

#[tokio::test]
async fn api_app_and_www_hosts_serve_the_control_plane() {
    let app = spawn_app().await;
    for host in ["api.localhost", "app.localhost", "www.localhost", "localhost"] {
        let who = As { host: Some(host.to_owned()), ..As::default() };
        let (status, body) = app.graphql(who, "{ plans { id } }", json!({})).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body["data"]["plans"].is_array(), "{host}: {body}");
    }
}
