//! Configuration: every setting is an environment variable and a CLI flag (clap does both).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, ValueEnum};
use rand::RngCore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Settings shared by every command.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL URL. Unset: a private cluster is created and started under DATA_DIR.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Where the embedded cluster and generated development secrets live.
    #[arg(long, env = "DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// Address the HTTP server listens on (port 0 picks a free one).
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8090", global = true)]
    pub bind: SocketAddr,

    /// Tenants are served at `<subdomain>.<BASE_DOMAIN>`.
    #[arg(long, env = "BASE_DOMAIN", default_value = "localhost", global = true)]
    pub base_domain: String,

    /// HMAC secret for access tokens. Unset in development: generated into DATA_DIR.
    #[arg(long, env = "JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,

    #[arg(long, env = "APP_ENV", value_enum, default_value = "development", global = true)]
    pub app_env: AppEnv,

    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json", global = true)]
    pub log_format: LogFormat,

    /// Outgoing mail: `log` (development), `file:<dir>`, or `smtp://user:pass@host:port`.
    #[arg(long, env = "MAILER", default_value = "log", global = true, hide_env_values = true)]
    pub mailer: String,

    /// Sender of outgoing mail.
    #[arg(long, env = "MAIL_FROM", default_value = "tenantry <no-reply@localhost>", global = true)]
    pub mail_from: String,

    /// Base URL of the app users open; mailed links point here.
    #[arg(long, env = "PUBLIC_URL", default_value = "http://localhost:8090", global = true)]
    pub public_url: String,

    /// Whether creating a tenant needs a verified email address.
    #[arg(long, env = "REQUIRE_VERIFIED_EMAIL", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub require_verified_email: bool,

    /// Days a deleted tenant's schema is kept before it is purged.
    #[arg(long, env = "TENANT_PURGE_AFTER_DAYS", default_value_t = 30, global = true)]
    pub tenant_purge_after_days: u32,

    /// The plan catalog. Unset: ./plans.toml if present, else the built-in catalog.
    #[arg(long, env = "PLANS_FILE", global = true)]
    pub plans_file: Option<PathBuf>,

    /// Maximum pooled database connections per process.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 32, global = true)]
    pub db_pool_size: usize,

    /// Serve the GraphiQL playground at /playground. Unset: on in development, off in production.
    #[arg(long, env = "PLAYGROUND", global = true)]
    pub playground: Option<bool>,
    /// Pooled connections one request may hold at once; its other resolvers wait their turn.
    #[arg(long, env = "DB_CONNECTIONS_PER_REQUEST", default_value_t = 2, global = true,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub db_connections_per_request: u32,

    /// Seconds a tenant lookup (host, subdomain, plan, status) is cached. Changes notify every
    /// replica at once; the TTL only bounds staleness after a lost notification.
    #[arg(long, env = "TENANT_CACHE_TTL_SECS", default_value_t = 60, global = true)]
    pub tenant_cache_ttl_secs: u64,

    /// Seconds a (tenant, user) role is cached; membership changes notify every replica.
    #[arg(long, env = "MEMBER_CACHE_TTL_SECS", default_value_t = 30, global = true)]
    pub member_cache_ttl_secs: u64,

    /// Seconds an API key lookup is cached; revocations notify every replica.
    #[arg(long, env = "API_KEY_CACHE_TTL_SECS", default_value_t = 60, global = true)]
    pub api_key_cache_ttl_secs: u64,

    /// How long a tenant migration waits for a table lock before it gives up and retries, so
    /// requests never queue behind a blocked `ALTER` for longer than this.
    #[arg(long, env = "MIGRATION_LOCK_TIMEOUT_MS", default_value_t = 1_000, global = true)]
    pub migration_lock_timeout_ms: u64,

    /// Attempts per tenant when a migration's lock times out (with backoff between them).
    #[arg(long, env = "MIGRATION_LOCK_RETRIES", default_value_t = 10, global = true)]
    pub migration_lock_retries: usize,

    /// Where `verifyDomain` connects for given domains instead of resolving them, as
    /// `host=ip:port` pairs separated by commas (tests, or a proxy in front of tenants' sites).
    #[arg(long, env = "DOMAIN_CHECK_HOSTS", value_delimiter = ',', global = true)]
    pub domain_check_hosts: Vec<String>,
}

impl Config {
    /// A config for tests and embedding: defaults everywhere, the given database and data dir.
    pub fn for_tests(database_url: Option<String>, data_dir: PathBuf) -> Self {
        Self {
            database_url,
            bind: "127.0.0.1:0".parse().expect("valid socket address"),
            base_domain: "localhost".into(),
            jwt_secret: Some("test-secret-that-is-long-enough-for-hs256".into()),
            app_env: AppEnv::Development,
            log_format: LogFormat::Json,
            mailer: format!("file:{}", data_dir.join("mail").display()),
            mail_from: "tenantry <no-reply@localhost>".into(),
            public_url: "http://app.test".into(),
            require_verified_email: true,
            tenant_purge_after_days: 30,
            plans_file: None,
            db_pool_size: 16,
            playground: None,
            db_connections_per_request: 2,
            tenant_cache_ttl_secs: 60,
            member_cache_ttl_secs: 30,
            api_key_cache_ttl_secs: 60,
            migration_lock_timeout_ms: 1_000,
            migration_lock_retries: 10,
            domain_check_hosts: Vec::new(),
            data_dir,
        }
    }

    /// Whether `/playground` is served: as configured, else only outside production.
    pub fn playground_enabled(&self) -> bool {
        self.playground.unwrap_or(self.app_env == AppEnv::Development)
    }

    /// The JWT secret: configured, or (development only) generated once and kept in DATA_DIR.
    pub fn jwt_secret(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < 32 {
                bail!("JWT_SECRET must be at least 32 characters");
            }
            return Ok(secret.as_bytes().to_vec());
        }
        if self.app_env == AppEnv::Production {
            bail!("JWT_SECRET is not set; it is required when APP_ENV=production");
        }
        dev_secret(&self.data_dir, "jwt_secret")
    }
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
        let mut config = Config::for_tests(None, std::env::temp_dir());
        config.jwt_secret = None;
        config.app_env = AppEnv::Production;
        let err = config.jwt_secret().unwrap_err().to_string();
        assert!(err.contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn the_playground_is_off_in_production_unless_enabled() {
        let mut config = Config::for_tests(None, std::env::temp_dir());
        assert!(config.playground_enabled(), "on in development");
        config.app_env = AppEnv::Production;
        assert!(!config.playground_enabled(), "off in production by default");
        config.playground = Some(true);
        assert!(config.playground_enabled(), "on in production when enabled");
    }

    #[test]
    fn a_development_secret_is_generated_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("tenantry-cfg-{}", uuid::Uuid::new_v4()));
        let mut config = Config::for_tests(None, dir.clone());
        config.jwt_secret = None;
        let first = config.jwt_secret().unwrap();
        let second = config.jwt_secret().unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
