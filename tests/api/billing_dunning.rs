//! Dunning: a failed payment makes the tenant past due; after the grace period it is suspended;
//! a later payment restores it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::billing_support::*;
use crate::helpers::{As, eventually};

/// The status of a `tenant` request and its error code, if any.
async fn probe(t: &BillingApp) -> (StatusCode, Option<String>) {
    let (status, body) = t.app.graphql(As::member(&t.owner, "acme"), "{ tenant { id } }", json!({})).await;
    (status, crate::helpers::error_code(&body).map(str::to_owned))
}

#[tokio::test]
async fn a_failed_payment_suspends_the_tenant_after_the_grace_period_and_a_payment_restores_it() {
    let t = spawn_billing_app(1).await;
    t.with_customer("cus_A").await;
    let period_end = days_from_now(30);
    let sub = subscription("sub_A", "cus_A", "active", "pro_monthly", period_end);
    t.deliver_expecting(&event("customer.subscription.created", now() - 20, sub), "applied").await;

    let failed = invoice("sub_A", "cus_A", period_end);
    t.deliver_expecting(&event("invoice.payment_failed", now() - 10, failed), "applied").await;
    let (status, _, past_due) = t.billing_row().await.unwrap();
    assert_eq!((status.as_str(), past_due), ("past_due", true));
    let (_, body) =
        t.app.graphql(As::member(&t.owner, "acme"), "{ tenant { billing { status } } }", json!({})).await;
    assert_eq!(body["data"]["tenant"]["billing"]["status"], "PAST_DUE", "{body}");

    // The upkeep (every second here) suspends it once the one-second grace period is over.
    eventually(Duration::from_secs(15), || async {
        (probe(&t).await == (StatusCode::FORBIDDEN, Some("TENANT_SUSPENDED".into()))).then_some(())
    })
    .await;
    assert_eq!(t.tenant_row().await.1, "suspended");

    let paid = invoice("sub_A", "cus_A", period_end);
    t.deliver_expecting(&event("invoice.paid", now(), paid), "applied").await;
    eventually(Duration::from_secs(5), || async { (probe(&t).await.0 == StatusCode::OK).then_some(()) })
        .await;
    let (plan, status, _) = t.tenant_row().await;
    assert_eq!((plan.as_str(), status.as_str()), ("pro", "active"));
    assert_eq!(t.billing_row().await.unwrap().0, "active");
}

#[tokio::test]
async fn billing_never_lifts_a_suspension_an_operator_made() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_A").await;
    let period_end = days_from_now(30);
    let sub = subscription("sub_A", "cus_A", "active", "pro_monthly", period_end);
    t.deliver_expecting(&event("customer.subscription.created", now() - 20, sub), "applied").await;
    tenantry::tenancy::set_status(&t.app.pool, "acme", tenantry::tenancy::model::TenantStatus::Suspended)
        .await
        .unwrap();
    let paid = invoice("sub_A", "cus_A", period_end);
    t.deliver_expecting(&event("invoice.paid", now(), paid), "applied").await;
    assert_eq!(t.tenant_row().await.1, "suspended");
}

#[tokio::test]
async fn suspend_overdue_leaves_tenants_within_their_grace_period_alone() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_A").await;
    let period_end = days_from_now(30);
    let sub = subscription("sub_A", "cus_A", "past_due", "pro_monthly", period_end);
    t.deliver_expecting(&event("customer.subscription.updated", now(), sub), "applied").await;
    let state = &t.app.state;
    let suspended = tenantry::billing::suspend_overdue(&t.app.pool, &state.plans, chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(suspended, 0);
    let suspended = tenantry::billing::suspend_overdue(&t.app.pool, &state.plans, chrono::Duration::zero())
        .await
        .unwrap();
    assert_eq!(suspended, 1);
    assert_eq!(t.tenant_row().await.1, "suspended");
}
