//! The HTTP surface: routes and middleware.

mod graphql;
mod playground;
mod ws;

use std::time::Duration;

use axum::Router;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use axum::extract::FromRef;

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
    let state =
        HttpState { app, schema: build_schema(), documents: std::sync::Arc::new(DocumentCache::new(1_000)) };
    // Spans carry the path only: query strings (GET /graphql) can hold variables and secrets.
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or_default();
        tracing::info_span!("request", method = %req.method(), path = req.uri().path(), request.id = request_id)
    });
    let mut routes = Router::new()
        .route("/graphql", get(graphql::handler).post(graphql::handler))
        .route("/graphql/ws", get(ws::handler))
        .route("/api/health", get(health::api_health))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz));
    if state.app.playground {
        routes = routes.merge(playground::routes());
    }
    routes
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(trace)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
