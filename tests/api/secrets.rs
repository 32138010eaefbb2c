//! Tenant integration secrets: encrypted at rest, write-only over the API, rotated by the CLI.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use tenantry::crypto::Keyring;
use tenantry::secrets::{self, SecretName};

use crate::helpers::{As, error_code, spawn_app_with};

const SET: &str = "mutation($n: String!, $v: String!) { setIntegrationSecret(name: $n, value: $v) { name createdAt updatedAt } }";
const LIST: &str = "{ integrationSecrets { name createdAt updatedAt } }";
const DELETE: &str = "mutation($n: String!) { deleteIntegrationSecret(name: $n) }";

fn key(byte: u8) -> String {
    B64.encode([byte; 32])
}

#[tokio::test]
async fn a_secret_is_stored_encrypted_listed_by_name_only_and_needs_custom_integrations() {
    let app = spawn_app_with(|c| c.master_encryption_key = Some(key(1).into())).await;
    let owner = app.sign_up("ann").await;
    app.create_tenant(&owner, "acme").await;
    let as_owner = || As::member(&owner, "acme");
    let vars = json!({ "n": "slack_token", "v": "xoxb-very-secret-value" });

    let (_, body) = app.graphql(as_owner(), SET, vars.clone()).await;
    assert_eq!(error_code(&body), Some("FEATURE_NOT_IN_PLAN"), "{body}");
    app.set_plan("acme", "enterprise").await;
    let (_, body) = app.graphql(as_owner(), SET, vars).await;
    assert_eq!(body["data"]["setIntegrationSecret"]["name"], "slack_token", "{body}");
    let (_, body) = app.graphql(as_owner(), SET, json!({ "n": "Bad-Name", "v": "x" })).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "{body}");

    let (_, body) = app.graphql(as_owner(), LIST, json!({})).await;
    let listed = body["data"]["integrationSecrets"].as_array().unwrap_or_else(|| panic!("{body}")).clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "slack_token");
    assert!(!body.to_string().contains("xoxb"), "a listing never carries a value");

    let client = app.pool.get().await.unwrap();
    let row = client.query_one("select ciphertext from control.tenant_secrets", &[]).await.unwrap();
    let stored: Vec<u8> = row.get(0);
    assert!(!stored.windows(4).any(|w| w == b"xoxb"), "the value is not stored in clear");

    let tenant = tenantry::tenancy::by_subdomain(&app.pool, "acme").await.unwrap();
    let name = SecretName::parse("slack_token").unwrap();
    let revealed = secrets::reveal(&app.pool, &app.state.keys, tenant.id, &name).await.unwrap();
    assert_eq!(revealed.as_deref(), Some("xoxb-very-secret-value"));

    // A ciphertext moved to another name does not decrypt: it is bound to its row.
    client
        .execute(
            "insert into control.tenant_secrets (tenant_id, name, ciphertext, key_id) select tenant_id, 'copied', ciphertext, key_id from control.tenant_secrets",
            &[],
        )
        .await
        .unwrap();
    let copied = SecretName::parse("copied").unwrap();
    assert!(secrets::reveal(&app.pool, &app.state.keys, tenant.id, &copied).await.is_err());
    // A flipped bit is an error, not a wrong value.
    client.execute("update control.tenant_secrets set ciphertext = set_byte(ciphertext, 30, get_byte(ciphertext, 30) # 1) where name = 'slack_token'", &[]).await.unwrap();
    assert!(secrets::reveal(&app.pool, &app.state.keys, tenant.id, &name).await.is_err());

    let (_, body) = app.graphql(as_owner(), DELETE, json!({ "n": "slack_token" })).await;
    assert_eq!(body["data"]["deleteIntegrationSecret"], true, "{body}");
    let (_, body) = app.graphql(as_owner(), DELETE, json!({ "n": "slack_token" })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
}

#[tokio::test]
async fn a_member_can_neither_set_nor_list_secrets() {
    let app = spawn_app_with(|_| {}).await;
    let owner = app.sign_up("ann").await;
    app.create_tenant(&owner, "acme").await;
    app.set_plan("acme", "enterprise").await;
    let bob = app.member_of(&owner, "acme", "bob", "MEMBER").await;
    let (_, body) = app.graphql(As::member(&bob, "acme"), SET, json!({ "n": "x", "v": "y" })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let (_, body) = app.graphql(As::member(&bob, "acme"), LIST, json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}

fn rotate(db_url: &str, master: &str, old: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["keys", "rotate", "--json", "--batch", "2"])
        .env("DATABASE_URL", db_url)
        .env("MASTER_ENCRYPTION_KEY", master)
        .env("OLD_ENCRYPTION_KEYS", old)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn secrets_under_an_old_key_read_after_rotation_and_rotation_is_resumable() {
    let app = spawn_app_with(|c| c.master_encryption_key = Some(key(1).into())).await;
    let owner = app.sign_up("ann").await;
    app.create_tenant(&owner, "acme").await;
    app.set_plan("acme", "enterprise").await;
    for i in 0..5 {
        let (_, body) = app
            .graphql(
                As::member(&owner, "acme"),
                SET,
                json!({ "n": format!("s{i}"), "v": format!("value {i}") }),
            )
            .await;
        assert!(body["data"]["setIntegrationSecret"].is_object(), "{body}");
    }
    let tenant = tenantry::tenancy::by_subdomain(&app.pool, "acme").await.unwrap();
    let new_only = Keyring::from_base64(&key(2), &[]).unwrap();
    let both = Keyring::from_base64(&key(2), &[key(1).as_str()]).unwrap();
    let s0 = SecretName::parse("s0").unwrap();
    assert_eq!(secrets::reveal(&app.pool, &both, tenant.id, &s0).await.unwrap().as_deref(), Some("value 0"));
    assert!(
        secrets::reveal(&app.pool, &new_only, tenant.id, &s0).await.is_err(),
        "the new key alone cannot read yet"
    );

    let first = rotate(&app.db.url, &key(2), &key(1));
    assert_eq!(first["reencrypted"], 5);
    assert_eq!(first["unreadable"], 0);
    for i in 0..5 {
        let name = SecretName::parse(&format!("s{i}")).unwrap();
        let value = secrets::reveal(&app.pool, &new_only, tenant.id, &name).await.unwrap();
        assert_eq!(value, Some(format!("value {i}")), "readable without the old key after rotation");
    }
    let again = rotate(&app.db.url, &key(2), &key(1));
    assert_eq!(again["reencrypted"], 0, "a second run finds nothing left to do");
}
