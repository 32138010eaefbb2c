//! Bench data: tenants with fixed ids (so pgbench can name their schemas), projects in each, and
//! one user who belongs to all of them. Existing bench tenants are kept, so re-runs are quick.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures::StreamExt;
use hdrhistogram::Histogram;
use uuid::Uuid;

use tenantry::db::migrate::MigrationSet;
use tenantry::db::{SchemaName, TenantTx};
use tenantry::error::AppError;
use tenantry::tenancy::model::{Subdomain, TenantName};
use tenantry::tenancy::provision::{NewTenant, provision_with_id};

/// Bench tenant `i` has id `be4c0000-0000-4000-8000-<i as 12 hex digits>`.
const TENANT_ID_BASE: u128 = 0xbe4c_0000_0000_4000_8000_0000_0000_0000;
/// Bench tenant ids cover `0..MAX_TENANTS` (the last 12 hex digits).
pub const MAX_TENANTS: usize = 1 << 48;
/// The bench user, a member (owner) of every bench tenant.
pub const USER_ID: Uuid = Uuid::from_u128(0xbe4c_0000_0000_4000_8000_ffff_ffff_ffff);

pub fn tenant_id(i: usize) -> Uuid {
    Uuid::from_u128(TENANT_ID_BASE | i as u128)
}

pub fn subdomain(i: usize) -> String {
    format!("bench-{i:05}")
}

/// The per-request query of the read benchmark, as `projects::repo::find` sends it.
pub const FIND_PROJECT: &str =
    "select id, name, description, created_by, created_at, updated_at from projects where id = $1";

/// The project the read benchmark asks for in tenant `i`; ids are per schema, so reuse the
/// tenant's.
pub fn project_id(i: usize) -> Uuid {
    tenant_id(i)
}

/// What set-up did: how many tenants it provisioned and how long each took.
pub struct SetupReport {
    pub created: usize,
    pub total: Duration,
    /// Per-tenant provisioning time, microseconds.
    pub per_tenant: Histogram<u64>,
}

/// Makes sure bench tenants `0..count` exist with `projects` projects each, `jobs` at a time.
pub async fn ensure_tenants(
    pool: &Pool,
    migrations: &MigrationSet,
    count: usize,
    projects: i64,
    jobs: usize,
) -> anyhow::Result<SetupReport> {
    let client = pool.get().await?;
    client
        .execute(
            "insert into control.users (id, email, name, password_hash, email_verified_at)
             values ($1, 'bench@example.com', 'Bench', '!', now()) on conflict do nothing",
            &[&USER_ID],
        )
        .await?;
    let ids: Vec<Uuid> = (0..count).map(tenant_id).collect();
    let existing: HashSet<Uuid> = client
        .query("select id from control.tenants where id = any($1)", &[&ids])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    drop(client);
    let missing: Vec<usize> = (0..count).filter(|i| !existing.contains(&tenant_id(*i))).collect();
    let started = Instant::now();
    let mut per_tenant = Histogram::new(3)?;
    let mut timings = futures::stream::iter(missing)
        .map(|i| async move {
            let t0 = Instant::now();
            create_one(pool, migrations, i, projects).await?;
            Ok::<_, AppError>(t0.elapsed())
        })
        .buffer_unordered(jobs.max(1));
    let mut created = 0;
    while let Some(elapsed) = timings.next().await {
        let elapsed = elapsed.map_err(AppError::into_anyhow)?;
        per_tenant.record(u64::try_from(elapsed.as_micros())?)?;
        created += 1;
        if created % 1000 == 0 {
            tracing::warn!(created, "bench tenants provisioned");
        }
    }
    // Load at thousands of requests a second needs a plan without the free plan's 5 requests a
    // second and 1,000 a month (enterprise: no rate limit, no quota; requests are still counted).
    pool.get()
        .await?
        .execute(
            "update control.tenants set plan = 'enterprise' where id = any($1) and plan <> 'enterprise'",
            &[&ids],
        )
        .await?;
    Ok(SetupReport { created, total: started.elapsed(), per_tenant })
}

/// Provisions bench tenant `i` (owned by the bench user) and fills its projects.
async fn create_one(pool: &Pool, migrations: &MigrationSet, i: usize, projects: i64) -> Result<(), AppError> {
    let new = NewTenant {
        name: TenantName::parse(&format!("Bench {i}"))?,
        subdomain: Subdomain::parse(&subdomain(i))?,
        owner: Some(USER_ID),
    };
    let tenant = provision_with_id(pool, migrations, tenant_id(i), new).await?;
    let mut tx = TenantTx::begin(pool, &tenant.schema).await?;
    tx.execute(
        "insert into projects (id, name)
         select case when g = 0 then $1 else gen_random_uuid() end, 'project ' || g
         from generate_series(0, $2::bigint - 1) g",
        &[&project_id(i), &projects],
    )
    .await?;
    tx.commit().await
}

/// The schema of bench tenant `i`, as pgbench must spell it: a SQL expression over `:i`.
pub fn pgbench_schema_expr() -> String {
    format!("'\"' || {} || '\"'", pgbench_role_expr())
}

/// The tenant role of tenant `:i` (its schema's name, unquoted), as a pgbench SQL expression.
pub fn pgbench_role_expr() -> String {
    let full = SchemaName::for_tenant(tenant_id(0));
    let prefix = &full.as_str()[..full.as_str().len() - 12];
    format!("('{prefix}' || lpad(to_hex(:i::int), 12, '0'))")
}

/// The read benchmark's project id in tenant `:i`, as a pgbench SQL expression.
pub fn pgbench_project_expr() -> String {
    let full = project_id(0).to_string();
    let prefix = &full[..full.len() - 12];
    format!("('{prefix}' || lpad(to_hex(:i::int), 12, '0'))::uuid")
}
