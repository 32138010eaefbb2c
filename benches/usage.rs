//! Usage benchmarks (`cargo bench --bench usage -- ratio|fanout`), against `PGURL`
//! (default postgres://postgres@127.0.0.1:5432) in a database of their own, dropped afterwards.
//!
//! - `ratio`: requests/s with metering and rate limiting on ÷ off, alternating rounds in one run
//!   and one server, and counter rows written per flush.
//! - `fanout`: 10,000 `usageUpdated` subscribers over 1,000 tenants on one server process (flush
//!   every `FLUSH_MS`, default 5 s, so one request per tenant lands in one flush): delivery
//!   delay after a flush (p50/p99/max) and the server's RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tenantry::app::Application;
use tenantry::db::build_pool;
use tenantry::db::migrate::MigrationSet;
use tenantry::tenancy::model::{Subdomain, TenantName};
use tenantry::tenancy::provision::{NewTenant, provision_with_id};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

const SECRET: &str = "bench-secret-that-is-long-enough-for-hs256";
/// Every limit applies but none is reached: the whole metering path runs on each request.
const PLANS: &str = r#"
[plans.free]
name = "Free"
price_cents = 0
[plans.metered]
name = "Metered"
price_cents = 1
[plans.metered.limits]
max_api_requests = 1_000_000_000
requests_per_second = 1_000_000
"#;

#[path = "support/scratch.rs"]
mod scratch;
#[path = "support/settings.rs"]
mod settings;

use scratch::{admin, pg_url};

/// A fresh database with the control schema, `tenants` tenants owned by one user, on `plan`.
async fn setup(db: &str, tenants: usize, plan: &str) -> anyhow::Result<(Uuid, Vec<String>)> {
    admin(&format!("drop database if exists {db} with (force)")).await?;
    admin(&format!("create database {db}")).await?;
    let pool = build_pool(&pg_url(db), 8)?;
    tenantry::db::migrate::migrate_control(&pool).await?;
    let user = Uuid::new_v4();
    pool.get()
        .await?
        .execute(
            "insert into control.users (id, email, name, password_hash, email_verified_at)
             values ($1, 'bench@example.com', 'Bench', '!', now())",
            &[&user],
        )
        .await?;
    let migrations = MigrationSet::tenant();
    let subdomains: Vec<String> = (0..tenants).map(|i| format!("usage-{i:04}")).collect();
    futures::stream::iter(&subdomains)
        .map(|sub| {
            let (pool, migrations) = (&pool, &migrations);
            async move {
                let new = NewTenant {
                    name: TenantName::parse(sub).map_err(|e| e.into_anyhow())?,
                    subdomain: Subdomain::parse(sub).map_err(|e| e.into_anyhow())?,
                    owner: Some(user),
                };
                provision_with_id(pool, migrations, Uuid::new_v4(), new).await.map_err(|e| e.into_anyhow())
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    pool.get().await?.execute("update control.tenants set plan = $1", &[&plan]).await?;
    Ok((user, subdomains))
}

async fn ratio() -> anyhow::Result<()> {
    let db = "tenantry_bench_usage_ratio";
    let (user, tenants) = setup(db, 20, "metered").await?;
    let plans = std::env::temp_dir().join("tenantry-bench-usage-plans.toml");
    std::fs::write(&plans, PLANS)?;
    let mut config =
        settings::test_config(Some(&pg_url(db)), &std::env::temp_dir().join("tenantry-bench-usage"));
    config.plans_file = Some(plans);
    config.usage_flush_ms = 1000;
    config.jwt_secret = Some(SECRET.into());
    let app = Application::build(config).await?;
    let address = format!("http://127.0.0.1:{}/graphql", app.port());
    let state = app.state().clone();
    let server = tokio::spawn(app.run_until(futures::future::pending()));
    let token = state.tokens.issue(user).map_err(|e| e.into_anyhow())?;
    let client = reqwest::Client::new();
    let round = |seconds: u64| {
        let (client, address, token, tenants) = (&client, &address, &token, &tenants);
        async move {
            let done = AtomicU64::new(0);
            let until = Instant::now() + Duration::from_secs(seconds);
            futures::future::join_all((0..32).map(|w| {
                let done = &done;
                async move {
                    let mut i = w;
                    while Instant::now() < until {
                        let res = client
                            .post(address)
                            .bearer_auth(token)
                            .header("x-tenant", &tenants[i % tenants.len()])
                            .json(&json!({ "query": "{ __typename }" }))
                            .send()
                            .await
                            .expect("request");
                        assert_eq!(res.status(), 200);
                        res.bytes().await.expect("body");
                        done.fetch_add(1, Ordering::Relaxed);
                        i += 32;
                    }
                }
            }))
            .await;
            done.load(Ordering::Relaxed) as f64 / seconds as f64
        }
    };
    let seconds = std::env::var("DURATION").ok().and_then(|d| d.parse().ok()).unwrap_or(5);
    round(2).await; // warm-up: connections, caches, prepared statements
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        state.usage.set_metering(true);
        on.push(round(seconds).await);
        state.usage.set_metering(false);
        off.push(round(seconds).await);
    }
    state.usage.set_metering(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pool = build_pool(&pg_url(db), 2)?;
    let client = pool.get().await?;
    let flushes: i64 = client.query_one("select count(*) from control.usage_flushes", &[]).await?.get(0);
    let writes: i64 = client
        .query_one(
            "select (n_tup_ins + n_tup_upd)::bigint from pg_stat_user_tables
             where schemaname = 'control' and relname = 'usage_counters'",
            &[],
        )
        .await?
        .get(0);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!("rounds of {seconds} s, 32 clients, 20 tenants, `{{ __typename }}`");
    println!("metering on  req/s: {on:.0?} mean {:.0}", mean(&on));
    println!("metering off req/s: {off:.0?} mean {:.0}", mean(&off));
    println!("on / off: {:.3}", mean(&on) / mean(&off));
    println!(
        "flushes: {flushes}, counter rows written: {writes} ({:.1} per flush, 20 tenants active)",
        writes as f64 / flushes.max(1) as f64
    );
    server.abort();
    drop(client);
    drop(pool);
    admin(&format!("drop database if exists {db} with (force)")).await
}

async fn fanout() -> anyhow::Result<()> {
    let db = "tenantry_bench_usage_fanout";
    let tenants_n = env_or("TENANTS", 1000);
    let subscribers = env_or("SUBSCRIBERS", 10_000);
    let flush_ms = env_or("FLUSH_MS", 5_000);
    let (user, tenants) = setup(db, tenants_n, "enterprise").await?;
    let token =
        tenantry::auth::token::TokenKeys::new(SECRET.as_bytes()).issue(user).map_err(|e| e.into_anyhow())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("serve")
        .env("DATABASE_URL", pg_url(db))
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", std::env::temp_dir().join("tenantry-bench-fanout"))
        .env("JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        // Long enough that the traffic below is counted in one flush (it takes well under a
        // second), so the spread of deliveries is that of one flush's fan-out.
        .env("USAGE_FLUSH_MS", flush_ms.to_string())
        // Every subscriber connects from 127.0.0.1.
        .env("WS_MAX_SOCKETS_PER_IP", subscribers.to_string())
        .env("WS_MAX_SOCKETS_PER_TENANT", subscribers.to_string())
        .spawn()?;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Subscribers, 200 connecting at a time; each reports when its first update arrives.
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::with_capacity(subscribers)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let connect_started = Instant::now();
    futures::stream::iter(0..subscribers)
        .for_each_concurrent(200, |i| {
            let (tenant, token, arrivals, ready_tx) = (tenants[i % tenants.len()].clone(), token.clone(), arrivals.clone(), ready_tx.clone());
            async move {
                let mut request = format!("ws://127.0.0.1:{port}/graphql/ws").into_client_request().unwrap();
                request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
                let config = WebSocketConfig::default().read_buffer_size(4096);
                let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                    .await
                    .expect("connect");
                let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}"), "tenant": tenant } });
                ws.send(Message::text(init.to_string())).await.unwrap();
                let _ack = ws.next().await;
                let sub = json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { usageUpdated { metrics { metric value } } }" } });
                ws.send(Message::text(sub.to_string())).await.unwrap();
                tokio::spawn(async move {
                    while let Some(Ok(message)) = ws.next().await {
                        if message.to_text().is_ok_and(|t| t.contains("\"next\"")) {
                            arrivals.lock().unwrap().push(Instant::now());
                            break;
                        }
                    }
                    // Keep the socket open until the end.
                    while ws.next().await.is_some() {}
                });
                let _ = ready_tx.send(());
            }
        })
        .await;
    for _ in 0..subscribers {
        ready_rx.recv().await;
    }
    println!(
        "{subscribers} subscribers over {tenants_n} tenants connected in {:.1?}",
        connect_started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(child.id())?;
    // One request per tenant; the next flush sends every tenant's totals.
    let traffic_started = Instant::now();
    futures::stream::iter(&tenants)
        .for_each_concurrent(32, |tenant| {
            let (http, base, token) = (&http, &base, &token);
            async move {
                let res = http
                    .post(format!("{base}/graphql"))
                    .bearer_auth(token)
                    .header("x-tenant", tenant)
                    .json(&json!({ "query": "{ __typename }" }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        })
        .await;
    let traffic_done = Instant::now();
    let deadline = traffic_done + Duration::from_millis(u64::try_from(flush_ms)? + 10_000);
    while arrivals.lock().unwrap().len() < subscribers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut times = arrivals.lock().unwrap().clone();
    times.sort();
    let first = times[0];
    let ms = |t: Instant| t.duration_since(first).as_secs_f64() * 1000.0;
    let pick = |q: f64| ms(times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1]);
    println!("delivered: {} of {subscribers}", times.len());
    println!(
        "traffic: {} requests in {:.0} ms; flush interval {flush_ms} ms",
        tenants.len(),
        traffic_done.duration_since(traffic_started).as_secs_f64() * 1000.0
    );
    println!(
        "after the first delivery (≈ the flush + NOTIFY): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    if first < traffic_done || pick(1.0) > flush_ms as f64 / 2.0 {
        println!(
            "warning: the traffic was split over two flushes; the spread includes a flush interval: run again"
        );
    }
    println!(
        "server RSS with {subscribers} subscribers: {:.1} MiB (peak after delivery: {:.1} MiB)",
        rss as f64 / 1024.0,
        rss_kib(child.id())? as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
    admin(&format!("drop database if exists {db} with (force)")).await
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let what: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let all = what.is_empty();
    if all || what.iter().any(|w| w == "ratio") {
        ratio().await?;
    }
    if all || what.iter().any(|w| w == "fanout") {
        fanout().await?;
    }
    Ok(())
}
