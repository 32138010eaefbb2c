//! Bad input gets a clear error with a code, and changes nothing.

use serde_json::json;

use crate::helpers::{As, error_code, spawn_app};

const CREATE: &str = "mutation($n: String!, $s: String!) { createTenant(name: $n, subdomain: $s) { id } }";

#[tokio::test]
async fn a_bad_subdomain_is_a_validation_error_naming_the_rule() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    for bad in ["Acme", "ac", "acme_co", "-acme", "acme.io"] {
        let (_, body) = app.graphql(As::user(&ann), CREATE, json!({ "n": "Acme", "s": bad })).await;
        assert_eq!(error_code(&body), Some("VALIDATION"), "{bad}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "subdomain", "{body}");
    }
}

#[tokio::test]
async fn a_taken_subdomain_is_a_conflict() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    app.create_tenant(&ann, "acme").await;
    let (_, body) = app.graphql(As::user(&bob), CREATE, json!({ "n": "Acme 2", "s": "acme" })).await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("already taken"), "{body}");
    let (_, body) = app.graphql(As::user(&bob), "{ myTenants { id } }", json!({})).await;
    assert_eq!(body["data"]["myTenants"], json!([]), "the failed tenant left something behind");
}

#[tokio::test]
async fn a_too_short_tenant_name_is_a_validation_error() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    let (_, body) = app.graphql(As::user(&ann), CREATE, json!({ "n": "A", "s": "acme" })).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "name");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("2 to 100"), "{body}");
}

#[tokio::test]
async fn creating_a_tenant_needs_a_signed_in_user_who_becomes_its_owner() {
    let app = spawn_app().await;
    let (_, body) = app.graphql(As::default(), CREATE, json!({ "n": "Acme", "s": "acme" })).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");

    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let (_, body) = app.graphql(As::user(&ann), "{ myTenants { subdomain role } }", json!({})).await;
    assert_eq!(body["data"]["myTenants"], json!([{ "subdomain": "acme", "role": "OWNER" }]));
}

#[tokio::test]
async fn sign_up_refuses_a_malformed_email_and_a_short_password() {
    let app = spawn_app().await;
    let sign_up =
        "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p, name: \"N\") { accessToken } }";
    let (_, body) =
        app.graphql(As::default(), sign_up, json!({ "e": "not-an-email", "p": "long enough" })).await;
    assert_eq!(
        (error_code(&body), body["errors"][0]["extensions"]["field"].as_str()),
        (Some("VALIDATION"), Some("email"))
    );
    let (_, body) =
        app.graphql(As::default(), sign_up, json!({ "e": "ann@example.com", "p": "short" })).await;
    assert_eq!(
        (error_code(&body), body["errors"][0]["extensions"]["field"].as_str()),
        (Some("VALIDATION"), Some("password"))
    );
    // A taken email is not refused: see `identity_abuse::sign_up_with_a_taken_address_…`.
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_fail_alike() {
    let app = spawn_app().await;
    app.sign_up("ann").await;
    let sign_in = "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken user { email } } }";
    let (_, wrong) =
        app.graphql(As::default(), sign_in, json!({ "e": "ann@example.com", "p": "wrong password" })).await;
    let (_, unknown) =
        app.graphql(As::default(), sign_in, json!({ "e": "zed@example.com", "p": "wrong password" })).await;
    assert_eq!(error_code(&wrong), Some("UNAUTHENTICATED"));
    assert_eq!(wrong["errors"], unknown["errors"]);

    let (_, ok) =
        app.graphql(As::default(), sign_in, json!({ "e": "Ann@Example.com", "p": "correct horse" })).await;
    assert_eq!(ok["data"]["signIn"]["user"]["email"], "ann@example.com", "{ok}");
    let token = ok["data"]["signIn"]["accessToken"].as_str().unwrap();
    let (_, me) = app.graphql(As::user(token), "{ me { email } }", json!({})).await;
    assert_eq!(me["data"]["me"]["email"], "ann@example.com");
}

#[tokio::test]
async fn bad_project_input_is_refused_with_the_field() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let (_, body) = app
        .graphql(As::member(&ann, "acme"), "mutation { createProject(name: \"  \") { id } }", json!({}))
        .await;
    assert_eq!(
        (error_code(&body), body["errors"][0]["extensions"]["field"].as_str()),
        (Some("VALIDATION"), Some("name"))
    );
    let (_, body) =
        app.graphql(As::member(&ann, "acme"), "{ projects(first: 1000) { id } }", json!({})).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "{body}");
    let (_, body) =
        app.graphql(As::member(&ann, "acme"), "{ project(id: \"not-a-uuid\") { id } }", json!({})).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
}
