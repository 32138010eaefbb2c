//! The structured log: one line per request with its ids, and no secrets in it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{As, TestDb, eventually};
use crate::process::ServerProcess;

const SIGN_UP: &str = "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p, name: \"Ann\") { accessToken refreshToken user { id } } }";
const SIGN_IN: &str =
    "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken refreshToken } }";

#[tokio::test]
async fn the_log_of_sign_up_sign_in_reset_and_key_creation_holds_no_secret() {
    let db = TestDb::migrated().await;
    // Debug level everywhere: even a verbose log must not carry a secret.
    let mut server = ServerProcess::start(&db.url, &[("RUST_LOG", "debug")]).await;
    let email = "ann.secretive@example.com";
    let password = "correct horse battery";
    let new_password = "staple gun vortex";

    let signed_up = server.graphql(As::default(), SIGN_UP, json!({ "e": email, "p": password })).await.1;
    let access = signed_up["data"]["signUp"]["accessToken"].as_str().expect("signed up").to_owned();
    let refresh = signed_up["data"]["signUp"]["refreshToken"].as_str().unwrap().to_owned();
    let verify_token = server.mailed_token(email, "Confirm your email address").await;
    let verify = "mutation($t: String!) { verifyEmail(token: $t) { emailVerified } }";
    server.graphql(As::default(), verify, json!({ "t": verify_token })).await;

    let signed_in = server.graphql(As::default(), SIGN_IN, json!({ "e": email, "p": password })).await.1;
    let access2 = signed_in["data"]["signIn"]["accessToken"].as_str().expect("signed in").to_owned();
    let create = "mutation { createTenant(name: \"Acme\", subdomain: \"acme\") { id } }";
    let tenant = server.graphql(As::user(&access2), create, json!({})).await.1;
    let tenant_id = tenant["data"]["createTenant"]["id"].as_str().expect("tenant created").to_owned();
    // API keys need a paid plan; the operator command notifies the server.
    let set_plan = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["tenants", "set-plan", "acme", "pro"])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(set_plan.status.success(), "{}", String::from_utf8_lossy(&set_plan.stderr));
    let create_key = "mutation { createApiKey(name: \"ci\", role: MEMBER) { key } }";
    let (api_key, _) = eventually(Duration::from_secs(10), || async {
        let key = server.graphql(As::member(&access2, "acme"), create_key, json!({})).await.1;
        key["data"]["createApiKey"]["key"].as_str().map(str::to_owned)
    })
    .await;
    let projects = server.graphql(As::user(&api_key), "{ projects { id } }", json!({})).await.1;
    assert!(projects["data"]["projects"].is_array(), "{projects}");

    let request = "mutation($e: String!) { requestPasswordReset(email: $e) }";
    server.graphql(As::default(), request, json!({ "e": email })).await;
    let reset_token = server.mailed_token(email, "Reset your password").await;
    let reset = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }";
    let done = server.graphql(As::default(), reset, json!({ "t": reset_token, "p": new_password })).await.1;
    assert_eq!(done["data"]["resetPassword"], true, "{done}");
    let wrong = server.graphql(As::default(), SIGN_IN, json!({ "e": email, "p": password })).await.1;
    assert!(wrong["errors"].is_array(), "the old password no longer works: {wrong}");

    server.terminate();
    assert!(server.wait().await, "the server exits cleanly on SIGTERM");
    let log = server.log_text();
    for (what, secret) in [
        ("email", email),
        ("email's local part", "ann.secretive"),
        ("password", password),
        ("new password", new_password),
        ("access token", &access),
        ("access token", &access2),
        ("refresh token", &refresh),
        ("verification token", &verify_token),
        ("reset token", &reset_token),
        ("API key", &api_key),
    ] {
        assert!(!log.contains(secret), "the log contains the {what}");
    }

    // …and it does say who did what: the key's request names its tenant and key, not a user.
    let lines = server.log_lines();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    let signed_up_line =
        requests.iter().find(|l| l["span"]["graphql.operation"] == "signUp").expect("a signUp line");
    assert_eq!(signed_up_line["http.status"], 200);
    assert!(signed_up_line["duration_ms"].is_number());
    assert!(signed_up_line["span"]["request.id"].is_string());
    let key_line =
        requests.iter().find(|l| l["span"]["graphql.operation"] == "projects").expect("a projects line");
    assert_eq!(key_line["span"]["tenant.id"], tenant_id.as_str());
    assert!(key_line["span"]["api_key.id"].is_string());
    assert!(key_line["span"].get("user.id").is_none());
}

#[tokio::test]
async fn even_at_trace_level_the_log_holds_no_sql_parameters() {
    let db = TestDb::migrated().await;
    // The most verbose setting there is, naming tokio_postgres's own modules too.
    let rust_log = "trace,tokio_postgres=trace,tokio_postgres::query=trace,postgres=trace";
    let mut server = ServerProcess::start(&db.url, &[("RUST_LOG", rust_log)]).await;
    let email = "zed.parameter@example.com";
    let signed_up =
        server.graphql(As::default(), SIGN_UP, json!({ "e": email, "p": "correct horse battery" })).await.1;
    assert!(signed_up["data"]["signUp"]["accessToken"].is_string(), "{signed_up}");
    server.terminate();
    assert!(server.wait().await);
    let log = server.log_text();
    assert!(log.lines().count() > 10, "a trace-level log was written");
    assert!(!log.contains("zed.parameter"), "the log contains the email");
    assert!(!log.contains("$argon2"), "the log contains the password hash");
}
