//! `AppError`: the one error type that reaches clients, mapped to `extensions.code` and HTTP status.
//!
//! It deliberately does not implement `Display`: async-graphql converts every `Display` type into a
//! plain error without extensions, so keeping it out of that blanket impl lets `?` in a resolver
//! carry the code through our own `From<AppError> for async_graphql::Error`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

mod db;

use db::{TRANSIENT, has_sqlstate, is_unstorable_text};
pub use db::{is_outage, violated_constraint};

/// A failure a client can see. Internal causes are logged once and reach the client as `INTERNAL`.
#[derive(Debug)]
pub enum AppError {
    /// `UNAUTHENTICATED`, 401: no credentials, or invalid/expired ones.
    Unauthenticated(&'static str),
    /// `FORBIDDEN`, 403: authenticated, but not allowed.
    Forbidden(&'static str),
    /// `NOT_FOUND`, 404: the named thing does not exist (or is not visible to the caller).
    NotFound(&'static str),
    /// `TENANT_NOT_FOUND`, 404: the request names no known tenant.
    TenantNotFound(String),
    /// `TENANT_SUSPENDED`, 403.
    TenantSuspended,
    /// `SUBSCRIPTION_EXPIRED`, 403.
    SubscriptionExpired,
    /// `EMAIL_NOT_VERIFIED`, 403: the operation needs a verified email address.
    EmailNotVerified,
    /// `FEATURE_NOT_IN_PLAN`, 403: names the feature and the cheapest plan that has it.
    FeatureNotInPlan { feature: &'static str, plan: String, cheapest: Option<String> },
    /// `PLAN_LIMIT_EXCEEDED`, 403: the write would take `resource` past the plan's limit.
    PlanLimitExceeded { resource: &'static str, limit: i64, plan: String },
    /// `VALIDATION`, 400: input broke a rule; `field` names the argument.
    Validation { field: &'static str, message: String },
    /// `CONFLICT`, 409: a unique value is already taken.
    Conflict { field: &'static str, message: String },
    /// `BILLING_UNAVAILABLE`, 503: billing is not configured, or the payment provider failed
    /// or refused; the message says which (never a secret or a payload).
    BillingUnavailable(String),
    /// `RATE_LIMITED`, 429, with `Retry-After` in seconds.
    RateLimited { retry_after_secs: u64 },
    /// `QUOTA_EXCEEDED`, 429: the plan's monthly API requests are used up; `Retry-After` is the
    /// time until the quota resets.
    QuotaExceeded { limit: i64, plan: String, retry_after_secs: u64 },
    /// `DATABASE_UNAVAILABLE`, 503, with `Retry-After`: PostgreSQL cannot be reached right now.
    DatabaseUnavailable,
    /// `PAYLOAD_TOO_LARGE`, 413: the request body is larger than MAX_BODY_BYTES.
    PayloadTooLarge { limit: usize },
    /// `PAYLOAD_TOO_LARGE`, 431: a header is larger than MAX_HEADER_VALUE_BYTES; names it.
    HeaderTooLarge { header: String, limit: usize },
    /// A single sign-on failure; `failure` names the code and status (`SsoFailure`), `message`
    /// what the person can do about it (never a token or a secret).
    Sso { failure: SsoFailure, message: String },
    /// `INTERNAL`, 500: a bug or an infrastructure failure; the detail is logged, never sent.
    Internal(anyhow::Error),
}

/// Why single sign-on refused (docs/sso.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsoFailure {
    /// `SSO_REQUIRED`, 403: the address's organisation enforces SSO; passwords and sessions
    /// opened without it are refused.
    Required,
    /// `SSO_STATE_INVALID`, 400: the sign-in is unknown, expired, already used, or was started
    /// in another browser.
    StateInvalid,
    /// `SSO_TOKEN_INVALID`, 401: the provider's ID token failed validation (issuer, audience,
    /// signature, expiry, nonce).
    TokenInvalid,
    /// `SSO_DOMAIN_NOT_VERIFIED`, 403: the email's domain is not verified for this tenant.
    DomainNotVerified,
    /// `SSO_PROVIDER_UNAVAILABLE`, 502: the provider could not be reached or refused the request.
    ProviderUnavailable,
}

impl SsoFailure {
    pub fn code(self) -> &'static str {
        match self {
            Self::Required => "SSO_REQUIRED",
            Self::StateInvalid => "SSO_STATE_INVALID",
            Self::TokenInvalid => "SSO_TOKEN_INVALID",
            Self::DomainNotVerified => "SSO_DOMAIN_NOT_VERIFIED",
            Self::ProviderUnavailable => "SSO_PROVIDER_UNAVAILABLE",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::Required | Self::DomainNotVerified => StatusCode::FORBIDDEN,
            Self::StateInvalid => StatusCode::BAD_REQUEST,
            Self::TokenInvalid => StatusCode::UNAUTHORIZED,
            Self::ProviderUnavailable => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Seconds a client is asked to wait while the database is unreachable.
pub const DATABASE_RETRY_AFTER_SECS: u64 = 5;

impl AppError {
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation { field, message: message.into() }
    }

    pub fn sso(failure: SsoFailure, message: impl Into<String>) -> Self {
        Self::Sso { failure, message: message.into() }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// The constraint a failed statement violated, for mapping to `CONFLICT` and friends.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Self::Internal(err) => err.downcast_ref::<tokio_postgres::Error>().and_then(violated_constraint),
            _ => None,
        }
    }

    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::TenantNotFound(_) => "TENANT_NOT_FOUND",
            Self::TenantSuspended => "TENANT_SUSPENDED",
            Self::SubscriptionExpired => "SUBSCRIPTION_EXPIRED",
            Self::EmailNotVerified => "EMAIL_NOT_VERIFIED",
            Self::FeatureNotInPlan { .. } => "FEATURE_NOT_IN_PLAN",
            Self::PlanLimitExceeded { .. } => "PLAN_LIMIT_EXCEEDED",
            Self::Validation { .. } => "VALIDATION",
            Self::Conflict { .. } => "CONFLICT",
            Self::BillingUnavailable(_) => "BILLING_UNAVAILABLE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            Self::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Self::PayloadTooLarge { .. } | Self::HeaderTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::Sso { failure, .. } => failure.code(),
            Self::Internal(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_)
            | Self::TenantSuspended
            | Self::SubscriptionExpired
            | Self::EmailNotVerified
            | Self::FeatureNotInPlan { .. }
            | Self::PlanLimitExceeded { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::TenantNotFound(_) => StatusCode::NOT_FOUND,
            Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::BillingUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } | Self::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeaderTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Sso { failure, .. } => failure.status(),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// For operators (CLI, benches): the client-facing message, or the internal detail.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            Self::Internal(inner) => inner,
            other => anyhow::anyhow!(other.message()),
        }
    }

    /// The message a person reads, clipped (it may quote input). Never contains internal detail.
    pub fn message(&self) -> String {
        clip(&self.full_message())
    }

    fn full_message(&self) -> String {
        match self {
            Self::Unauthenticated(m) | Self::Forbidden(m) => (*m).to_owned(),
            Self::NotFound(what) => format!("{what} not found"),
            Self::TenantNotFound(m) | Self::BillingUnavailable(m) | Self::Sso { message: m, .. } => m.clone(),
            Self::TenantSuspended => {
                "this tenant is suspended; its owner can contact support to reactivate it".to_owned()
            }
            Self::SubscriptionExpired => {
                "this tenant's subscription has expired; renew the plan to continue".to_owned()
            }
            Self::EmailNotVerified => {
                "verify your email address first: open the link we mailed you, or ask for a new one \
                 with resendVerificationEmail"
                    .to_owned()
            }
            Self::FeatureNotInPlan { feature, plan, cheapest } => match cheapest {
                Some(cheapest) => format!(
                    "the {feature} feature is not in the {plan} plan; upgrade to {cheapest} or above to use it"
                ),
                None => format!("the {feature} feature is not in the {plan} plan, nor in any plan offered"),
            },
            Self::PlanLimitExceeded { resource, limit, plan } => format!(
                "the {plan} plan allows {limit} {resource}; this would exceed it. Upgrade the plan or free some up"
            ),
            Self::Validation { field, message } => format!("{field}: {message}"),
            Self::Conflict { message, .. } => message.clone(),
            Self::RateLimited { retry_after_secs } => {
                format!("too many requests; retry in {retry_after_secs} s")
            }
            Self::QuotaExceeded { limit, plan, retry_after_secs } => format!(
                "this tenant has used the {limit} API requests of its {plan} plan for this month; \
                 upgrade the plan, or retry when the quota resets in {retry_after_secs} s"
            ),
            Self::DatabaseUnavailable => {
                format!("the database is unreachable right now; retry in {DATABASE_RETRY_AFTER_SECS} s")
            }
            Self::PayloadTooLarge { limit } => {
                format!("the request body is larger than {limit} bytes; send less at once")
            }
            Self::HeaderTooLarge { header, limit } => {
                format!("the {header} header is longer than {limit} bytes")
            }
            Self::Internal(_) => "internal error; it has been logged".to_owned(),
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Validation { field, .. } | Self::Conflict { field, .. } => Some(field),
            _ => None,
        }
    }

    /// An internal error caused by losing the database becomes `DatabaseUnavailable`, wherever
    /// it was wrapped; called where the error leaves the server.
    fn classified(self) -> Self {
        match self {
            Self::Internal(err) if is_outage(&err) => {
                tracing::warn!(error = format!("{err:#}"), "database unavailable");
                Self::DatabaseUnavailable
            }
            // A backstop: input is checked for NUL before it runs (graphql::input_check).
            Self::Internal(err) if is_unstorable_text(&err) => Self::validation(
                "input",
                "text contains a character PostgreSQL cannot store (such as NUL, \\u0000); remove it",
            ),
            other => other,
        }
    }

    /// Whether trying the same thing again later can succeed: the database is unreachable, or a
    /// statement lost a race that a retry wins (serialization failure, deadlock, a lock or
    /// statement timeout).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::DatabaseUnavailable => true,
            Self::Internal(err) => is_outage(err) || has_sqlstate(err, |code| TRANSIENT.contains(code)),
            _ => false,
        }
    }

    /// Whether PostgreSQL refused the data itself (class 22, data exception: NUL in text, a
    /// value out of range…): the same input can never be stored.
    pub fn is_bad_data(&self) -> bool {
        matches!(self, Self::Internal(err) if has_sqlstate(err, |code| code.code().starts_with("22")))
    }

    /// Logs internal causes exactly once, where the error leaves the server.
    fn log_if_internal(&self) {
        if let Self::Internal(err) = self {
            tracing::error!(error = format!("{err:#}"), "internal error");
        }
    }

    /// Seconds a client should wait before retrying, for refusals that have one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } | Self::QuotaExceeded { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            Self::DatabaseUnavailable => Some(DATABASE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The GraphQL-shaped body used for failures before GraphQL runs.
    pub fn graphql_body(&self) -> serde_json::Value {
        let mut extensions = json!({ "code": self.code() });
        if let Some(field) = self.field() {
            extensions["field"] = json!(field);
        }
        if let Some(seconds) = self.retry_after() {
            extensions["retryAfter"] = json!(seconds);
        }
        if let Self::QuotaExceeded { limit, plan, .. } = self {
            extensions["limit"] = json!(limit);
            extensions["plan"] = json!(plan);
        }
        json!({ "errors": [{ "message": self.message(), "extensions": extensions }] })
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        let err = err.classified();
        err.log_if_internal();
        use async_graphql::ErrorExtensions as _;
        async_graphql::Error::new(err.message()).extend_with(|_, ext| {
            ext.set("code", err.code());
            if let Some(field) = err.field() {
                ext.set("field", field);
            }
            if let Some(seconds) = err.retry_after() {
                ext.set("retryAfter", seconds);
            }
            match &err {
                AppError::QuotaExceeded { limit, plan, .. } => {
                    ext.set("limit", *limit);
                    ext.set("plan", plan.as_str());
                }
                AppError::FeatureNotInPlan { feature, plan, cheapest } => {
                    ext.set("feature", *feature);
                    ext.set("plan", plan.as_str());
                    if let Some(cheapest) = cheapest {
                        ext.set("requiredPlan", cheapest.as_str());
                    }
                }
                AppError::PlanLimitExceeded { resource, limit, plan } => {
                    ext.set("resource", *resource);
                    ext.set("limit", *limit);
                    ext.set("plan", plan.as_str());
                }
                _ => {}
            }
        })
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let err = self.classified();
        err.log_if_internal();
        let content_type = [(header::CONTENT_TYPE, "application/graphql-response+json")];
        let mut response = (err.status(), content_type, axum::Json(err.graphql_body())).into_response();
        if let Some(seconds) = err.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Longest message sent to a client, in characters; messages may quote input.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// `message`, cut to [`MAX_MESSAGE_CHARS`] with a mark that it was cut.
pub fn clip(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}… (truncated)", &message[..end]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_errors_carry_the_code_and_field() {
        let err: async_graphql::Error = AppError::validation("subdomain", "too short").into();
        let ext = err.extensions.expect("extensions set");
        assert_eq!(ext.get("code"), Some(&async_graphql::Value::from("VALIDATION")));
        assert_eq!(ext.get("field"), Some(&async_graphql::Value::from("subdomain")));
        assert_eq!(err.message, "subdomain: too short");
    }

    #[test]
    fn long_messages_are_clipped() {
        let long = "x".repeat(200_000);
        let message = AppError::TenantNotFound(long).message();
        assert!(message.len() < 400 && message.ends_with("(truncated)"), "{}", message.len());
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = AppError::internal(anyhow::anyhow!("password=hunter2 connection refused"));
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.message().contains("hunter2"));
    }
}
