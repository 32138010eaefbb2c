//! Tenant resolution: `X-Tenant`, `Host: <subdomain>.<BASE_DOMAIN>`, or a custom domain.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use deadpool_postgres::Pool;
use moka::future::Cache;

use uuid::Uuid;

use super::model::Subdomain;
use super::repo;
use crate::error::AppError;
use crate::plans::TenantAccess;
use crate::state::AppState;

/// How a request names its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TenantKey {
    Subdomain(String),
    Domain(String),
}

/// Reads the tenant a request names. `X-Tenant` wins over `Host`; the bare base domain, `www.`,
/// IP addresses and unknown custom domains name no tenant.
pub fn tenant_key(headers: &HeaderMap, base_domain: &str) -> Result<Option<TenantKey>, AppError> {
    if let Some(value) = headers.get("x-tenant") {
        let raw = value.to_str().unwrap_or_default().trim().to_ascii_lowercase();
        return Subdomain::parse(&raw)
            .map(|sub| Some(TenantKey::Subdomain(sub.as_str().to_owned())))
            .map_err(|_| unknown_subdomain(&raw));
    }
    let Some(host) = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()) else {
        return Ok(None);
    };
    Ok(host_key(host, base_domain))
}

fn host_key(host: &str, base_domain: &str) -> Option<TenantKey> {
    let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if host == base_domain || host.strip_prefix("www.") == Some(base_domain) {
        return None;
    }
    match host.strip_suffix(base_domain).and_then(|rest| rest.strip_suffix('.')) {
        Some(sub) => Some(TenantKey::Subdomain(sub.to_owned())),
        None => Some(TenantKey::Domain(host)),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: keep the brackets' content only.
        return host.split(']').next().map(|h| h.trim_start_matches('[')).unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn unknown_subdomain(sub: &str) -> AppError {
    AppError::TenantNotFound(format!(
        "no tenant has the subdomain {sub:?}; check the X-Tenant header or the host name"
    ))
}

/// `TenantKey → tenant id` (or known absence), single-flight per key, cleared on `tenant_changed`.
#[derive(Clone)]
pub struct TenantCache(Cache<TenantKey, Option<Uuid>>);

impl TenantCache {
    pub fn new(ttl: Duration) -> Self {
        Self(Cache::builder().max_capacity(100_000).time_to_live(ttl).build())
    }

    pub async fn get(&self, pool: &Pool, key: &TenantKey) -> Result<Option<Uuid>, AppError> {
        let mut hit = true;
        let found = self
            .0
            .try_get_with_by_ref(key, async {
                hit = false;
                let client = pool.get().await?;
                let tenant = match key {
                    TenantKey::Subdomain(sub) => repo::find_by_subdomain(&client, sub).await?,
                    TenantKey::Domain(domain) => repo::find_by_domain(&client, domain).await?,
                };
                Ok::<_, AppError>(tenant.map(|t| t.id))
            })
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("tenant lookup: {err:?}")));
        crate::telemetry::metrics::cache_lookup("tenant", hit);
        found
    }

    /// Forgets one lookup (this replica only; other replicas hear `tenant_changed`).
    pub async fn forget(&self, key: &TenantKey) {
        self.0.invalidate(key).await;
    }

    /// Forgets everything; tenant changes are rare, and a miss costs one indexed query.
    pub fn clear(&self) {
        self.0.invalidate_all();
    }
}

/// The request's tenant and its access, if it names one, checked to be open for requests.
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Option<Arc<TenantAccess>>, AppError> {
    let Some(key) = tenant_key(headers, &state.base_domain)? else {
        return Ok(None);
    };
    let access = match state.tenants.get(&state.pool, &key).await? {
        Some(id) => by_id(state, id).await?,
        None => None,
    };
    match (access, &key) {
        (Some(access), _) => Ok(Some(access)),
        (None, TenantKey::Subdomain(sub)) => Err(unknown_subdomain(sub)),
        (None, TenantKey::Domain(_)) => Ok(None),
    }
}

/// A tenant by id (e.g. an API key's), checked to be open for requests.
pub async fn by_id(state: &AppState, id: Uuid) -> Result<Option<Arc<TenantAccess>>, AppError> {
    let access = state.access.get(&state.pool, &state.plans, id).await?;
    if let Some(access) = &access {
        access.tenant.check_open(chrono::Utc::now())?;
    }
    Ok(access)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str) -> Option<TenantKey> {
        host_key(host, "example.com")
    }

    #[test]
    fn hosts_map_to_tenants_as_documented() {
        assert_eq!(key("acme.example.com"), Some(TenantKey::Subdomain("acme".into())));
        assert_eq!(key("ACME.example.com:8090"), Some(TenantKey::Subdomain("acme".into())));
        assert_eq!(key("example.com"), None);
        assert_eq!(key("www.example.com"), None);
        assert_eq!(key("127.0.0.1:8090"), None);
        assert_eq!(key("[::1]:8090"), None);
        assert_eq!(key("app.acme.io"), Some(TenantKey::Domain("app.acme.io".into())));
        assert_eq!(key("notexample.com"), Some(TenantKey::Domain("notexample.com".into())));
    }

    #[test]
    fn the_x_tenant_header_wins_over_the_host() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "acme.example.com".parse().unwrap());
        headers.insert("x-tenant", "globex".parse().unwrap());
        let key = tenant_key(&headers, "example.com").unwrap();
        assert_eq!(key, Some(TenantKey::Subdomain("globex".into())));
        headers.insert("x-tenant", "Not Valid!".parse().unwrap());
        let err = tenant_key(&headers, "example.com").unwrap_err();
        assert_eq!(err.code(), "TENANT_NOT_FOUND");
    }
}
