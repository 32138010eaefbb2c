//! `POST /api/stripe/webhook`: verify the signature on the raw body, then record and apply.
//!
//! Answers by cause, since Stripe delivers again (for three days) after anything but a 2xx:
//! - 200 for every verified event that was handled, whatever became of it (applied, duplicate,
//!   stale, ignored: an unknown type, tenant, plan or price, or an object of the wrong shape);
//! - 400 for a bad or stale signature, a body that is no event (a malformed id included), or
//!   an event whose data PostgreSQL refuses (NUL in a field): never processable, no effect;
//! - 503 with `Retry-After` when the database is unreachable or a statement lost a race: a
//!   later delivery succeeds;
//! - 500 for any other failure (a bug: logged at ERROR, and a delivery after the fix succeeds);
//! - 503 when no webhook secret is configured.
//!
//! An event's effects commit together with its record, or not at all.

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
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("id").map(|id| crate::error::clip(&format!("{id:?}"))));
        tracing::warn!(stripe.event_id = id.as_deref().unwrap_or("-"), "Stripe webhook body is not an event");
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
        Err(err) if err.is_retryable() => {
            tracing::warn!(
                error = format!("{:#}", err.into_anyhow()),
                "Stripe event not stored; Stripe will retry"
            );
            count(known, "retry");
            let mut response = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; deliver the event again later",
            );
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(crate::error::DATABASE_RETRY_AFTER_SECS),
            );
            response
        }
        Err(err) if err.is_bad_data() => {
            tracing::warn!(
                error = format!("{:#}", err.into_anyhow()),
                "Stripe event refused: its data cannot be stored"
            );
            count(known, "rejected");
            reply(StatusCode::BAD_REQUEST, "the event holds data that cannot be stored; it was not applied")
        }
        Err(err) => {
            tracing::error!(error = format!("{:#}", err.into_anyhow()), "Stripe event failed");
            count(known, "failed");
            reply(StatusCode::INTERNAL_SERVER_ERROR, "the event could not be processed; it was not applied")
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
