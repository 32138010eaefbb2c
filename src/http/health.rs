//! `/api/health` (detailed), `/livez` and `/readyz`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::health::{database_latency, report};
use crate::state::AppState;

pub async fn api_health(State(state): State<AppState>) -> impl IntoResponse {
    let report = report(&state).await;
    let code = if report.status == "healthy" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(report))
}

pub async fn livez() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "alive" }))
}

/// Ready when the database answers; load balancers stop sending traffic on 503. Tenants that
/// lag behind this build's migrations are reported, not a reason to refuse traffic: they are
/// served while `tenantry migrate` catches up.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let migrations = serde_json::json!({
        "version": state.migration_lag.target(),
        "tenants_lagging": state.migration_lag.lagging(),
    });
    match database_latency(&state).await {
        Some(_) => (StatusCode::OK, Json(serde_json::json!({ "status": "ready", "migrations": migrations }))),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "unavailable",
                "reason": "database unreachable",
                "migrations": migrations,
            })),
        ),
    }
}
