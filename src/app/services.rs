//! Building the services the application runs on, from settings that only describe them: the
//! password-hashing pool (threads), the keyring and token keys (development secrets written to
//! DATA_DIR when none is configured), the mailer, the Stripe client, the caches, and the HTTP
//! edge's settings. `Config` parses and validates; everything that starts, reads or writes
//! something happens here.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use deadpool_postgres::Pool;
use rand::RngCore;

use crate::api_keys::ApiKeyCache;
use crate::auth::hasher::Hasher;
use crate::auth::throttle::Throttles;
use crate::auth::token::{ACCESS_TOKEN_TTL, TokenKeys};
use crate::billing::Billing;
use crate::billing::origins::AllowedOrigins;
use crate::config::{AppEnv, Config, ExposeSecret};
use crate::crypto::Keyring;
use crate::db::TenantPool;
use crate::db::migrate::MigrationSet;
use crate::db::migration_lag::MigrationLag;
use crate::graphql::documents::Documents;
use crate::graphql::trusted::TrustedDocuments;
use crate::http::client_ip::TrustedProxies;
use crate::http::{EdgeLimits, EdgeSettings, HttpSettings, LiveSockets, WsSettings};
use crate::mail::Mailer;
use crate::members::MemberCache;
use crate::plans::{AccessCache, PlanCatalog};
use crate::sso::Sso;
use crate::state::{AppState, Inner};
use crate::tenancy::domain_proof::{DomainProof, Resolver};
use crate::tenancy::resolve::TenantCache;
use crate::usage::Usage;

/// The application's shared handles, built from `config`.
pub fn app_state(
    pool: Pool,
    tenant_pool: TenantPool,
    config: &Config,
    plans: PlanCatalog,
    tenant_migrations: MigrationSet,
) -> anyhow::Result<AppState> {
    Ok(AppState::new(Inner {
        pool,
        tenant_pool,
        base_domain: config.base_domain.to_ascii_lowercase(),
        tokens: TokenKeys::with_claims(
            &jwt_secret(config)?,
            &config.jwt_issuer(),
            &config.jwt_audience,
            ACCESS_TOKEN_TTL,
        ),
        keys: keyring(config)?,
        tenants: TenantCache::new(Duration::from_secs(config.tenant_cache_ttl_secs)),
        access: AccessCache::new(Duration::from_secs(config.tenant_cache_ttl_secs)),
        plans,
        members: MemberCache::new(Duration::from_secs(config.member_cache_ttl_secs)),
        api_keys: ApiKeyCache::new(Duration::from_secs(config.api_key_cache_ttl_secs)),
        migration_lag: MigrationLag::new(tenant_migrations.latest_version()),
        connections_per_request: config.db_connections_per_request as usize,
        tenant_migrations,
        mailer: Mailer::from_spec(config.mailer.expose_secret(), &config.mail_from, config.app_env)?,
        public_url: config.public_url.trim_end_matches('/').to_owned(),
        require_verified_email: config.require_verified_email,
        throttles: throttles(config),
        hasher: password_hasher(config)?,
        purge_after: chrono::Duration::days(i64::from(config.tenant_purge_after_days)),
        warm_pool: config.tenant_warm_pool,
        roles_ahead: config.tenant_roles_ahead,
        started_at: Instant::now(),
        memory_limit_bytes: config
            .memory_limit_mb
            .map(|mb| mb * 1024 * 1024)
            .or_else(crate::health::cgroup_memory_limit),
        usage: Usage::new(Duration::from_millis(config.usage_flush_ms.max(1))),
        billing: Billing::from_config(config)?,
        domain_proof: DomainProof::new(
            &config.domain_check_hosts,
            Resolver::new(&config.domain_check_resolve)?,
        )?,
        sso: Sso::new(&config.public_url, config.sso_local_issuers_allowed())?,
        app_origins: app_origins(config)?,
    }))
}

/// `APP_ALLOWED_ORIGINS`, else `BILLING_ALLOWED_ORIGINS`, else PUBLIC_URL's origin.
fn app_origins(config: &Config) -> anyhow::Result<AllowedOrigins> {
    let list = config
        .app_allowed_origins
        .as_deref()
        .or(config.billing_allowed_origins.as_deref())
        .unwrap_or(&config.public_url);
    AllowedOrigins::parse(list).context("APP_ALLOWED_ORIGINS")
}

/// What the HTTP layer enforces and serves, from `config`.
pub fn http_settings(config: &Config) -> anyhow::Result<HttpSettings> {
    // The recorder first: the request metrics' handles come from it.
    let metrics = super::process::metrics_recorder();
    let documents = Documents::new(config.introspection_enabled());
    let trusted = TrustedDocuments::load(
        config.trusted_documents,
        config.trusted_documents_file.as_deref(),
        &documents,
    )?;
    Ok(HttpSettings {
        edge: EdgeSettings {
            max_body_bytes: config.max_body_bytes,
            max_header_value_bytes: config.max_header_value_bytes,
        },
        trusted_proxies: TrustedProxies::parse(&config.trusted_proxies)?,
        cors_origins: config.cors_origins.clone(),
        metrics_token: config.metrics_token.clone().filter(|t| !t.expose_secret().is_empty()),
        request_timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
        playground: config.playground_enabled(),
        metrics: metrics.clone(),
        request_metrics: crate::http::observe::RequestMetrics::new(),
        ws: WsSettings {
            init_timeout: Duration::from_secs(config.ws_init_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(config.ws_idle_timeout_secs.max(1)),
            max_subscriptions: config.ws_max_subscriptions_per_socket.max(1),
        },
        live: Arc::new(LiveSockets::new(
            config.ws_max_sockets_per_ip.max(1),
            config.ws_max_sockets_per_tenant.max(1),
        )),
        documents: Arc::new(documents),
        trusted: Arc::new(trusted),
    })
}

/// The edge's limits on request heads.
pub fn edge_limits(config: &Config) -> EdgeLimits {
    EdgeLimits {
        max_head_bytes: config.max_header_bytes,
        max_headers: config.max_headers.max(1),
        header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
    }
}

/// The cluster-wide sign-in, sign-up and mail throttles.
fn throttles(config: &Config) -> Throttles {
    Throttles {
        sign_ins_per_address: config.sign_ins_per_address_per_minute,
        sign_ins_per_ip: config.sign_ins_per_ip_per_minute,
        sign_ups_per_address: config.sign_ups_per_address_per_hour,
        sign_ups_per_ip: config.sign_ups_per_ip_per_hour,
        mails_per_address: config.mails_per_address_per_hour,
        resets_per_ip: config.resets_per_ip_per_hour,
    }
}

/// The password-hashing pool: PASSWORD_HASH_CONCURRENCY threads (default: the cores).
fn password_hasher(config: &Config) -> anyhow::Result<Hasher> {
    let threads = config.password_hash_concurrency.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        |n| n as usize,
    );
    super::process::return_large_blocks_at_once();
    Hasher::start(
        threads,
        config.password_hash_queue as usize,
        Duration::from_millis(config.password_hash_timeout_ms.max(1)),
    )
}

/// The JWT secret: configured, or (development only) generated once and kept in DATA_DIR.
pub fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        let secret = secret.expose_secret();
        if secret.len() < 32 {
            bail!("JWT_SECRET must be at least 32 characters");
        }
        return Ok(secret.as_bytes().to_vec());
    }
    if config.app_env == AppEnv::Production {
        bail!("JWT_SECRET is not set; it is required when APP_ENV=production");
    }
    dev_secret(&config.data_dir, "jwt_secret")
}

/// The keyring: MASTER_ENCRYPTION_KEY (or, in development, a key generated into DATA_DIR)
/// plus OLD_ENCRYPTION_KEYS.
pub fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    let current = match &config.master_encryption_key {
        Some(key) => key.expose_secret().to_owned(),
        None if config.app_env == AppEnv::Production => {
            bail!(
                "MASTER_ENCRYPTION_KEY is not set; it is required when APP_ENV=production (generate one with `openssl rand -base64 32`)"
            )
        }
        None => B64.encode(dev_secret(&config.data_dir, "master_encryption_key")?),
    };
    let old: Vec<&str> = config.old_encryption_keys.iter().map(ExposeSecret::expose_secret).collect();
    Keyring::from_base64(&current, &old)
}

/// Reads or creates a random development secret at `DATA_DIR/secrets/<name>`.
fn dev_secret(data_dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let dir = data_dir.join("secrets");
    let path = dir.join(name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return B64
            .decode(existing.trim())
            .with_context(|| format!("{} is not valid base64", path.display()));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut bytes = vec![0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    write_private(&path, B64.encode(&bytes).as_bytes())?;
    tracing::warn!(
        secret = name,
        path = %path.display(),
        "secret not configured; generated a development secret (set it explicitly in production)"
    );
    Ok(bytes)
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_without_a_jwt_secret_refuses_to_start() {
        let mut config = crate::config::defaults(std::env::temp_dir());
        config.jwt_secret = None;
        config.app_env = AppEnv::Production;
        let err = jwt_secret(&config).unwrap_err().to_string();
        assert!(err.contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn production_without_a_master_encryption_key_refuses_to_start() {
        let mut config = crate::config::defaults(std::env::temp_dir());
        config.app_env = AppEnv::Production;
        let err = keyring(&config).err().unwrap().to_string();
        assert!(err.contains("MASTER_ENCRYPTION_KEY"), "{err}");
    }

    #[test]
    fn a_development_secret_is_generated_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("tenantry-cfg-{}", uuid::Uuid::new_v4()));
        let mut config = crate::config::defaults(dir.clone());
        config.jwt_secret = None;
        let first = jwt_secret(&config).unwrap();
        let second = jwt_secret(&config).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
