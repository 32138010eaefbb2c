//! One statement per execute: every migration and the import restore reach PostgreSQL one
//! statement at a time, through the extended protocol, as poolers and Citus need.
//!
//! The oracle is PostgreSQL itself: an event trigger records `current_query()` for every DDL
//! statement, which is the whole string the client sent. Each recorded string must then be a
//! single statement by PostgreSQL's own parser (preparing it fails for two).

use tenantry::db::migrate::{MigrationSet, migrate_control, migrate_tenants};
use tenantry::db::{build_pool, citus};
use tenantry::tenancy::export::{ImportAs, export, import};
use tenantry::tenancy::model::Subdomain;
use tokio_postgres::Client;

use crate::helpers::{TestDb, scratch_dir};
use crate::migrations::provision_many;

/// A function whose body holds semicolons, and a trigger that uses it.
const TOUCH: &str = "create function touch_updated_at() returns trigger language plpgsql as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

create trigger projects_touch before update on projects
    for each row execute function touch_updated_at();
";

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn record_ddl(client: &Client) {
    client
        .batch_execute(
            "create table public.ddl_seen (n serial primary key, query text not null);
             create function public.record_ddl() returns event_trigger language plpgsql as $$
             begin insert into public.ddl_seen (query) values (current_query()); end $$;
             create event trigger record_ddl on ddl_command_end execute function public.record_ddl();",
        )
        .await
        .unwrap();
}

/// The recorded strings (their first line) that PostgreSQL's parser does not take as exactly one
/// statement.
async fn multi_statement_strings(client: &Client, after: i32) -> Vec<String> {
    let seen =
        client.query("select query from public.ddl_seen where n > $1 order by n", &[&after]).await.unwrap();
    let mut bad = Vec::new();
    for row in seen {
        let query: String = row.get(0);
        if client.prepare(&query).await.is_err() {
            bad.push(query.lines().find(|l| !l.starts_with("--")).unwrap_or_default().to_owned());
        }
    }
    bad
}

#[tokio::test]
async fn every_migration_and_the_restore_send_one_statement_per_extended_protocol_execute() {
    let db = TestDb::create().await;
    let observer = connect(&db.url).await;
    record_ddl(&observer).await;
    let pool = build_pool(&db.url, 4).unwrap();

    migrate_control(&pool).await.unwrap();
    provision_many(&pool, &["plain", "touched"]).await;
    let next = MigrationSet::tenant().latest_version() + 1;
    let set = MigrationSet::tenant().with(&format!("V{next}__touch_updated_at"), TOUCH).unwrap();
    let touched = tenantry::tenancy::by_subdomain(&pool, "touched").await.unwrap();
    let report = migrate_tenants(&pool, &set, 1, Some(touched.id), |_| {}, || {}).await.unwrap();
    assert_eq!(report.migrated, 1, "{report:?}");
    let file = scratch_dir().join("plain.json");
    export(&pool, &db.url, "plain", &file).await.unwrap();
    import(&db.url, &file, ImportAs::New(Subdomain::parse("plain-copy").unwrap())).await.unwrap();

    let seen: Vec<String> = observer
        .query("select query from public.ddl_seen order by n", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Every path was observed: control and tenant migrations, the function body, the restore.
    let saw = |needle: &str| seen.iter().any(|q| q.contains(needle));
    for needle in
        ["create table control.users", "create table projects", "return new;", "ADD GENERATED ALWAYS"]
    {
        assert!(saw(needle), "no DDL containing {needle:?} was seen: {seen:#?}");
    }
    assert_eq!(multi_statement_strings(&observer, 0).await, Vec::<String>::new());

    // The oracle catches a client that sends two statements in one string.
    let last: i32 = observer.query_one("select max(n) from public.ddl_seen", &[]).await.unwrap().get(0);
    observer.batch_execute("create table public.a (x int); create table public.b (x int)").await.unwrap();
    assert_eq!(multi_statement_strings(&observer, last).await.len(), 2);
}

#[tokio::test]
async fn the_schema_sharding_setting_is_read_and_turned_off_for_one_transaction_only() {
    // Plain PostgreSQL keeps a `citus.` setting as a placeholder, which is enough to check the
    // statements the Citus paths use around it (the paths themselves run only under Citus).
    let db = TestDb::create().await;
    let setting = format!("alter database {} set citus.enable_schema_based_sharding = on", db.name);
    connect(&db.url).await.batch_execute(&setting).await.unwrap();
    let mut client = connect(&db.url).await;
    let tx = client.transaction().await.unwrap();
    assert!(!citus::installed(&tx).await.unwrap());
    assert!(citus::schema_sharding_on(&tx).await.unwrap());
    citus::keep_schemas_local(&tx).await.unwrap();
    assert!(!citus::schema_sharding_on(&tx).await.unwrap());
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    assert!(citus::schema_sharding_on(&tx).await.unwrap(), "the setting outlived its transaction");
}
