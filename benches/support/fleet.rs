//! Figures of a large fleet of tenants (the scale bench): provisioning latency cold and from the
//! warm pool, a migration while a server serves reads over every tenant, the catalog's size, and
//! the time of the operations that walk every tenant (`pg_dump --schema-only`, `tenants list`,
//! a server's start).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use hdrhistogram::Histogram;
use tenantry::db::migrate::{MigrationSet, migrate_tenants};
use tenantry::db::{Retire, build_pool_retiring};
use tenantry::error::AppError;
use tenantry::tenancy::model::{Subdomain, Tenant, TenantName};
use tenantry::tenancy::provision::{NewTenant, provision};
use tenantry::tenancy::{purge, warm};

use super::load::{self, Load};
use super::read_request;

/// p50 and p99 of `provision` one at a time, `count` tenants, in milliseconds; the tenants are
/// purged afterwards so the fleet keeps its size.
pub struct ProvisionLatency {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Cold: with the warm pool empty. Warm: after a refill of `count` schemas (its time returned).
pub async fn provision_latency(
    pool: &Pool,
    set: &MigrationSet,
    count: usize,
) -> anyhow::Result<(ProvisionLatency, ProvisionLatency, Duration)> {
    empty_warm_pool(pool).await?;
    let cold = timed_provisions(pool, set, "cold", count).await?;
    let t0 = Instant::now();
    // Roles made with each schema, as the cold path makes them: the figures stay comparable
    // with runs before roles were made ahead.
    let refilled = warm::refill(pool, set, count, 0).await.map_err(AppError::into_anyhow)?;
    let refill = t0.elapsed();
    anyhow::ensure!(refilled.created == count, "the refill made {} of {count}", refilled.created);
    let warm = timed_provisions(pool, set, "warm", count).await?;
    Ok((cold, warm, refill))
}

async fn timed_provisions(
    pool: &Pool,
    set: &MigrationSet,
    label: &str,
    count: usize,
) -> anyhow::Result<ProvisionLatency> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut made: Vec<Tenant> = Vec::with_capacity(count);
    for k in 0..count {
        let new = NewTenant {
            name: TenantName::parse(&format!("Latency {label} {k}")).map_err(AppError::into_anyhow)?,
            subdomain: Subdomain::parse(&format!("lat-{label}-{}-{k}", &run[..8]))
                .map_err(AppError::into_anyhow)?,
            owner: Some(super::setup::USER_ID),
        };
        let t0 = Instant::now();
        made.push(provision(pool, set, new).await.map_err(AppError::into_anyhow)?);
        histogram.record(u64::try_from(t0.elapsed().as_micros())?)?;
    }
    for tenant in &made {
        purge(pool, tenant).await.map_err(AppError::into_anyhow)?;
    }
    let ms = |q| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(ProvisionLatency { p50_ms: ms(0.5), p99_ms: ms(0.99) })
}

async fn empty_warm_pool(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await?;
    for row in client.query("delete from control.warm_schemas returning schema_name", &[]).await? {
        let schema: String = row.get(0);
        client.batch_execute(&format!("drop schema if exists \"{schema}\" cascade")).await?;
    }
    // Cold means the whole of it: no role made ahead either.
    for row in client.query("delete from control.warm_roles returning tenant_id", &[]).await? {
        let id: uuid::Uuid = row.get(0);
        client.batch_execute(&format!("drop role if exists \"t_{}\"", id.simple())).await?;
    }
    Ok(())
}

/// What happened to reads over every tenant while a migration ran.
pub struct ServedMigration {
    pub took: Duration,
    pub migrated: usize,
    pub failed_tenants: usize,
    pub ok: u64,
    pub errors: u64,
}

/// Runs `set` over every tenant with `jobs` while a `tenantry serve` answers `rate` reads a second
/// spread over tenants `0..tenants`, and counts the reads that failed.
pub async fn migrate_while_serving(
    url: &str,
    set: &MigrationSet,
    jobs: usize,
    tenants: usize,
    rate: f64,
) -> anyhow::Result<ServedMigration> {
    let server = read_request::spawn_server(url, 16, &[("TENANT_WARM_POOL", "0")], &[]).await?;
    let authorization = read_request::authorization()?;
    let shots = read_request::shots(0..tenants)?;
    let target = read_request::target(server.addr, &authorization, &shots);
    let done = Arc::new(AtomicBool::new(false));
    let migrate_pool = build_pool_retiring(url, jobs + 2, Retire::default())?;
    let migration = {
        let (set, done, pool) = (set.clone(), done.clone(), migrate_pool.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let report = migrate_tenants(&pool, &set, jobs, None, |_| {}, || {}).await;
            done.store(true, Ordering::Relaxed);
            report.map(|r| (r, t0.elapsed()))
        })
    };
    let (mut ok, mut errors) = (0, 0);
    let slice = Load { connections: 8, duration: Duration::from_secs(1), rate: Some(rate) };
    while !done.load(Ordering::Relaxed) {
        let part = load::run(&target, slice).await?;
        ok += part.ok;
        errors += part.errors;
    }
    let (report, took) = migration.await??;
    migrate_pool.close();
    Ok(ServedMigration { took, migrated: report.migrated, failed_tenants: report.failed.len(), ok, errors })
}

/// Reads over every tenant while tenants were provisioned one after another.
pub struct ServedProvisioning {
    pub took: Duration,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Provisions `count` tenants one after another (cold: no warm schema) while a `tenantry serve`
/// answers `rate` reads a second over tenants `0..tenants`, with the tenant roles made ahead in
/// one batch (`ahead`, made while serving, as the refill job would) or one per provisioning.
/// The server is warmed first (each backend's first role switch builds its membership list), and
/// the tenants are purged afterwards. With a non-superuser login role, each membership change
/// makes every backend rebuild that list on its next request: what the read latencies show.
pub async fn provision_while_serving(
    url: &str,
    pool: &Pool,
    set: &MigrationSet,
    tenants: usize,
    rate: f64,
    count: usize,
    ahead: bool,
) -> anyhow::Result<ServedProvisioning> {
    empty_warm_pool(pool).await?;
    let envs = [("TENANT_WARM_POOL", "0"), ("TENANT_ROLES_AHEAD", "0")];
    let server = read_request::spawn_server(url, 16, &envs, &[]).await?;
    let authorization = read_request::authorization()?;
    let shots = read_request::shots(0..tenants)?;
    let target = read_request::target(server.addr, &authorization, &shots);
    let warm_up = Load { connections: 16, duration: Duration::from_secs(5), rate: None };
    load::run(&target, warm_up).await?;

    let done = Arc::new(AtomicBool::new(false));
    let provisioning = {
        let (pool, set, done) = (pool.clone(), set.clone(), done.clone());
        let run = uuid::Uuid::new_v4().simple().to_string();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let result = async {
                if ahead {
                    tenantry::db::tenant_role::make_ahead(&pool, count, count).await?;
                }
                let mut made = Vec::with_capacity(count);
                for k in 0..count {
                    let new = NewTenant {
                        name: TenantName::parse(&format!("Served {k}"))?,
                        subdomain: Subdomain::parse(&format!("srv-{}-{k}", &run[..8]))?,
                        owner: Some(super::setup::USER_ID),
                    };
                    made.push(provision(&pool, &set, new).await?);
                }
                Ok::<_, AppError>(made)
            }
            .await;
            done.store(true, Ordering::Relaxed);
            result.map(|made| (made, t0.elapsed()))
        })
    };
    let (mut ok, mut errors) = (0, 0);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let slice = Load { connections: 8, duration: Duration::from_secs(1), rate: Some(rate) };
    while !done.load(Ordering::Relaxed) {
        let part = load::run(&target, slice).await?;
        ok += part.ok;
        errors += part.errors;
        latency.add(&part.latency)?;
    }
    let (made, took) = provisioning.await?.map_err(AppError::into_anyhow)?;
    drop(server);
    for tenant in &made {
        purge(pool, tenant).await.map_err(AppError::into_anyhow)?;
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    Ok(ServedProvisioning {
        took,
        ok,
        errors,
        p50_ms: ms(latency.value_at_quantile(0.5)),
        p99_ms: ms(latency.value_at_quantile(0.99)),
        max_ms: ms(latency.max()),
    })
}

/// Rows and bytes of the catalog tables that grow with tenants, and the database's size.
pub struct Catalog {
    pub pg_class_rows: i64,
    pub pg_attribute_rows: i64,
    pub catalog_bytes: i64,
    pub database_bytes: i64,
}

pub async fn catalog(pool: &Pool) -> anyhow::Result<Catalog> {
    let row = pool
        .get()
        .await?
        .query_one(
            "select (select count(*) from pg_class) as classes,
                    (select count(*) from pg_attribute) as attributes,
                    (select sum(pg_total_relation_size(c.oid))::bigint from pg_class c
                      where c.relnamespace = 'pg_catalog'::regnamespace and c.relkind = 'r') as catalog,
                    pg_database_size(current_database()) as database",
            &[],
        )
        .await?;
    Ok(Catalog {
        pg_class_rows: row.get("classes"),
        pg_attribute_rows: row.get("attributes"),
        catalog_bytes: row.get("catalog"),
        database_bytes: row.get("database"),
    })
}

/// Wall time of a command run to completion, its stdout discarded.
pub async fn timed(
    program: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let out = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await?;
    let took = t0.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

/// Time from starting `tenantry serve` until it answers `/livez`.
pub async fn server_start(url: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let server = read_request::spawn_server(url, 16, &[("TENANT_WARM_POOL", "0")], &[]).await?;
    let took = t0.elapsed();
    drop(server);
    Ok(took)
}
