//! `POST /api/stripe/webhook`: signatures, dedupe, ordering, and each event type's effect.

use reqwest::StatusCode;
use serde_json::json;
use tenantry::billing::signature::sign;

use crate::billing_support::*;

#[tokio::test]
async fn checkout_session_completed_puts_the_tenant_on_the_paid_plan() {
    let t = spawn_billing_app(3600).await;
    let completed = checkout_completed(t.tenant_id, "pro", "cus_A", "sub_A");
    t.deliver_expecting(&event("checkout.session.completed", now(), completed), "applied").await;
    let (plan, status, expires_at) = t.tenant_row().await;
    assert_eq!((plan.as_str(), status.as_str()), ("pro", "active"));
    assert!(expires_at.is_some_and(|at| at > chrono::Utc::now() + chrono::Duration::days(27)));
    assert_eq!(t.billing_row().await, Some(("active".into(), Some("sub_A".into()), false)));
    // The customer is remembered, so later events (which name only the customer) find the tenant.
    let renewed = invoice("sub_A", "cus_A", days_from_now(60));
    t.deliver_expecting(&event("invoice.paid", now(), renewed), "applied").await;
}

#[tokio::test]
async fn subscription_events_set_plan_status_period_end_and_cancellation() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_A").await;
    let period_end = days_from_now(30);
    let created = subscription("sub_A", "cus_A", "active", "enterprise_monthly", period_end);
    t.deliver_expecting(&event("customer.subscription.created", now() - 10, created), "applied").await;
    assert_eq!(t.tenant_row().await.0, "enterprise");

    let mut cancelling = subscription("sub_A", "cus_A", "active", "pro_monthly", period_end);
    cancelling["cancel_at_period_end"] = json!(true);
    t.deliver_expecting(&event("customer.subscription.updated", now(), cancelling), "applied").await;
    let query =
        "{ tenant { plan { id } status expiresAt billing { status currentPeriodEnd cancelAtPeriodEnd } } }";
    let (_, body) = t.app.graphql(crate::helpers::As::member(&t.owner, "acme"), query, json!({})).await;
    let tenant = &body["data"]["tenant"];
    assert_eq!(tenant["plan"]["id"], "pro", "{body}");
    assert_eq!(tenant["status"], "ACTIVE");
    assert_eq!(tenant["billing"]["status"], "ACTIVE");
    assert_eq!(tenant["billing"]["cancelAtPeriodEnd"], true);
    let period = chrono::DateTime::from_timestamp(period_end, 0).unwrap();
    let reported: chrono::DateTime<chrono::Utc> =
        tenant["billing"]["currentPeriodEnd"].as_str().unwrap().parse().unwrap();
    assert_eq!(reported, period);
}

#[tokio::test]
async fn a_deleted_subscription_puts_the_tenant_back_on_free() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_A").await;
    let active = subscription("sub_A", "cus_A", "active", "pro_monthly", days_from_now(30));
    t.deliver_expecting(&event("customer.subscription.created", now() - 5, active.clone()), "applied").await;
    let mut ended = active;
    ended["status"] = json!("canceled");
    t.deliver_expecting(&event("customer.subscription.deleted", now(), ended), "applied").await;
    let (plan, status, expires_at) = t.tenant_row().await;
    assert_eq!((plan.as_str(), status.as_str(), expires_at), ("free", "active", None));
    assert_eq!(t.billing_row().await.unwrap().0, "canceled");
}

#[tokio::test]
async fn a_paid_invoice_extends_expiry_to_the_new_period_end() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_A").await;
    let sub = subscription("sub_A", "cus_A", "active", "pro_monthly", days_from_now(2));
    t.deliver_expecting(&event("customer.subscription.created", now() - 5, sub), "applied").await;
    let before = t.tenant_row().await.2.unwrap();
    let renewal = invoice("sub_A", "cus_A", days_from_now(32));
    t.deliver_expecting(&event("invoice.payment_succeeded", now(), renewal), "applied").await;
    let after = t.tenant_row().await.2.unwrap();
    assert!(after - before >= chrono::Duration::days(29), "{before} → {after}");
}

#[tokio::test]
async fn forged_stale_and_malformed_deliveries_are_refused_with_no_effect() {
    let t = spawn_billing_app(3600).await;
    let body =
        event("checkout.session.completed", now(), checkout_completed(t.tenant_id, "pro", "cus_A", "sub_A"))
            .to_string();
    let forged = sign("whsec_not_ours", now(), body.as_bytes());
    let stale = sign(SECRET, now() - 301, body.as_bytes());
    let not_json = "{ this is not an event";
    let cases = [
        (body.as_str(), forged),
        (body.as_str(), stale),
        (body.as_str(), "t=123".to_owned()),
        (not_json, sign(SECRET, now(), not_json.as_bytes())),
    ];
    for (body, signature) in cases {
        let (status, reply) = t.post_webhook(body, &signature).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{signature}: {reply}");
        assert!(reply["error"].is_string());
    }
    assert_eq!(t.tenant_row().await.0, "free");
    assert_eq!(t.recorded_events().await, 0);
    assert_eq!(t.billing_row().await, None);
}

#[tokio::test]
async fn signed_events_that_can_never_be_stored_are_refused_with_400_and_no_effect() {
    let t = spawn_billing_app(3600).await;
    // An id holding NUL: no retry could ever store it (it used to answer 500, "will be retried").
    let mut bad_id =
        event("checkout.session.completed", now(), checkout_completed(t.tenant_id, "pro", "cus_A", "sub_A"));
    bad_id["id"] = json!("evt_\u{0}1");
    // A field PostgreSQL refuses deeper in: the customer id.
    let bad_customer = event(
        "checkout.session.completed",
        now(),
        checkout_completed(t.tenant_id, "pro", "cus_\u{0}A", "sub_A"),
    );
    for body in [bad_id, bad_customer] {
        let (status, reply) = t.deliver(&body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }
    assert_eq!(t.tenant_row().await.0, "free");
    assert_eq!(t.recorded_events().await, 0);
    assert_eq!(t.billing_row().await, None);
}

#[tokio::test]
async fn an_ignored_checkout_for_an_unknown_plan_leaves_no_customer_on_the_tenant() {
    let t = spawn_billing_app(3600).await;
    let unknown = checkout_completed(t.tenant_id, "platinum", "cus_U", "sub_U");
    t.deliver_expecting(&event("checkout.session.completed", now(), unknown), "ignored").await;
    let client = t.app.pool.get().await.unwrap();
    let row = client
        .query_one("select stripe_customer_id from control.tenants where id = $1", &[&t.tenant_id])
        .await
        .unwrap();
    let customer: Option<String> = row.get("stripe_customer_id");
    assert_eq!(customer, None, "an event that applied nothing changed the tenant");
    assert_eq!(t.tenant_row().await.0, "free");
}

#[tokio::test]
async fn a_signature_among_several_v1_entries_made_with_a_rotated_in_secret_is_accepted() {
    let t = spawn_billing_app(3600).await;
    let body =
        event("checkout.session.completed", now(), checkout_completed(t.tenant_id, "pro", "cus_A", "sub_A"))
            .to_string();
    let ts = now();
    let ours = sign(SECRET, ts, body.as_bytes());
    let other = sign("whsec_someone_else", ts, body.as_bytes());
    let header = format!("{other},{}", ours.split_once(',').unwrap().1);
    let (status, reply) = t.post_webhook(&body, &header).await;
    assert_eq!((status, reply["outcome"].as_str()), (StatusCode::OK, Some("applied")));
}

#[tokio::test]
async fn the_same_event_delivered_ten_times_concurrently_has_one_effect() {
    let t = spawn_billing_app(3600).await;
    let completed =
        event("checkout.session.completed", now(), checkout_completed(t.tenant_id, "pro", "cus_A", "sub_A"));
    let replies = futures::future::join_all((0..10).map(|_| t.deliver(&completed))).await;
    let outcomes: Vec<_> = replies
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["outcome"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(outcomes.iter().filter(|o| *o == "applied").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "duplicate").count(), 9, "{outcomes:?}");
    // And again, one after another: still no second effect.
    for _ in 0..10 {
        t.deliver_expecting(&completed, "duplicate").await;
    }
    assert_eq!(t.tenant_row().await.0, "pro");
    assert_eq!(t.recorded_events().await, 1);
}

#[tokio::test]
async fn an_older_subscription_update_arriving_after_a_newer_one_does_not_roll_the_plan_back() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_A").await;
    let period_end = days_from_now(30);
    let older = event(
        "customer.subscription.updated",
        now() - 60,
        subscription("sub_A", "cus_A", "active", "pro_monthly", period_end),
    );
    let newer = event(
        "customer.subscription.updated",
        now() - 30,
        subscription("sub_A", "cus_A", "active", "enterprise_monthly", period_end),
    );
    t.deliver_expecting(&newer, "applied").await;
    t.deliver_expecting(&older, "stale").await;
    assert_eq!(t.tenant_row().await.0, "enterprise");
    // A late payment failure from before a payment does not put the tenant back in dunning.
    let failed = event("invoice.payment_failed", now() - 45, invoice("sub_A", "cus_A", period_end));
    t.deliver_expecting(&failed, "stale").await;
    assert_eq!(t.billing_row().await.unwrap().0, "active");
}

#[tokio::test]
async fn an_event_with_an_unknown_api_version_and_extra_fields_is_still_handled() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_A").await;
    let mut object = subscription("sub_A", "cus_A", "active", "pro_monthly", days_from_now(30));
    object["brand_new_field"] = json!({ "nested": [1, 2, 3] });
    object["automatic_tax"] = json!("now a string");
    object.as_object_mut().unwrap().remove("billing_cycle_anchor");
    let mut evt = event("customer.subscription.created", now(), object);
    evt["api_version"] = json!("2099-01-01.future");
    evt["context"] = json!("acct_123");
    t.deliver_expecting(&evt, "applied").await;
    assert_eq!(t.tenant_row().await.0, "pro");
}

#[tokio::test]
async fn unknown_event_types_are_acknowledged_and_ignored() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_A").await;
    let evt =
        event("charge.refunded", now(), json!({ "id": "ch_1", "object": "charge", "customer": "cus_A" }));
    t.deliver_expecting(&evt, "ignored").await;
    assert_eq!(t.tenant_row().await.0, "free");
    // An event for a customer no tenant has is acknowledged too, so Stripe does not retry it.
    let stranger = event("invoice.paid", now(), invoice("sub_X", "cus_stranger", days_from_now(30)));
    t.deliver_expecting(&stranger, "ignored").await;
}

#[tokio::test]
async fn tenants_list_shows_each_tenants_billing_state() {
    let t = spawn_billing_app(3600).await;
    t.with_customer("cus_A").await;
    let mut sub = subscription("sub_A", "cus_A", "past_due", "pro_monthly", days_from_now(30));
    sub["cancel_at_period_end"] = json!(true);
    t.deliver_expecting(&event("customer.subscription.updated", now(), sub), "applied").await;
    let run = |json: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
        cmd.args(["tenants", "list"]).env("DATABASE_URL", &t.app.db.url);
        cmd.env("DATA_DIR", crate::helpers::scratch_dir()).env("RUST_LOG", "error");
        if json {
            cmd.arg("--json");
        }
        cmd
    };
    let out = run(true).output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["plan"], "pro");
    assert_eq!(list[0]["billing"]["status"], "past_due");
    assert_eq!(list[0]["billing"]["cancel_at_period_end"], true);
    let text = String::from_utf8(run(false).output().await.unwrap().stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("acme") && l.contains("past_due")), "{text}");
}
