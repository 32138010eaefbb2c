//! Tenant resolution: `X-Tenant`, `Host: <subdomain>.<BASE_DOMAIN>`, or a custom domain.

use std::time::Duration;

use axum::http::HeaderMap;
use deadpool_postgres::Pool;
use moka::future::Cache;

use uuid::Uuid;

use super::model::Subdomain;
use super::repo;
use crate::error::AppError;

/// How a request names its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TenantKey {
    Subdomain(String),
    Domain(String),
}

/// Host names under `BASE_DOMAIN` that serve the control plane (`plans`, `signUp`, …), as
/// the bare base domain does; none of them can be a tenant's subdomain (see `Subdomain`).
const CONTROL_PLANE_HOSTS: [&str; 3] = ["www", "api", "app"];

/// Reads the tenant a request names. `X-Tenant` wins over `Host`; the bare base domain, `www.`,
/// `api.`, `app.`, IP addresses and unknown custom domains name no tenant. Both headers are
/// checked before anything is looked up or cached: a subdomain that cannot exist is an unknown
/// tenant, and a `Host` that is not a host name is refused (400).
pub fn tenant_key(headers: &HeaderMap, base_domain: &str) -> Result<Option<TenantKey>, AppError> {
    if let Some(value) = headers.get("x-tenant") {
        let raw = value.to_str().unwrap_or_default().trim().to_ascii_lowercase();
        return Subdomain::parse(&raw)
            .map(|sub| Some(TenantKey::Subdomain(sub.as_str().to_owned())))
            .map_err(|_| unknown_subdomain(&raw));
    }
    let Some(host) = headers.get(axum::http::header::HOST) else {
        return Ok(None);
    };
    let host = host.to_str().map_err(|_| bad_host())?;
    host_key(host, base_domain)
}

fn host_key(host: &str, base_domain: &str) -> Result<Option<TenantKey>, AppError> {
    let name = strip_port(host);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(None);
    }
    let host = name.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(bad_host());
    }
    if host == base_domain {
        return Ok(None);
    }
    match host.strip_suffix(base_domain).and_then(|rest| rest.strip_suffix('.')) {
        Some(sub) if CONTROL_PLANE_HOSTS.contains(&sub) => Ok(None),
        Some(sub) => Subdomain::parse(sub)
            .map(|sub| Some(TenantKey::Subdomain(sub.as_str().to_owned())))
            .map_err(|_| unknown_subdomain(sub)),
        None => Ok(Some(TenantKey::Domain(host))),
    }
}

/// One DNS label: 1–63 of a-z, 0-9 and '-', not at either end.
fn label_ok(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn bad_host() -> AppError {
    AppError::validation("host", "the Host header is not a valid host name (letters, digits, '-' and '.')")
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: keep the brackets' content only.
        return host.split(']').next().map(|h| h.trim_start_matches('[')).unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

pub(crate) fn unknown_subdomain(sub: &str) -> AppError {
    // The subdomain is the client's own text: quote a short piece of it only.
    let sub: String = sub.chars().take(64).collect();
    AppError::TenantNotFound(format!(
        "no tenant has the subdomain {sub:?}; check the X-Tenant header or the host name"
    ))
}

/// Bytes the tenant lookup cache may hold, and what one entry costs beyond its key.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
const ENTRY_OVERHEAD: usize = 96;

/// `TenantKey → tenant id` (or known absence), single-flight per key, cleared on `tenant_changed`.
#[derive(Clone)]
pub struct TenantCache(Cache<TenantKey, Option<Uuid>>);

impl TenantCache {
    pub fn new(ttl: Duration) -> Self {
        // Bounded by size, not count: keys are validated host names (≤ 253 bytes), weighed
        // with the entry's overhead.
        let weigh = |key: &TenantKey, _: &Option<Uuid>| {
            let text = match key {
                TenantKey::Subdomain(s) | TenantKey::Domain(s) => s.len(),
            };
            u32::try_from(text + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
        };
        Self(Cache::builder().weigher(weigh).max_capacity(CACHE_BYTES).time_to_live(ttl).build())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str) -> Option<TenantKey> {
        host_key(host, "example.com").unwrap()
    }

    fn refused(host: &str) -> &'static str {
        host_key(host, "example.com").unwrap_err().code()
    }

    #[test]
    fn hosts_map_to_tenants_as_documented() {
        assert_eq!(key("acme.example.com"), Some(TenantKey::Subdomain("acme".into())));
        assert_eq!(key("ACME.example.com:8090"), Some(TenantKey::Subdomain("acme".into())));
        assert_eq!(key("example.com"), None);
        assert_eq!(key("www.example.com"), None);
        assert_eq!(key("api.example.com"), None);
        assert_eq!(key("app.example.com:443"), None);
        assert_eq!(key("127.0.0.1:8090"), None);
        assert_eq!(key("[::1]:8090"), None);
        assert_eq!(key("app.acme.io"), Some(TenantKey::Domain("app.acme.io".into())));
        assert_eq!(key("notexample.com"), Some(TenantKey::Domain("notexample.com".into())));
    }

    #[test]
    fn hosts_are_validated_like_x_tenant_before_any_lookup() {
        assert_eq!(refused(&format!("{}.example.com", "a".repeat(100_000))), "VALIDATION");
        assert_eq!(refused("bad_host!.io"), "VALIDATION");
        assert_eq!(refused(""), "VALIDATION");
        assert_eq!(refused("a.b.example.com"), "TENANT_NOT_FOUND");
        assert_eq!(refused("ab.example.com"), "TENANT_NOT_FOUND");
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
