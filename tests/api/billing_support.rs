//! Billing test set-up: an app wired to a fake Stripe, a tenant with a Stripe customer, and
//! webhook events built from Stripe's example objects and signed as Stripe signs them.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tenantry::billing::signature::sign;
use uuid::Uuid;

use crate::billing_fake::{FakeStripe, fixture};
use crate::helpers::{TestApp, spawn_app_with};

pub const SECRET: &str = "whsec_test_secret";
pub const ORIGIN: &str = "https://app.example.com";

pub struct BillingApp {
    pub app: TestApp,
    pub fake: FakeStripe,
    pub owner: String,
    pub tenant_id: Uuid,
}

/// An app with billing configured against a fresh fake Stripe, and one tenant (`acme`) whose
/// owner is signed in. `grace_secs` is the dunning grace period.
pub async fn spawn_billing_app(grace_secs: u64) -> BillingApp {
    let fake = FakeStripe::start().await;
    let url = fake.url.clone();
    let app = spawn_app_with(|config| {
        config.stripe_secret_key = Some("sk_test_fake".into());
        config.stripe_webhook_secret = Some(format!("whsec_rotated_out,{SECRET}").into());
        config.stripe_api_base = url;
        config.billing_allowed_origins = Some(ORIGIN.into());
        config.billing_grace_secs = grace_secs;
        config.billing_check_interval_secs = 1;
    })
    .await;
    let owner = app.sign_up("owner").await;
    let tenant_id = app.create_tenant(&owner, "acme").await.parse().unwrap();
    BillingApp { app, fake, owner, tenant_id }
}

impl BillingApp {
    /// Gives the tenant a Stripe customer id directly (as a finished checkout would have).
    pub async fn with_customer(&self, customer: &str) {
        let client = self.app.pool.get().await.unwrap();
        client
            .execute(
                "update control.tenants set stripe_customer_id = $2 where id = $1",
                &[&self.tenant_id, &customer],
            )
            .await
            .unwrap();
    }

    /// Posts a raw body with a `Stripe-Signature` header.
    pub async fn post_webhook(&self, body: &str, signature: &str) -> (StatusCode, Value) {
        let res = self
            .app
            .client
            .post(format!("{}/api/stripe/webhook", self.app.address))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Delivers an event signed with the webhook secret, timestamped now.
    pub async fn deliver(&self, event: &Value) -> (StatusCode, Value) {
        let body = event.to_string();
        let signature = sign(SECRET, chrono::Utc::now().timestamp(), body.as_bytes());
        self.post_webhook(&body, &signature).await
    }

    /// Delivers and expects a 200 with `outcome`.
    pub async fn deliver_expecting(&self, event: &Value, outcome: &str) {
        let (status, body) = self.deliver(event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], outcome, "{} {body}", event["type"]);
    }

    /// `(plan, status, expires_at)` of the tenant row.
    pub async fn tenant_row(&self) -> (String, String, Option<chrono::DateTime<chrono::Utc>>) {
        let client = self.app.pool.get().await.unwrap();
        let row = client
            .query_one(
                "select plan, status, expires_at from control.tenants where id = $1",
                &[&self.tenant_id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }

    /// `(status, subscription id, past_due_since is set)` of the billing row, if any.
    pub async fn billing_row(&self) -> Option<(String, Option<String>, bool)> {
        let client = self.app.pool.get().await.unwrap();
        client
            .query_opt(
                "select status, subscription_id, past_due_since is not null from control.billing where tenant_id = $1",
                &[&self.tenant_id],
            )
            .await
            .unwrap()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
    }

    pub async fn recorded_events(&self) -> i64 {
        let client = self.app.pool.get().await.unwrap();
        client.query_one("select count(*) from control.stripe_events", &[]).await.unwrap().get(0)
    }
}

/// An event envelope (Stripe's example `event`) around `object`, with a fresh id.
pub fn event(kind: &str, created: i64, object: Value) -> Value {
    let mut event = fixture("event");
    event["id"] = json!(format!("evt_{}", Uuid::new_v4().simple()));
    event["type"] = json!(kind);
    event["created"] = json!(created);
    event["api_version"] = json!("2025-08-27.basil");
    event["data"] = json!({ "object": object });
    event
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Stripe's example subscription for `customer`, on the price with `lookup_key`.
pub fn subscription(sub: &str, customer: &str, status: &str, lookup_key: &str, period_end: i64) -> Value {
    let mut object = fixture("subscription");
    object["id"] = json!(sub);
    object["customer"] = json!(customer);
    object["status"] = json!(status);
    object["cancel_at_period_end"] = json!(false);
    object["cancel_at"] = Value::Null;
    object["canceled_at"] = Value::Null;
    object["ended_at"] = Value::Null;
    let item = &mut object["items"]["data"][0];
    item["subscription"] = json!(sub);
    item["price"]["lookup_key"] = json!(lookup_key);
    item["current_period_start"] = json!(period_end - 30 * 86_400);
    item["current_period_end"] = json!(period_end);
    object
}

/// Stripe's example invoice for a subscription renewal paying up to `period_end`.
pub fn invoice(sub: &str, customer: &str, period_end: i64) -> Value {
    let mut object = fixture("invoice");
    object["customer"] = json!(customer);
    object["parent"] = json!({ "type": "subscription_details", "quote_details": null,
        "subscription_details": { "metadata": {}, "subscription": sub } });
    object["billing_reason"] = json!("subscription_cycle");
    let line = &mut object["lines"]["data"][0];
    line["period"] = json!({ "start": period_end - 30 * 86_400, "end": period_end });
    object
}

/// Stripe's example checkout session, completed for a subscription.
pub fn checkout_completed(tenant_id: Uuid, plan: &str, customer: &str, sub: &str) -> Value {
    let mut object = fixture("checkout_session");
    object["mode"] = json!("subscription");
    object["status"] = json!("complete");
    object["payment_status"] = json!("paid");
    object["customer"] = json!(customer);
    object["subscription"] = json!(sub);
    object["payment_intent"] = Value::Null;
    object["metadata"] = json!({ "tenant_id": tenant_id.to_string(), "plan_id": plan });
    object
}

/// A time `days` from now.
pub fn days_from_now(days: i64) -> i64 {
    now() + days * 86_400
}
