//! The read every read-path bench sends: `project(id)` of a bench tenant, as the bench user,
//! to `tenantry serve` (started here with the bench's JWT secret) or to the plain baseline.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::HeaderValue;
use serde_json::json;
use tenantry::auth::token::TokenKeys;

use super::load::{Shot, Target};
use super::server::ChildServer;
use super::setup;

/// The read the server answers: one project of the tenant, authenticated.
pub const QUERY: &str = "query($id: ID!) { project(id: $id) { id name } }";
/// Both servers answer a found project with a body starting like this.
pub const OK_PREFIX: &[u8] = b"{\"data\":{\"project\":{";
/// A throwaway secret shared by the harness (which signs) and the server under test.
const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";

/// `tenantry serve` on the bench database; `envs` add to or override the defaults, `wrapper`
/// (e.g. valgrind) runs it if given.
pub async fn spawn_server(
    url: &str,
    pool_size: usize,
    envs: &[(&str, &str)],
    wrapper: &[&str],
) -> anyhow::Result<ChildServer> {
    let pool_size = pool_size.to_string();
    let mut all = vec![
        ("DATABASE_URL", url),
        ("DB_POOL_SIZE", pool_size.as_str()),
        ("JWT_SECRET", JWT_SECRET),
        ("LOG_FORMAT", "json"),
    ];
    all.extend_from_slice(envs);
    ChildServer::spawn(super::tenantry_exe(), &["serve"], &all, wrapper).await
}

/// The settings `spawn_server` gives `tenantry serve`, for a server started another way
/// (`app_server`).
pub fn server_envs(url: &str, pool_size: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", url.to_owned()),
        ("DB_POOL_SIZE", pool_size.to_owned()),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ]
}

/// `sha256:<hex>` of the read's document: its id in a trusted-documents manifest.
pub fn document_id() -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(QUERY.as_bytes())))
}

/// A trusted-documents manifest holding the read (graphql-codegen's format), written to `dir`.
pub fn manifest(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("persisted-documents.json");
    let id = document_id();
    let hex = id.trim_start_matches("sha256:");
    std::fs::write(&path, serde_json::to_vec(&json!({ hex: QUERY }))?)?;
    Ok(path)
}

/// The same reads as `shots`, naming the trusted document by `documentId` instead of sending it.
pub fn trusted_shots(range: Range<usize>) -> anyhow::Result<Arc<Vec<Shot>>> {
    let id = document_id();
    shots_with(range, |i| json!({ "documentId": id, "variables": { "id": setup::project_id(i) } }))
}

/// `Authorization: Bearer <token>` for the bench user, signed with the server's secret.
pub fn authorization() -> anyhow::Result<HeaderValue> {
    let token = TokenKeys::new(JWT_SECRET.as_bytes()).issue(setup::USER_ID).map_err(|e| e.into_anyhow())?;
    Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
}

/// A target on `addr` that sends `shots`, expecting a found project.
pub fn target(addr: SocketAddr, authorization: &HeaderValue, shots: &Arc<Vec<Shot>>) -> Target {
    Target { addr, authorization: authorization.clone(), shots: shots.clone(), expect_prefix: OK_PREFIX }
}

/// One request per tenant in `range`, each asking for that tenant's bench project.
pub fn shots(range: Range<usize>) -> anyhow::Result<Arc<Vec<Shot>>> {
    shots_with(range, |i| json!({ "query": QUERY, "variables": { "id": setup::project_id(i) } }))
}

/// One request per tenant in `range` with the body `body(i)`.
fn shots_with(
    range: Range<usize>,
    body: impl Fn(usize) -> serde_json::Value,
) -> anyhow::Result<Arc<Vec<Shot>>> {
    let shots = range
        .map(|i| {
            Ok(Shot {
                tenant: HeaderValue::from_str(&setup::subdomain(i))?,
                body: Bytes::from(serde_json::to_vec(&body(i))?),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Arc::new(shots))
}
