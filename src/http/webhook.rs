//! `POST /api/stripe/webhook`: verify the signature on the raw body, then record and apply.
//!
//! Answers: 200 for every verified event, whatever became of it (applied, duplicate, stale,
//! ignored), so Stripe never retries an event it cannot improve by retrying; 400 for a bad or
//! stale signature or a body that is no event, with no effect; 500 only when the database
//! failed, so Stripe delivers again later; 503 when no webhook secret is configured.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use tracing::Instrument;

use crate::billing::apply;
use crate::billing::events::{self, Envelope};
use crate::state::AppState;

pub async fn handler(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let secrets = &state.billing.secrets;
    if secrets.is_empty() {
        tracing::warn!("Stripe webhook received but STRIPE_WEBHOOK_SECRET is not set");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "STRIPE_WEBHOOK_SECRET is not configured on this server",
        );
    }
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Err(err) = secrets.verify(header, &body, chrono::Utc::now().timestamp()) {
        tracing::warn!(reason = err.message(), "Stripe webhook refused");
        count("unverified", "rejected");
        return reply(StatusCode::BAD_REQUEST, err.message());
    }
    let Some(envelope) = Envelope::parse(&body) else {
        tracing::warn!("Stripe webhook body is not an event");
        count("unverified", "rejected");
        return reply(StatusCode::BAD_REQUEST, "the body is not a Stripe event");
    };
    let known = if events::is_known(&envelope.kind) { "true" } else { "false" };
    let span = tracing::info_span!(
        "stripe_event",
        stripe.event_id = %envelope.id,
        stripe.event_type = %envelope.kind,
        tenant.id = tracing::field::Empty,
    );
    let result = apply::apply(state.payments(), &envelope).instrument(span.clone()).await;
    let _entered = span.enter();
    match result {
        Ok(outcome) => {
            tracing::info!(outcome = outcome.as_str(), "Stripe event handled");
            count(known, outcome.as_str());
            (StatusCode::OK, axum::Json(json!({ "received": true, "outcome": outcome.as_str() })))
                .into_response()
        }
        Err(err) => {
            tracing::error!(
                error = format!("{:#}", err.into_anyhow()),
                "Stripe event failed; Stripe will retry"
            );
            count(known, "failed");
            reply(StatusCode::INTERNAL_SERVER_ERROR, "the event could not be stored; it will be retried")
        }
    }
}

/// `stripe_webhooks_total{type_known, outcome}`.
fn count(type_known: &'static str, outcome: &'static str) {
    metrics::counter!("stripe_webhooks_total", "type_known" => type_known, "outcome" => outcome).increment(1);
}

fn reply(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}
