//! Limits on `/graphql/ws` and subscriptions that end with their credentials, over real sockets
//! against real servers.

use std::time::Duration;

use futures::SinkExt;
use serde_json::json;
use tenantry::tenancy::{self, model::TenantStatus};
use tokio_tungstenite::tungstenite::Message;

use crate::api_keys::{create_key, key_of};
use crate::helpers::{As, TestApp, spawn_app, spawn_app_with};
use crate::live::{SUBSCRIBE, Ws, requests};
use crate::process::ServerProcess;

const WITHIN: Duration = Duration::from_secs(1);

impl Ws {
    /// Starts subscription `id` with `query` (on an initialised socket).
    async fn start(&mut self, id: &str, query: &str) {
        let kind = if self.legacy { "start" } else { "subscribe" };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query } })).await;
    }

    /// The close code the socket ends with, waiting at most `limit`; skips other messages.
    async fn closed_within(&mut self, limit: Duration) -> Option<u16> {
        let closed = async {
            loop {
                if let Err(code) = self.next().await {
                    return code;
                }
            }
        };
        tokio::time::timeout(limit, closed).await.expect("the socket was not closed in time")
    }

    /// Asserts that subscription `id` ends within a second (no traffic needed) with one error
    /// whose code is `code`, then `complete`; updates before the error are passed over.
    async fn ended_within_a_second(&mut self, id: &str, code: &str) {
        let ended = async {
            // An update already on its way when the credential ended may come first.
            let mut message = self.next().await.unwrap();
            while message["payload"]["errors"].is_null() && !message["payload"]["data"].is_null() {
                message = self.next().await.unwrap();
            }
            assert_eq!(message["id"], id, "{message}");
            assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], code, "{message}");
            let complete = self.next().await.unwrap();
            assert_eq!((complete["type"].as_str(), complete["id"].as_str()), (Some("complete"), Some(id)));
        };
        tokio::time::timeout(WITHIN, ended).await.expect("the subscription did not end within a second");
    }
}

/// A server with `ann` owning `acme`, changed by `configure`.
async fn acme(configure: impl FnOnce(&mut tenantry::config::Config)) -> (TestApp, String) {
    let app = spawn_app_with(configure).await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    (app, ann)
}

#[tokio::test]
async fn a_socket_that_sends_no_connection_init_is_closed_with_4408() {
    let (app, _) = acme(|c| c.ws_init_timeout_secs = 1).await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut ws = Ws::connect(&app.address, protocol).await;
        assert_eq!(ws.closed_within(Duration::from_secs(10)).await, Some(4408), "{protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_past_the_limit_gets_an_error_and_the_socket_keeps_working() {
    let (app, ann) = acme(|_| {}).await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut ws = Ws::connect(&app.address, protocol).await;
        assert_eq!(ws.init(&ann, "acme").await.unwrap()["type"], "connection_ack");
        // The default limit: 50 subscriptions a socket.
        for i in 0..51 {
            ws.start(&format!("s{i}"), SUBSCRIBE).await;
        }
        let refused = ws.next().await.unwrap();
        assert_eq!(
            (refused["type"].as_str(), refused["id"].as_str()),
            (Some("error"), Some("s50")),
            "{refused}"
        );
        let error = if ws.legacy { &refused["payload"] } else { &refused["payload"][0] };
        assert_eq!(error["extensions"]["code"], "VALIDATION", "{refused}");
        // The socket still serves: one ended, a new one takes its place and gets updates.
        let stop = if ws.legacy { "stop" } else { "complete" };
        ws.send(json!({ "id": "s0", "type": stop })).await;
        ws.start("again", SUBSCRIBE).await;
        ws.updated(&app, &ann, "acme", "again").await;
    }
}

#[tokio::test]
async fn a_subscription_id_already_running_closes_the_socket_with_4409() {
    let (app, ann) = acme(|_| {}).await;
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(ws.init(&ann, "acme").await.unwrap()["type"], "connection_ack");
    ws.start("1", SUBSCRIBE).await;
    ws.start("1", SUBSCRIBE).await;
    assert_eq!(ws.closed_within(Duration::from_secs(10)).await, Some(4409));
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_the_socket_with_1009() {
    let (app, ann) = acme(|_| {}).await;
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(ws.init(&ann, "acme").await.unwrap()["type"], "connection_ack");
    let padding = " ".repeat(70 * 1024);
    let message = format!(r#"{{"id":"1","type":"subscribe","payload":{{"query":"{SUBSCRIBE}{padding}"}}}}"#);
    ws.socket.send(Message::text(message)).await.unwrap();
    assert_eq!(ws.closed_within(Duration::from_secs(10)).await, Some(1009));
}

#[tokio::test]
async fn sockets_past_the_per_ip_or_per_tenant_limit_are_closed_with_4429() {
    let (app, ann) = acme(|c| {
        c.ws_max_sockets_per_ip = 2;
        c.ws_max_sockets_per_tenant = 1;
    })
    .await;
    let mut first = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(first.init(&ann, "acme").await.unwrap()["type"], "connection_ack");
    // The tenant's one place is taken.
    let mut second = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(second.init(&ann, "acme").await, Err(Some(4429)));
    let mut second = Ws::connect(&app.address, "graphql-transport-ws").await;
    // Two sockets from this address are open: a third is closed at once.
    let mut third = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(third.closed_within(Duration::from_secs(10)).await, Some(4429));
    // Places are given back when sockets close.
    first.socket.close(None).await.unwrap();
    first.closed_within(Duration::from_secs(10)).await;
    second.socket.close(None).await.unwrap();
    second.closed_within(Duration::from_secs(10)).await;
    crate::helpers::eventually(Duration::from_secs(5), || async {
        let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
        (ws.init(&ann, "acme").await.ok()?["type"] == "connection_ack").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_socket_without_subscriptions_is_closed_when_idle() {
    let (app, ann) = acme(|c| c.ws_idle_timeout_secs = 1).await;
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(ws.init(&ann, "acme").await.unwrap()["type"], "connection_ack");
    assert_eq!(ws.closed_within(Duration::from_secs(10)).await, Some(1000));
}

#[tokio::test]
async fn a_socket_is_closed_with_4403_when_its_access_token_expires() {
    let (app, ann) = acme(|_| {}).await;
    let user = app.user_id(&ann).await;
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({ "sub": user, "iss": "http://app.test", "aud": "tenantry", "iat": now, "exp": now + 2 });
    let short = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    ws.subscribe(&short, "acme").await;
    assert_eq!(ws.closed_within(Duration::from_secs(10)).await, Some(4403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_api_key_ends_its_subscriptions_within_a_second() {
    let (app, ann) = acme(|_| {}).await;
    let created = create_key(&app, &ann, "acme", "MEMBER").await;
    let key = key_of(&created);
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    ws.subscribe(&key, "acme").await;
    ws.updated(&app, &ann, "acme", "1").await;
    let revoke = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }";
    let id = created["data"]["createApiKey"]["apiKey"]["id"].clone();
    let (_, body) = app.graphql(As::member(&ann, "acme"), revoke, json!({ "id": id })).await;
    assert!(body["errors"].is_null(), "{body}");
    ws.ended_within_a_second("1", "UNAUTHENTICATED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_tenant_ends_subscriptions_on_another_replica_within_a_second() {
    let (app, ann) = acme(|_| {}).await;
    let other = ServerProcess::replica(&app.db.url, &[]).await;
    let mut ws = Ws::connect(&other.address, "graphql-transport-ws").await;
    ws.subscribe(&ann, "acme").await;
    ws.updated(&app, &ann, "acme", "1").await;
    tenancy::set_status(&app.pool, "acme", TenantStatus::Suspended).await.unwrap();
    ws.ended_within_a_second("1", "TENANT_SUSPENDED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_members_subscription_ends_on_another_replica_within_a_second() {
    let (app, ann) = acme(|_| {}).await;
    let bea = app.member_of(&ann, "acme", "bea", "MEMBER").await;
    let other = ServerProcess::replica(&app.db.url, &[]).await;
    let mut ws = Ws::connect(&other.address, "graphql-ws").await;
    ws.subscribe(&bea, "acme").await;
    ws.updated(&app, &ann, "acme", "1").await;
    let remove = "mutation($u: ID!) { removeMember(userId: $u) }";
    let (_, body) =
        app.graphql(As::member(&ann, "acme"), remove, json!({ "u": app.user_id(&bea).await })).await;
    assert!(body["errors"].is_null(), "{body}");
    ws.ended_within_a_second("1", "FORBIDDEN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_loses_a_feature_ends_only_the_subscriptions_that_need_it() {
    let (app, ann) = acme(|_| {}).await;
    app.set_plan("acme", "enterprise").await;
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(ws.init(&ann, "acme").await.unwrap()["type"], "connection_ack");
    // `days` needs advanced_analytics; the plain report does not.
    ws.start("days", "subscription { usageUpdated { days { day apiRequests } } }").await;
    ws.start("plain", SUBSCRIBE).await;
    ws.updated(&app, &ann, "acme", "days").await;
    app.set_plan("acme", "free").await;
    let ended = async {
        loop {
            let message = ws.next().await.unwrap();
            if message["id"] == "plain" {
                continue;
            }
            assert_eq!(message["id"], "days", "{message}");
            assert_eq!(
                message["payload"]["errors"][0]["extensions"]["code"], "FEATURE_NOT_IN_PLAN",
                "{message}"
            );
            let complete = ws.next().await.unwrap();
            assert_eq!(
                (complete["type"].as_str(), complete["id"].as_str()),
                (Some("complete"), Some("days"))
            );
            return;
        }
    };
    tokio::time::timeout(WITHIN, ended).await.expect("the subscription did not end within a second");
    ws.updated(&app, &ann, "acme", "plain").await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Server memory before, with 5,000 subscriptions on one socket, and after that socket closed
/// (`cargo test --test api socket_memory -- --ignored --nocapture`; figures in docs/BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run by hand"]
async fn socket_memory() {
    let n: usize = std::env::var("SUBSCRIPTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let limit = n.to_string();
    let server = ServerProcess::replica(&app.db.url, &[("WS_MAX_SUBSCRIPTIONS_PER_SOCKET", &limit)]).await;
    let pid = server.child.id();
    let round = |label: &'static str, n: usize| {
        let (app, ann, server) = (&app, &ann, &server);
        async move {
            let mut ws = Ws::connect(&server.address, "graphql-transport-ws").await;
            assert_eq!(ws.init(ann, "acme").await.unwrap()["type"], "connection_ack");
            for i in 0..n {
                let id = format!("s{i}");
                ws.send(json!({ "id": id, "type": "subscribe", "payload": { "query": SUBSCRIBE } })).await;
            }
            // Traffic until every subscription has had an update (so every one has started).
            let mut updated = std::collections::HashSet::new();
            while updated.len() < n {
                requests(app, &app.address, ann, "acme", 1).await;
                while let Some(message) = ws.next_within(Duration::from_secs(1)).await {
                    let message = message.unwrap();
                    if message["type"] == "next" {
                        updated.insert(message["id"].as_str().unwrap().to_owned());
                    }
                }
            }
            let open = rss_kib(pid);
            ws.socket.close(None).await.unwrap();
            while ws.next().await.is_ok() {}
            tokio::time::sleep(Duration::from_secs(3)).await;
            let after = rss_kib(pid);
            println!("{label}: {n} subscriptions open {open} KiB, after close {after} KiB");
            (open, after)
        }
    };
    // Warmed up (connections, caches, threads) by a small socket first.
    round("warm-up", 10).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = rss_kib(pid);
    println!("baseline {baseline} KiB");
    let (open1, after1) = round("round 1", n).await;
    let (open2, after2) = round("round 2", n).await;
    let (open3, after3) = round("round 3", n).await;
    println!(
        "left behind after each round: {} / {} / {} KiB (peaks {} / {} / {})",
        after1 as i64 - baseline as i64,
        after2 as i64 - baseline as i64,
        after3 as i64 - baseline as i64,
        open1,
        open2,
        open3
    );
}
