//! The process-wide Prometheus recorder behind the `metrics` facade, and the metric names this
//! module owns. Any module may emit through `metrics::counter!` and friends; `/metrics` shows all.
//!
//! Labels are bounded: route, method, status, operation type, outcome, cache, tenant status —
//! never a tenant or user id (per-tenant figures belong in the usage report).

use std::sync::OnceLock;

use metrics::{Counter, Unit, describe_counter, describe_gauge, describe_histogram};

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "http_requests_in_flight";
pub const HTTP_PANICS: &str = "http_panics_total";
pub const GRAPHQL_OPERATIONS: &str = "graphql_operations_total";
pub const GRAPHQL_ERRORS: &str = "graphql_errors_total";
pub const CACHE_LOOKUPS: &str = "cache_lookups_total";
pub const DB_POOL_SIZE: &str = "db_pool_connections";
pub const DB_POOL_IN_USE: &str = "db_pool_connections_in_use";
pub const DB_POOL_MAX: &str = "db_pool_connections_max";
pub const DB_POOL_WAITING: &str = "db_pool_waiting";
pub const TENANTS: &str = "tenants";
pub const RSS: &str = "process_resident_memory_bytes";
pub const JOBS_QUEUED: &str = "jobs_queued";
pub const JOBS_RUNNING: &str = "jobs_running";
pub const JOBS_DEAD: &str = "jobs_dead";
pub const JOBS_OLDEST_AGE: &str = "jobs_oldest_queued_age_seconds";

/// Latency buckets (seconds) for every `*_seconds` histogram: 1 ms to 10 s.
pub const BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Describes every metric this module names (called once, when the recorder is installed).
pub fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, matched route and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency, by method and matched route");
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled now");
    describe_counter!(HTTP_PANICS, "handlers that panicked (answered 500)");
    describe_counter!(GRAPHQL_OPERATIONS, "GraphQL operations, by type and outcome (ok | error)");
    describe_counter!(GRAPHQL_ERRORS, "GraphQL errors returned, by extensions.code");
    describe_counter!(CACHE_LOOKUPS, "cache lookups, by cache and result (hit | miss)");
    describe_gauge!(DB_POOL_SIZE, "open pooled database connections");
    describe_gauge!(DB_POOL_IN_USE, "pooled database connections checked out");
    describe_gauge!(DB_POOL_MAX, "the pool's maximum size (DB_POOL_SIZE)");
    describe_gauge!(DB_POOL_WAITING, "requests waiting for a pooled connection");
    describe_gauge!(TENANTS, "tenants (not deleted), by status");
    describe_gauge!(RSS, Unit::Bytes, "resident set size of this process");
    describe_gauge!(JOBS_QUEUED, "background jobs waiting (due or scheduled), cluster-wide");
    describe_gauge!(JOBS_RUNNING, "background jobs claimed by a worker now, cluster-wide");
    describe_gauge!(
        JOBS_DEAD,
        "background jobs that failed for good (see `tenantry jobs list --state dead`)"
    );
    describe_gauge!(JOBS_OLDEST_AGE, Unit::Seconds, "how long the longest-waiting due job has waited");
    describe_counter!(
        "jobs_finished_total",
        "job attempts finished, by kind and outcome (done | retry | dead | skipped)"
    );
    describe_histogram!("jobs_duration_seconds", Unit::Seconds, "job run time, by kind");
}

/// The `extensions.code` values of the public contract; anything else is counted as `OTHER`.
const CODES: [&str; 16] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "TENANT_NOT_FOUND",
    "TENANT_SUSPENDED",
    "SUBSCRIPTION_EXPIRED",
    "EMAIL_NOT_VERIFIED",
    "PLAN_LIMIT_EXCEEDED",
    "FEATURE_NOT_IN_PLAN",
    "RATE_LIMITED",
    "QUOTA_EXCEEDED",
    "VALIDATION",
    "CONFLICT",
    "PAYLOAD_TOO_LARGE",
    "DATABASE_UNAVAILABLE",
    "INTERNAL",
];

/// A bounded label for an error code.
pub fn code_label(code: Option<&str>) -> &'static str {
    code.and_then(|code| CODES.iter().find(|known| **known == code)).copied().unwrap_or("OTHER")
}

/// The caches whose lookups are counted with handles resolved once (others still count).
const CACHES: [&str; 2] = ["tenant", "access"];

/// `cache_lookups_total` handles per cache: hit, miss. Set when the recorder is installed; the
/// `metrics` macros build a key and search the recorder's registry on every call.
static LOOKUPS: OnceLock<[[Counter; 2]; CACHES.len()]> = OnceLock::new();

/// Resolves the handles above (called once, right after the recorder is installed).
pub fn resolve_handles() {
    LOOKUPS.get_or_init(|| {
        CACHES.map(|cache| {
            ["hit", "miss"]
                .map(|result| metrics::counter!(CACHE_LOOKUPS, "cache" => cache, "result" => result))
        })
    });
}

/// Counts one cache lookup.
pub fn cache_lookup(cache: &'static str, hit: bool) {
    let result = usize::from(!hit);
    match (LOOKUPS.get(), CACHES.iter().position(|known| *known == cache)) {
        (Some(handles), Some(i)) => handles[i][result].increment(1),
        _ => metrics::counter!(CACHE_LOOKUPS, "cache" => cache, "result" => ["hit", "miss"][result])
            .increment(1),
    }
}

/// The operation types `graphql_operations_total` counts.
const OPERATION_TYPES: [&str; 4] = ["query", "mutation", "subscription", "unknown"];

/// `graphql_operations_total{type,outcome}` and `graphql_errors_total{code}`, each label set
/// looked up in the recorder once (install it first).
pub struct GraphqlCounters {
    /// By type, then ok / error.
    operations: [[Counter; 2]; OPERATION_TYPES.len()],
    /// By code, `OTHER` last.
    errors: [Counter; CODES.len() + 1],
}

impl GraphqlCounters {
    pub fn new() -> Self {
        let operations = OPERATION_TYPES.map(|ty| {
            ["ok", "error"]
                .map(|outcome| metrics::counter!(GRAPHQL_OPERATIONS, "type" => ty, "outcome" => outcome))
        });
        let errors = std::array::from_fn(
            |i| metrics::counter!(GRAPHQL_ERRORS, "code" => CODES.get(i).copied().unwrap_or("OTHER")),
        );
        Self { operations, errors }
    }

    /// One operation of type `ty` (`query`, `mutation`, `subscription`; anything else counts as
    /// `unknown`).
    pub fn operation(&self, ty: &str, ok: bool) {
        let i = OPERATION_TYPES.iter().position(|known| *known == ty).unwrap_or(OPERATION_TYPES.len() - 1);
        self.operations[i][usize::from(!ok)].increment(1);
    }

    /// One error returned, by its `extensions.code` (bounded as [`code_label`]).
    pub fn error(&self, code: Option<&str>) {
        let i = code.and_then(|code| CODES.iter().position(|known| *known == code)).unwrap_or(CODES.len());
        self.errors[i].increment(1);
    }
}

impl Default for GraphqlCounters {
    fn default() -> Self {
        Self::new()
    }
}
