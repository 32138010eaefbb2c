//! `tenantry migrate`: every tenant to the latest version, in parallel, with a summary.

use std::process::ExitCode;

use clap::Args;
use deadpool_postgres::Pool;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use uuid::Uuid;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::db::migrate::{LockPolicy, MigrateReport, MigrationSet, migrate_tenants_locking};
use crate::db::tenant_role::grant_missing;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Tenants migrated at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Print the summary as JSON (for scripts); no progress bar.
    #[arg(long)]
    pub json: bool,
    /// Tenant migrations from this directory instead of the ones built in. It must start with
    /// the built-in ones unchanged (a product adds its migrations after them).
    #[arg(long, env = "TENANT_MIGRATIONS_DIR")]
    pub migrations_dir: Option<PathBuf>,
}

pub async fn run(pool: Pool, config: &Config, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let set = match &args.migrations_dir {
        Some(dir) => MigrationSet::tenant_from_dir(dir)?,
        None => MigrationSet::tenant(),
    };
    migrate_and_report(&pool, &set, usize::from(args.jobs), None, lock_policy(config), args.json).await
}

/// The lock policy the configuration asks for (`MIGRATION_LOCK_TIMEOUT_MS`, `MIGRATION_LOCK_RETRIES`).
pub fn lock_policy(config: &Config) -> LockPolicy {
    LockPolicy {
        timeout: Duration::from_millis(config.migration_lock_timeout_ms),
        attempts: config.migration_lock_retries.max(1),
    }
}

/// Runs tenant migrations (all, or one tenant), printing progress and the summary.
pub async fn migrate_and_report(
    pool: &Pool,
    set: &MigrationSet,
    jobs: usize,
    only: Option<Uuid>,
    lock: LockPolicy,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::with_draw_target(
        None,
        if json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} migrating tenants {bar:30} {pos}/{len} {elapsed} eta {eta}")
            .expect("valid template"),
    );
    let report =
        migrate_tenants_locking(pool, set, jobs, only, lock, |n| bar.set_length(n as u64), || bar.inc(1))
            .await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `tenantry tenants grant-roles`: every tenant without a role gets one, printing progress
/// and the summary. Fails (exit 1) if any tenant failed; running it again resumes.
pub async fn grant_roles_and_report(pool: &Pool, jobs: usize, json: bool) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::with_draw_target(
        None,
        if json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} granting tenant roles {bar:30} {pos}/{len} {elapsed} eta {eta}",
        )
        .expect("valid template"),
    );
    let report = grant_missing(pool, jobs, |n| bar.set_length(n as u64), || bar.inc(1)).await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("tenant roles: {} granted, {} failed", report.granted, report.failed.len());
        for failure in &report.failed {
            println!("  failed: {} ({}): {}", failure.subdomain, failure.tenant_id, failure.error);
        }
    }
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_summary(report: &MigrateReport) {
    println!(
        "tenant migrations to version {}: {} migrated, {} up to date, {} failed",
        report.target_version,
        report.migrated,
        report.up_to_date,
        report.failed.len()
    );
    for failure in &report.failed {
        println!("  failed: {} ({}): {}", failure.subdomain, failure.tenant_id, failure.error);
    }
}
