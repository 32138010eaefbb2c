//! Configuration: every setting is an environment variable and a CLI flag (clap does both).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
pub use secrecy::{ExposeSecret, SecretString};

/// PUBLIC_URL when unset (and so the default JWT issuer).
pub const DEFAULT_PUBLIC_URL: &str = "http://localhost:8090";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AppEnv {
    Development,
    Production,
}

/// `TRUSTED_DOCUMENTS`: which GraphQL documents a request may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrustedDocumentsMode {
    /// No manifest; `documentId` is refused.
    Off,
    /// Manifest documents by `documentId`, and any other document as text.
    Allow,
    /// Manifest documents only (by `documentId`, or as their exact text).
    Only,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Settings shared by every command. Secrets (credentials, keys, tokens, URLs that may carry a
/// password) are `SecretString`s: `Debug` prints them as `[REDACTED]`, and reading one takes an
/// explicit `expose_secret()`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL URL. Unset: a private cluster is created and started under DATA_DIR.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<SecretString>,

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
    pub jwt_secret: Option<SecretString>,

    #[arg(long, env = "APP_ENV", value_enum, default_value = "development", global = true)]
    pub app_env: AppEnv,

    /// Log lines as `json` or `pretty`. Unset: pretty on a terminal, JSON otherwise.
    #[arg(long, env = "LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    /// Outgoing mail: `log` (development), `file:<dir>`, or `smtp://user:pass@host:port`.
    #[arg(long, env = "MAILER", default_value = "log", global = true, hide_env_values = true)]
    pub mailer: SecretString,

    /// Sender of outgoing mail.
    #[arg(long, env = "MAIL_FROM", default_value = "tenantry <no-reply@localhost>", global = true)]
    pub mail_from: String,

    /// Base URL of the app users open; mailed links point here.
    #[arg(long, env = "PUBLIC_URL", default_value = DEFAULT_PUBLIC_URL, global = true)]
    pub public_url: String,

    /// Whether creating a tenant needs a verified email address.
    #[arg(long, env = "REQUIRE_VERIFIED_EMAIL", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub require_verified_email: bool,

    /// Days a deleted tenant's schema is kept before it is purged.
    #[arg(long, env = "TENANT_PURGE_AFTER_DAYS", default_value_t = 30, global = true)]
    pub tenant_purge_after_days: u32,

    /// Tenant schemas kept created and migrated ahead of time, so `createTenant` claims one
    /// instead of running migrations (0: every tenant is provisioned cold).
    #[arg(long, env = "TENANT_WARM_POOL", default_value_t = 4, global = true)]
    pub tenant_warm_pool: usize,

    /// Tenant roles made ahead in batches, so that provisioning changes no role membership
    /// (each change costs every PostgreSQL backend a rebuild; docs/SCALING.md). 0: one per tenant.
    #[arg(long, env = "TENANT_ROLES_AHEAD", default_value_t = 64, global = true)]
    pub tenant_roles_ahead: usize,

    /// The plan catalog. Unset: ./plans.toml if present, else the built-in catalog.
    #[arg(long, env = "PLANS_FILE", global = true)]
    pub plans_file: Option<PathBuf>,

    /// Maximum pooled database connections per process.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 32, global = true)]
    pub db_pool_size: usize,

    /// Base64 of 32 random bytes: the key stored secrets are encrypted with. Unset in
    /// development: generated into DATA_DIR; required when APP_ENV=production.
    #[arg(long, env = "MASTER_ENCRYPTION_KEY", global = true, hide_env_values = true)]
    pub master_encryption_key: Option<SecretString>,

    /// Previous master keys (comma-separated base64), still accepted for reading until
    /// `tenantry keys rotate` has re-encrypted everything under MASTER_ENCRYPTION_KEY.
    #[arg(long, env = "OLD_ENCRYPTION_KEYS", value_delimiter = ',', global = true, hide_env_values = true)]
    pub old_encryption_keys: Vec<SecretString>,

    /// `transaction` when DATABASE_URL points at PgBouncer in transaction pooling mode: no
    /// prepared statement outlives its transaction, and LISTEN uses DATABASE_DIRECT_URL.
    #[arg(long, env = "DATABASE_POOLER", value_enum, default_value = "none", global = true)]
    pub database_pooler: Pooler,

    /// A direct (not pooled) PostgreSQL URL for LISTEN. Required with DATABASE_POOLER=transaction.
    #[arg(long, env = "DATABASE_DIRECT_URL", global = true, hide_env_values = true)]
    pub database_direct_url: Option<SecretString>,

    /// Browser origins allowed to call the API (comma-separated, or `*`). Empty: same origin only.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', global = true)]
    pub cors_origins: Vec<String>,

    /// When set, `GET /metrics` requires `Authorization: Bearer <METRICS_TOKEN>`.
    #[arg(long, env = "METRICS_TOKEN", global = true, hide_env_values = true)]
    pub metrics_token: Option<SecretString>,

    /// Memory budget in MiB; the health check's memory status turns unhealthy past 90 % of it.
    /// Unset: the cgroup's limit (memory.max) when there is one.
    #[arg(long, env = "MEMORY_LIMIT_MB", global = true)]
    pub memory_limit_mb: Option<u64>,

    /// Seconds a request may take before it is answered 408 (subscriptions are not affected).
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub request_timeout_secs: u64,
    /// How often (milliseconds) in-memory usage counts are written to the database.
    #[arg(long, env = "USAGE_FLUSH_MS", default_value_t = 1000, global = true)]
    pub usage_flush_ms: u64,

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

    /// Stripe secret API key (`sk_…`). Unset: checkout and the portal answer BILLING_UNAVAILABLE.
    #[arg(long, env = "STRIPE_SECRET_KEY", global = true, hide_env_values = true)]
    pub stripe_secret_key: Option<SecretString>,

    /// Webhook signing secrets (`whsec_…`), comma-separated while rotating.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", global = true, hide_env_values = true)]
    pub stripe_webhook_secret: Option<SecretString>,

    /// Base URL of the Stripe API (tests point it at a local fake).
    #[arg(long, env = "STRIPE_API_BASE", default_value = "https://api.stripe.com/", global = true)]
    pub stripe_api_base: String,

    /// Origins checkout and portal redirect URLs may point to, comma-separated.
    /// Unset: the origin of PUBLIC_URL.
    #[arg(long, env = "BILLING_ALLOWED_ORIGINS", global = true)]
    pub billing_allowed_origins: Option<String>,

    /// Origins the frontend runs on, comma-separated: where single sign-on sends the browser
    /// back (`startSsoSignIn(redirectUrl:)`). Unset: BILLING_ALLOWED_ORIGINS, else PUBLIC_URL's origin.
    #[arg(long, env = "APP_ALLOWED_ORIGINS", global = true)]
    pub app_allowed_origins: Option<String>,

    /// Let SSO issuers use plain http and loopback or private addresses (a provider on this
    /// machine or network). Unset: on in development, off in production.
    #[arg(long, env = "SSO_ALLOW_LOCAL_ISSUERS", global = true)]
    pub sso_allow_local_issuers: Option<bool>,

    /// Seconds a tenant may stay past due after a failed payment before it is suspended.
    #[arg(long, env = "BILLING_GRACE_SECS", default_value_t = 7 * 24 * 3600, global = true)]
    pub billing_grace_secs: u64,

    /// Seconds between checks for tenants whose grace period is over.
    #[arg(long, env = "BILLING_CHECK_INTERVAL_SECS", default_value_t = 300, global = true)]
    pub billing_check_interval_secs: u64,

    /// Background jobs this process runs at once; 0: it runs none (other replicas do).
    #[arg(long, env = "JOBS_CONCURRENCY", default_value_t = 4, global = true)]
    pub jobs_concurrency: usize,

    /// Milliseconds between looks for due jobs when no notification arrives (recurring jobs,
    /// retries coming due, expired leases are noticed within this).
    #[arg(long, env = "JOBS_POLL_MS", default_value_t = 1000, global = true)]
    pub jobs_poll_ms: u64,

    /// Seconds a claimed job stays reserved to its worker without a sign of life; a killed
    /// worker's job runs again after this.
    #[arg(long, env = "JOBS_LEASE_SECS", default_value_t = 60, global = true)]
    pub jobs_lease_secs: u64,

    /// Milliseconds before a failed job's first retry; each further retry waits twice as long
    /// (up to an hour).
    #[arg(long, env = "JOBS_RETRY_BASE_MS", default_value_t = 1000, global = true)]
    pub jobs_retry_base_ms: u64,

    /// Where `verifyDomain` connects for given domains instead of resolving them, as
    /// `host=ip:port` pairs separated by commas: an explicit operator override that skips DNS
    /// and the public-address rule (a proxy in front of tenants' sites). Empty in production.
    #[arg(long, env = "DOMAIN_CHECK_HOSTS", value_delimiter = ',', global = true)]
    pub domain_check_hosts: Vec<String>,

    /// Fixed answers for `verifyDomain`'s lookups instead of DNS (tests), as `host=ip` or
    /// `host=ip:port` pairs separated by commas; a name listed twice has two addresses, names
    /// not listed do not resolve. The answers pass the same public-address rule as DNS answers.
    #[arg(long, env = "DOMAIN_CHECK_RESOLVE", value_delimiter = ',', global = true)]
    pub domain_check_resolve: Vec<String>,

    // The HTTP edge: what a client may send, and what tokens and introspection accept.
    /// Largest request body in bytes; a larger one is refused with 413 before it is read whole.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Largest request head (request line and all headers) in bytes; larger is answered 431.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 32 * 1024, global = true)]
    pub max_header_bytes: usize,

    /// Largest single header value in bytes (`Host`, `Authorization`, …); larger is answered 431.
    #[arg(long, env = "MAX_HEADER_VALUE_BYTES", default_value_t = 8 * 1024, global = true)]
    pub max_header_value_bytes: usize,

    /// Most headers one request may carry; more is answered 431.
    #[arg(long, env = "MAX_HEADERS", default_value_t = 100, global = true)]
    pub max_headers: usize,

    /// Seconds a client has to send a complete request head; slower is answered 408.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10, global = true)]
    pub header_read_timeout_secs: u64,

    // Websockets (`/graphql/ws`).
    /// Seconds a new websocket has to send `connection_init`; later, it is closed with 4408.
    #[arg(long, env = "WS_INIT_TIMEOUT_SECS", default_value_t = 10, global = true)]
    pub ws_init_timeout_secs: u64,

    /// Seconds a websocket may stay open without a subscription before it is closed (1000).
    #[arg(long, env = "WS_IDLE_TIMEOUT_SECS", default_value_t = 120, global = true)]
    pub ws_idle_timeout_secs: u64,

    /// Subscriptions one websocket may hold at once; the next one is refused with an error.
    #[arg(long, env = "WS_MAX_SUBSCRIPTIONS_PER_SOCKET", default_value_t = 50, global = true)]
    pub ws_max_subscriptions_per_socket: usize,

    /// Open websockets per tenant, per process; the next is closed with 4429.
    #[arg(long, env = "WS_MAX_SOCKETS_PER_TENANT", default_value_t = 1000, global = true)]
    pub ws_max_sockets_per_tenant: usize,

    /// Open websockets per client IP (IPv6: per /64), per process; the next is closed with 4429.
    #[arg(long, env = "WS_MAX_SOCKETS_PER_IP", default_value_t = 200, global = true)]
    pub ws_max_sockets_per_ip: usize,

    /// `iss` of issued access tokens, required on presented ones. Unset: PUBLIC_URL.
    #[arg(long, env = "JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// `aud` of issued access tokens, required on presented ones.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "tenantry", global = true)]
    pub jwt_audience: String,

    /// Answer GraphQL introspection (`__schema`, `__type`). Unset: on in development, off in
    /// production (the playground needs it: enable both).
    #[arg(long, env = "INTROSPECTION", global = true)]
    pub introspection: Option<bool>,

    /// Manifest of trusted GraphQL documents (`{"<id>": "<document>"}`, as graphql-codegen's
    /// client preset and Relay write it), requested by `documentId`; reloaded on SIGHUP or change.
    #[arg(long, env = "TRUSTED_DOCUMENTS_FILE", global = true)]
    pub trusted_documents_file: Option<PathBuf>,

    /// `off`, `allow` (manifest ids and any document) or `only` (manifest documents only).
    /// Unset: `allow` with a TRUSTED_DOCUMENTS_FILE, else `off`.
    #[arg(long, env = "TRUSTED_DOCUMENTS", value_enum, global = true)]
    pub trusted_documents: Option<TrustedDocumentsMode>,
    /// Proxies (IP addresses or networks like 10.0.0.0/8, comma-separated) whose
    /// `X-Forwarded-For` names the client for per-IP throttles. Empty: the TCP peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', global = true)]
    pub trusted_proxies: Vec<String>,

    /// Password hashes computed at once, on dedicated threads. Unset: one per CPU core.
    #[arg(long, env = "PASSWORD_HASH_CONCURRENCY", global = true,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub password_hash_concurrency: Option<u32>,

    /// Password hashes that may wait for a thread; past that, RATE_LIMITED at once.
    #[arg(long, env = "PASSWORD_HASH_QUEUE", default_value_t = 16, global = true,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub password_hash_queue: u32,

    /// Milliseconds a password hash may wait for a thread before RATE_LIMITED.
    #[arg(long, env = "PASSWORD_HASH_TIMEOUT_MS", default_value_t = 2_000, global = true)]
    pub password_hash_timeout_ms: u64,

    /// `signIn` attempts per client IP per minute, cluster-wide.
    #[arg(long, env = "SIGN_INS_PER_IP_PER_MINUTE", default_value_t = 60, global = true)]
    pub sign_ins_per_ip_per_minute: u32,

    /// `signIn` attempts per email address per minute, cluster-wide (unknown addresses too).
    #[arg(long, env = "SIGN_INS_PER_ADDRESS_PER_MINUTE", default_value_t = 10, global = true)]
    pub sign_ins_per_address_per_minute: u32,

    /// `signUp` attempts per email address per hour, cluster-wide (taken addresses included).
    #[arg(long, env = "SIGN_UPS_PER_ADDRESS_PER_HOUR", default_value_t = 3, global = true)]
    pub sign_ups_per_address_per_hour: u32,

    /// `signUp` attempts per client IP per hour, cluster-wide.
    #[arg(long, env = "SIGN_UPS_PER_IP_PER_HOUR", default_value_t = 20, global = true)]
    pub sign_ups_per_ip_per_hour: u32,

    /// Password-reset and verification mails per email address per hour, cluster-wide.
    #[arg(long, env = "MAILS_PER_ADDRESS_PER_HOUR", default_value_t = 5, global = true)]
    pub mails_per_address_per_hour: u32,

    /// `requestPasswordReset` calls per client IP per hour, cluster-wide.
    #[arg(long, env = "RESETS_PER_IP_PER_HOUR", default_value_t = 20, global = true)]
    pub resets_per_ip_per_hour: u32,
}

/// What sits between tenantry and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pooler {
    /// Direct connections (or a session-mode pooler): statements are prepared once per connection.
    None,
    /// PgBouncer `pool_mode = transaction`.
    Transaction,
}

impl Config {
    /// Whether `/playground` is served: as configured, else only outside production.
    pub fn playground_enabled(&self) -> bool {
        self.playground.unwrap_or(self.app_env == AppEnv::Development)
    }

    /// Whether SSO may reach local providers: as configured, else only outside production.
    pub fn sso_local_issuers_allowed(&self) -> bool {
        self.sso_allow_local_issuers.unwrap_or(self.app_env == AppEnv::Development)
    }

    /// Whether introspection is answered: as configured, else only outside production.
    pub fn introspection_enabled(&self) -> bool {
        self.introspection.unwrap_or(self.app_env == AppEnv::Development)
    }

    /// The `iss` claim: JWT_ISSUER, else PUBLIC_URL without a trailing slash.
    pub fn jwt_issuer(&self) -> String {
        self.jwt_issuer.clone().unwrap_or_else(|| self.public_url.trim_end_matches('/').to_owned())
    }
}

/// The declared defaults, reading no environment variable, with `data_dir` (for unit tests;
/// the integration tests and benches build theirs in `benches/support/settings.rs`).
#[cfg(test)]
pub(crate) fn defaults(data_dir: PathBuf) -> Config {
    use clap::FromArgMatches;
    let command = Config::augment_args(clap::Command::new("tenantry")).mut_args(|arg| arg.env(None));
    let mut config = Config::from_arg_matches(&command.get_matches_from(["tenantry"])).unwrap();
    config.data_dir = data_dir;
    config
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn secrets_never_reach_a_debug_print() {
        let secrets = [
            "jwt-secret-that-is-long-enough-0123456789",
            "postgres://app:db-password@db/tenantry",
            "smtp://mail:mail-password@smtp.example.com:587",
            "master-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "old-key-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
            "sk_test_stripe_secret",
            "whsec_webhook_secret",
            "metrics-token-secret",
            "postgres://app:direct-password@db/tenantry",
        ];
        let flags = [
            "--jwt-secret",
            "--database-url",
            "--mailer",
            "--master-encryption-key",
            "--old-encryption-keys",
            "--stripe-secret-key",
            "--stripe-webhook-secret",
            "--metrics-token",
            "--database-direct-url",
        ];
        let mut args = vec!["tenantry".to_owned()];
        for (flag, secret) in flags.iter().zip(secrets) {
            args.extend([(*flag).to_owned(), secret.to_owned()]);
        }
        let config = Cli::try_parse_from(args).unwrap().config;
        assert_eq!(config.jwt_secret.as_ref().map(ExposeSecret::expose_secret), Some(secrets[0]));
        let printed = format!("{config:?}");
        for secret in secrets {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        assert!(printed.contains("REDACTED"), "{printed}");
    }

    #[test]
    fn the_playground_is_off_in_production_unless_enabled() {
        let mut config = defaults(std::env::temp_dir());
        assert!(config.playground_enabled(), "on in development");
        config.app_env = AppEnv::Production;
        assert!(!config.playground_enabled(), "off in production by default");
        config.playground = Some(true);
        assert!(config.playground_enabled(), "on in production when enabled");
    }
}
