//! Migrations with refinery: `control` once, then every tenant schema, each with its own history.
//!
//! Refinery normally opens its own transactions; here it runs inside ours (`InTx`), so a tenant's
//! migration, its history rows and its `control.tenants.migration_version` commit together, under
//! an advisory lock on the schema. Two replicas migrating at once serialise per schema.

use anyhow::Context;
use deadpool_postgres::Pool;
use futures::StreamExt;
use refinery::{Migration, Runner};
use refinery_core::traits::r#async::{AsyncMigrate, AsyncQuery, AsyncTransaction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::SchemaName;
use super::notify;
use super::rows::{ColumnError, Columns};
use super::script::run_script;
use crate::error::AppError;
use backon::{ExponentialBuilder, Retryable};

mod embedded_control {
    refinery::embed_migrations!("migrations/control");
}
mod embedded_tenant {
    refinery::embed_migrations!("migrations/tenant");
}

const CONTROL_HISTORY: &str = "control.refinery_schema_history";
/// Unqualified: it lands in the tenant schema, which is the whole search_path while migrating.
const TENANT_HISTORY: &str = "refinery_schema_history";
/// Advisory lock key for control migrations ("tenantry" in ASCII).
const CONTROL_LOCK: i64 = 0x7465_6e61_6e74_7279;

/// An ordered set of migrations.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
}

impl MigrationSet {
    /// `migrations/control`, embedded at build time.
    pub fn control() -> Self {
        Self { migrations: embedded_control::migrations::runner().get_migrations().clone() }
    }

    /// `migrations/tenant`, embedded at build time.
    pub fn tenant() -> Self {
        Self { migrations: embedded_tenant::migrations::runner().get_migrations().clone() }
    }

    /// The tenant migrations in `dir` (`V<n>__<name>.sql`), for operators whose product adds
    /// its own. The directory must hold this build's embedded tenant migrations unchanged, as
    /// its lowest versions: it can add to them, never replace or skip one.
    pub fn tenant_from_dir(dir: &std::path::Path) -> anyhow::Result<Self> {
        let mut migrations = refinery::load_sql_migrations(dir)
            .with_context(|| format!("reading tenant migrations from {}", dir.display()))?;
        migrations.sort();
        let embedded = Self::tenant();
        for (i, shipped) in embedded.migrations.iter().enumerate() {
            let found = migrations.get(i);
            if found.is_none_or(|m| {
                m.version() != shipped.version()
                    || m.name() != shipped.name()
                    || m.checksum() != shipped.checksum()
            }) {
                anyhow::bail!(
                    "{} must start with this build's tenant migrations unchanged; V{}__{} is missing or differs",
                    dir.display(),
                    shipped.version(),
                    shipped.name()
                );
            }
        }
        Ok(Self { migrations })
    }

    /// Adds a migration given as refinery names it (`V2__add_column`) and its SQL.
    pub fn with(mut self, name: &str, sql: &str) -> anyhow::Result<Self> {
        self.migrations.push(Migration::unapplied(name, sql)?);
        self.migrations.sort();
        Ok(self)
    }

    /// The version a schema has once every migration in the set is applied.
    pub fn latest_version(&self) -> i32 {
        self.migrations.iter().map(|m| m.version()).max().unwrap_or(0)
    }

    async fn apply(&self, tx: &Transaction<'_>, history_table: &str) -> anyhow::Result<usize> {
        let mut runner = Runner::new(&self.migrations).set_abort_divergent(true);
        runner.set_migration_table_name(history_table);
        let report = runner.run_async(&mut InTx(tx)).await?;
        Ok(report.applied_migrations().len())
    }
}

/// Applies control migrations, serialised across processes by an advisory lock.
pub async fn migrate_control(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("select pg_advisory_xact_lock($1)", &[&CONTROL_LOCK]).await?;
    create_control_schema(&tx).await?;
    let applied =
        MigrationSet::control().apply(&tx, CONTROL_HISTORY).await.context("applying control migrations")?;
    tx.commit().await?;
    if applied > 0 {
        tracing::info!(migrations.applied = applied, "control schema migrated");
    }
    Ok(())
}

/// Creates `control` unless it exists. Under Citus it is a plain schema on the coordinator, never
/// a distributed one (docs/SCALING.md says why): sharding is off for the whole control-migration
/// transaction, so the schema and every control table stay local.
async fn create_control_schema(tx: &Transaction<'_>) -> anyhow::Result<()> {
    if super::citus::installed(tx).await.map_err(AppError::into_anyhow)? {
        super::citus::keep_schemas_local(tx).await?;
    }
    tx.execute_typed("create schema if not exists control", &[]).await?;
    Ok(())
}

/// Brings one tenant schema to the set's latest version inside `tx` and records the version.
/// Returns how many migrations were applied (0: another process got there first).
pub async fn migrate_tenant_in_tx(
    tx: &Transaction<'_>,
    tenant_id: Uuid,
    schema: &SchemaName,
    set: &MigrationSet,
) -> anyhow::Result<usize> {
    let applied = migrate_schema_in_tx(tx, schema, set).await?;
    tx.execute(
        "update control.tenants set migration_version = $2 where id = $1",
        &[&tenant_id, &set.latest_version()],
    )
    .await?;
    Ok(applied)
}

/// Brings one tenant schema to `set`'s latest version (no tenant row needed: a warm schema has
/// none yet), under the schema's DDL lock.
pub async fn migrate_schema_in_tx(
    tx: &Transaction<'_>,
    schema: &SchemaName,
    set: &MigrationSet,
) -> anyhow::Result<usize> {
    lock_schema(tx, schema).await?;
    tx.execute("select set_config('search_path', $1, true)", &[&schema.quoted()]).await?;
    set.apply(tx, TENANT_HISTORY).await
}

/// Takes the transaction-scoped advisory lock that serialises all DDL on one tenant schema.
pub async fn lock_schema(tx: &Transaction<'_>, schema: &SchemaName) -> Result<(), tokio_postgres::Error> {
    let key = format!("tenantry:{schema}");
    tx.execute("select pg_advisory_xact_lock(hashtextextended($1, 0))", &[&key]).await?;
    Ok(())
}

/// How a tenant migration takes its table locks while the fleet serves.
///
/// An `ALTER TABLE` waiting for its lock (behind one long request) blocks every request that
/// comes after it. With `lock_timeout` the migration gives up after `timeout` instead, rolls
/// back, and tries again after a backoff, up to `attempts` times; requests meanwhile proceed.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    pub timeout: std::time::Duration,
    pub attempts: usize,
}

impl Default for LockPolicy {
    fn default() -> Self {
        Self { timeout: std::time::Duration::from_secs(1), attempts: 10 }
    }
}

/// What one `migrate` run did.
#[derive(Debug, Default, serde::Serialize)]
pub struct MigrateReport {
    pub target_version: i32,
    pub migrated: usize,
    pub up_to_date: usize,
    pub failed: Vec<TenantFailure>,
}

#[derive(Debug, serde::Serialize)]
pub struct TenantFailure {
    pub tenant_id: Uuid,
    pub subdomain: String,
    pub error: String,
}

/// Migrates every tenant below the set's latest version, `jobs` at a time. One tenant's failure
/// is recorded and the others continue. `only` restricts the run to one tenant.
pub async fn migrate_tenants(
    pool: &Pool,
    set: &MigrationSet,
    jobs: usize,
    only: Option<Uuid>,
    on_pending: impl FnOnce(usize),
    on_done: impl Fn() + Sync,
) -> anyhow::Result<MigrateReport> {
    migrate_tenants_locking(pool, set, jobs, only, LockPolicy::default(), on_pending, on_done).await
}

/// `migrate_tenants` with an explicit lock policy.
pub async fn migrate_tenants_locking(
    pool: &Pool,
    set: &MigrationSet,
    jobs: usize,
    only: Option<Uuid>,
    lock: LockPolicy,
    on_pending: impl FnOnce(usize),
    on_done: impl Fn() + Sync,
) -> anyhow::Result<MigrateReport> {
    let target = set.latest_version();
    let client = pool.get().await?;
    // The skip decision is this one query on the recorded versions.
    let pending = client
        .query(
            "select id, subdomain, schema_name from control.tenants
             where migration_version < $1 and ($2::uuid is null or id = $2)
             order by created_at",
            &[&target, &only],
        )
        .await?;
    let total = client
        .query_one(
            "select count(*) as total from control.tenants where $1::uuid is null or id = $1",
            &[&only],
        )
        .await?;
    let total: i64 = Columns::of(&total, "db::migrate::migrate_tenants").try_get("total")?;
    let pending = pending
        .iter()
        .map(|row| {
            let c = Columns::of(row, "db::migrate::migrate_tenants");
            Ok((c.try_get("id")?, c.try_get("subdomain")?, c.try_get("schema_name")?))
        })
        .collect::<Result<Vec<(Uuid, String, String)>, ColumnError>>()?;
    drop(client);
    on_pending(pending.len());

    let mut report = MigrateReport { target_version: target, ..Default::default() };
    report.up_to_date = usize::try_from(total)? - pending.len();
    let results = futures::stream::iter(pending)
        .map(|(id, subdomain, schema)| async move {
            let result = migrate_one(pool, id, schema, set, lock).await;
            (id, subdomain, result)
        })
        .buffer_unordered(jobs.max(1))
        .inspect(|_| on_done())
        .collect::<Vec<_>>()
        .await;
    for (tenant_id, subdomain, result) in results {
        match result {
            Ok(0) => report.up_to_date += 1,
            Ok(_) => report.migrated += 1,
            Err(err) => {
                let error = format!("{err:#}");
                tracing::warn!(tenant.id = %tenant_id, error, "tenant migration failed");
                report.failed.push(TenantFailure { tenant_id, subdomain, error });
            }
        }
    }
    Ok(report)
}

/// Migrates one tenant, retrying (with backoff) when a table lock was not granted in time.
async fn migrate_one(
    pool: &Pool,
    id: Uuid,
    schema: String,
    set: &MigrationSet,
    lock: LockPolicy,
) -> anyhow::Result<usize> {
    let schema = SchemaName::parse(&schema)?;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(100))
        .with_max_delay(std::time::Duration::from_secs(5))
        .with_jitter()
        .with_max_times(lock.attempts.saturating_sub(1));
    (|| migrate_once(pool, id, &schema, set, lock.timeout))
        .retry(backoff)
        .when(is_lock_timeout)
        .notify(|_, delay| {
            tracing::info!(tenant.id = %id, retry_in_ms = delay.as_millis() as u64, "tenant migration: lock not granted in time; retrying");
        })
        .await
}

/// One attempt: the migrations, the recorded version and a `tenant_migrated` notification
/// commit together, so replicas drop statements prepared against the old tables.
async fn migrate_once(
    pool: &Pool,
    id: Uuid,
    schema: &SchemaName,
    set: &MigrationSet,
    lock_timeout: std::time::Duration,
) -> anyhow::Result<usize> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Waiting for another migrator is fine; only table locks, which requests queue behind, are bounded.
    lock_schema(&tx, schema).await?;
    let timeout = format!("{}ms", lock_timeout.as_millis().max(1));
    tx.execute("select set_config('lock_timeout', $1, true)", &[&timeout]).await?;
    let applied = migrate_tenant_in_tx(&tx, id, schema, set).await?;
    if applied > 0 {
        notify::publish(&tx, notify::TENANT_MIGRATED, &id.to_string())
            .await
            .map_err(AppError::into_anyhow)?;
    }
    tx.commit().await?;
    Ok(applied)
}

/// Whether a migration failed because a lock was not granted within `lock_timeout` (55P03).
/// The code is found on the driver's error or, below refinery's wrapping, on the server's.
fn is_lock_timeout(err: &anyhow::Error) -> bool {
    let lock_not_available =
        |code: &tokio_postgres::error::SqlState| *code == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE;
    err.chain().any(|cause| {
        let driver = cause.downcast_ref::<tokio_postgres::Error>().and_then(tokio_postgres::Error::code);
        let server = cause.downcast_ref::<tokio_postgres::error::DbError>().map(|db| db.code());
        driver.or(server).is_some_and(lock_not_available)
    })
}

/// An error from a migration statement, as refinery's executor traits need it. It shows the
/// statement's error and keeps its causes in the chain (so the SQLSTATE stays reachable).
#[derive(Debug)]
pub struct MigrationError(anyhow::Error);

impl std::fmt::Display for MigrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for MigrationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Refinery's executor traits over a transaction we own: statements run in it, nothing commits.
struct InTx<'a>(&'a Transaction<'a>);

impl AsyncTransaction for InTx<'_> {
    type Error = MigrationError;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        // Each migration file is split into its statements, each sent on its own (see `script`).
        let mut count = 0;
        for query in queries {
            count += run_script(self.0, query).await.map_err(MigrationError)?;
        }
        Ok(count)
    }
}

impl AsyncQuery<Vec<Migration>> for InTx<'_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        let rows = self.0.query(query, &[]).await.map_err(|err| MigrationError(err.into()))?;
        rows.iter()
            .map(|row| {
                let c = Columns::of(row, "refinery's applied migrations");
                let applied_on: String = c.try_get("applied_on")?;
                let checksum: String = c.try_get("checksum")?;
                Ok(Migration::applied(
                    c.try_get("version")?,
                    c.try_get("name")?,
                    // Refinery writes both columns itself, in these formats.
                    OffsetDateTime::parse(&applied_on, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    checksum.parse().unwrap_or_default(),
                ))
            })
            .collect::<Result<_, ColumnError>>()
            .map_err(|err| MigrationError(err.into()))
    }
}

impl AsyncMigrate for InTx<'_> {}
