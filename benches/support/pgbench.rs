//! The PostgreSQL-only baseline: `pgbench` running the SQL a tenant-scoped read sends.

use std::time::Duration;

use anyhow::{Context, bail};
use tenantry::db::SchemaName;

use super::setup;

/// Which tenants a run spreads its requests over.
#[derive(Debug, Clone, Copy)]
pub enum Spread {
    /// Bench tenants `0..n`, uniformly.
    Tenants(usize),
    /// Bench tenant 0 only.
    One,
}

/// pgbench's steady transactions per second for the same SQL, `clients` connections,
/// pipelined: it runs `warmup + duration` and counts only the last `duration` (new connections
/// start with cold catalog caches, which takes many seconds to fill over a thousand schemas).
pub async fn run(
    url: &str,
    spread: Spread,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<f64> {
    let pick = match spread {
        Spread::Tenants(n) => format!("\\set i random(0, {})", n.saturating_sub(1)),
        Spread::One => "\\set i 0".to_owned(),
    };
    // `:i` becomes a bind parameter in prepared mode; the name is built by the server, as cheap
    // as it gets, and the statements match what TenantTx sends.
    // The scoping select is TenantTx's: search_path and the tenant's role.
    let script = format!(
        "{pick}\n\\startpipeline\nbegin;\nselect set_config('search_path', {schema}, true), \
         set_config('role', coalesce(to_regrole({role})::text, 'none'), true);\n\
         {find} {project};\ncommit;\n\\endpipeline\n",
        schema = setup::pgbench_schema_expr(),
        role = setup::pgbench_role_expr(),
        find = setup::FIND_PROJECT.trim_end_matches("$1"),
        project = setup::pgbench_project_expr(),
    );
    let path = std::env::temp_dir().join(format!("tenantry-bench-{}.sql", std::process::id()));
    tokio::fs::write(&path, script).await?;
    let (warmup, duration) = (warmup.as_secs(), duration.as_secs().max(1));
    let output = tokio::process::Command::new("pgbench")
        .args(["--no-vacuum", "--protocol=prepared", "--jobs=2", "--progress=1"])
        .arg(format!("--client={clients}"))
        .arg(format!("--time={}", warmup + duration))
        .arg("--file")
        .arg(&path)
        .arg(url)
        // Prepared mode prepares every statement before the first transaction runs, so the
        // connection starts on tenant 0's schema; set_config then moves it, as in the server.
        .env("PGOPTIONS", format!("-c search_path={}", SchemaName::for_tenant(setup::tenant_id(0))))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running pgbench (install the PostgreSQL client tools)")?;
    let _ = tokio::fs::remove_file(&path).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("pgbench failed: {}{stderr}", String::from_utf8_lossy(&output.stdout));
    }
    // "progress: 12.0 s, 9331.1 tps, lat …": one line a second.
    let per_second: Vec<f64> = stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("progress: ")?;
            let (at, rest) = rest.split_once(" s, ")?;
            let at: f64 = at.parse().ok()?;
            let tps: f64 = rest.split_once(" tps")?.0.parse().ok()?;
            (at > warmup as f64 + 0.5).then_some(tps)
        })
        .collect();
    if per_second.is_empty() {
        bail!("no progress lines in pgbench output:\n{stderr}");
    }
    Ok(per_second.iter().sum::<f64>() / per_second.len() as f64)
}
