//! Tenant migrations bound their table locks with `lock_timeout` and retry: a long request holding
//! a table delays the migration, never the other way round, and the migration still lands.

use std::time::Duration;

use tenantry::db::migrate::{LockPolicy, MigrationSet, migrate_tenants_locking};

use crate::migrations::{control_db, provision_many};

const ADD_COLUMN: &str = "alter table projects add column priority int not null default 0";

fn one_more() -> MigrationSet {
    let next = MigrationSet::tenant().latest_version() + 1;
    MigrationSet::tenant().with(&format!("V{next}__projects_priority"), ADD_COLUMN).unwrap()
}

/// Opens a transaction that reads `projects` of the only tenant and keeps its lock until dropped.
async fn hold_projects(pool: &deadpool_postgres::Pool) -> deadpool_postgres::Object {
    let client = pool.get().await.unwrap();
    let schema: String =
        client.query_one("select schema_name from control.tenants", &[]).await.unwrap().get(0);
    client.batch_execute("begin").await.unwrap();
    client.execute("select set_config('search_path', $1, true)", &[&format!("\"{schema}\"")]).await.unwrap();
    client.query("select id from projects", &[]).await.unwrap();
    client
}

#[tokio::test]
async fn a_migration_blocked_by_a_long_transaction_times_out_retries_and_lands() {
    let (_db, pool) = control_db().await;
    provision_many(&pool, &["acme"]).await;
    let holder = hold_projects(&pool).await;
    let set = one_more();
    let policy = LockPolicy { timeout: Duration::from_millis(50), attempts: 30 };
    let migrate = tokio::spawn({
        let pool = pool.clone();
        async move { migrate_tenants_locking(&pool, &set, 1, None, policy, |_| {}, || {}).await }
    });
    // Several attempts time out while the reader holds the table, then it finishes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    holder.batch_execute("commit").await.unwrap();
    let report = migrate.await.unwrap().unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.migrated, 1);
}

#[tokio::test]
async fn a_migration_that_never_gets_its_lock_fails_for_that_tenant_only_and_changes_nothing() {
    let (_db, pool) = control_db().await;
    provision_many(&pool, &["acme"]).await;
    let holder = hold_projects(&pool).await;
    let set = one_more();
    let policy = LockPolicy { timeout: Duration::from_millis(20), attempts: 2 };
    let report = migrate_tenants_locking(&pool, &set, 1, None, policy, |_| {}, || {}).await.unwrap();
    assert_eq!(report.migrated, 0);
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].error.contains("lock timeout"), "{}", report.failed[0].error);
    holder.batch_execute("commit").await.unwrap();
    let version: i32 = pool
        .get()
        .await
        .unwrap()
        .query_one("select migration_version from control.tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, MigrationSet::tenant().latest_version(), "the failed attempt rolled back");
}
