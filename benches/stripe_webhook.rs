//! Webhook acknowledgement latency: signed Stripe events sent open-loop at a fixed rate
//! (default 200/s for 15 s after a 3 s warm-up) to a real server on a real, durable PostgreSQL.
//!
//! `cargo bench --bench stripe_webhook [-- <rate> <seconds>]`. Uses `DATABASE_URL` when set,
//! else a private durable cluster under target/tmp/bench-webhook (stopped afterwards).
//! The mix: 50 % `customer.subscription.updated`, 25 % `invoice.paid`, 10 % redeliveries of an
//! earlier event (duplicates), 15 % an event type billing ignores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tenantry::app::Application;
use tenantry::billing::signature::sign;
use tenantry::db::embedded::{Durability, EmbeddedPostgres};
use tenantry::db::migrate::MigrationSet;
use tenantry::tenancy::model::{Subdomain, TenantName};
use tenantry::tenancy::provision::{NewTenant, provision};
use tokio::sync::Mutex;

#[path = "support/settings.rs"]
mod settings;

const SECRET: &str = "whsec_bench";
const TENANTS: usize = 20;

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

struct Events {
    subscription: Value,
    invoice: Value,
    envelope: Value,
    base: i64,
}

impl Events {
    fn new() -> Self {
        Self {
            subscription: fixture(include_str!("../tests/fixtures/stripe/subscription.json")),
            invoice: fixture(include_str!("../tests/fixtures/stripe/invoice.json")),
            envelope: fixture(include_str!("../tests/fixtures/stripe/event.json")),
            base: chrono::Utc::now().timestamp(),
        }
    }

    /// The i-th event of the mix (not counting redeliveries), as a body.
    fn body(&self, i: usize) -> String {
        let tenant = i % TENANTS;
        let customer = format!("cus_bench{tenant}");
        let sub = format!("sub_bench{tenant}");
        let period_end = self.base + 30 * 86_400 + i as i64;
        let (kind, object) = match i % 6 {
            0..=2 => {
                let mut object = self.subscription.clone();
                object["id"] = json!(sub);
                object["customer"] = json!(customer);
                object["status"] = json!("active");
                object["cancel_at"] = Value::Null;
                object["cancel_at_period_end"] = json!(i.is_multiple_of(2));
                let item = &mut object["items"]["data"][0];
                item["price"]["lookup_key"] =
                    json!(if i.is_multiple_of(4) { "enterprise_monthly" } else { "pro_monthly" });
                item["current_period_end"] = json!(period_end);
                ("customer.subscription.updated", object)
            }
            3 | 4 => {
                let mut object = self.invoice.clone();
                object["customer"] = json!(customer);
                object["parent"]["subscription_details"]["subscription"] = json!(sub);
                object["lines"]["data"][0]["period"] =
                    json!({ "start": period_end - 86_400, "end": period_end });
                ("invoice.paid", object)
            }
            _ => (
                "charge.succeeded",
                json!({ "id": format!("ch_{i}"), "object": "charge", "customer": customer }),
            ),
        };
        let mut event = self.envelope.clone();
        event["id"] = json!(format!("evt_bench_{}_{i}", self.base));
        event["type"] = json!(kind);
        // Stripe's order: later events are created later (several per second, as Stripe does).
        event["created"] = json!(self.base + (i / 50) as i64);
        event["data"] = json!({ "object": object });
        event.to_string()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let rate: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(15);

    let (url, mut embedded) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-webhook");
            let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir, Durability::Durable))
                .await??;
            (pg.connection_string("postgres"), Some(pg))
        }
    };
    let dbname = format!("tenantry_bench_webhook_{}", std::process::id());
    admin(&url, &format!("create database {dbname}")).await?;
    let db_url = with_dbname(&url, &dbname);
    let outcome = run(&db_url, rate, seconds).await;
    admin(&url, &format!("drop database if exists {dbname} with (force)")).await?;
    if let Some(pg) = embedded.as_mut() {
        pg.stop()?;
    }
    outcome
}

async fn run(db_url: &str, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("tenantry-bench-webhook-{}", std::process::id()));
    let mut config = settings::test_config(Some(db_url), &data_dir);
    config.stripe_webhook_secret = Some(SECRET.into());
    let app = Application::build(config).await?;
    let address = format!("http://127.0.0.1:{}/api/stripe/webhook", app.port());
    let state = app.state().clone();
    for i in 0..TENANTS {
        let new = NewTenant {
            name: TenantName::parse(&format!("Bench {i}")).map_err(|e| e.into_anyhow())?,
            subdomain: Subdomain::parse(&format!("bench-{i}")).map_err(|e| e.into_anyhow())?,
            owner: None,
        };
        let tenant =
            provision(&state.pool, &MigrationSet::tenant(), new).await.map_err(|e| e.into_anyhow())?;
        let client = state.pool.get().await?;
        client
            .execute(
                "update control.tenants set stripe_customer_id = $2 where id = $1",
                &[&tenant.id, &format!("cus_bench{i}")],
            )
            .await?;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let events = Arc::new(Events::new());
    let sent_bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let warmup = 3 * rate;
    let total = warmup + seconds * rate;
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    let mut fresh = 0usize;
    for n in 0..total {
        tokio::time::sleep_until((started + interval * n as u32).into()).await;
        // Every tenth delivery repeats an earlier one, as Stripe does on a lost acknowledgement.
        let body = if n % 10 == 9 && fresh > 0 {
            let bodies = sent_bodies.lock().await;
            bodies[(n as usize * 7919) % bodies.len()].clone()
        } else {
            fresh += 1;
            let body = events.body(fresh);
            sent_bodies.lock().await.push(body.clone());
            body
        };
        let (http, address, histogram, failures) =
            (http.clone(), address.clone(), histogram.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let signature = sign(SECRET, chrono::Utc::now().timestamp(), body.as_bytes());
            let sent = Instant::now();
            let ok = http
                .post(&address)
                .header("content-type", "application/json")
                .header("stripe-signature", signature)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let micros = sent.elapsed().as_micros() as u64;
            if !ok {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if n >= warmup {
                histogram.lock().await.record(micros.max(1)).ok();
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let h = histogram.lock().await;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "stripe webhook ack: {} events at {rate}/s over {seconds} s (+3 s warm-up), achieved {:.0}/s",
        h.len(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (failures: {})",
        ms(0.50),
        ms(0.90),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0,
        failures.load(std::sync::atomic::Ordering::Relaxed)
    );
    let client = state.pool.get().await?;
    for row in client
        .query("select outcome, count(*) from control.stripe_events group by outcome order by outcome", &[])
        .await?
    {
        let (outcome, count): (String, i64) = (row.get(0), row.get(1));
        println!("recorded events: {outcome} {count}");
    }
    drop(client);
    let _ = stop.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(())
}

async fn admin(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    client.batch_execute(sql).await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

fn with_dbname(url: &str, dbname: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let host = base[scheme_end..].split('/').next().unwrap_or_default();
        let mut out = format!("{}{host}/{dbname}", &base[..scheme_end]);
        if let Some(query) = query {
            out = format!("{out}?{query}");
        }
        out
    } else {
        format!("{url} dbname={dbname}")
    }
}
