//! The warm pool (`TENANT_WARM_POOL`): `createTenant` claims a schema created and migrated
//! ahead of time; the pool refills behind it; warm schemas are no tenant until claimed and are
//! replaced, never claimed, once the migrations move past them.

use std::time::Duration;

use serde_json::json;
use tenantry::db::migrate::MigrationSet;
use tenantry::tenancy::model::{Subdomain, TenantName};
use tenantry::tenancy::provision::{NewTenant, provision};
use tenantry::tenancy::warm;

use crate::helpers::{As, TestDb, eventually, spawn_app_with};

async fn warm_schemas(pool: &deadpool_postgres::Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    let rows =
        client.query("select schema_name from control.warm_schemas order by schema_name", &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn schema_exists(pool: &deadpool_postgres::Pool, schema: &str) -> bool {
    let client = pool.get().await.unwrap();
    client.query_opt("select 1 from pg_namespace where nspname = $1", &[&schema]).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_tenant_claims_a_warm_schema_which_is_no_tenant_before_and_the_pool_refills() {
    let app = spawn_app_with(|c| c.tenant_warm_pool = 2).await;
    let ready = eventually(Duration::from_secs(30), || async {
        let schemas = warm_schemas(&app.pool).await;
        (schemas.len() == 2).then_some(schemas)
    })
    .await
    .0;

    // Before a claim, a warm schema is nobody's: no tenant row, no listing.
    let client = app.pool.get().await.unwrap();
    let tenants: i64 = client.query_one("select count(*) from control.tenants", &[]).await.unwrap().get(0);
    assert_eq!(tenants, 0);

    let owner = app.sign_up("warm-owner").await;
    let id = app.create_tenant(&owner, "warm").await;
    let row = client
        .query_one(
            "select schema_name, migration_version from control.tenants where id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    let schema: String = row.get(0);
    assert!(ready.contains(&schema), "{schema} was not one of the warm schemas {ready:?}");
    assert_eq!(row.get::<_, i32>(1), MigrationSet::tenant().latest_version());
    assert!(!warm_schemas(&app.pool).await.contains(&schema), "a claimed schema left the pool");

    // The tenant works in its claimed schema.
    let (_, body) = app
        .graphql(
            As::member(&owner, "warm"),
            "mutation { createProject(name: \"first\") { name } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["createProject"]["name"], "first", "{body}");
    let (_, body) = app.graphql(As::member(&owner, "warm"), "{ projects { name } }", json!({})).await;
    assert_eq!(body["data"]["projects"], json!([{ "name": "first" }]), "{body}");

    // The claim queued a refill.
    eventually(Duration::from_secs(30), || async {
        (warm_schemas(&app.pool).await.len() == 2).then_some(())
    })
    .await;
    let tenants: i64 = client.query_one("select count(*) from control.tenants", &[]).await.unwrap().get(0);
    assert_eq!(tenants, 1, "the refill made no tenant");
}

#[tokio::test]
async fn warm_schemas_behind_the_migrations_are_never_claimed_and_are_replaced() {
    let db = TestDb::migrated().await;
    let pool = tenantry::db::build_pool(&db.url, 2).unwrap();
    let old = MigrationSet::tenant();
    assert_eq!(
        warm::refill(&pool, &old, 2, 0).await.unwrap(),
        warm::Refilled { dropped: 0, created: 2, roles: 0 }
    );
    let stale = warm_schemas(&pool).await;

    let new = MigrationSet::tenant()
        .with("V9001__warm_note", "alter table projects add column warm_note text")
        .unwrap();
    // A build with a newer migration provisions cold rather than take a schema behind it.
    let new_tenant = |sub: &str| NewTenant {
        name: TenantName::parse("Cold").unwrap(),
        subdomain: Subdomain::parse(sub).unwrap(),
        owner: None,
    };
    let tenant = provision(&pool, &new, new_tenant("cold-one")).await.unwrap();
    assert!(!stale.contains(&tenant.schema.as_str().to_owned()), "a stale warm schema was claimed");
    assert_eq!(warm_schemas(&pool).await, stale);

    // Its refill drops the stale ones (schemas and all) and makes new ones at its version.
    assert_eq!(
        warm::refill(&pool, &new, 2, 0).await.unwrap(),
        warm::Refilled { dropped: 2, created: 2, roles: 0 }
    );
    for schema in &stale {
        assert!(!schema_exists(&pool, schema).await, "{schema} was left behind");
    }
    assert_eq!(warm::count(&pool, &new).await.unwrap(), 2);
    let tenant = provision(&pool, &new, new_tenant("warm-one")).await.unwrap();
    assert!(stale.iter().all(|s| s != tenant.schema.as_str()));
    let client = pool.get().await.unwrap();
    // The claimed schema has the new migration's column.
    client
        .execute(&format!("select warm_note from {}.projects", tenant.schema.quoted()), &[])
        .await
        .expect("the claimed schema is at the new version");
    let version: i32 = client
        .query_one("select migration_version from control.tenants where id = $1", &[&tenant.id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, new.latest_version());
    // The old build's pool is empty now: it provisions cold and still works.
    let cold = provision(&pool, &old, new_tenant("old-build")).await.unwrap();
    assert!(schema_exists(&pool, cold.schema.as_str()).await);
}

/// Each role's `pg_authid` row and its membership row for the login role, with the transaction
/// that last wrote each (`xmin`): a change to either would show.
async fn role_rows(pool: &deadpool_postgres::Pool, names: &[String]) -> Vec<(String, String, String)> {
    let client = pool.get().await.unwrap();
    let rows = client
        .query(
            "select a.rolname::text, a.xmin::text, m.xmin::text
               from pg_authid a
               join pg_auth_members m
                 on m.roleid = a.oid and m.member = (select oid from pg_authid where rolname = current_user)
              where a.rolname = any($1) order by a.rolname",
            &[&names],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

async fn made_ahead(pool: &deadpool_postgres::Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    let rows = client.query("select tenant_id from control.warm_roles order by 1", &[]).await.unwrap();
    rows.iter().map(|r| format!("t_{}", r.get::<_, uuid::Uuid>(0).simple())).collect()
}

async fn comment(pool: &deadpool_postgres::Pool, role: &str) -> Option<String> {
    let client = pool.get().await.unwrap();
    let sql = "select shobj_description(oid, 'pg_authid') from pg_roles where rolname = $1";
    client.query_one(sql, &[&role]).await.unwrap().get(0)
}

#[tokio::test]
async fn tenants_take_roles_made_ahead_in_one_batch_and_provisioning_changes_no_membership() {
    let db = TestDb::migrated().await;
    let pool = tenantry::db::build_pool(&db.url, 2).unwrap();
    let set = MigrationSet::tenant();
    // One batch: four roles to keep ahead and one for the warm schema made right after.
    let refilled = warm::refill(&pool, &set, 1, 4).await.unwrap();
    assert_eq!(refilled, warm::Refilled { dropped: 0, created: 1, roles: 5 });
    let ahead = made_ahead(&pool).await;
    assert_eq!(ahead.len(), 4, "{ahead:?}");
    // Four left is above a quarter of four: the next refill makes no batch.
    assert_eq!(warm::refill(&pool, &set, 1, 4).await.unwrap(), warm::Refilled::default());
    let mut batch = ahead.clone();
    batch.extend(warm_schemas(&pool).await);
    assert_eq!(batch.len(), 5);
    let before = role_rows(&pool, &batch).await;
    assert_eq!(before.len(), 5, "every role of the batch exists and the login role is its member");
    assert_eq!(comment(&pool, &ahead[0]).await.as_deref(), Some(tenantry::db::tenant_role::MADE_AHEAD));

    let new_tenant = |sub: &str| NewTenant {
        name: TenantName::parse("Ahead").unwrap(),
        subdomain: Subdomain::parse(sub).unwrap(),
        owner: None,
    };
    // The warm schema (named after a role of the batch), then two cold ones, which take roles
    // made ahead instead of making their own.
    let warm_one = provision(&pool, &set, new_tenant("warm-one")).await.unwrap();
    let cold_one = provision(&pool, &set, new_tenant("cold-one")).await.unwrap();
    let cold_two = provision(&pool, &set, new_tenant("cold-two")).await.unwrap();
    for tenant in [&warm_one, &cold_one, &cold_two] {
        assert!(
            batch.iter().any(|r| r == tenant.schema.as_str()),
            "{} is not of the batch",
            tenant.schema.as_str()
        );
    }
    assert_eq!(made_ahead(&pool).await.len(), 2);
    assert_eq!(role_rows(&pool, &batch).await, before, "provisioning wrote a role or a membership");
    assert_eq!(comment(&pool, cold_one.schema.as_str()).await, None, "a taken role keeps the mark");

    // Each serves as its own role, with rights on its schema.
    let tenants = tenantry::db::TenantPool::new(pool.clone(), tenantry::config::Pooler::None);
    for tenant in [&warm_one, &cold_one] {
        let mut tx = tenantry::db::TenantTx::begin(&tenants, &tenant.schema).await.unwrap();
        let row =
            tx.query_one("select current_user::text as who, count(*) as n from projects", &[]).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(row.get::<_, String>("who"), tenant.schema.as_str());
    }
}
