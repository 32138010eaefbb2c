//! Browser-facing hardening: CORS from `CORS_ORIGINS` and security headers on every response.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::observe::X_REQUEST_ID;

/// CORS for the configured origins: none (same origin only), a list, or `*` (any origin; no
/// cookies are used, credentials travel in the Authorization header).
pub fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<&str> = origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()).collect();
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| match HeaderValue::from_str(o.trim_end_matches('/')) {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::warn!(origin = %o, "CORS_ORIGINS: ignoring an origin that is not a valid header value");
                None
            }
        }))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-tenant"),
            X_REQUEST_ID,
        ])
        .expose_headers([X_REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

/// The API answers JSON, so a strict policy costs nothing; a handler that serves HTML (the
/// playground) sets its own `Content-Security-Policy`, which is kept.
pub const HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains"),
    (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
];

/// Adds the security headers a response does not set itself. Called by `observe` on every
/// response (one middleware fewer per request than a layer of its own).
pub fn security_headers(headers: &mut HeaderMap) {
    for (name, value) in HEADERS {
        headers.entry(name).or_insert_with(|| HeaderValue::from_static(value));
    }
}
