//! Graceful shutdown of the real binary: SIGTERM under load answers every accepted request.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{TestDb, eventually};
use crate::process::ServerProcess;

const SIGN_UP: &str = "mutation($e: String!) { signUp(email: $e, password: \"correct horse\", name: \"Load\") { user { id } } }";
const REQUESTS: usize = 40;

/// `http_requests_in_flight` as the server reports it (the scrape itself is one of them).
async fn in_flight(server: &ServerProcess, client: &reqwest::Client) -> Option<f64> {
    let text = client.get(format!("{}/metrics", server.address)).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("http_requests_in_flight ")).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn sigterm_under_load_answers_every_accepted_request_then_exits() {
    let db = TestDb::migrated().await;
    let mut server = ServerProcess::start(&db.url, &[]).await;
    // A fresh connection per request: no idle keep-alive connection can be closed under a request.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let address = server.address.clone();
    let load = join_all((0..REQUESTS).map(|i| {
        let (client, address) = (client.clone(), address.clone());
        tokio::spawn(async move {
            let body = json!({ "query": SIGN_UP, "variables": { "e": format!("load{i}@example.com") } });
            let res = client.post(format!("{address}/graphql")).json(&body).send().await?;
            Ok::<_, reqwest::Error>((res.status(), res.json::<serde_json::Value>().await?))
        })
    }));
    let load = tokio::spawn(load);
    // Password hashing keeps sign-ups busy: signal while several are being handled.
    eventually(Duration::from_secs(30), || async { in_flight(&server, &client).await.filter(|n| *n >= 5.0) })
        .await;
    server.terminate();

    let answers = load.await.unwrap();
    for answer in answers {
        let (status, body) = answer.unwrap().expect("an accepted request is answered");
        assert_eq!(status, 200, "{body}");
        assert!(body["data"]["signUp"]["user"]["id"].is_string(), "{body}");
    }
    assert!(server.wait().await, "the server exits cleanly");

    let lines = server.log_lines();
    let signalled = lines.iter().position(|l| l["message"] == "shutdown requested; draining requests");
    let signalled = signalled.expect("the shutdown is logged");
    let drained = lines[signalled..].iter().filter(|l| l["message"] == "request").count();
    assert!(drained > 0, "requests in flight at the signal finished after it");
    assert!(lines[signalled..].iter().any(|l| l["message"] == "stopped"));
    let late = client.get(format!("{address}/livez")).send().await;
    assert!(late.is_err_and(|err| err.is_connect()), "no new connection is accepted after shutdown");
}
