//! The HTTP surface: routes and middleware.

pub mod client_ip;
mod graphql;
mod hardening;
mod limits;
mod metrics;
mod negotiate;
pub mod observe;
mod playground;
mod serve;
mod ws;

pub use serve::{EdgeLimits, serve};

use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::graphql::documents::DocumentCache;
use crate::graphql::{AppSchema, build_schema_for};
use crate::health;
use crate::state::AppState;

/// What the routes share: the application state, and the GraphQL schema with its document cache
/// (kept here, not in `AppState`, so features never depend on the schema they are part of).
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schema: AppSchema,
    /// Parsed queries by text.
    pub documents: std::sync::Arc<DocumentCache>,
}

impl FromRef<HttpState> for AppState {
    fn from_ref(state: &HttpState) -> Self {
        state.app.clone()
    }
}

pub fn router(app: AppState) -> Router {
    router_with(app, Router::new())
}

/// The router with `extra` routes merged in (an embedding application's own REST routes); they
/// get the same request ids, logs, metrics, CORS, headers, timeout and panic handling.
pub fn router_with(app: AppState, extra: Router) -> Router {
    // Installed before the first request, so every metric is described from the start.
    crate::telemetry::metrics::handle();
    let cors = hardening::cors(&app.cors_origins);
    let state = HttpState {
        app: app.clone(),
        schema: build_schema_for(app.edge.introspection),
        documents: std::sync::Arc::new(DocumentCache::new(16 * 1024 * 1024)),
    };
    let mut routes = Router::new()
        .route("/graphql", get(graphql::handler).post(graphql::handler))
        .route("/graphql/ws", get(ws::handler))
        .route("/api/health", get(health::api_health))
        .route("/api/stripe/webhook", post(crate::billing::webhook::handler))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics));
    if state.app.playground {
        routes = routes.merge(playground::routes());
    }
    routes
        .with_state(state)
        .merge(extra)
        // Unknown paths and methods get the same GraphQL-shaped body as every other refusal.
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: bodies and headers are bounded before any handler reads them (the
        // limit is ours, so axum's own is off); a panic becomes a response before the headers,
        // CORS and the request line see it; `observe` is outermost so its span and timing
        // cover everything.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(app.clone(), limits::limit))
        .layer(CatchPanicLayer::custom(observe::on_panic))
        .layer(axum::middleware::from_fn(hardening::security_headers))
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(app, observe::observe))
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
