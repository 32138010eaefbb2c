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

async fn post_raw(
    app: &crate::helpers::TestApp,
    content_type: &str,
    body: &str,
) -> (u16, String, serde_json::Value) {
    let res = app
        .client
        .post(format!("{}/graphql", app.address))
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
        assert_eq!(media, "application/graphql-response+json");
        assert_eq!(json["errors"][0]["extensions"]["code"], "VALIDATION", "{body}: {json}");
        assert!(json.get("data").is_none(), "a request error has no data entry: {json}");
    }
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
