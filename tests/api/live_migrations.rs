//! Migrations while serving: no failed request, stale cached plans retried, lag reported.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use tenantry::db::migrate::{LockPolicy, MigrationSet, migrate_tenants_locking};
use tenantry::db::{SchemaName, TenantTx, build_pool};
use tenantry::tenancy::model::{Subdomain, TenantName};
use tenantry::tenancy::provision::{NewTenant, provision};

use crate::helpers::{As, eventually, scratch_dir, spawn_app};
use crate::migrations::control_db;

const ADD_COLUMN: &str = "alter table projects add column archived boolean not null default false;\n";
const CHANGE_TYPE: &str = "alter table projects alter column name type varchar(300);\n";

/// The shipped tenant migrations plus `extra` (`(file stem, sql)`), as an operator's directory.
fn migrations_dir_with(extra: &[(&str, &str)]) -> PathBuf {
    let dir = scratch_dir().join("tenant-migrations");
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/tenant");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    for (stem, sql) in extra {
        std::fs::write(dir.join(format!("{stem}.sql")), sql).unwrap();
    }
    dir
}

/// Whether a GraphQL answer is a failure a client would see.
fn failed(status: u16, body: &Value) -> bool {
    status != 200 || body.get("errors").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_applied_by_another_process_under_load_fail_no_request() {
    let app = spawn_app().await;
    let tenants = ["live-a", "live-b", "live-c"];
    let mut tokens = Vec::new();
    for tenant in tenants {
        let token = app.sign_up(tenant).await;
        app.create_tenant(&token, tenant).await;
        // Sustained load exceeds free's 5 requests a second; pro has `unlimited_api`.
        app.set_plan(tenant, "pro").await;
        app.create_project(&token, tenant, "first").await;
        tokens.push(token);
    }
    let dir = migrations_dir_with(&[
        ("V100__projects_archived", ADD_COLUMN),
        ("V101__projects_name_varchar", CHANGE_TYPE),
    ]);

    let (stop, sent, failures) = (AtomicBool::new(false), AtomicUsize::new(0), AtomicUsize::new(0));
    let first_failure = std::sync::Mutex::new(None::<Value>);
    let worker = |w: usize| {
        let (app, tokens, stop, sent, failures, first_failure) =
            (&app, &tokens, &stop, &sent, &failures, &first_failure);
        async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let t = i % tenants.len();
                let who = As::member(&tokens[t], tenants[t]);
                // Mostly reads, some writes: both kinds of cached statement meet the migration.
                let (status, body) = if i.is_multiple_of(4) {
                    let create = "mutation($n: String!) { createProject(name: $n) { id name description } }";
                    app.graphql(who, create, json!({ "n": format!("p{i}") })).await
                } else {
                    app.graphql(who, "{ projects(first: 5) { id name description } }", json!({})).await
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if failed(status.as_u16(), &body) {
                    failures.fetch_add(1, Ordering::Relaxed);
                    first_failure
                        .lock()
                        .unwrap()
                        .get_or_insert(json!({ "status": status.as_u16(), "body": body }));
                }
                i += 4;
            }
        }
    };
    let driver = async {
        // Warm every connection's statement cache before the tables change under it.
        eventually(Duration::from_secs(30), || async { (sent.load(Ordering::Relaxed) >= 60).then_some(()) })
            .await;
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["migrate", "--json", "--migrations-dir"])
            .arg(&dir)
            .env("DATABASE_URL", &app.db.url)
            .env("DATA_DIR", scratch_dir())
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("running tenantry migrate");
        assert!(out.status.success(), "migrate failed: {}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
        assert_eq!(
            (report["migrated"].as_u64(), report["target_version"].as_u64()),
            (Some(3), Some(101)),
            "{report}"
        );
        // Keep the load going over the migrated tables.
        let after = sent.load(Ordering::Relaxed);
        eventually(Duration::from_secs(30), || async {
            (sent.load(Ordering::Relaxed) >= after + 60).then_some(())
        })
        .await;
        stop.store(true, Ordering::Relaxed);
    };
    let workers = join_all((0..4).map(worker));
    tokio::join!(workers, driver);

    let (sent, failures) = (sent.load(Ordering::Relaxed), failures.load(Ordering::Relaxed));
    eprintln!("live migration: {sent} requests, {failures} failed");
    assert_eq!(failures, 0, "first failure: {:?}", first_failure.lock().unwrap());

    // The new column is there and readable in every tenant, and the type did change.
    let client = app.pool.get().await.unwrap();
    for tenant in tenants {
        let schema: String = client
            .query_one("select schema_name from control.tenants where subdomain = $1", &[&tenant])
            .await
            .unwrap()
            .get(0);
        let rows = client.query(&format!("select archived from \"{schema}\".projects"), &[]).await.unwrap();
        assert!(!rows.is_empty() && rows.iter().all(|r| !r.get::<_, bool>(0)), "{tenant}");
        let name_type: String = client
            .query_one(
                "select data_type from information_schema.columns
                 where table_schema = $1 and table_name = 'projects' and column_name = 'name'",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(name_type, "character varying", "{tenant}");
    }
}

/// A tenant with no owner; its schema.
async fn one_tenant(pool: &deadpool_postgres::Pool, name: &str, subdomain: &str) -> SchemaName {
    let new = NewTenant {
        name: TenantName::parse(name).unwrap(),
        subdomain: Subdomain::parse(subdomain).unwrap(),
        owner: None,
    };
    provision(pool, &MigrationSet::tenant(), new).await.unwrap().schema
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cached_before_its_table_changed_type_is_retried_not_failed() {
    let (_db, pool) = control_db().await;
    let schema = one_tenant(&pool, "Stale", "stale").await;
    // One connection: every statement below meets the same statement cache.
    let one = build_pool(&_db.url, 1).unwrap();
    let alter = |ty: &'static str| {
        let (pool, schema) = (&pool, &schema);
        async move {
            let sql = format!("alter table {}.projects alter column name type {ty}", schema.quoted());
            pool.get().await.unwrap().batch_execute(&sql).await.unwrap();
        }
    };
    let read = "select id, name from projects";
    let mut tx = TenantTx::begin_single(&one, &schema).await.unwrap();
    tx.query(read, &[]).await.unwrap();
    tx.commit().await.unwrap();

    // The first statement of a transaction: retried from `begin`.
    alter("varchar(300)").await;
    let mut tx = TenantTx::begin_single(&one, &schema).await.unwrap();
    tx.query(read, &[]).await.expect("first statement retried");
    tx.commit().await.unwrap();

    // A later statement: retried from its savepoint; the transaction's earlier work stands.
    // (The first statement touches another table: one on `projects` would hold off the ALTER.)
    let mut tx = TenantTx::begin(&one, &schema).await.unwrap();
    let audit = "insert into audit_log (actor_kind, action, target_type) values ('system', 'kept', 'test')";
    tx.execute(audit, &[]).await.unwrap();
    alter("text").await;
    let rows = tx.query(read, &[]).await.expect("later statement retried");
    assert!(rows.is_empty());
    tx.commit().await.unwrap();
    let mut tx = TenantTx::begin_single(&one, &schema).await.unwrap();
    let kept = tx.query("select action from audit_log", &[]).await.unwrap();
    assert_eq!(kept.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), ["kept"]);
}

#[tokio::test]
async fn readyz_reports_how_many_tenants_lag_behind_this_builds_migrations() {
    let app = spawn_app().await;
    for sub in ["behind", "current"] {
        let new = NewTenant {
            name: TenantName::parse(sub).unwrap(),
            subdomain: Subdomain::parse(sub).unwrap(),
            owner: None,
        };
        provision(&app.pool, &MigrationSet::tenant(), new).await.unwrap();
    }
    let readyz = || async { app.get("/readyz").await.json::<Value>().await.unwrap() };
    app.state.migration_lag.refresh(&app.pool).await.unwrap();
    let body = readyz().await;
    assert_eq!(
        (body["status"].as_str(), body["migrations"]["tenants_lagging"].as_u64()),
        (Some("ready"), Some(0)),
        "{body}"
    );

    let client = app.pool.get().await.unwrap();
    client
        .execute("update control.tenants set migration_version = 1 where subdomain = 'behind'", &[])
        .await
        .unwrap();
    app.state.migration_lag.refresh(&app.pool).await.unwrap();
    let body = readyz().await;
    assert_eq!(body["migrations"]["tenants_lagging"], 1, "{body}");
    assert_eq!(body["migrations"]["version"], MigrationSet::tenant().latest_version(), "{body}");
}

#[test]
fn a_migrations_dir_that_changes_a_shipped_migration_is_refused() {
    let dir = migrations_dir_with(&[]);
    std::fs::write(dir.join("V1__projects.sql"), "create table projects (id int);\n").unwrap();
    let err = MigrationSet::tenant_from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("V1__projects"), "{err}");
    let ok = MigrationSet::tenant_from_dir(&migrations_dir_with(&[("V100__more", ADD_COLUMN)])).unwrap();
    assert_eq!(ok.latest_version(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_blocked_by_a_long_request_steps_aside_and_retries_instead_of_stalling_traffic() {
    let (_db, pool) = control_db().await;
    let new = NewTenant {
        name: TenantName::parse("Busy").unwrap(),
        subdomain: Subdomain::parse("busy").unwrap(),
        owner: None,
    };
    let schema = provision(&pool, &MigrationSet::tenant(), new).await.unwrap().schema;
    let projects = format!("select count(*) from {}.projects", schema.quoted());
    // A long request: it holds its lock on `projects` until it ends.
    let mut long = pool.get().await.unwrap();
    let long_tx = long.transaction().await.unwrap();
    long_tx.query_one(&projects, &[]).await.unwrap();

    let set = MigrationSet::tenant().with("V100__projects_archived", ADD_COLUMN).unwrap();
    let lock = LockPolicy { timeout: Duration::from_millis(100), attempts: 100 };
    let migrate = migrate_tenants_locking(&pool, &set, 1, None, lock, |_| {}, || {});
    let traffic = async {
        // Requests keep being served while the migration waits: a queued ALTER without a lock
        // timeout would hold each of them until the long request ends (never, here).
        let reader = pool.get().await.unwrap();
        for _ in 0..3 {
            // Each read starts while the migration's ALTER waits in the lock queue.
            eventually(Duration::from_secs(20), || async {
                let waiting = reader
                    .query_one(
                        "select count(*) from pg_stat_activity
                         where datname = current_database() and wait_event_type = 'Lock'
                           and query ilike 'alter table%'",
                        &[],
                    )
                    .await
                    .unwrap();
                (waiting.get::<_, i64>(0) > 0).then_some(())
            })
            .await;
            tokio::time::timeout(Duration::from_secs(20), reader.query_one(&projects, &[]))
                .await
                .expect("a read was stalled behind the waiting migration")
                .unwrap();
        }
        long_tx.commit().await.unwrap();
    };
    let (report, ()) = tokio::join!(migrate, traffic);
    let report = report.unwrap();
    assert_eq!((report.migrated, report.failed.len()), (1, 0), "{report:?}");
}

/// Two apps in one process, one behind a transaction pooler and one not: each tenant pool keeps
/// its own way of sending statements (nothing process-wide decides it).
#[tokio::test]
async fn two_tenant_pools_in_one_process_keep_their_own_statement_mode() {
    use tenantry::config::Pooler;
    use tenantry::db::TenantPool;
    let (_db, pool) = control_db().await;
    let schema = one_tenant(&pool, "Modes", "modes").await;
    // One connection each, so each pool's statement cache is the one inspected below.
    let pooled = TenantPool::new(build_pool(&_db.url, 1).unwrap(), Pooler::Transaction);
    let direct = TenantPool::new(build_pool(&_db.url, 1).unwrap(), Pooler::None);
    let read = "select id, name from projects where name = $1";
    for _ in 0..2 {
        for tenant_pool in [&pooled, &direct] {
            let mut tx = TenantTx::begin_single(tenant_pool, &schema).await.unwrap();
            tx.query(read, &[&"none"]).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
    // Behind the pooler: unnamed statements, types learnt for this pool only, nothing prepared
    // left on the connection. Direct: a cached prepared statement, no unnamed ones.
    assert_eq!(pooled.unnamed().map(|types| types.len()), Some(1));
    assert_eq!(pooled.get().await.unwrap().statement_cache.size(), 0);
    assert!(direct.unnamed().is_none());
    assert!(direct.get().await.unwrap().statement_cache.size() > 0);
    let prepared: i64 = direct
        .get()
        .await
        .unwrap()
        .query_one("select count(*) from pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(prepared >= 1, "the direct pool's connection holds its prepared statement");
}
