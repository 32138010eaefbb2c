//! Trusted documents (`TRUSTED_DOCUMENTS_FILE`, `documentId`) over HTTP and `/graphql/ws`, and
//! documents that are validated once but still have their variables checked on every request.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tenantry::config::TrustedDocumentsMode as Mode;

use crate::helpers::{As, TestApp, error_code, eventually, scratch_dir, spawn_app_with};
use crate::live::{SUBSCRIBE, Ws};

const PROJECT: &str = "query Project($id: ID!) { project(id: $id) { id name } }";
const PLANS: &str = "query Plans { plans { id } }";
// The helpers' own set-up mutations, so an `only` server can be set up through its API.
const CREATE_TENANT: &str = "mutation($s: String!) { createTenant(name: \"Tenant\", subdomain: $s) { id } }";
const CREATE_PROJECT: &str = "mutation($n: String!) { createProject(name: $n) { id } }";

fn hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn document_id(text: &str) -> String {
    format!("sha256:{}", hex(text))
}

/// A manifest as graphql-codegen's client preset writes it: `{"<sha256 hex>": "<document>"}`.
fn manifest(texts: &[&str]) -> PathBuf {
    let path = scratch_dir().join("persisted-documents.json");
    write_manifest(&path, texts);
    path
}

fn write_manifest(path: &PathBuf, texts: &[&str]) {
    let entries: serde_json::Map<String, Value> = texts.iter().map(|t| (hex(t), json!(t))).collect();
    std::fs::write(path, Value::Object(entries).to_string()).unwrap();
}

async fn serve(mode: Mode, texts: &[&str]) -> TestApp {
    let path = manifest(texts);
    spawn_app_with(move |c| {
        c.trusted_documents_file = Some(path);
        c.trusted_documents = Some(mode);
    })
    .await
}

/// POSTs `body` as it is, as `who`.
async fn post(app: &TestApp, who: As<'_>, body: Value) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("accept", "application/graphql-response+json")
        .json(&body);
    if let Some(token) = who.token {
        req = req.bearer_auth(token);
    }
    if let Some(tenant) = who.tenant {
        req = req.header("x-tenant", tenant);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn an_only_server_answers_manifest_documents_by_id_and_refuses_every_other_document() {
    let app = serve(Mode::Only, &[PROJECT, PLANS, CREATE_TENANT, CREATE_PROJECT]).await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let project = app.create_project(&ann, "acme", "Rocket").await;
    let who = || As::member(&ann, "acme");

    let (status, body) =
        post(&app, who(), json!({ "documentId": document_id(PROJECT), "variables": { "id": project } }))
            .await;
    assert_eq!((status, &body["data"]["project"]["name"]), (200, &json!("Rocket")), "{body}");
    // Apollo's persisted-query extension names the same document.
    let apollo = json!({ "persistedQuery": { "version": 1, "sha256Hash": hex(PROJECT) } });
    let (status, body) =
        post(&app, who(), json!({ "extensions": apollo, "variables": { "id": project } })).await;
    assert_eq!((status, &body["data"]["project"]["name"]), (200, &json!("Rocket")), "{body}");

    // Anything not in the manifest is refused before it runs.
    let (status, body) = post(&app, who(), json!({ "query": "{ projects { id name } }" })).await;
    assert_eq!((status, error_code(&body)), (400, Some("PERSISTED_QUERY_NOT_FOUND")), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("documentId"), "{body}");
    let (status, body) = post(&app, who(), json!({ "documentId": document_id("{ me { id } }") })).await;
    assert_eq!((status, error_code(&body)), (400, Some("PERSISTED_QUERY_NOT_FOUND")), "{body}");
    let (status, body) = app.graphql(who(), "{ projects { id name } }", json!({})).await;
    assert_eq!((status.as_u16(), error_code(&body)), (400, Some("PERSISTED_QUERY_NOT_FOUND")), "{body}");

    // A trusted document still has its variables checked on every request.
    let (status, body) =
        post(&app, who(), json!({ "documentId": document_id(PROJECT), "variables": {} })).await;
    assert_eq!((status, error_code(&body)), (400, Some("VALIDATION")), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "$id", "{body}");
}

#[tokio::test]
async fn a_get_by_document_id_is_answered_with_cache_headers() {
    let app = serve(Mode::Allow, &[PROJECT, PLANS]).await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let project = app.create_project(&ann, "acme", "Rocket").await;
    let get = |query: String, token: Option<&str>| {
        let mut req = app.client.get(format!("{}/graphql?{query}", app.address));
        req = req.header("accept", "application/graphql-response+json").header("x-tenant", "acme");
        if let Some(token) = token {
            req = req.bearer_auth(token.to_owned());
        }
        req.send()
    };
    let variables = url_encode(&json!({ "id": project }).to_string());
    let res =
        get(format!("documentId={}&variables={variables}", document_id(PROJECT)), Some(&ann)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "private, max-age=10");
    assert!(res.headers()["vary"].to_str().unwrap().contains("authorization"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["project"]["name"], "Rocket", "{body}");

    // No credentials: shared caches may keep it.
    let res = get(format!("documentId={}", document_id(PLANS)), None).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.headers()["cache-control"].to_str().unwrap()),
        (200, "public, max-age=60")
    );
    // An answer with errors is not kept; a GET with the document's text gets no cache headers.
    let res = get(format!("documentId={}&variables={variables}", document_id(PROJECT)), None).await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let res = get(format!("query={}", url_encode(PLANS)), None).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("cache-control").is_none());
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn subscriptions_over_the_socket_run_by_document_id_and_only_refuses_other_documents() {
    // `{ __typename }` is the traffic that makes usage updates.
    let app = serve(Mode::Only, &[SUBSCRIBE, CREATE_TENANT, "{ __typename }"]).await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut ws = Ws::connect(&app.address, protocol).await;
        assert_eq!(ws.init(&ann, "acme").await.unwrap()["type"], "connection_ack");
        let kind = if ws.legacy { "start" } else { "subscribe" };
        let other = "subscription { usageUpdated { period } }";
        ws.send(json!({ "id": "a", "type": kind, "payload": { "query": other } })).await;
        // Refused as the operation's only result (then `complete`), before anything runs.
        let refused = ws.next().await.unwrap();
        assert_eq!(refused["id"], "a", "{refused}");
        let code = &refused["payload"]["errors"][0]["extensions"]["code"];
        assert_eq!(code, "PERSISTED_QUERY_NOT_FOUND", "{protocol}: {refused}");
        assert_eq!(refused["payload"]["data"], Value::Null, "{refused}");
        assert_eq!(ws.next().await.unwrap()["type"], "complete");

        ws.send(json!({ "id": "b", "type": kind, "payload": { "documentId": document_id(SUBSCRIBE) } }))
            .await;
        let mut update = None;
        for _ in 0..20 {
            assert_eq!(crate::usage::ping(&app, &app.address, &ann, "acme").await.status(), 200);
            if let Some(message) = ws.next_within(Duration::from_millis(500)).await {
                update = Some(message.unwrap());
                break;
            }
        }
        let update = update.expect("no usage update");
        assert_eq!(update["id"], "b", "{update}");
        assert!(update["payload"]["data"]["usageUpdated"]["metrics"].is_array(), "{protocol}: {update}");
    }
}

#[tokio::test]
async fn a_changed_manifest_is_picked_up_while_serving() {
    let path = manifest(&[PLANS]);
    let file = path.clone();
    let app = spawn_app_with(move |c| c.trusted_documents_file = Some(file)).await;
    let health = "query Health { health { status } }";
    let by_id = json!({ "documentId": document_id(health) });
    let (status, body) = post(&app, As::default(), by_id.clone()).await;
    assert_eq!((status, error_code(&body)), (400, Some("PERSISTED_QUERY_NOT_FOUND")), "{body}");
    // `allow` (the default with a file): other documents run as text meanwhile.
    let (status, _) = app.graphql(As::default(), "{ plans { name } }", json!({})).await;
    assert_eq!(status, 200);

    write_manifest(&path, &[PLANS, health]);
    let (body, _) = eventually(Duration::from_secs(10), || async {
        let (status, body) = post(&app, As::default(), by_id.clone()).await;
        (status == 200).then_some(body)
    })
    .await;
    assert!(body["data"]["health"]["status"].is_string(), "{body}");
    // A broken manifest is not taken: the one in use stays.
    std::fs::write(&path, "{ not json").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = post(&app, As::default(), by_id).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_document_validated_once_still_has_its_variables_checked_every_time() {
    let app = spawn_app_with(|_| {}).await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    // No per-second rate limit in the way.
    app.set_plan("acme", "pro").await;
    let query = "query($p: UsagePeriod!) { usage(period: $p) { period } }";
    for _ in 0..2 {
        let (status, body) = app.graphql(As::member(&ann, "acme"), query, json!({ "p": "DAY" })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["usage"]["period"], "DAY", "{body}");
    }
    // The same text, now validated and cached: bad variables are still refused, naming them.
    for variables in [json!({ "p": "WEEK" }), json!({}), json!({ "p": 3 })] {
        let (status, body) = app.graphql(As::member(&ann, "acme"), query, variables.clone()).await;
        assert_eq!((status.as_u16(), error_code(&body)), (400, Some("VALIDATION")), "{variables}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "$p", "{body}");
    }
    // And a document that never validated is refused every time.
    for _ in 0..2 {
        let (status, body) = app.graphql(As::member(&ann, "acme"), "{ usage { nope } }", json!({})).await;
        assert_eq!((status.as_u16(), error_code(&body)), (400, Some("VALIDATION")), "{body}");
    }
}
