//! Applying a verified event: recorded and applied in one transaction, in Stripe's order.
//!
//! `decide` is the whole policy, a pure function of the stored state and the event; `apply`
//! does the I/O around it.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::events::{self, BillingEvent, Envelope, Unusable};
use super::model::{BillingState, BillingStatus};
use super::repo;
use crate::error::AppError;
use crate::plans::{self, PlanCatalog, TenantChange};
use crate::state::AppState;
use crate::tenancy::model::TenantStatus;

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
pub async fn apply(state: &AppState, envelope: &Envelope) -> Result<Outcome, AppError> {
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
    state: &AppState,
    at: DateTime<Utc>,
    event: &BillingEvent,
) -> Result<Outcome, AppError> {
    let Some(tenant_id) = find_tenant(tx, event).await? else {
        tracing::warn!("Stripe event names no known tenant; ignored");
        return Ok(Outcome::Ignored);
    };
    tracing::Span::current().record("tenant.id", tracing::field::display(tenant_id));
    let current = repo::lock_state(tx, tenant_id).await?;
    let decision = decide(&current, event, at, &state.plans, state.billing.grace);
    if decision.outcome != Outcome::Applied {
        return Ok(decision.outcome);
    }
    if decision.state != current {
        repo::save_state(tx, &decision.state).await?;
    }
    if !decision.change.is_empty() {
        plans::apply_change(tx, &state.plans, tenant_id, &decision.change).await?;
    }
    Ok(Outcome::Applied)
}

/// The tenant an event is about: by its Stripe customer, else by the `tenant_id` metadata set
/// at checkout (remembering the customer for later events).
async fn find_tenant(
    tx: &deadpool_postgres::Transaction<'_>,
    event: &BillingEvent,
) -> Result<Option<Uuid>, AppError> {
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
        return Ok(Some(id));
    }
    let Some(id) = tenant_id else { return Ok(None) };
    let found = repo::live_tenant(tx, id).await?;
    if let (Some(id), Some(customer)) = (found, customer) {
        repo::set_customer(tx, id, customer).await?;
    }
    Ok(found)
}

/// The new billing state, the tenant change, and the outcome.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub state: BillingState,
    pub change: TenantChange,
    pub outcome: Outcome,
}

impl Decision {
    fn not_applied(current: &BillingState, outcome: Outcome) -> Self {
        Self { state: current.clone(), change: TenantChange::default(), outcome }
    }
}

/// Billing policy. `at` is the event's `created`; `grace` is both how long a past-due tenant
/// keeps access and the slack added to `expires_at` past the paid period.
pub fn decide(
    current: &BillingState,
    event: &BillingEvent,
    at: DateTime<Utc>,
    catalog: &PlanCatalog,
    grace: Duration,
) -> Decision {
    let newer = current.last_event_at.is_none_or(|last| at >= last);
    let is_current = |sub: &str| current.subscription_id.as_deref() == Some(sub);
    let mut next = current.clone();
    next.last_event_at = Some(current.last_event_at.map_or(at, |last| last.max(at)));
    let mut change = TenantChange::default();
    let restore = |next: &mut BillingState, change: &mut TenantChange| {
        if next.suspended_by_billing {
            next.suspended_by_billing = false;
            change.status = Some(TenantStatus::Active);
        }
    };
    let skip = |outcome| Decision::not_applied(current, outcome);

    match event {
        BillingEvent::CheckoutCompleted(checkout) => {
            let Some(sub) = checkout.subscription.as_deref() else { return skip(Outcome::Ignored) };
            let Some(plan) = checkout.plan_id.as_deref().and_then(|id| catalog.get(id)) else {
                return skip(Outcome::Ignored);
            };
            if !matches!(checkout.payment_status.as_str(), "paid" | "no_payment_required") {
                return skip(Outcome::Ignored);
            }
            let same = is_current(sub);
            if !newer && (same || current.status.is_live()) {
                return skip(Outcome::Stale);
            }
            // The session carries no period: one interval from now until a subscription or
            // invoice event brings the real end.
            let provisional =
                at + if plan.interval == "year" { Duration::days(366) } else { Duration::days(31) };
            let period_end = same.then_some(current.current_period_end).flatten().unwrap_or(provisional);
            if !(same && current.status.is_live()) {
                next.status = BillingStatus::Active;
                next.past_due_since = None;
                next.cancel_at_period_end = false;
            }
            next.subscription_id = Some(sub.to_owned());
            next.current_period_end = Some(period_end);
            restore(&mut next, &mut change);
            change.plan = Some(plan.id.clone());
            change.expires_at = Some(Some(period_end + grace));
        }
        BillingEvent::Subscription { deleted, subscription: sub } => {
            let Some(status) = BillingStatus::from_stripe(&sub.status) else {
                tracing::warn!(status = sub.status, "unknown subscription status; event ignored");
                return skip(Outcome::Ignored);
            };
            let other_is_live =
                current.subscription_id.is_some() && !is_current(&sub.id) && current.status.is_live();
            if *deleted
                || matches!(
                    status,
                    BillingStatus::Canceled | BillingStatus::IncompleteExpired | BillingStatus::Paused
                )
            {
                // The end of a subscription the tenant has since replaced changes nothing.
                if current.subscription_id.is_some() && !is_current(&sub.id) {
                    return skip(Outcome::Ignored);
                }
                // Deletion is final whatever arrived before it; a non-final end obeys the order.
                if !*deleted && !newer {
                    return skip(Outcome::Stale);
                }
                next.subscription_id = Some(sub.id.clone());
                next.status = if *deleted { BillingStatus::Canceled } else { status };
                next.current_period_end = sub.current_period_end.or(current.current_period_end);
                next.cancel_at_period_end = false;
                next.past_due_since = None;
                restore(&mut next, &mut change);
                change.plan = Some(catalog.free().id.clone());
                change.expires_at = Some(None);
            } else {
                if !newer && (is_current(&sub.id) || other_is_live) {
                    return skip(Outcome::Stale);
                }
                // An incomplete new subscription does not replace a live one.
                if other_is_live && !status.is_live() {
                    return skip(Outcome::Ignored);
                }
                let same = is_current(&sub.id);
                next.subscription_id = Some(sub.id.clone());
                next.status = status;
                next.current_period_end =
                    sub.current_period_end.or(same.then_some(current.current_period_end).flatten());
                next.cancel_at_period_end = sub.cancel_at_period_end;
                if status.is_live() {
                    let plan = sub
                        .lookup_key
                        .as_deref()
                        .and_then(|key| catalog.all().find(|p| p.stripe_price.as_deref() == Some(key)))
                        .or_else(|| sub.plan_id.as_deref().and_then(|id| catalog.get(id)));
                    match plan {
                        Some(plan) => change.plan = Some(plan.id.clone()),
                        None => tracing::warn!("subscription price maps to no plan; plan kept"),
                    }
                    if let Some(end) = next.current_period_end {
                        change.expires_at = Some(Some(end + grace));
                    }
                }
                if status.is_overdue() {
                    next.past_due_since = same.then_some(current.past_due_since).flatten().or(Some(at));
                } else {
                    next.past_due_since = None;
                    if status.is_live() {
                        restore(&mut next, &mut change);
                    }
                }
            }
        }
        BillingEvent::InvoicePaid(invoice) | BillingEvent::InvoicePaymentFailed(invoice) => {
            let Some(sub) = invoice.subscription.as_deref() else { return skip(Outcome::Ignored) };
            if !is_current(sub) || !current.status.is_live() {
                return skip(Outcome::Ignored);
            }
            if !newer {
                return skip(Outcome::Stale);
            }
            if matches!(event, BillingEvent::InvoicePaid(_)) {
                if current.status.is_overdue() {
                    next.status = BillingStatus::Active;
                }
                next.past_due_since = None;
                next.current_period_end = current.current_period_end.max(invoice.period_end);
                restore(&mut next, &mut change);
                if let Some(end) = next.current_period_end {
                    change.expires_at = Some(Some(end + grace));
                }
            } else {
                if current.status != BillingStatus::Unpaid {
                    next.status = BillingStatus::PastDue;
                }
                next.past_due_since = current.past_due_since.or(Some(at));
            }
        }
    }
    Decision { state: next, change, outcome: Outcome::Applied }
}
