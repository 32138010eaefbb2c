//! `GET /playground`: the embedded GraphiQL page and its assets; off when configured off.
//! (The page itself is exercised in headless Chromium by tests/browser.)

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn the_playground_page_and_its_assets_are_served_from_the_binary() {
    let app = spawn_app().await;
    let page = app.get("/playground").await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/playground/playground.js") && html.contains("/playground/playground.css"),
        "{html}"
    );

    let script = app.get("/playground/playground.js").await;
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(script.text().await.unwrap().contains("/graphql/ws"), "subscriptions go to /graphql/ws");
    assert_eq!(app.get("/playground/playground.css").await.status(), 200);
}

#[tokio::test]
async fn a_playground_turned_off_is_not_served() {
    let app = spawn_app_with(|config| config.playground = Some(false)).await;
    assert_eq!(app.get("/playground").await.status(), 404);
    assert_eq!(app.get("/playground/playground.js").await.status(), 404);
    // The API itself is unaffected.
    assert_eq!(app.get("/livez").await.status(), 200);
}
