//! Live usage over `GET /graphql/ws`: authentication in `connection_init`, per-tenant delivery,
//! both subprotocols, losing access while subscribed, and delivery across processes.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{TestApp, spawn_app};
use crate::process::ServerProcess;

pub const SUBSCRIBE: &str = "subscription { usageUpdated { period metrics { metric value limit } } }";

/// A websocket GraphQL client.
pub struct Ws {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub legacy: bool,
}

impl Ws {
    pub async fn connect(address: &str, protocol: &str) -> Self {
        let url = format!("{}/graphql/ws", address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", protocol.parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket connect");
        Self { socket, legacy: protocol == "graphql-ws" }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket.send(Message::text(message.to_string())).await.unwrap();
    }

    /// The next GraphQL message, skipping keep-alives; `Err(close code)` when the socket closes.
    pub async fn next(&mut self) -> Result<Value, Option<u16>> {
        while let Some(message) = self.socket.next().await {
            match message {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if !matches!(value["type"].as_str(), Some("ping" | "pong" | "ka")) {
                        return Ok(value);
                    }
                }
                Ok(Message::Close(frame)) => return Err(frame.map(|f| u16::from(f.code))),
                Ok(_) => {}
                Err(_) => return Err(None),
            }
        }
        Err(None)
    }

    /// The next message within `limit` (`None` if none came).
    pub async fn next_within(&mut self, limit: Duration) -> Option<Result<Value, Option<u16>>> {
        tokio::time::timeout(limit, self.next()).await.ok()
    }

    /// `connection_init` with a token and tenant; the server's answer.
    pub async fn init(&mut self, token: &str, tenant: &str) -> Result<Value, Option<u16>> {
        let payload = json!({ "authorization": format!("Bearer {token}"), "tenant": tenant });
        self.send(json!({ "type": "connection_init", "payload": payload })).await;
        self.next().await
    }

    pub async fn subscribe(&mut self, token: &str, tenant: &str) {
        assert_eq!(self.init(token, tenant).await.unwrap()["type"], "connection_ack");
        let kind = if self.legacy { "start" } else { "subscribe" };
        self.send(json!({ "id": "1", "type": kind, "payload": { "query": SUBSCRIBE } })).await;
    }

    /// Waits for an update of subscription `id`, sending one request at a time meanwhile.
    ///
    /// The protocol acknowledges no `subscribe`: until one update arrives, the server may still
    /// be setting the subscription up, and a flush before that reaches nobody. Tests that time
    /// delivery start the clock after this.
    pub async fn updated(&mut self, app: &TestApp, token: &str, tenant: &str, id: &str) -> Value {
        // What arrived instead, for the failure message (bounded).
        let mut other = Vec::new();
        for _ in 0..20 {
            requests(app, &app.address, token, tenant, 1).await;
            while let Some(message) = self.next_within(Duration::from_millis(500)).await {
                let message = message.unwrap();
                if message["id"] == id {
                    match message["type"].as_str() {
                        Some("next" | "data") => return message,
                        // The subscription ended: no update will come.
                        Some("error" | "complete") => {
                            panic!("subscription {id} ended before an update: {message}")
                        }
                        _ => {}
                    }
                }
                if other.len() < 5 {
                    other.push(message);
                }
            }
        }
        panic!("no update for {id} in 20 rounds; other messages: {other:?}");
    }

    /// `updated` for the subscription `subscribe` starts: the `api_requests` it shows.
    pub async fn live(&mut self, app: &TestApp, token: &str, tenant: &str) -> i64 {
        api_requests(&self.updated(app, token, tenant, "1").await)
    }

    /// Reads updates until `api_requests` reaches `n` (traffic may span flushes), within 2 s.
    pub async fn reaches_within_two_seconds(&mut self, n: i64) -> bool {
        let reached = async {
            loop {
                let value = self.next_api_requests().await;
                assert!(value <= n, "counted {value} of {n} requests");
                if value == n {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), reached).await.is_ok()
    }

    /// The `api_requests` value of the next usage update.
    pub async fn next_api_requests(&mut self) -> i64 {
        let message = self.next().await.unwrap();
        let data_type = if self.legacy { "data" } else { "next" };
        assert_eq!(message["type"], data_type, "{message}");
        api_requests(&message)
    }
}

/// The `api_requests` value of a usage update.
fn api_requests(message: &Value) -> i64 {
    let metrics = message["payload"]["data"]["usageUpdated"]["metrics"].as_array().unwrap();
    metrics.iter().find(|m| m["metric"] == "api_requests").unwrap()["value"].as_i64().unwrap()
}

pub async fn requests(app: &TestApp, address: &str, token: &str, tenant: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(crate::usage::ping(app, address, token, tenant).await.status(), 200);
    }
}

/// Waits until this process has written every count it holds.
pub async fn flushed(app: &TestApp) {
    crate::helpers::eventually(Duration::from_secs(5), || async {
        app.state.usage.meter.is_idle().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_gets_its_tenants_updates_within_two_seconds_and_never_another_tenants() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    app.create_tenant(&ann, "globex").await;
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    ws.subscribe(&ann, "acme").await;
    let before = ws.live(&app, &ann, "acme").await;

    requests(&app, &app.address, &ann, "globex", 3).await;
    flushed(&app).await;
    // Several flush intervals (100 ms in tests) pass with globex's totals on the bus.
    assert!(ws.next_within(Duration::from_millis(500)).await.is_none(), "nothing of globex reaches acme");

    requests(&app, &app.address, &ann, "acme", 4).await;
    assert!(ws.reaches_within_two_seconds(before + 4).await, "updates within 2 s of acme's traffic");
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_delivers_updates_too() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let mut ws = Ws::connect(&app.address, "graphql-ws").await;
    ws.subscribe(&ann, "acme").await;
    let before = ws.live(&app, &ann, "acme").await;
    requests(&app, &app.address, &ann, "acme", 2).await;
    assert!(ws.reaches_within_two_seconds(before + 2).await, "updates within 2 s");
}

#[tokio::test]
async fn a_bad_token_closes_the_socket_with_4401_and_a_non_member_with_4403() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(ws.init("not-a-token", "acme").await, Err(Some(4401)));

    let eve = app.sign_up("eve").await;
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(ws.init(&eve, "acme").await, Err(Some(4403)));

    // Queries belong on /graphql, where they are metered.
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    assert_eq!(ws.init(&ann, "acme").await.unwrap()["type"], "connection_ack");
    ws.send(json!({ "id": "q", "type": "subscribe", "payload": { "query": "{ me { id } }" } })).await;
    let answer = ws.next().await.unwrap();
    assert_eq!(answer["payload"]["errors"][0]["extensions"]["code"], "VALIDATION", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_while_subscribed_stops_receiving_updates() {
    let app = spawn_app().await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let bea = app.member_of(&ann, "acme", "bea", "MEMBER").await;
    let mut ws = Ws::connect(&app.address, "graphql-transport-ws").await;
    ws.subscribe(&bea, "acme").await;
    assert!(ws.live(&app, &ann, "acme").await >= 1);

    let bea_id = app.user_id(&bea).await;
    let remove = "mutation($u: ID!) { removeMember(userId: $u) }";
    let (_, body) =
        app.graphql(crate::helpers::As::member(&ann, "acme"), remove, json!({ "u": bea_id })).await;
    assert!(body["errors"].is_null(), "{body}");
    requests(&app, &app.address, &ann, "acme", 1).await;
    // The next update is replaced by an error, and the subscription ends.
    let message = ws.next().await.unwrap();
    assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{message}");
    assert_eq!(ws.next().await.unwrap()["type"], "complete");
    requests(&app, &app.address, &ann, "acme", 1).await;
    flushed(&app).await;
    assert!(ws.next_within(Duration::from_millis(500)).await.is_none(), "nothing after removal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_on_one_process_reaches_a_subscriber_on_another() {
    let a = spawn_app().await;
    let ann = a.sign_up("ann").await;
    a.create_tenant(&ann, "acme").await;
    let b = ServerProcess::replica(&a.db.url, &[("USAGE_FLUSH_MS", "100")]).await;
    let mut ws = Ws::connect(&b.address, "graphql-transport-ws").await;
    ws.subscribe(&ann, "acme").await;
    // Traffic on A until B's subscriber hears of it, then timed.
    let before = ws.live(&a, &ann, "acme").await;
    requests(&a, &a.address, &ann, "acme", 3).await;
    assert!(
        ws.reaches_within_two_seconds(before + 3).await,
        "process A's counts reach process B's subscriber"
    );
}
