//! The two baselines the GraphQL read is measured against: `pgbench` running the same SQL, and a
//! plain axum + tokio-postgres handler (run as its own process, like the server) doing the same.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::setup;
use crate::db::{SchemaName, TenantTx, build_pool};

/// The per-request query, as `projects::repo::find` sends it.
const FIND_PROJECT: &str = "select * from projects where id = $1";

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
pub async fn pgbench(
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
    let script = format!(
        "{pick}\n\\startpipeline\nbegin;\nselect set_config('search_path', {schema}, true);\n\
         select * from projects where id = {project};\ncommit;\n\\endpipeline\n",
        schema = setup::pgbench_schema_expr(),
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

struct Plain {
    pool: Pool,
    /// Subdomain → schema, built at start (the server's equivalent is its moka cache).
    schemas: HashMap<String, SchemaName>,
}

#[derive(Deserialize)]
struct PlainRequest {
    variables: PlainVariables,
}

#[derive(Deserialize)]
struct PlainVariables {
    id: Uuid,
}

/// Serves the plain baseline on `bind` until killed: `POST /graphql` taking the same request the
/// GraphQL server gets, running the same SQL, answering the same JSON shape.
pub async fn serve_plain(
    url: &str,
    bind: SocketAddr,
    tenants: usize,
    pool_size: usize,
) -> anyhow::Result<()> {
    let schemas =
        (0..tenants).map(|i| (setup::subdomain(i), SchemaName::for_tenant(setup::tenant_id(i)))).collect();
    let state = Arc::new(Plain { pool: build_pool(url, pool_size)?, schemas });
    let router = axum::Router::new()
        .route("/graphql", post(plain_read))
        .route("/livez", axum::routing::get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

async fn plain_read(
    State(state): State<Arc<Plain>>,
    headers: HeaderMap,
    Json(request): Json<PlainRequest>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let schema = headers
        .get("x-tenant")
        .and_then(|v| v.to_str().ok())
        .and_then(|sub| state.schemas.get(sub))
        .ok_or(StatusCode::NOT_FOUND)?;
    let internal = |_| StatusCode::INTERNAL_SERVER_ERROR;
    let mut tx = TenantTx::begin_single(&state.pool, schema).await.map_err(internal)?;
    let row = tx
        .query_opt(FIND_PROJECT, &[&request.variables.id])
        .await
        .map_err(internal)?
        .ok_or(StatusCode::NOT_FOUND)?;
    tx.commit().await.map_err(internal)?;
    let (id, name): (Uuid, String) = (row.get("id"), row.get("name"));
    Ok(Json(json!({ "data": { "project": { "id": id, "name": name } } })))
}
