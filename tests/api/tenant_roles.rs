//! A role per tenant: from inside a real `TenantTx`, PostgreSQL itself refuses another tenant's
//! schema, `control` and server files (SQLSTATE 42501); the application refuses role changes
//! (which PostgreSQL would allow: the login role is a member of every tenant role). Tenants
//! provisioned before roles keep serving, and run as their role once `grant_missing` ran.

use deadpool_postgres::Pool;
use serde_json::json;
use tenantry::config::Pooler;
use tenantry::db::migrate::{MigrationSet, migrate_tenants};
use tenantry::db::tenant_role::grant_missing;
use tenantry::db::{TenantPool, TenantTx};
use tenantry::error::AppError;
use tenantry::tenancy::export::{ImportAs, export, import};
use tenantry::tenancy::model::{Subdomain, Tenant};
use tenantry::tenancy::{self, purge};

use crate::helpers::{As, TestApp, scratch_dir, spawn_app};
use crate::migrations::provision_many;

/// The SQLSTATE PostgreSQL answered with, if the error is PostgreSQL's.
fn sqlstate(err: &AppError) -> Option<String> {
    match err {
        AppError::Internal(err) => err
            .chain()
            .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
            .and_then(|e| e.code())
            .map(|c| c.code().to_owned()),
        _ => None,
    }
}

async fn tenants(app: &TestApp) -> (Tenant, Tenant) {
    provision_many(&app.pool, &["alpha", "beta"]).await;
    let alpha = tenancy::by_subdomain(&app.pool, "alpha").await.unwrap();
    let beta = tenancy::by_subdomain(&app.pool, "beta").await.unwrap();
    (alpha, beta)
}

async fn current_user(pool: &TenantPool, tenant: &Tenant) -> String {
    let mut tx = TenantTx::begin(pool, &tenant.schema).await.unwrap();
    let row = tx.query_one("select current_user::text as who", &[]).await.unwrap();
    tx.commit().await.unwrap();
    row.get("who")
}

/// Runs `sql` alone in a fresh tenant transaction of `tenant` and returns its error.
async fn refused(pool: &TenantPool, tenant: &Tenant, sql: &str) -> AppError {
    let mut tx = TenantTx::begin(pool, &tenant.schema).await.unwrap();
    tx.query(sql, &[]).await.expect_err(sql)
}

/// Both ways statements travel: cached prepared statements, and unnamed ones (a transaction
/// pooler's mode, here on a direct connection).
fn both_modes(pool: &Pool) -> [TenantPool; 2] {
    [TenantPool::new(pool.clone(), Pooler::None), TenantPool::new(pool.clone(), Pooler::Transaction)]
}

#[tokio::test]
async fn postgres_refuses_a_tenant_transaction_another_tenants_schema_control_and_server_files() {
    let app = spawn_app().await;
    let (alpha, beta) = tenants(&app).await;
    for pool in both_modes(&app.pool) {
        assert_eq!(current_user(&pool, &alpha).await, alpha.schema.as_str());
        let foreign = format!("select count(*) from {}.projects", beta.schema.quoted());
        for sql in [
            foreign.as_str(),
            "select count(*) from control.tenants",
            "select count(*) from control.users",
            "select pg_read_file('postgresql.conf')",
            "select count(*) from pg_catalog.pg_authid",
        ] {
            let err = refused(&pool, &alpha, sql).await;
            assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}: {err:?}");
        }
        // Its own schema is readable and writable.
        let mut tx = TenantTx::begin(&pool, &alpha.schema).await.unwrap();
        tx.execute("insert into projects (id, name) values (gen_random_uuid(), 'mine')", &[]).await.unwrap();
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn the_application_refuses_role_changes_postgres_would_allow() {
    let app = spawn_app().await;
    let (alpha, beta) = tenants(&app).await;
    let set_role = format!("set role {}", beta.schema.quoted());
    let set_config = format!("select set_config('role', '{}', true)", beta.schema.as_str());
    for pool in both_modes(&app.pool) {
        for sql in [
            set_role.as_str(),
            "reset role",
            "set local role none",
            "set session authorization default",
            set_config.as_str(),
            "do $$ begin execute 'reset role'; end $$",
        ] {
            let err = refused(&pool, &alpha, sql).await;
            assert_eq!(err.code(), "INTERNAL", "{sql}");
            assert_eq!(sqlstate(&err), None, "{sql}: refused by PostgreSQL, not by the application");
            assert!(format!("{err:?}").contains("TenantTx refused"), "{sql}: {err:?}");
        }
    }
    // The check is load-bearing: on a plain connection, PostgreSQL lets the login role's
    // session switch from one tenant role to another.
    let client = app.pool.get().await.unwrap();
    client.batch_execute(&format!("begin; set local role {}", alpha.schema.quoted())).await.unwrap();
    client.batch_execute(&set_role).await.unwrap();
    let row = client.query_one("select current_user::text as who", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>("who"), beta.schema.as_str());
    client.batch_execute("rollback").await.unwrap();
}

#[tokio::test]
async fn control_statements_in_a_tenant_transaction_run_as_the_login_role_and_hand_the_role_back() {
    let app = spawn_app().await;
    let (alpha, _) = tenants(&app).await;
    for pool in both_modes(&app.pool) {
        for single in [false, true] {
            let mut tx = if single {
                TenantTx::begin_single(&pool, &alpha.schema).await.unwrap()
            } else {
                TenantTx::begin(&pool, &alpha.schema).await.unwrap()
            };
            // First statement of the transaction, on `control`.
            let row = tx
                .control()
                .query_one("select count(*) as n from control.tenants where id = $1", &[&alpha.id])
                .await
                .unwrap();
            assert_eq!(row.get::<_, i64>("n"), 1);
            if single {
                assert!(tx.query("select 1", &[]).await.is_err(), "a single transaction took two statements");
                continue;
            }
            let row = tx.query_one("select current_user::text as who", &[]).await.unwrap();
            assert_eq!(row.get::<_, String>("who"), alpha.schema.as_str());
            let err = tx.query("select count(*) from control.tenants", &[]).await.unwrap_err();
            assert_eq!(sqlstate(&err).as_deref(), Some("42501"));
            drop(tx);
        }
        let mut tx = TenantTx::begin(&pool, &alpha.schema).await.unwrap();
        let err = tx.control().query("reset role", &[]).await.unwrap_err();
        assert_eq!(sqlstate(&err), None, "the control path refuses role changes too: {err:?}");
    }
}

/// Drops the roles of `tenants`, as in a database provisioned before tenant roles.
async fn without_roles(app: &TestApp, tenants: &[&Tenant]) {
    let client = app.pool.get().await.unwrap();
    for tenant in tenants {
        let name = tenant.schema.quoted();
        client.batch_execute(&format!("drop owned by {name}; drop role {name}")).await.unwrap();
    }
}

#[tokio::test]
async fn tenants_without_a_role_keep_serving_during_grant_roles_and_run_as_their_role_after() {
    let app = spawn_app().await;
    let token = app.sign_up("legacy-owner").await;
    app.create_tenant(&token, "legacy").await;
    app.set_plan("legacy", "enterprise").await; // no request rate limit
    let (alpha, beta) = tenants(&app).await;
    let legacy = tenancy::by_subdomain(&app.pool, "legacy").await.unwrap();
    without_roles(&app, &[&legacy, &alpha, &beta]).await;
    let pool = TenantPool::from(app.pool.clone());
    let login: String =
        app.pool.get().await.unwrap().query_one("select current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(current_user(&pool, &legacy).await, login, "a tenant without a role runs as the login role");

    let who = As::member(&token, "legacy");
    let (_, body) =
        app.graphql(who.clone(), "mutation { createProject(name: \"before\") { id } }", json!({})).await;
    assert!(body["errors"].is_null(), "{body}");

    // Requests keep going while the command runs; none may fail.
    let done = std::sync::atomic::AtomicBool::new(false);
    let load = async {
        let mut served = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) || served < 20 {
            let (status, body) = app.graphql(who.clone(), "{ projects { id name } }", json!({})).await;
            assert!(status.is_success() && body["errors"].is_null(), "{body}");
            assert_eq!(body["data"]["projects"][0]["name"], "before", "{body}");
            served += 1;
        }
        served
    };
    let command = async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["tenants", "grant-roles", "--jobs", "2", "--json"])
            .env("DATABASE_URL", &app.db.url)
            .env("DATA_DIR", scratch_dir())
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("running tenantry tenants grant-roles");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    };
    let (served, out) = tokio::join!(load, command);
    assert!(out.status.success(), "grant-roles failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(
        (report["granted"].as_u64(), report["failed"].as_array().map(Vec::len)),
        (Some(3), Some(0)),
        "{report}"
    );
    assert!(served >= 20);

    for tenant in [&legacy, &alpha, &beta] {
        assert_eq!(current_user(&pool, tenant).await, tenant.schema.as_str());
    }
    let (_, body) =
        app.graphql(who.clone(), "mutation { createProject(name: \"after\") { id } }", json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    let err = refused(&pool, &legacy, "select count(*) from control.tenants").await;
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"));

    // Resumable: a second run finds nothing left to do.
    let again = grant_missing(&app.pool, 2, |_| {}, || {}).await.unwrap();
    assert_eq!((again.granted, again.failed.len()), (0, 0));
}

#[tokio::test]
async fn purge_drops_the_role_and_an_import_gets_one_granted_like_provisioning() {
    let app = spawn_app().await;
    let (alpha, beta) = tenants(&app).await;
    let client = app.pool.get().await.unwrap();
    let role_exists = "select count(*) from pg_roles where rolname = $1";

    let file = scratch_dir().join("alpha.json");
    export(&app.pool, &app.db.url, "alpha", &file).await.unwrap();
    let imported =
        import(&app.db.url, &file, ImportAs::New(Subdomain::parse("alpha-copy").unwrap())).await.unwrap();
    let copy = tenancy::by_subdomain(&app.pool, "alpha-copy").await.unwrap();
    assert_eq!(copy.id, imported.tenant.id);
    let pool = TenantPool::from(app.pool.clone());
    assert_eq!(current_user(&pool, &copy).await, copy.schema.as_str());
    let mut tx = TenantTx::begin(&pool, &copy.schema).await.unwrap();
    tx.execute("insert into projects (id, name) values (gen_random_uuid(), 'restored')", &[]).await.unwrap();
    tx.commit().await.unwrap();

    purge(&app.pool, &beta).await.unwrap();
    let n: i64 = client.query_one(role_exists, &[&beta.schema.as_str()]).await.unwrap().get(0);
    assert_eq!(n, 0, "the purged tenant's role is gone");
    let n: i64 = client.query_one(role_exists, &[&alpha.schema.as_str()]).await.unwrap().get(0);
    assert_eq!(n, 1, "other tenants keep theirs");
}

#[tokio::test]
async fn tables_a_later_tenant_migration_creates_are_granted_to_the_role() {
    let app = spawn_app().await;
    let (alpha, _) = tenants(&app).await;
    let next = MigrationSet::tenant().latest_version() + 1;
    let set = MigrationSet::tenant()
        .with(&format!("V{next}__notes"), "create table notes (id bigserial primary key, body text not null)")
        .unwrap();
    let report = migrate_tenants(&app.pool, &set, 2, None, |_| {}, || {}).await.unwrap();
    assert_eq!((report.migrated, report.failed.len()), (2, 0), "{report:?}");
    let pool = TenantPool::from(app.pool.clone());
    let mut tx = TenantTx::begin(&pool, &alpha.schema).await.unwrap();
    tx.execute("insert into notes (body) values ('as the tenant role')", &[]).await.unwrap();
    let row = tx.query_one("select count(*) as n, current_user::text as who from notes", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>("n"), row.get::<_, String>("who")), (1, alpha.schema.as_str().to_owned()));
    tx.commit().await.unwrap();
}
