//! Background jobs through one worker: throughput of a no-op job (a backlog drained) and
//! enqueue → start latency (single jobs committed one at a time at a fixed rate, the worker
//! woken by LISTEN/NOTIFY as in `serve`).
//!
//! `cargo bench --bench jobs [-- <backlog> <rate> <seconds> <concurrency>]` (defaults 5000 200 5 4).
//! Uses `PGURL` (default postgres://postgres@127.0.0.1:5432) with a fresh database, dropped after.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tenantry::db::build_pool;
use tenantry::db::notify::{self, BusEvent};
use tenantry::jobs::{self, NewJob, Registry, Worker, WorkerSettings};
use uuid::Uuid;

#[path = "support/scratch.rs"]
mod scratch;

use scratch::{admin, pg_url};

/// When each job was enqueued (latency phase), and how many jobs have started.
#[derive(Clone, Default)]
struct Probe {
    enqueued: Arc<Mutex<HashMap<Uuid, Instant>>>,
    started: Arc<Mutex<Vec<Duration>>>,
    count: Arc<AtomicUsize>,
}

fn settings(concurrency: usize) -> WorkerSettings {
    WorkerSettings {
        concurrency,
        batch: concurrency * 4,
        poll: Duration::from_secs(1),
        lease: Duration::from_secs(60),
        retry_base: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(5),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let backlog = args.first().copied().unwrap_or(5000);
    let rate = args.get(1).copied().unwrap_or(200).max(1);
    let seconds = args.get(2).copied().unwrap_or(5);
    let concurrency = args.get(3).copied().unwrap_or(4).max(1);
    let db = format!("tenantry_bench_jobs_{}", std::process::id());
    admin(&format!("create database {db}")).await?;
    let outcome = run(&db, backlog, rate, seconds, concurrency).await;
    admin(&format!("drop database if exists {db} with (force)")).await?;
    outcome
}

async fn run(
    db: &str,
    backlog: usize,
    rate: usize,
    seconds: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let pool = build_pool(&pg_url(db), concurrency + 4)?;
    tenantry::db::migrate::migrate_control(&pool).await?;
    let probe = Probe::default();
    let registry = {
        let probe = probe.clone();
        Registry::default().handle("noop", move |ctx| {
            let at = Instant::now();
            if let Some(enqueued) = probe.enqueued.lock().unwrap().get(&ctx.job.id) {
                probe.started.lock().unwrap().push(at - *enqueued);
            }
            probe.count.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        })
    };

    // Throughput: a backlog enqueued up front, drained by one worker.
    {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        for _ in 0..backlog {
            jobs::enqueue(&tx, &NewJob::new("noop")).await.map_err(|e| e.into_anyhow())?;
        }
        tx.commit().await?;
    }
    let worker = Worker::new(pool.clone(), pool.clone(), registry, settings(concurrency));
    let wake = worker.waker();
    let bus = notify::spawn_listener(pg_url(db).parse()?, move |event| {
        if matches!(&event, BusEvent::Notice { channel, .. } if channel == notify::JOBS) {
            wake.notify_one();
        }
        async {}
    });
    let started = Instant::now();
    let handle = worker.spawn();
    while probe.count.load(Ordering::Relaxed) < backlog {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    println!(
        "throughput: {backlog} no-op jobs in {:.2} s = {:.0} jobs/s (one worker, concurrency {concurrency})",
        took.as_secs_f64(),
        backlog as f64 / took.as_secs_f64()
    );

    // Latency: one job per transaction at `rate` per second.
    let client = pool.get().await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / u32::try_from(rate)?);
    let total = rate * seconds;
    for _ in 0..total {
        tick.tick().await;
        let job = NewJob::new("noop");
        probe.enqueued.lock().unwrap().insert(job.id(), Instant::now());
        jobs::enqueue(&client, &job).await.map_err(|e| e.into_anyhow())?;
    }
    while probe.started.lock().unwrap().len() < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.shutdown().await;
    bus.abort();
    let mut histogram = Histogram::<u64>::new(3)?;
    for latency in probe.started.lock().unwrap().iter() {
        histogram.record(u64::try_from(latency.as_micros())?)?;
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "enqueue → start: {total} jobs at {rate}/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
    Ok(())
}
