//! `startCheckout`, `openBillingPortal` and `sync-prices` against a fake Stripe, and the whole
//! free → pro → free journey.

use serde_json::{Value, json};

use crate::billing_fake::FakeStripe;
use crate::billing_support::*;
use crate::helpers::{As, error_code};

const CHECKOUT: &str = "mutation($plan: String!, $ok: String!, $cancel: String!) {
    startCheckout(plan: $plan, successUrl: $ok, cancelUrl: $cancel) { id url } }";

async fn start_checkout(t: &BillingApp, token: &str, plan: &str) -> Value {
    let vars = json!({ "plan": plan, "ok": format!("{ORIGIN}/billing/done"), "cancel": format!("{ORIGIN}/billing") });
    t.app.graphql(As::member(token, "acme"), CHECKOUT, vars).await.1
}

#[tokio::test]
async fn twenty_concurrent_checkouts_create_one_stripe_customer() {
    let t = spawn_billing_app(3600).await;
    let replies = futures::future::join_all((0..20).map(|_| start_checkout(&t, &t.owner, "pro"))).await;
    for body in &replies {
        assert!(
            body["data"]["startCheckout"]["url"].as_str().is_some_and(|u| u.starts_with("https://")),
            "{body}"
        );
    }
    assert_eq!(t.fake.customers().len(), 1);
    let sessions = t.fake.checkout_sessions();
    assert_eq!(sessions.len(), 20);
    let customer = sessions[0]["customer"].clone();
    assert!(sessions.iter().all(|s| s["customer"] == customer));
    let client = t.app.pool.get().await.unwrap();
    let stored: Option<String> = client
        .query_one("select stripe_customer_id from control.tenants where id = $1", &[&t.tenant_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, Some(customer));
}

#[tokio::test]
async fn a_checkout_session_is_a_subscription_for_the_plans_price_with_tenant_and_plan_metadata() {
    let t = spawn_billing_app(3600).await;
    let body = start_checkout(&t, &t.owner, "pro").await;
    let session = &body["data"]["startCheckout"];
    assert_eq!(session["id"], "cs_test_fake1", "{body}");
    let sent = &t.fake.checkout_sessions()[0];
    let tenant_id = t.tenant_id.to_string();
    assert_eq!(sent["mode"], "subscription");
    assert_eq!(sent["line_items[0][price]"], "price_pro_monthly");
    assert_eq!(sent["line_items[0][quantity]"], "1");
    assert_eq!(sent["metadata[tenant_id]"], tenant_id);
    assert_eq!(sent["metadata[plan_id]"], "pro");
    assert_eq!(sent["subscription_data[metadata][tenant_id]"], tenant_id);
    assert_eq!(sent["success_url"], format!("{ORIGIN}/billing/done"));
    assert_eq!(t.fake.customers()[0]["metadata[tenant_id]"], tenant_id);
}

#[tokio::test]
async fn redirects_off_the_allowed_origins_unknown_plans_and_members_are_refused() {
    let t = spawn_billing_app(3600).await;
    let vars =
        json!({ "plan": "pro", "ok": "https://evil.example.net/phish", "cancel": format!("{ORIGIN}/") });
    let (_, body) = t.app.graphql(As::member(&t.owner, "acme"), CHECKOUT, vars).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "successUrl");
    assert_eq!(error_code(&start_checkout(&t, &t.owner, "platinum").await), Some("VALIDATION"));
    assert_eq!(error_code(&start_checkout(&t, &t.owner, "free").await), Some("VALIDATION"));
    let member = t.app.member_of(&t.owner, "acme", "member", "MEMBER").await;
    assert_eq!(error_code(&start_checkout(&t, &member, "pro").await), Some("FORBIDDEN"));
    assert!(t.fake.checkout_sessions().is_empty());
}

#[tokio::test]
async fn a_stripe_error_becomes_a_clear_graphql_error() {
    let t = spawn_billing_app(3600).await;
    t.fake.fail_with(
        400,
        json!({ "type": "invalid_request_error", "code": "resource_missing", "message": "No such customer: 'cus_gone'" }),
    );
    let vars = json!({ "plan": "pro", "ok": format!("{ORIGIN}/ok"), "cancel": format!("{ORIGIN}/no") });
    let (status, body) = t.app.graphql(As::member(&t.owner, "acme"), CHECKOUT, vars).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(error_code(&body), Some("BILLING_UNAVAILABLE"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("No such customer"), "{message}");
}

#[tokio::test]
async fn the_billing_portal_opens_for_the_tenants_customer() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_existing").await;
    let query = "mutation($r: String!) { openBillingPortal(returnUrl: $r) { id url } }";
    let (_, body) = t
        .app
        .graphql(As::member(&t.owner, "acme"), query, json!({ "r": format!("{ORIGIN}/settings") }))
        .await;
    assert!(
        body["data"]["openBillingPortal"]["url"].as_str().is_some_and(|u| u.starts_with("https://")),
        "{body}"
    );
    let sent = t.fake.recorded.lock().unwrap().portal_sessions[0].clone();
    assert_eq!(sent["customer"], "cus_existing");
    assert_eq!(sent["return_url"], format!("{ORIGIN}/settings"));
    assert!(t.fake.customers().is_empty());
}

#[tokio::test]
async fn a_tenant_goes_from_free_to_pro_through_checkout_and_back_through_cancellation() {
    let t = spawn_billing_app(3600).await;
    let plan_query = "{ tenant { plan { id } billing { status cancelAtPeriodEnd } } }";
    let plan = |body: &Value| body["data"]["tenant"]["plan"]["id"].as_str().unwrap_or_default().to_owned();
    let body = t.app.graphql(As::member(&t.owner, "acme"), plan_query, json!({})).await.1;
    assert_eq!(plan(&body), "free", "{body}");
    start_checkout(&t, &t.owner, "pro").await;
    let sent = t.fake.checkout_sessions()[0].clone();
    let customer = sent["customer"].clone();

    // Stripe reports the finished checkout, then the subscription it created.
    let period_end = days_from_now(30);
    let completed = checkout_completed(t.tenant_id, "pro", &customer, "sub_journey");
    t.deliver_expecting(&event("checkout.session.completed", now() - 2, completed), "applied").await;
    let sub = subscription("sub_journey", &customer, "active", "pro_monthly", period_end);
    t.deliver_expecting(&event("customer.subscription.created", now() - 1, sub.clone()), "applied").await;
    let body = crate::helpers::eventually(std::time::Duration::from_secs(5), || async {
        let body = t.app.graphql(As::member(&t.owner, "acme"), plan_query, json!({})).await.1;
        (plan(&body) == "pro").then_some(body)
    })
    .await
    .0;
    assert_eq!(body["data"]["tenant"]["billing"]["status"], "ACTIVE");

    // Cancelled in the portal: ends at the period end, then Stripe deletes the subscription.
    let mut cancelling = sub.clone();
    cancelling["cancel_at_period_end"] = json!(true);
    t.deliver_expecting(&event("customer.subscription.updated", now(), cancelling), "applied").await;
    let mut deleted = sub;
    deleted["status"] = json!("canceled");
    t.deliver_expecting(&event("customer.subscription.deleted", now() + 1, deleted), "applied").await;
    crate::helpers::eventually(std::time::Duration::from_secs(5), || async {
        let body = t.app.graphql(As::member(&t.owner, "acme"), plan_query, json!({})).await.1;
        (plan(&body) == "free" && body["data"]["tenant"]["billing"]["status"] == "CANCELED").then_some(())
    })
    .await;
}

#[tokio::test]
async fn sync_prices_creates_each_paid_plans_price_once() {
    let fake = FakeStripe::start_empty().await;
    let url = fake.url.clone();
    let app = crate::helpers::spawn_app_with(|config| {
        config.stripe_secret_key = Some("sk_test_fake".into());
        config.stripe_api_base = url;
    })
    .await;
    let client = app.state.billing.client().map_err(|e| e.into_anyhow()).unwrap();
    let first = tenantry::billing::prices::sync_prices(client, &app.state.plans).await.unwrap();
    let actions: Vec<_> = first.iter().map(|s| (s.plan.as_str(), s.action)).collect();
    assert_eq!(actions, [("pro", "created"), ("enterprise", "created")]);
    let second = tenantry::billing::prices::sync_prices(client, &app.state.plans).await.unwrap();
    assert!(second.iter().all(|s| s.action == "unchanged"), "{second:?}");
    // The operator command does the same, and finds nothing to do either.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["billing", "sync-prices", "--json"])
        .env("STRIPE_SECRET_KEY", "sk_test_fake")
        .env("STRIPE_API_BASE", &fake.url)
        .env("DATA_DIR", crate::helpers::scratch_dir())
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["plan"], "pro");
    assert_eq!(report[0]["action"], "unchanged");
    assert_eq!(report[1]["action"], "unchanged");
    let recorded = fake.recorded.lock().unwrap();
    assert_eq!(recorded.products.len(), 2);
    assert_eq!(recorded.prices.len(), 2);
    assert_eq!(recorded.prices[0]["unit_amount"], 2999);
    assert_eq!(recorded.prices[0]["lookup_key"], "pro_monthly");
}
