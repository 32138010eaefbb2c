//! Rows are read by column name: a missing or mistyped column is an INTERNAL error naming the
//! column and the query, never a panic. And one statement runs in a tenant transaction or on
//! the control pool alike (`db::Statements`).

use tenantry::db::rows::Columns;
use tenantry::db::{SchemaName, TenantTx};
use tenantry::error::AppError;
use tenantry::jobs::{self, JobState, NewJob};
use uuid::Uuid;

use crate::migrations::control_db;

fn detail(err: AppError) -> String {
    assert_eq!(err.code(), "INTERNAL");
    format!("{:#}", err.into_anyhow())
}

#[tokio::test]
async fn a_missing_or_mistyped_column_is_an_internal_error_naming_it_and_the_query() {
    let (_db, pool) = control_db().await;
    let client = pool.get().await.unwrap();
    let row = client.query_one("select 7::int4 as n", &[]).await.unwrap();
    let columns = Columns::of(&row, "rows test query");
    assert_eq!(columns.try_get::<i32>("n").unwrap(), 7);

    let missing = detail(columns.try_get::<i32>("m").unwrap_err().into());
    assert!(missing.contains("column `m` of rows test query (its row has: n)"), "{missing}");

    let mistyped = detail(columns.try_get::<String>("n").unwrap_err().into());
    assert!(mistyped.contains("column `n` of rows test query"), "{mistyped}");
    assert!(mistyped.contains("int4"), "the conversion that failed: {mistyped}");
}

#[tokio::test]
async fn one_enqueue_joins_a_tenant_transaction_or_runs_on_a_pooled_client() {
    let (_db, pool) = control_db().await;
    let client = pool.get().await.unwrap();
    let schema = SchemaName::for_tenant(Uuid::new_v4());

    let rolled_back = NewJob::new("noop");
    let mut tx = TenantTx::begin(&pool, &schema).await.unwrap();
    assert!(jobs::enqueue(tx.control(), &rolled_back).await.unwrap());
    drop(tx);

    let committed = NewJob::new("noop");
    let mut tx = TenantTx::begin(&pool, &schema).await.unwrap();
    assert!(jobs::enqueue(tx.control(), &committed).await.unwrap());
    tx.commit().await.unwrap();

    let plain = NewJob::new("noop");
    assert!(jobs::enqueue(&client, &plain).await.unwrap());

    // The rollback runs off the caller's path; the job is never visible either way.
    assert_eq!(jobs::repo::state_of(&client, rolled_back.id()).await.unwrap(), None);
    assert_eq!(jobs::repo::state_of(&client, committed.id()).await.unwrap(), Some(JobState::Queued));
    assert_eq!(jobs::repo::state_of(&client, plain.id()).await.unwrap(), Some(JobState::Queued));
}
