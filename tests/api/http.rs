//! GraphQL over HTTP details.

use crate::helpers::spawn_app;

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
