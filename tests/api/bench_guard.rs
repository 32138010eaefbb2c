//! The bench harness (benches/support, compiled in here) runs only on a database of its own:
//! it refuses one that holds tenants or users it did not create, before writing anything.

use tenantry::db::build_pool;
use tenantry::db::migrate::{MigrationSet, migrate_control};
use tenantry::tenancy::model::{Subdomain, TenantName};
use tenantry::tenancy::provision::{NewTenant, provision};

use crate::bench_support::{BenchDb, Common};
use crate::helpers::TestDb;

fn common(db: &TestDb) -> Common {
    Common { database_url: db.url.clone(), db_pool_size: 4, bench: false }
}

/// A database as the product leaves it: control schema migrated, one tenant.
async fn product_database_with_a_tenant() -> TestDb {
    let db = TestDb::migrated().await;
    let pool = build_pool(&db.url, 2).unwrap();
    migrate_control(&pool).await.unwrap();
    add_product_tenant(&db).await;
    db
}

async fn add_product_tenant(db: &TestDb) {
    let pool = build_pool(&db.url, 2).unwrap();
    let new = NewTenant {
        name: TenantName::parse("Real Customer").unwrap(),
        subdomain: Subdomain::parse("real-customer").unwrap(),
        owner: None,
    };
    provision(&pool, &MigrationSet::tenant(), new).await.unwrap();
}

async fn has_marker(db: &TestDb) -> bool {
    let pool = build_pool(&db.url, 1).unwrap();
    let client = pool.get().await.unwrap();
    let row = client.query_one("select to_regclass('public.tenantry_bench_marker') is not null", &[]).await;
    row.unwrap().get(0)
}

#[tokio::test]
async fn the_bench_refuses_a_database_holding_a_tenant_it_did_not_create() {
    let db = product_database_with_a_tenant().await;

    let Err(err) = BenchDb::open(&common(&db)).await else { panic!("the bench accepted a product database") };

    let message = format!("{err:#}");
    assert!(message.contains("refusing to run on database"), "{message}");
    assert!(message.contains("holds 1 tenant(s) the bench did not create"), "{message}");
    assert!(!has_marker(&db).await, "nothing is written to a refused database");
}

#[tokio::test]
async fn the_bench_refuses_an_unmarked_database_holding_users() {
    let db = TestDb::create().await;
    let pool = build_pool(&db.url, 2).unwrap();
    migrate_control(&pool).await.unwrap();
    pool.get()
        .await
        .unwrap()
        .execute(
            "insert into control.users (id, email, name, password_hash) values (gen_random_uuid(), 'a@example.com', 'A', '!')",
            &[],
        )
        .await
        .unwrap();

    let Err(err) = BenchDb::open(&common(&db)).await else {
        panic!("the bench accepted a database with users")
    };

    assert!(format!("{err:#}").contains("holds 1 user(s) the bench did not create"), "{err:#}");
    assert!(!has_marker(&db).await);
}

#[tokio::test]
async fn the_bench_marks_an_empty_database_and_still_refuses_a_foreign_tenant_added_later() {
    let db = TestDb::create().await;

    BenchDb::open(&common(&db)).await.expect("an empty database is the bench's");
    assert!(has_marker(&db).await);
    BenchDb::open(&common(&db)).await.expect("a marked database is accepted again");

    add_product_tenant(&db).await;
    let Err(err) = BenchDb::open(&common(&db)).await else { panic!("the marker overrode a foreign tenant") };
    assert!(format!("{err:#}").contains("1 tenant(s) the bench did not create"), "{err:#}");
}
