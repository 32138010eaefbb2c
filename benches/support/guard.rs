//! The bench runs only on a database of its own. It provisions bench tenants, and `scale`
//! applies a test migration (`V9001`) to every tenant it finds: pointed at a real database, that
//! would mark every real tenant as migrated past all future migrations.
//!
//! A database qualifies when every tenant in it is a bench tenant (ids from `setup::tenant_id`).
//! The first bench run on a database also requires that it holds no user but the bench user,
//! and then writes a marker table, `public.tenantry_bench_marker`; later runs find the marker.

use anyhow::bail;
use deadpool_postgres::Pool;

use super::setup;

/// Refuses the database unless it holds only what the bench created; marks it as the bench's.
pub async fn claim(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "select current_database()::text,
                    to_regclass('public.tenantry_bench_marker') is not null,
                    to_regclass('control.tenants') is not null,
                    to_regclass('control.users') is not null",
            &[],
        )
        .await?;
    let (database, marked, has_tenants, has_users): (String, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));

    if has_tenants {
        let (first, last) = (setup::tenant_id(0), setup::tenant_id(setup::MAX_TENANTS - 1));
        let foreign: i64 = client
            .query_one("select count(*) from control.tenants where id < $1 or id > $2", &[&first, &last])
            .await?
            .get(0);
        if foreign > 0 {
            bail!(refusal(&database, &format!("holds {foreign} tenant(s) the bench did not create")));
        }
    }
    if marked {
        return Ok(());
    }
    if has_users {
        let users: i64 = client
            .query_one("select count(*) from control.users where id <> $1", &[&setup::USER_ID])
            .await?
            .get(0);
        if users > 0 {
            bail!(refusal(
                &database,
                &format!("has no bench marker and holds {users} user(s) the bench did not create")
            ));
        }
    }
    client
        .batch_execute(
            "create table if not exists public.tenantry_bench_marker (
                 created_at timestamptz not null default now(),
                 note text not null
             );
             insert into public.tenantry_bench_marker (note)
             values ('created by the tenantry bench harness: bench data only, safe to drop');",
        )
        .await?;
    tracing::warn!(database, "marked as a bench database");
    Ok(())
}

fn refusal(database: &str, why: &str) -> String {
    format!(
        "refusing to run on database `{database}`: it {why}. The bench provisions its own tenants \
         and applies test migrations to every tenant of its database, so it needs a database of \
         its own: create an empty one (`createdb tenantry_bench`) and point DATABASE_URL at it."
    )
}
