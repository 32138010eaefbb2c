//! `AppState`: the handles every request shares — pool, caches, catalog, config values.
//!
//! It knows nothing of GraphQL, HTTP or the application's assembly (`app.rs` wires those), so
//! features depend on it without depending on each other's resolvers.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::api_keys::ApiKeyCache;
use crate::auth::hasher::Hasher;
use crate::auth::throttle::Throttles;
use crate::auth::token::TokenKeys;
use crate::billing::Billing;
use crate::config::Config;
use crate::crypto::Keyring;
use crate::db::TenantPool;
use crate::db::migrate::MigrationSet;
use crate::db::migration_lag::MigrationLag;
use crate::http::client_ip::TrustedProxies;
use crate::mail::Mailer;
use crate::members::MemberCache;
use crate::plans::{AccessCache, PlanCatalog};
use crate::tenancy::domain_proof::DomainProof;
use crate::tenancy::resolve::TenantCache;
use crate::usage::Usage;

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    /// The control plane's pool (users, tenants, memberships, keys…).
    pub pool: Pool,
    /// The pool tenant transactions (`TenantTx`) use: the same pool, except behind a
    /// transaction pooler (DATABASE_POOLER=transaction), where it goes through the pooler.
    pub tenant_pool: TenantPool,
    pub base_domain: String,
    pub tokens: TokenKeys,
    /// Encrypts and decrypts stored secrets.
    pub keys: Keyring,
    pub tenants: TenantCache,
    pub access: AccessCache,
    pub plans: PlanCatalog,
    pub members: MemberCache,
    pub api_keys: ApiKeyCache,
    pub tenant_migrations: MigrationSet,
    /// Tenants behind `tenant_migrations`, counted periodically by `serve`.
    pub migration_lag: MigrationLag,
    /// Pooled connections one request may hold at once (`DB_CONNECTIONS_PER_REQUEST`).
    pub connections_per_request: usize,
    pub mailer: Mailer,
    /// Base URL for mailed links.
    pub public_url: String,
    pub require_verified_email: bool,
    /// Cluster-wide sign-up and mail throttles.
    pub throttles: Throttles,
    /// Dedicated threads for password hashing.
    pub hasher: Hasher,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// How long a deleted tenant's data is kept.
    pub purge_after: chrono::Duration,
    pub started_at: Instant,
    /// Browser origins allowed by CORS (`*` for any).
    pub cors_origins: Vec<String>,
    /// Bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Memory budget the health check compares RSS with.
    pub memory_limit_bytes: Option<u64>,
    pub request_timeout: Duration,
    /// Request counts, quotas, rate limits, gauges and live usage.
    pub usage: Usage,
    /// Whether `/playground` is served.
    pub playground: bool,
    /// Stripe client and billing settings.
    pub billing: Billing,
    /// Checks custom-domain claims (`verifyDomain`).
    pub domain_proof: DomainProof,
    /// Request bounds and GraphQL settings enforced at the HTTP edge.
    pub edge: EdgeSettings,
}

/// What the HTTP edge enforces beyond hyper's limits on request heads.
#[derive(Debug, Clone, Copy)]
pub struct EdgeSettings {
    /// `MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `MAX_HEADER_VALUE_BYTES`.
    pub max_header_value_bytes: usize,
    /// Whether GraphQL introspection is answered (`INTROSPECTION`).
    pub introspection: bool,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        pool: Pool,
        tenant_pool: TenantPool,
        config: &Config,
        plans: PlanCatalog,
        tenant_migrations: MigrationSet,
    ) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(Inner {
            pool,
            tenant_pool,
            base_domain: config.base_domain.to_ascii_lowercase(),
            tokens: TokenKeys::with_claims(
                &config.jwt_secret()?,
                &config.jwt_issuer(),
                &config.jwt_audience,
                crate::auth::token::ACCESS_TOKEN_TTL,
            ),
            keys: config.keyring()?,
            tenants: TenantCache::new(Duration::from_secs(config.tenant_cache_ttl_secs)),
            access: AccessCache::new(Duration::from_secs(config.tenant_cache_ttl_secs)),
            plans,
            members: MemberCache::new(Duration::from_secs(config.member_cache_ttl_secs)),
            api_keys: ApiKeyCache::new(Duration::from_secs(config.api_key_cache_ttl_secs)),
            migration_lag: MigrationLag::new(tenant_migrations.latest_version()),
            connections_per_request: config.db_connections_per_request as usize,
            tenant_migrations,
            mailer: Mailer::from_spec(&config.mailer, &config.mail_from, config.app_env)?,
            public_url: config.public_url.trim_end_matches('/').to_owned(),
            require_verified_email: config.require_verified_email,
            throttles: config.throttles(),
            hasher: config.password_hasher()?,
            trusted_proxies: TrustedProxies::parse(&config.trusted_proxies)?,
            purge_after: chrono::Duration::days(i64::from(config.tenant_purge_after_days)),
            started_at: Instant::now(),
            cors_origins: config.cors_origins.clone(),
            metrics_token: config.metrics_token.clone().filter(|t| !t.is_empty()),
            memory_limit_bytes: config
                .memory_limit_mb
                .map(|mb| mb * 1024 * 1024)
                .or_else(crate::health::cgroup_memory_limit),
            request_timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
            usage: Usage::new(Duration::from_millis(config.usage_flush_ms.max(1))),
            playground: config.playground_enabled(),
            billing: Billing::from_config(config)?,
            domain_proof: DomainProof::new(&config.domain_check_hosts)?,
            edge: EdgeSettings {
                max_body_bytes: config.max_body_bytes,
                max_header_value_bytes: config.max_header_value_bytes,
                introspection: config.introspection_enabled(),
            },
        })))
    }
}
