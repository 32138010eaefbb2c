//! The `tenantry` binary's operator commands, run as a user would run them.

use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::scratch_dir;
use crate::migrations::{control_db, provision_many};

pub fn tenantry(db_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("DATA_DIR", scratch_dir())
        .env("RUST_LOG", "error")
        .output()
        .expect("running tenantry")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn operators_create_list_suspend_resume_and_delete_tenants() {
    let (db, pool) = control_db().await;

    let out = tenantry(&db.url, &["tenants", "create", "--name", "Acme Inc", "--subdomain", "acme"]);
    assert!(out.status.success(), "{out:?}");
    let out = tenantry(&db.url, &["tenants", "create", "--name", "Acme again", "--subdomain", "acme"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already taken"), "{out:?}");

    let out = tenantry(&db.url, &["tenants", "suspend", "acme"]);
    assert!(out.status.success(), "{out:?}");
    let list = list_json(&db.url);
    assert_eq!(list[0]["subdomain"], "acme");
    assert_eq!(list[0]["status"], "suspended");
    let latest = tenantry::db::migrate::MigrationSet::tenant().latest_version();
    assert_eq!(list[0]["migration_version"], latest);

    assert!(tenantry(&db.url, &["tenants", "resume", "acme"]).status.success());
    let out = tenantry(&db.url, &["tenants", "delete", "acme"]);
    assert!(!out.status.success(), "delete without --yes must refuse");
    // A plain delete is soft: the row and the schema stay until purged.
    assert!(tenantry(&db.url, &["tenants", "delete", "acme", "--yes"]).status.success());
    let list = list_json(&db.url);
    assert!(list[0]["deleted_at"].is_string(), "{list}");
    let schema = list[0]["schema"].as_str().unwrap().to_owned();
    assert!(schema_exists(&pool, &schema).await);

    assert!(tenantry(&db.url, &["tenants", "delete", "acme", "--purge", "--yes"]).status.success());
    assert_eq!(list_json(&db.url), serde_json::json!([]));
    assert!(!schema_exists(&pool, &schema).await, "purge must drop the schema");
}

fn list_json(db_url: &str) -> Value {
    serde_json::from_str(&stdout(&tenantry(db_url, &["tenants", "list", "--json"]))).unwrap()
}

async fn schema_exists(pool: &deadpool_postgres::Pool, schema: &str) -> bool {
    let client = pool.get().await.unwrap();
    client.query_opt("select 1 from pg_namespace where nspname = $1", &[&schema]).await.unwrap().is_some()
}

#[tokio::test]
async fn migrate_prints_a_summary_and_fails_when_a_tenant_fails() {
    let (db, pool) = control_db().await;
    provision_many(&pool, &["first", "second"]).await;

    let out = tenantry(&db.url, &["migrate", "--json", "--jobs", "2"]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((report["migrated"].as_u64(), report["up_to_date"].as_u64()), (Some(0), Some(2)), "{report}");

    // Break one tenant's recorded version and its history: its re-migration then collides.
    let client = pool.get().await.unwrap();
    let schema: String = client
        .query_one("select schema_name from control.tenants where subdomain = 'second'", &[])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!(
            "delete from \"{schema}\".refinery_schema_history;
             update control.tenants set migration_version = 0 where subdomain = 'second'"
        ))
        .await
        .unwrap();
    let out = tenantry(&db.url, &["migrate"]);
    assert!(!out.status.success(), "a failed tenant must make migrate fail");
    let text = stdout(&out);
    assert!(text.contains("0 migrated, 1 up to date, 1 failed"), "{text}");
    assert!(text.contains("failed: second"), "{text}");
}

#[test]
fn the_schema_command_prints_the_committed_schema() {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry")).arg("schema").output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), tenantry::graphql::sdl());
}

#[tokio::test]
async fn purge_drops_only_tenants_deleted_longer_ago_than_the_grace_period() {
    let (db, pool) = control_db().await;
    provision_many(&pool, &["old-gone", "new-gone", "alive"]).await;
    for sub in ["old-gone", "new-gone"] {
        assert!(tenantry(&db.url, &["tenants", "delete", sub, "--yes"]).status.success());
    }
    let client = pool.get().await.unwrap();
    client
        .execute(
            "update control.tenants set deleted_at = now() - interval '31 days' where subdomain = 'old-gone'",
            &[],
        )
        .await
        .unwrap();

    let out = tenantry(&db.url, &["tenants", "purge"]);
    assert!(stdout(&out).contains("purged 1 deleted tenant"), "{out:?}");
    let left: Vec<String> = list_json(&db.url)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["subdomain"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["alive", "new-gone"]);
}

#[tokio::test]
async fn moving_a_tenant_without_citus_or_to_a_malformed_node_is_refused_with_what_to_do() {
    let (db, _pool) = control_db().await;
    assert!(
        tenantry(&db.url, &["tenants", "create", "--name", "Mover", "--subdomain", "mover"]).status.success()
    );

    let out = tenantry(&db.url, &["tenants", "move", "mover", "--to", "worker-1.internal:5432"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("citus extension is not installed"), "{stderr}");

    let out = tenantry(&db.url, &["tenants", "move", "mover", "--to", "worker-1.internal"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not HOST:PORT"), "{out:?}");

    let out = tenantry(&db.url, &["tenants", "move", "nobody", "--to", "worker-1.internal:5432"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant has the subdomain"), "{out:?}");
}
