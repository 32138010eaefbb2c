//! `GET /metrics`: Prometheus text format, behind `METRICS_TOKEN` when one is configured.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use metrics::gauge;

use super::HttpState;
use crate::state::AppState;
use crate::telemetry::metrics as m;

pub async fn metrics(State(http): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &http.settings.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|given| same_secret(given, secrecy::ExposeSecret::expose_secret(expected))) {
            let mut response =
                (StatusCode::UNAUTHORIZED, "metrics need `Authorization: Bearer <METRICS_TOKEN>`\n")
                    .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let body = render(&http.app, &http.settings.metrics).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Compares digests, so the time taken says nothing about how much of the token matched.
fn same_secret(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// Samples the gauges read at scrape time (pool, tenants, memory), then renders everything.
pub async fn render(state: &AppState, handle: &metrics_exporter_prometheus::PrometheusHandle) -> String {
    let pool = state.pool.status();
    gauge!(m::DB_POOL_SIZE).set(pool.size as f64);
    gauge!(m::DB_POOL_IN_USE).set(pool.size.saturating_sub(pool.available) as f64);
    gauge!(m::DB_POOL_MAX).set(pool.max_size as f64);
    gauge!(m::DB_POOL_WAITING).set(pool.waiting as f64);
    if let Some(rss) = crate::health::rss_bytes() {
        gauge!(m::RSS).set(rss as f64);
    }
    match tenants_by_status(state).await {
        Ok(counts) => {
            for (status, count) in counts {
                gauge!(m::TENANTS, "status" => status).set(count as f64);
            }
        }
        Err(err) => tracing::warn!(error = ?err, "metrics: counting tenants failed"),
    }
    match job_stats(state).await {
        Ok(stats) => {
            gauge!(m::JOBS_QUEUED).set(stats.queued as f64);
            gauge!(m::JOBS_RUNNING).set(stats.running as f64);
            gauge!(m::JOBS_DEAD).set(stats.dead as f64);
            gauge!(m::JOBS_OLDEST_AGE).set(stats.oldest_age_secs);
        }
        Err(err) => tracing::warn!(error = ?err, "metrics: reading the job queue failed"),
    }

    handle.run_upkeep();
    handle.render()
}

async fn job_stats(state: &AppState) -> anyhow::Result<crate::jobs::repo::Stats> {
    let client = state.pool.get().await?;
    crate::jobs::repo::stats(&client).await.map_err(|e| e.into_anyhow())
}

async fn tenants_by_status(state: &AppState) -> anyhow::Result<Vec<(String, i64)>> {
    use crate::tenancy::model::TenantStatus;
    let client = state.pool.get().await?;
    let mut counts = crate::tenancy::repo::count_by_status(&client).await.map_err(|e| e.into_anyhow())?;
    // Every known status is reported, so a status that empties drops to 0 rather than going stale.
    for status in [TenantStatus::Active, TenantStatus::Suspended, TenantStatus::Expired] {
        if !counts.iter().any(|(s, _)| s == status.as_db()) {
            counts.push((status.as_db().to_owned(), 0));
        }
    }
    Ok(counts)
}
