//! The HTTP surface: routes and middleware.

pub mod client_ip;
mod framing;
mod graphql;
mod hardening;
mod health;
mod limits;
mod metrics;
mod negotiate;
pub mod observe;
mod playground;
mod serve;
mod sso_callback;
mod webhook;
mod ws;
mod ws_executor;
mod ws_gate;
mod ws_registry;

pub use serve::{EdgeLimits, serve};
pub use ws::WsSettings;
pub use ws_registry::LiveSockets;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use self::client_ip::TrustedProxies;
use crate::graphql::documents::Documents;
use crate::graphql::trusted::TrustedDocuments;
use crate::state::AppState;

/// What the routes share: the application state and the HTTP settings, which hold the GraphQL
/// schema with its documents (kept here, not in `AppState`, so features never depend on the
/// schema they are part of).
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub settings: Arc<HttpSettings>,
}

/// What the HTTP layer enforces and serves (built by `app::services::http_settings`).
pub struct HttpSettings {
    /// Request bounds and GraphQL settings enforced at the edge.
    pub edge: EdgeSettings,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// Browser origins allowed by CORS (`*` for any).
    pub cors_origins: Vec<String>,
    /// Bearer token `/metrics` requires, if any.
    pub metrics_token: Option<secrecy::SecretString>,
    pub request_timeout: Duration,
    /// Whether `/playground` is served.
    pub playground: bool,
    /// Renders `/metrics` (the process's recorder, installed before the first request).
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The per-request HTTP metrics' handles (from that recorder).
    pub request_metrics: observe::RequestMetrics,
    /// Limits on `/graphql/ws`.
    pub ws: WsSettings,
    /// The open websockets, told by the assembly when credentials, members or tenants change.
    pub live: Arc<LiveSockets>,
    /// The GraphQL schema and its prepared documents.
    pub documents: Arc<Documents>,
    /// The trusted documents' manifest (`TRUSTED_DOCUMENTS_FILE`), reloaded by the assembly.
    pub trusted: Arc<TrustedDocuments>,
}

/// What the HTTP edge enforces beyond hyper's limits on request heads.
#[derive(Debug, Clone, Copy)]
pub struct EdgeSettings {
    /// `MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `MAX_HEADER_VALUE_BYTES`.
    pub max_header_value_bytes: usize,
}

impl FromRef<HttpState> for Arc<HttpSettings> {
    fn from_ref(state: &HttpState) -> Self {
        Arc::clone(&state.settings)
    }
}

impl FromRef<HttpState> for AppState {
    fn from_ref(state: &HttpState) -> Self {
        state.app.clone()
    }
}

pub fn router(app: AppState, settings: HttpSettings) -> Router {
    router_with(app, settings, Router::new())
}

/// The router with `extra` routes merged in (an embedding application's own REST routes); they
/// get the same request ids, logs, metrics, CORS, headers, timeout and panic handling.
pub fn router_with(app: AppState, settings: HttpSettings, extra: Router) -> Router {
    let cors = hardening::cors(&settings.cors_origins);
    let state = HttpState { app, settings: Arc::new(settings) };
    let mut routes = Router::new()
        .route("/graphql", get(graphql::handler).post(graphql::handler))
        .route("/graphql/ws", get(ws::handler))
        .route("/api/health", get(health::api_health))
        .route("/api/stripe/webhook", post(webhook::handler))
        .route("/sso/callback", get(sso_callback::handler))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics));
    if state.settings.playground {
        routes = routes.merge(playground::routes());
    }
    let limits = axum::middleware::from_fn_with_state(Arc::clone(&state.settings), limits::limit);
    let observe = axum::middleware::from_fn_with_state(Arc::clone(&state.settings), observe::observe);
    // One stack, applied to each route as one layer: axum boxes a route once per `layer` call
    // and clones every box per request, so five calls cost five boxes cloned per request.
    // Outermost first: `observe`, so its span and timing cover everything, and it adds the
    // security headers to every response; CORS; a panic becomes a response before the headers,
    // CORS and the request line see it; bodies and headers are bounded before any handler
    // reads them (the limit is ours, so axum's own is off).
    let edge = tower::ServiceBuilder::new()
        .layer(observe)
        .layer(cors)
        .layer(CatchPanicLayer::custom(observe::on_panic))
        .layer(limits)
        .layer(axum::extract::DefaultBodyLimit::disable());
    routes
        .with_state(state)
        .merge(extra)
        // Unknown paths and methods get the same GraphQL-shaped body as every other refusal.
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(edge)
}

async fn not_found() -> axum::response::Response {
    let message = "no such endpoint; the API is at /graphql (websockets: /graphql/ws)";
    negotiate::error_response(negotiate::Media::GraphqlResponse, StatusCode::NOT_FOUND, "NOT_FOUND", message)
}

async fn method_not_allowed() -> axum::response::Response {
    let message = "this endpoint does not take that method";
    negotiate::error_response(
        negotiate::Media::GraphqlResponse,
        StatusCode::METHOD_NOT_ALLOWED,
        "VALIDATION",
        message,
    )
}
