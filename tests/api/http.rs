//! GraphQL over HTTP details.

use serde_json::json;

use crate::helpers::{As, error_code, spawn_app};

#[tokio::test]
async fn get_runs_queries_but_refuses_mutations() {
    let app = spawn_app().await;
    let query = app.get("/graphql?query=%7Bhealth%7Bstatus%7D%7D").await;
    assert_eq!(query.status(), 200);
    let body: serde_json::Value = query.json().await.unwrap();
    assert_eq!(body["data"]["health"]["status"], "healthy");

    let mutation = app
        .get("/graphql?query=mutation%7BsignIn(email%3A%22a%40b.io%22%2Cpassword%3A%22x%22)%7BaccessToken%7D%7D")
        .await;
    assert_eq!(mutation.status(), 405);
    assert_eq!(mutation.headers()["allow"], "POST");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let res = app.get("/livez").await;
    assert!(res.headers().contains_key("x-request-id"));
}

async fn post_raw(
    app: &crate::helpers::TestApp,
    content_type: &str,
    body: &str,
) -> (u16, String, serde_json::Value) {
    post_accepting(app, "application/graphql-response+json", content_type, body).await
}

async fn post_accepting(
    app: &crate::helpers::TestApp,
    accept: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, serde_json::Value) {
    let res = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("accept", accept)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let media = res.headers()["content-type"].to_str().unwrap().to_owned();
    (status, media, res.json().await.unwrap())
}

#[tokio::test]
async fn request_errors_are_4xx_with_a_code_and_no_data() {
    let app = spawn_app().await;
    for (content_type, body, status) in [
        ("application/json", r#"{"query":"{ health {"}"#, 400),
        ("application/json", r#"{"query":"{ nope }"}"#, 400),
        ("application/json", "{not json", 400),
        ("text/plain", "{ health { status } }", 415),
    ] {
        let (got, media, json) = post_raw(&app, content_type, body).await;
        assert_eq!(got, status, "{body}: {json}");
        assert_eq!(media, "application/graphql-response+json; charset=utf-8");
        assert_eq!(json["errors"][0]["extensions"]["code"], "VALIDATION", "{body}: {json}");
        assert!(json.get("data").is_none(), "a request error has no data entry: {json}");
    }
}

#[tokio::test]
async fn the_response_type_follows_accept_and_legacy_json_clients_get_200_for_request_errors() {
    let app = spawn_app().await;
    let ok = r#"{"query":"{ __typename }"}"#;
    let invalid = r#"{"query":"{ nope }"}"#;
    for (accept, media, invalid_status) in [
        ("application/graphql-response+json", "application/graphql-response+json", 400),
        ("application/json", "application/json", 200),
        ("*/*", "application/json", 200),
        ("application/graphql-response+json;q=0.5, application/json", "application/json", 200),
    ] {
        let (status, got, json) = post_accepting(&app, accept, "application/json", ok).await;
        assert_eq!((status, got.split(';').next().unwrap()), (200, media), "{accept}: {json}");
        assert_eq!(json["data"]["__typename"], "QueryRoot", "{json}");
        let (status, got, json) = post_accepting(&app, accept, "application/json", invalid).await;
        assert_eq!((status, got.split(';').next().unwrap()), (invalid_status, media), "{accept}: {json}");
        assert_eq!(json["errors"][0]["extensions"]["code"], "VALIDATION", "{json}");
    }
    let (status, _, json) = post_accepting(&app, "text/html", "application/json", ok).await;
    assert_eq!(status, 406, "{json}");
    assert_eq!(json["errors"][0]["extensions"]["code"], "VALIDATION", "{json}");
}

#[tokio::test]
async fn malformed_bodies_are_explained_without_parser_internals() {
    let app = spawn_app().await;
    for (body, says) in [
        ("{not json", "not valid JSON"),
        ("", "empty"),
        ("[]", "batched"),
        (r#"{"qeury":"{ __typename }"}"#, "\"query\""),
        (r#"{"query":"{ __typename }","variables":"x"}"#, "variables"),
    ] {
        let (status, _, json) = post_accepting(&app, "application/json", "application/json", body).await;
        assert_eq!(status, 400, "{body}: {json}");
        let message = json["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
        assert!(!message.contains("untagged") && !message.contains("BatchRequest"), "{message}");
    }
}

#[tokio::test]
async fn nul_bytes_overflows_missing_variables_and_bad_enums_are_validation_errors_naming_the_input() {
    let app = spawn_app().await;
    let sign_up = "mutation($e: String!, $p: String!, $n: String!) { signUp(email: $e, password: $p, name: $n) { accessToken } }";
    let usage = "query($p: UsagePeriod!) { usage(period: $p) { period } }";
    let projects = "query($n: Int) { projects(first: $n) { id } }";
    for (query, variables, field) in [
        (sign_up, json!({ "e": "ann@example.com", "p": "long enough", "n": "A\u{0}nn" }), "$n"),
        (sign_up, json!({ "e": "ann@example.com", "p": "long enough" }), "$n"),
        (usage, json!({ "p": "FORTNIGHT" }), "$p"),
        (projects, json!({ "n": 3_000_000_000_i64 }), "$n"),
        (
            "mutation { signUp(email: \"a\\u0000@b.io\", password: \"long enough\", name: \"Ann\") { accessToken } }",
            json!({}),
            "signUp.email",
        ),
    ] {
        let (status, body) = app.graphql(As::default(), query, variables).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_code(&body), Some("VALIDATION"), "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
        assert!(body.get("data").is_none(), "{body}");
    }
    let (_, users) = app.graphql(As::default(), "{ plans { id } }", json!({})).await;
    assert!(users["data"]["plans"].is_array(), "the server still answers: {users}");
}

#[tokio::test]
async fn a_huge_tenant_name_is_not_echoed_back_whole() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    let name = "N".repeat(200_000);
    let create = "mutation($n: String!) { createTenant(name: $n, subdomain: \"acme\") { id } }";
    let (_, body) = app.graphql(As::user(&ann), create, json!({ "n": name })).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "{}", &body.to_string()[..200]);
    assert!(body.to_string().len() < 2_000, "the answer is {} bytes", body.to_string().len());
}

#[tokio::test]
async fn field_errors_during_execution_are_200_with_the_code() {
    let app = spawn_app().await;
    let (status, _, json) =
        post_raw(&app, "application/json; charset=utf-8", r#"{"query":"{ plans { id } tenant { id } }"}"#)
            .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(json["errors"][0]["path"][0], "tenant");
}
