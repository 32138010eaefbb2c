//! The HTTP surface: routes and middleware.

pub mod client_ip;
mod graphql;
mod hardening;
mod metrics;
pub mod observe;
mod playground;
mod ws;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::graphql::documents::DocumentCache;
use crate::graphql::{AppSchema, build_schema};
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
        schema: build_schema(),
        documents: std::sync::Arc::new(DocumentCache::new(1_000)),
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
        // Innermost first: a panic becomes a response before the headers, CORS and the request
        // line see it; `observe` is outermost so its span and timing cover everything.
        .layer(CatchPanicLayer::custom(observe::on_panic))
        .layer(axum::middleware::from_fn(hardening::security_headers))
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(app, observe::observe))
}
