//! The plain baseline server: axum + tokio-postgres, no GraphQL, no auth, no tenant lookup
//! (a `HashMap` subdomain → schema), reading through the same `TenantTx::begin_single` as the
//! product. It runs as its own process, like the server: a bench binary that spawns it
//! (`spawn`) starts itself again with `PLAIN_SERVER_ENV` set and must call `serve_if_asked`
//! first thing in `main`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::json;
use tenantry::db::{SchemaName, TenantTx, build_pool};
use uuid::Uuid;

use super::server::ChildServer;
use super::setup;

/// Set (to the number of bench tenants) in the environment of a bench binary started as the
/// plain server.
const PLAIN_SERVER_ENV: &str = "TENANTRY_BENCH_PLAIN_SERVER";

/// Starts this bench binary again as the plain server over bench tenants `0..tenants`;
/// `wrapper` (e.g. valgrind and its flags) runs it if given.
pub async fn spawn(
    url: &str,
    tenants: usize,
    pool_size: usize,
    wrapper: &[&str],
) -> anyhow::Result<ChildServer> {
    let exe = std::env::current_exe()?;
    let (tenants, pool_size) = (tenants.to_string(), pool_size.to_string());
    let envs =
        [(PLAIN_SERVER_ENV, tenants.as_str()), ("DATABASE_URL", url), ("DB_POOL_SIZE", pool_size.as_str())];
    ChildServer::spawn(&exe, &[], &envs, wrapper).await
}

/// When this process was started by `spawn`: serves until killed, then returns `true`.
pub fn serve_if_asked() -> anyhow::Result<bool> {
    let Ok(tenants) = std::env::var(PLAIN_SERVER_ENV) else {
        return Ok(false);
    };
    let tenants: usize = tenants.parse().context(PLAIN_SERVER_ENV)?;
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let pool_size: usize = std::env::var("DB_POOL_SIZE").context("DB_POOL_SIZE")?.parse()?;
    let bind: SocketAddr = std::env::var("BIND").context("BIND")?.parse()?;
    tokio::runtime::Runtime::new()?.block_on(serve(&url, bind, tenants, pool_size))?;
    Ok(true)
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
async fn serve(url: &str, bind: SocketAddr, tenants: usize, pool_size: usize) -> anyhow::Result<()> {
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
        .query_opt(setup::FIND_PROJECT, &[&request.variables.id])
        .await
        .map_err(internal)?
        .ok_or(StatusCode::NOT_FOUND)?;
    tx.commit().await.map_err(internal)?;
    let (id, name): (Uuid, String) = (row.get("id"), row.get("name"));
    Ok(Json(json!({ "data": { "project": { "id": id, "name": name } } })))
}
