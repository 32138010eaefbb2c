//! A database role per tenant: `NOLOGIN`, named like the tenant's schema (`t_<32 hex>`), with
//! rights on that schema only. `TenantTx` switches to it for every tenant statement, so
//! PostgreSQL itself refuses a tenant statement that names another tenant's schema or `control`.
//!
//! [`grant`] is the one place a tenant role is made: provisioning, imports and the upgrade of
//! tenants provisioned before roles existed ([`grant_missing`], `tenantry tenants grant-roles`)
//! all call it. The role name is the `SchemaName`, formatted only through its quoting method.
//! docs/SECURITY.md ("Tenant roles") has the model.

use deadpool_postgres::Pool;
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use super::SchemaName;
use super::migrate::lock_schema;
use super::rows::{ColumnError, Columns};
use crate::error::AppError;

/// Creates `schema`'s role if it does not exist and grants it what tenant requests need:
/// usage on the schema; select, insert, update, delete on its tables; usage and select on its
/// sequences; execute on its routines; the same by default on what the login role creates in
/// the schema later (tenant migrations). Nothing on `control`, `public` or another schema.
/// The login role is made a member, so it may `SET ROLE` to it. Runs in the caller's
/// transaction: the role commits or rolls back with the schema.
///
/// For a schema that already holds objects (an import, a tenant provisioned before roles). A
/// schema just created and still empty takes [`grant_empty`], which does not look for objects.
pub async fn grant(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
) -> Result<(), tokio_postgres::Error> {
    grant_empty(tx, schema).await?;
    grant_existing(tx, schema).await
}

/// The grants on what `schema` already holds. `… on all tables in schema` reads the whole of
/// pg_class (it has no index on the namespace alone), so its cost grows with every tenant of
/// the database: provisioning slowed from ~100 to ~3 tenants a second by 20,000 tenants.
pub async fn grant_existing(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
) -> Result<(), tokio_postgres::Error> {
    let name = schema.quoted();
    let statements = [
        format!("grant select, insert, update, delete on all tables in schema {name} to {name}"),
        format!("grant usage, select on all sequences in schema {name} to {name}"),
        format!("grant execute on all routines in schema {name} to {name}"),
    ];
    futures::future::try_join_all(statements.iter().map(|sql| tx.execute_typed(sql, &[]))).await?;
    Ok(())
}

/// [`grant`] for a schema created in this transaction, before its migrations run: the role, the
/// membership, usage on the schema and the default privileges, so each table, sequence and
/// routine the migrations create comes with its grant. Nothing scans the catalog for existing
/// objects, so provisioning does not slow down as tenants accumulate (docs/SCALING.md).
///
/// Returns whether the database is a Citus cluster: there the caller also runs
/// [`grant_existing`] once the migrations are done, so each shard carries its table's grants
/// explicitly, as the two-node suite tested (default privileges on Citus shards were not).
pub async fn grant_empty(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
) -> Result<bool, tokio_postgres::Error> {
    // Whether the role exists, and whether the login role is a member already (a role made
    // ahead): granting an existing membership again would still count as a membership change.
    let exists = tx
        .query_opt(
            "select r.rolcanlogin as can_login,
                    exists (select 1 from pg_auth_members m
                             where m.roleid = r.oid and m.member = (select oid from pg_roles where rolname = current_user)
                           ) as member
               from pg_roles r where r.rolname = $1",
            &[&schema.as_str()],
        )
        .await?;
    let (can_login, member) = match &exists {
        Some(row) => {
            let c = Columns::of(row, "db::tenant_role::grant_empty");
            (c.try_get::<bool>("can_login").unwrap_or(false), c.try_get::<bool>("member").unwrap_or(false))
        }
        None => (false, false),
    };
    let name = schema.quoted();
    // Citus opens its connections to workers as the current role: on a Citus database a tenant
    // role must be able to log in (it has no password; the cluster's inter-node authentication
    // admits it, as it admits Citus's own connections). docs/SCALING.md, "Tenant roles on Citus".
    let citus = tx
        .query_one("select exists (select 1 from pg_extension where extname = 'citus') as citus", &[])
        .await?;
    let citus = Columns::of(&citus, "db::tenant_role::grant").try_get::<bool>("citus").unwrap_or(false);
    let login = if citus { "login" } else { "nologin" };
    if exists.is_none() {
        tx.execute_typed(&format!("create role {name} {login}"), &[]).await?;
    } else if citus && !can_login {
        tx.execute_typed(&format!("alter role {name} login"), &[]).await?;
    }
    // One statement per execute (poolers and Citus forward them one at a time), all in one flush.
    let membership = if member {
        // Made ahead: the mark that kept it from being taken for an orphan goes; it is in use.
        format!("comment on role {name} is null")
    } else {
        format!("grant {name} to current_user")
    };
    let statements = [
        membership,
        format!("grant usage on schema {name} to {name}"),
        format!(
            "alter default privileges in schema {name} grant select, insert, update, delete on tables to {name}"
        ),
        format!("alter default privileges in schema {name} grant usage, select on sequences to {name}"),
        format!("alter default privileges in schema {name} grant execute on routines to {name}"),
    ];
    futures::future::try_join_all(statements.iter().map(|sql| tx.execute_typed(sql, &[]))).await?;
    Ok(citus)
}

/// What marks a role made ahead (`COMMENT ON ROLE`): it has rights on nothing yet, so tools that
/// look for unused tenant roles can tell it from one left behind. Cleared when a tenant takes it.
pub const MADE_AHEAD: &str = "tenantry: made ahead for a tenant not provisioned yet (control.warm_roles)";

/// Keeps at least `low` roles made ahead in `control.warm_roles`: below it, makes enough in one
/// transaction to reach `ahead` (and never fewer than `low`), so memberships change once per
/// batch rather than once per provisioning (docs/SCALING.md, "Roles made ahead"). Returns how
/// many it made.
pub async fn make_ahead(pool: &Pool, low: usize, ahead: usize) -> Result<usize, AppError> {
    if ahead == 0 {
        return Ok(0);
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // One refill at a time: two would both find the stock low and both make a batch.
    tx.execute("select pg_advisory_xact_lock(hashtext('tenantry.warm_roles'))", &[]).await?;
    let row = tx.query_one("select count(*) as stock from control.warm_roles", &[]).await?;
    let stock: i64 = Columns::of(&row, "db::tenant_role::make_ahead").try_get("stock")?;
    let stock = usize::try_from(stock).unwrap_or(0);
    if stock >= low.min(ahead) {
        return Ok(0);
    }
    let count = ahead.max(low) - stock;
    let citus = tx
        .query_one("select exists (select 1 from pg_extension where extname = 'citus') as citus", &[])
        .await?;
    let citus = Columns::of(&citus, "db::tenant_role::make_ahead").try_get::<bool>("citus").unwrap_or(false);
    let login = if citus { "login" } else { "nologin" };
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    let mut statements = Vec::with_capacity(ids.len() * 3);
    for id in &ids {
        let name = SchemaName::for_tenant(*id).quoted();
        statements.push(format!("create role {name} {login}"));
        statements.push(format!("grant {name} to current_user"));
        statements.push(format!("comment on role {name} is '{MADE_AHEAD}'"));
    }
    futures::future::try_join_all(statements.iter().map(|sql| tx.execute_typed(sql, &[]))).await?;
    tx.execute("insert into control.warm_roles (tenant_id) select unnest($1::uuid[])", &[&ids]).await?;
    tx.commit().await?;
    Ok(count)
}

/// Takes a role made ahead, if there is one: the caller names its tenant and schema after the
/// returned id, in `tx` (a rollback puts the role back).
pub async fn take_ahead(tx: &tokio_postgres::Transaction<'_>) -> Result<Option<Uuid>, AppError> {
    let row = tx
        .query_opt(
            "delete from control.warm_roles
              where tenant_id = (select tenant_id from control.warm_roles limit 1 for update skip locked)
             returning tenant_id",
            &[],
        )
        .await?;
    match row {
        Some(row) => Ok(Some(Columns::of(&row, "db::tenant_role::take_ahead").try_get("tenant_id")?)),
        None => Ok(None),
    }
}

/// Memberships past which the login role's membership list costs each backend a noticeable
/// rebuild after every membership change (docs/SCALING.md: ~0.2 s at 10,000 on PostgreSQL 15).
const MANY_MEMBERSHIPS: i64 = 10_000;

/// What to tell the operator at start, if anything, about the cost of the login role's tenant
/// role memberships: `version` is `server_version_num`.
pub fn membership_warning(version: i32, superuser: bool, memberships: i64) -> Option<String> {
    if superuser || memberships < MANY_MEMBERSHIPS {
        return None;
    }
    let how = if version < 170_000 {
        "in time that grows with the square of that count on this version (1.7 s at 25,000)"
    } else {
        "in time that grows with that count (0.37 s at 100,000)"
    };
    Some(format!(
        "the login role is a member of {memberships} tenant roles: after any role membership change, \
         every PostgreSQL backend rebuilds that list {how}; keep TENANT_ROLES_AHEAD on and see \
         docs/SCALING.md, \"Many tenants on one PostgreSQL\""
    ))
}

/// Logs [`membership_warning`]'s advice for this database's login role, if any. A failed
/// look-up is logged and otherwise ignored: it only advises.
pub async fn warn_about_memberships(pool: &Pool) {
    let look = async {
        let row = pool
            .get()
            .await?
            .query_one(
                "select current_setting('server_version_num')::int as version,
                        (select rolsuper from pg_roles where rolname = current_user) as superuser,
                        (select count(*) from pg_auth_members
                          where member = (select oid from pg_roles where rolname = current_user)) as memberships",
                &[],
            )
            .await?;
        let c = Columns::of(&row, "db::tenant_role::warn_about_memberships");
        Ok::<_, AppError>((c.try_get("version")?, c.try_get("superuser")?, c.try_get("memberships")?))
    };
    match look.await {
        Ok((version, superuser, memberships)) => {
            if let Some(advice) = membership_warning(version, superuser, memberships) {
                tracing::warn!(memberships, pg.version = version, "{advice}");
            }
        }
        Err(err) => tracing::warn!(error = ?err, "could not count the login role's memberships"),
    }
}

/// Drops `schema`'s role, after its schema is dropped (purge). A role another database of the
/// cluster still grants to (the same tenant imported there) is kept: PostgreSQL refuses to drop
/// it (2BP01), and the purge goes on.
pub async fn drop(
    tx: &mut tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
) -> Result<(), tokio_postgres::Error> {
    if tx.query_opt("select 1 from pg_roles where rolname = $1", &[&schema.as_str()]).await?.is_none() {
        return Ok(());
    }
    let name = schema.quoted();
    tx.execute_typed(&format!("drop owned by {name}"), &[]).await?;
    let savepoint = tx.savepoint("tenant_role_drop").await?;
    match savepoint.execute_typed(&format!("drop role {name}"), &[]).await {
        Ok(_) => savepoint.commit().await,
        Err(err) if err.code() == Some(&tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {
            savepoint.rollback().await?;
            tracing::info!("tenant role kept: another database still grants to it");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// What `grant_missing` did.
#[derive(Debug, Default, Serialize)]
pub struct GrantReport {
    pub granted: usize,
    pub failed: Vec<GrantFailure>,
}

#[derive(Debug, Serialize)]
pub struct GrantFailure {
    pub tenant_id: Uuid,
    pub subdomain: String,
    pub error: String,
}

/// Gives every tenant without a role its role, `jobs` at a time, each in its own transaction
/// under the tenant's migration lock (so a concurrent migration's new tables are covered).
/// Resumable: a second run finds only the tenants the first did not finish. The server keeps
/// serving meanwhile; a tenant's transactions switch to its role from the commit on.
pub async fn grant_missing(
    pool: &Pool,
    jobs: usize,
    on_pending: impl FnOnce(usize),
    on_done: impl Fn() + Sync,
) -> anyhow::Result<GrantReport> {
    let rows = pool
        .get()
        .await?
        .query(
            "select id, subdomain, schema_name from control.tenants
             where to_regrole(schema_name) is null order by created_at",
            &[],
        )
        .await?;
    let pending = rows
        .iter()
        .map(|row| {
            let c = Columns::of(row, "db::tenant_role::grant_missing");
            Ok((c.try_get("id")?, c.try_get("subdomain")?, c.try_get("schema_name")?))
        })
        .collect::<Result<Vec<(Uuid, String, String)>, ColumnError>>()?;
    on_pending(pending.len());
    let results = futures::stream::iter(pending)
        .map(|(id, subdomain, schema)| async move { (id, subdomain, grant_one(pool, &schema).await) })
        .buffer_unordered(jobs.max(1))
        .inspect(|_| on_done())
        .collect::<Vec<_>>()
        .await;
    let mut report = GrantReport::default();
    for (tenant_id, subdomain, result) in results {
        match result {
            Ok(()) => report.granted += 1,
            Err(err) => {
                let error = format!("{err:#}");
                tracing::warn!(tenant.id = %tenant_id, error, "granting the tenant role failed");
                report.failed.push(GrantFailure { tenant_id, subdomain, error });
            }
        }
    }
    Ok(report)
}

async fn grant_one(pool: &Pool, schema: &str) -> anyhow::Result<()> {
    let schema = SchemaName::parse(schema)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock_schema(&tx, &schema).await?;
    grant(&tx, &schema).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::membership_warning;

    #[test]
    fn a_non_superuser_with_many_memberships_is_warned_by_version() {
        assert_eq!(membership_warning(150_020, false, 9_999), None);
        assert_eq!(membership_warning(150_020, true, 100_000), None, "superusers skip membership checks");
        let old = membership_warning(150_020, false, 10_000).unwrap();
        assert!(old.contains("square") && old.contains("10000 tenant roles"), "{old}");
        let new = membership_warning(180_004, false, 50_000).unwrap();
        assert!(new.contains("grows with that count") && !new.contains("square"), "{new}");
    }
}
