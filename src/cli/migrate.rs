//! `tenantry migrate`: every tenant to the latest version, in parallel, with a summary.

use std::process::ExitCode;

use clap::Args;
use deadpool_postgres::Pool;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use uuid::Uuid;

use crate::db::migrate::{MigrateReport, MigrationSet, migrate_tenants};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Tenants migrated at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Print the summary as JSON (for scripts); no progress bar.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(pool: Pool, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    migrate_and_report(&pool, usize::from(args.jobs), None, args.json).await
}

/// Runs tenant migrations (all, or one tenant), printing progress and the summary.
pub async fn migrate_and_report(
    pool: &Pool,
    jobs: usize,
    only: Option<Uuid>,
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
    let set = MigrationSet::tenant();
    let report = migrate_tenants(pool, &set, jobs, only, |n| bar.set_length(n as u64), || bar.inc(1)).await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
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
