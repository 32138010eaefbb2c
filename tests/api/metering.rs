//! The flush's guarantees against real PostgreSQL: a batch retried after a lost response is not
//! counted twice, and a failed flush keeps its counts for the next attempt.

use chrono::Utc;
use tenantry::db::build_pool;
use tenantry::usage::meter::{Batch, Meter};
use tenantry::usage::repo;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with};

async fn tenant_id(app: &TestApp, subdomain: &str) -> Uuid {
    tenantry::tenancy::by_subdomain(&app.pool, subdomain).await.unwrap().id
}

async fn counted(app: &TestApp) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one("select coalesce(sum(value), 0)::bigint from control.usage_counters", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_batch_applied_twice_after_a_lost_response_is_counted_once() {
    let app = spawn_app_with(|c| c.usage_flush_ms = 3_600_000).await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let tenant = tenant_id(&app, "acme").await;
    let batch = Batch { id: Uuid::new_v4(), rows: vec![(tenant, Utc::now().date_naive(), 7)] };
    let client = app.pool.get().await.unwrap();
    assert_eq!(repo::apply_batch(&client, &batch).await.unwrap(), 1);
    // The same batch again, as a retry after "committed, but the connection dropped" would send it.
    assert_eq!(repo::apply_batch(&client, &batch).await.unwrap(), 0);
    assert_eq!(counted(&app).await, 7);
    let other = Batch { id: Uuid::new_v4(), rows: vec![(tenant, Utc::now().date_naive(), 3)] };
    assert_eq!(repo::apply_batch(&client, &other).await.unwrap(), 1);
    assert_eq!(counted(&app).await, 10, "a new batch adds to the same day's row");
}

#[tokio::test]
async fn a_failed_flush_keeps_its_counts_and_the_retry_writes_them_once() {
    let app = spawn_app_with(|c| c.usage_flush_ms = 3_600_000).await;
    let ann = app.sign_up("ann").await;
    app.create_tenant(&ann, "acme").await;
    let tenant = tenant_id(&app, "acme").await;
    let meter = Meter::default();
    let today = Utc::now().date_naive();
    for _ in 0..5 {
        meter.count(tenant, today, None).unwrap();
    }
    let unreachable = build_pool(&format!("{}_missing", app.db.url), 1).unwrap();
    assert!(meter.flush(&unreachable, today).await.is_err());
    assert!(!meter.is_idle(), "the counts wait for the next attempt");
    meter.count(tenant, today, None).unwrap();
    assert_eq!(meter.month_used(tenant, today), 6, "kept counts still count toward the quota");

    let flushed = meter.flush(&app.pool, today).await.unwrap();
    assert_eq!((flushed.rows, flushed.totals[0].1.month), (1, 5), "the failed batch, as it was");
    let flushed = meter.flush(&app.pool, today).await.unwrap();
    assert_eq!(flushed.totals[0].1.month, 6, "then what arrived meanwhile");
    assert!(meter.is_idle());
    assert_eq!(counted(&app).await, 6);
}
