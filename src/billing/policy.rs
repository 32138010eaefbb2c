//! Billing policy: what an event does to a tenant's billing state and plan, as a pure function
//! of the stored state and the event (so every rule is unit-tested without a database).

use chrono::{DateTime, Duration, Utc};

use super::apply::Outcome;
use super::events::BillingEvent;
use super::model::{BillingState, BillingStatus};
use crate::plans::{PlanCatalog, TenantChange};
use crate::tenancy::model::TenantStatus;

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
            let interval = if plan.interval == "year" { Duration::days(366) } else { Duration::days(31) };
            let provisional = at.checked_add_signed(interval).unwrap_or(at);
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
            change.expires_at = Some(period_end.checked_add_signed(grace));
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
                        change.expires_at = Some(end.checked_add_signed(grace));
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
                    change.expires_at = Some(end.checked_add_signed(grace));
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

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::billing::events::{CheckoutCompleted, Invoice, Subscription};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn grace() -> Duration {
        Duration::days(7)
    }

    fn on(sub: &str, status: BillingStatus, last: i64) -> BillingState {
        BillingState {
            subscription_id: Some(sub.into()),
            status,
            current_period_end: Some(at(30 * 86_400)),
            last_event_at: Some(at(last)),
            ..BillingState::none(Uuid::nil())
        }
    }

    fn sub_event(sub: &str, status: &str, key: &str, deleted: bool) -> BillingEvent {
        BillingEvent::Subscription {
            deleted,
            subscription: Subscription {
                id: sub.into(),
                customer: Some("cus_1".into()),
                tenant_id: None,
                status: status.into(),
                lookup_key: Some(key.into()),
                plan_id: None,
                current_period_end: Some(at(60 * 86_400)),
                cancel_at_period_end: false,
            },
        }
    }

    fn invoice(sub: &str, paid: bool) -> BillingEvent {
        let invoice = Invoice {
            customer: Some("cus_1".into()),
            subscription: Some(sub.into()),
            period_end: Some(at(60 * 86_400)),
        };
        if paid { BillingEvent::InvoicePaid(invoice) } else { BillingEvent::InvoicePaymentFailed(invoice) }
    }

    fn decide_now(state: &BillingState, event: &BillingEvent, secs: i64) -> Decision {
        decide(state, event, at(secs), &PlanCatalog::builtin(), grace())
    }

    #[test]
    fn a_paid_checkout_moves_a_new_customer_to_the_plan_with_a_provisional_period() {
        let checkout = BillingEvent::CheckoutCompleted(CheckoutCompleted {
            tenant_id: Some(Uuid::nil()),
            plan_id: Some("pro".into()),
            customer: Some("cus_1".into()),
            subscription: Some("sub_1".into()),
            payment_status: "paid".into(),
        });
        let d = decide_now(&BillingState::none(Uuid::nil()), &checkout, 0);
        assert_eq!(d.outcome, Outcome::Applied);
        assert_eq!(d.change.plan.as_deref(), Some("pro"));
        assert_eq!(d.state.status, BillingStatus::Active);
        assert_eq!(d.change.expires_at, Some(Some(at(0) + Duration::days(31) + grace())));
    }

    #[test]
    fn an_update_older_than_the_last_applied_event_is_stale() {
        let state = on("sub_1", BillingStatus::Active, 100);
        let d = decide_now(&state, &sub_event("sub_1", "active", "enterprise_monthly", false), 99);
        assert_eq!(d.outcome, Outcome::Stale);
        assert_eq!(d.state, state);
        assert!(d.change.is_empty());
        let tie = decide_now(&state, &sub_event("sub_1", "active", "enterprise_monthly", false), 100);
        assert_eq!(tie.change.plan.as_deref(), Some("enterprise"));
    }

    #[test]
    fn the_end_of_a_replaced_subscription_changes_nothing_but_its_own_deletion_is_final() {
        let state = on("sub_2", BillingStatus::Active, 100);
        let old_end = decide_now(&state, &sub_event("sub_1", "canceled", "pro_monthly", true), 200);
        assert_eq!(old_end.outcome, Outcome::Ignored);
        let own_end = decide_now(&state, &sub_event("sub_2", "canceled", "pro_monthly", true), 50);
        assert_eq!(own_end.outcome, Outcome::Applied);
        assert_eq!(own_end.change.plan.as_deref(), Some("free"));
        assert_eq!(own_end.change.expires_at, Some(None));
        assert_eq!(own_end.state.status, BillingStatus::Canceled);
    }

    #[test]
    fn a_new_subscription_replaces_an_ended_one_even_if_its_events_are_older() {
        let state = on("sub_1", BillingStatus::Canceled, 200);
        let d = decide_now(&state, &sub_event("sub_2", "active", "pro_monthly", false), 150);
        assert_eq!(d.outcome, Outcome::Applied);
        assert_eq!(d.state.subscription_id.as_deref(), Some("sub_2"));
        assert_eq!(d.change.plan.as_deref(), Some("pro"));
    }

    #[test]
    fn an_incomplete_subscription_does_not_replace_a_live_one() {
        let state = on("sub_1", BillingStatus::Active, 100);
        let d = decide_now(&state, &sub_event("sub_2", "incomplete", "enterprise_monthly", false), 200);
        assert_eq!(d.outcome, Outcome::Ignored);
    }

    #[test]
    fn a_failed_payment_starts_dunning_once_and_a_payment_ends_it_and_lifts_a_billing_suspension() {
        let failed = decide_now(&on("sub_1", BillingStatus::Active, 100), &invoice("sub_1", false), 110);
        assert_eq!(failed.state.status, BillingStatus::PastDue);
        assert_eq!(failed.state.past_due_since, Some(at(110)));
        assert!(failed.change.is_empty(), "the tenant keeps working during the grace period");
        let again = decide_now(&failed.state, &invoice("sub_1", false), 120);
        assert_eq!(again.state.past_due_since, Some(at(110)));

        let mut suspended = again.state;
        suspended.suspended_by_billing = true;
        let paid = decide_now(&suspended, &invoice("sub_1", true), 130);
        assert_eq!(paid.state.status, BillingStatus::Active);
        assert_eq!(paid.state.past_due_since, None);
        assert!(!paid.state.suspended_by_billing);
        assert_eq!(paid.change.status, Some(TenantStatus::Active));
        assert_eq!(paid.change.expires_at, Some(Some(at(60 * 86_400) + grace())));
    }

    #[test]
    fn a_payment_never_reactivates_a_tenant_billing_did_not_suspend() {
        let paid = decide_now(&on("sub_1", BillingStatus::PastDue, 100), &invoice("sub_1", true), 130);
        assert_eq!(paid.change.status, None);
    }

    #[test]
    fn invoices_of_other_subscriptions_and_unknown_statuses_are_ignored() {
        let state = on("sub_1", BillingStatus::Active, 100);
        assert_eq!(decide_now(&state, &invoice("sub_9", true), 200).outcome, Outcome::Ignored);
        let odd = decide_now(&state, &sub_event("sub_1", "on_hold", "pro_monthly", false), 200);
        assert_eq!(odd.outcome, Outcome::Ignored);
    }

    #[test]
    fn a_price_no_plan_sells_keeps_the_plan_but_records_the_subscription() {
        let state = on("sub_1", BillingStatus::Active, 100);
        let d = decide_now(&state, &sub_event("sub_1", "past_due", "legacy_price", false), 200);
        assert_eq!(d.outcome, Outcome::Applied);
        assert_eq!(d.change.plan, None);
        assert_eq!(d.state.status, BillingStatus::PastDue);
    }
}
