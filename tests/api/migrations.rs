//! Tenant migrations: reach every tenant, re-runs do nothing, failures stay per tenant,
//! concurrent runs are safe, provisioning is all-or-nothing.

use deadpool_postgres::Pool;
use tenantry::db::build_pool;
use tenantry::db::migrate::{MigrationSet, migrate_control, migrate_tenants};
use tenantry::tenancy::model::{Subdomain, TenantName};
use tenantry::tenancy::provision::{NewTenant, provision};

use crate::helpers::TestDb;

const ADD_ARCHIVED: &str = "alter table projects add column archived boolean not null default false";

pub async fn control_db() -> (TestDb, Pool) {
    let db = TestDb::migrated().await;
    let pool = build_pool(&db.url, 8).unwrap();
    migrate_control(&pool).await.unwrap();
    (db, pool)
}

pub async fn provision_many(pool: &Pool, subdomains: &[&str]) {
    for sub in subdomains {
        let new = NewTenant {
            name: TenantName::parse(sub).unwrap(),
            subdomain: Subdomain::parse(sub).unwrap(),
            owner: None,
        };
        provision(pool, &MigrationSet::tenant(), new).await.unwrap();
    }
}

/// The shipped tenant migrations plus one more, and the versions a fully migrated schema has.
fn next() -> (MigrationSet, Vec<i32>) {
    let shipped = MigrationSet::tenant().latest_version();
    let next = shipped + 1;
    let set = MigrationSet::tenant().with(&format!("V{next}__projects_archived"), ADD_ARCHIVED).unwrap();
    (set, (1..=next).collect())
}

/// `(subdomain, recorded version, has the archived column, applied history versions)` per tenant.
async fn tenant_states(pool: &Pool) -> Vec<(String, i32, bool, Vec<i32>)> {
    let client = pool.get().await.unwrap();
    let tenants = client
        .query(
            "select subdomain, schema_name, migration_version from control.tenants order by subdomain",
            &[],
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    for t in tenants {
        let schema: String = t.get(1);
        let has_column = client
            .query_opt(
                "select 1 from information_schema.columns where table_schema = $1 and table_name = 'projects' and column_name = 'archived'",
                &[&schema],
            )
            .await
            .unwrap()
            .is_some();
        let history = client
            .query(&format!("select version from \"{schema}\".refinery_schema_history order by version"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.push((t.get(0), t.get(2), has_column, history));
    }
    out
}

#[tokio::test]
async fn a_new_tenant_migration_reaches_every_tenant_and_a_rerun_does_nothing() {
    let (_db, pool) = control_db().await;
    provision_many(&pool, &["one", "two", "three"]).await;

    let (set, all) = next();
    let report = migrate_tenants(&pool, &set, 2, None, |_| {}, || {}).await.unwrap();
    assert_eq!((report.migrated, report.up_to_date, report.failed.len()), (3, 0, 0), "{report:?}");
    for (sub, version, has_column, history) in tenant_states(&pool).await {
        assert_eq!((version, has_column, &history), (set.latest_version(), true, &all), "{sub}");
    }

    let again = migrate_tenants(&pool, &set, 2, None, |_| {}, || {}).await.unwrap();
    assert_eq!((again.migrated, again.up_to_date, again.failed.len()), (0, 3, 0), "{again:?}");
}

#[tokio::test]
async fn a_tenant_whose_migration_fails_is_reported_while_the_others_succeed() {
    let (_db, pool) = control_db().await;
    provision_many(&pool, &["good-one", "broken", "good-two"]).await;
    // Someone added the column by hand in one tenant: the migration collides there.
    let client = pool.get().await.unwrap();
    let schema: String = client
        .query_one("select schema_name from control.tenants where subdomain = 'broken'", &[])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!("alter table \"{schema}\".projects add column archived text"))
        .await
        .unwrap();

    let (set, all) = next();
    let shipped: Vec<i32> = all[..all.len() - 1].to_vec();
    let report = migrate_tenants(&pool, &set, 3, None, |_| {}, || {}).await.unwrap();
    assert_eq!((report.migrated, report.failed.len()), (2, 1), "{report:?}");
    assert_eq!(report.failed[0].subdomain, "broken");
    assert!(report.failed[0].error.contains("already exists"), "{}", report.failed[0].error);

    let states = tenant_states(&pool).await;
    let broken = states.iter().find(|s| s.0 == "broken").unwrap();
    let before = MigrationSet::tenant().latest_version();
    assert_eq!((broken.1, &broken.3), (before, &shipped), "the failed tenant must stay where it was");
    assert!(states.iter().filter(|s| s.0 != "broken").all(|s| s.1 == set.latest_version() && s.3 == all));
}

#[tokio::test]
async fn two_concurrent_migrate_runs_do_not_corrupt_anything() {
    let (_db, pool) = control_db().await;
    let subs: Vec<String> = (0..8).map(|i| format!("tenant-{i}")).collect();
    provision_many(&pool, &subs.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let (set, all) = next();
    let other_pool = build_pool(&_db.url, 8).unwrap();
    let (a, b) = tokio::join!(
        migrate_tenants(&pool, &set, 4, None, |_| {}, || {}),
        migrate_tenants(&other_pool, &set, 4, None, |_| {}, || {}),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.failed.is_empty() && b.failed.is_empty(), "{a:?} {b:?}");
    // Each tenant is migrated by exactly one run; the other finds it done.
    assert_eq!(a.migrated + b.migrated, 8, "{a:?} {b:?}");
    for (sub, version, has_column, history) in tenant_states(&pool).await {
        assert_eq!((version, has_column, &history), (set.latest_version(), true, &all), "{sub}");
    }
}

#[tokio::test]
async fn a_failed_provisioning_leaves_no_tenant_behind() {
    let (_db, pool) = control_db().await;
    let next = MigrationSet::tenant().latest_version() + 1;
    let broken =
        MigrationSet::tenant().with(&format!("V{next}__broken"), "create table projects (id int)").unwrap();
    let new = NewTenant {
        name: TenantName::parse("Doomed").unwrap(),
        subdomain: Subdomain::parse("doomed").unwrap(),
        owner: None,
    };
    let err = provision(&pool, &broken, new).await.unwrap_err();
    assert_eq!(err.code(), "INTERNAL");

    let client = pool.get().await.unwrap();
    let rows = client.query("select 1 from control.tenants", &[]).await.unwrap();
    assert!(rows.is_empty(), "a tenant row survived");
    let schemas =
        client.query("select nspname from pg_namespace where nspname like 't\\_%'", &[]).await.unwrap();
    assert!(schemas.is_empty(), "a tenant schema survived");
}
