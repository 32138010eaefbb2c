//! Applying a verified event: recorded and applied in one transaction, in Stripe's order.
//! The policy itself is `policy::decide`; this module does the I/O around it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::events::{self, BillingEvent, Envelope, Unusable};
use super::policy::decide;
use super::repo;
use crate::error::AppError;
use crate::plans;

/// What became of a delivery (the `outcome` metric label and the response body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed billing state and/or the tenant.
    Applied,
    /// Seen before: acknowledged, no second effect.
    Duplicate,
    /// Older than what was already applied for that subscription.
    Stale,
    /// Unknown type, unknown tenant, or nothing to do.
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Ignored => "ignored",
        }
    }
}

/// Records the event and applies its effect in one transaction. Types billing does not handle
/// touch nothing.
pub async fn apply(state: super::Handles<'_>, envelope: &Envelope) -> Result<Outcome, AppError> {
    if !events::is_known(&envelope.kind) {
        return Ok(Outcome::Ignored);
    }
    let at = envelope.created_at();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    if !repo::record_event(&tx, &envelope.id, &envelope.kind, at).await? {
        return Ok(Outcome::Duplicate);
    }
    let outcome = match events::interpret(envelope) {
        Ok(Some(event)) => effect(&tx, state, at, &event).await?,
        Ok(None) => Outcome::Ignored,
        Err(Unusable(reason)) => {
            tracing::warn!(reason, "Stripe event lacks the fields billing needs; ignored");
            Outcome::Ignored
        }
    };
    repo::set_event_outcome(&tx, &envelope.id, outcome.as_str()).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn effect(
    tx: &deadpool_postgres::Transaction<'_>,
    state: super::Handles<'_>,
    at: DateTime<Utc>,
    event: &BillingEvent,
) -> Result<Outcome, AppError> {
    let Some((tenant_id, new_customer)) = find_tenant(tx, event).await? else {
        tracing::warn!("Stripe event names no known tenant; ignored");
        return Ok(Outcome::Ignored);
    };
    tracing::Span::current().record("tenant.id", tracing::field::display(tenant_id));
    let current = repo::lock_state(tx, tenant_id).await?;
    let decision = decide(&current, event, at, state.plans, state.billing.grace);
    if decision.outcome != Outcome::Applied {
        return Ok(decision.outcome);
    }
    // Remembered only with an effect: an ignored checkout (an unknown plan) leaves no trace.
    if let Some(customer) = new_customer {
        repo::set_customer(tx, tenant_id, customer).await?;
    }
    if decision.state != current {
        repo::save_state(tx, &decision.state).await?;
    }
    if !decision.change.is_empty() {
        plans::apply_change(tx, state.plans, tenant_id, &decision.change).await?;
    }
    Ok(Outcome::Applied)
}

/// The tenant an event is about: by its Stripe customer, else by the `tenant_id` metadata set
/// at checkout — then with the customer to remember for later events, if the event applies.
async fn find_tenant<'e>(
    tx: &deadpool_postgres::Transaction<'_>,
    event: &'e BillingEvent,
) -> Result<Option<(Uuid, Option<&'e str>)>, AppError> {
    let (customer, tenant_id) = match event {
        BillingEvent::CheckoutCompleted(c) => (c.customer.as_deref(), c.tenant_id),
        BillingEvent::Subscription { subscription, .. } => {
            (subscription.customer.as_deref(), subscription.tenant_id)
        }
        BillingEvent::InvoicePaid(i) | BillingEvent::InvoicePaymentFailed(i) => (i.customer.as_deref(), None),
    };
    if let Some(customer) = customer
        && let Some(id) = repo::tenant_by_customer(tx, customer).await?
    {
        return Ok(Some((id, None)));
    }
    let Some(id) = tenant_id else { return Ok(None) };
    Ok(repo::live_tenant(tx, id).await?.map(|id| (id, customer)))
}
