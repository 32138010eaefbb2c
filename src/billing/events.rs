//! Stripe events, read from the fields billing needs rather than through typed models, so an
//! event rendered in another API version (fields added, moved or removed) is still handled.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// The envelope every event has. Anything else in it (`api_version`, new fields) is ignored.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds; Stripe's order of events.
    pub created: i64,
    pub data: EnvelopeData,
}

#[derive(Debug, Deserialize)]
pub struct EnvelopeData {
    pub object: Value,
}

impl Envelope {
    /// Parses a raw body; `None` for anything that is not an event envelope.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let envelope: Self = serde_json::from_slice(body).ok()?;
        // Stripe's ids are `evt_` and letters and digits; anything else (control characters,
        // NUL) could never be stored, so it is no event.
        let id_ok = !envelope.id.is_empty()
            && envelope.id.len() <= 255
            && envelope.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        (id_ok && !envelope.kind.is_empty() && envelope.data.object.is_object()).then_some(envelope)
    }

    pub fn created_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.created, 0).unwrap_or_default()
    }
}

/// What an event means for billing.
#[derive(Debug, Clone, PartialEq)]
pub enum BillingEvent {
    CheckoutCompleted(CheckoutCompleted),
    /// `customer.subscription.created|updated|deleted`.
    Subscription {
        deleted: bool,
        subscription: Subscription,
    },
    /// `invoice.paid` / `invoice.payment_succeeded`.
    InvoicePaid(Invoice),
    InvoicePaymentFailed(Invoice),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutCompleted {
    pub tenant_id: Option<Uuid>,
    pub plan_id: Option<String>,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: String,
    pub customer: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub status: String,
    /// The first item's price lookup key (how prices map to plans).
    pub lookup_key: Option<String>,
    /// `metadata.plan_id`, set at checkout; a fallback when the price has no lookup key.
    pub plan_id: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invoice {
    pub customer: Option<String>,
    pub subscription: Option<String>,
    /// The latest end of its lines' periods: what a paid renewal pays up to.
    pub period_end: Option<DateTime<Utc>>,
}

/// Why a known event type could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unusable(pub &'static str);

/// The event types billing acts on.
pub fn is_known(kind: &str) -> bool {
    matches!(
        kind,
        "checkout.session.completed"
            | "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted"
            | "invoice.paid"
            | "invoice.payment_succeeded"
            | "invoice.payment_failed"
    )
}

/// Reads a known event's object; `Ok(None)` for types billing does not handle.
pub fn interpret(envelope: &Envelope) -> Result<Option<BillingEvent>, Unusable> {
    let object = &envelope.data.object;
    let event = match envelope.kind.as_str() {
        "checkout.session.completed" => {
            if str_at(object, "mode").as_deref() != Some("subscription") {
                return Err(Unusable("not a subscription checkout"));
            }
            BillingEvent::CheckoutCompleted(CheckoutCompleted {
                tenant_id: metadata(object, "tenant_id").and_then(|id| id.parse().ok()),
                plan_id: metadata(object, "plan_id"),
                customer: id_at(object, "customer"),
                subscription: id_at(object, "subscription"),
                payment_status: str_at(object, "payment_status").unwrap_or_default(),
            })
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => BillingEvent::Subscription {
            deleted: envelope.kind.ends_with("deleted"),
            subscription: subscription(object)?,
        },
        "invoice.paid" | "invoice.payment_succeeded" => BillingEvent::InvoicePaid(invoice(object)),
        "invoice.payment_failed" => BillingEvent::InvoicePaymentFailed(invoice(object)),
        _ => return Ok(None),
    };
    Ok(Some(event))
}

fn subscription(object: &Value) -> Result<Subscription, Unusable> {
    let id = str_at(object, "id").ok_or(Unusable("subscription without an id"))?;
    let status = str_at(object, "status").ok_or(Unusable("subscription without a status"))?;
    let items =
        object.pointer("/items/data").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let lookup_key = items.first().and_then(|item| item.pointer("/price/lookup_key")).and_then(as_string);
    // Current API versions keep the period on each item; older ones on the subscription.
    let period_end = time_at(object, "current_period_end")
        .or_else(|| items.iter().filter_map(|item| time_at(item, "current_period_end")).max());
    // Newer portals cancel by setting `cancel_at` instead of `cancel_at_period_end`.
    let cancelling = object.get("cancel_at_period_end").and_then(Value::as_bool).unwrap_or(false)
        || object.get("cancel_at").is_some_and(|at| !at.is_null());
    Ok(Subscription {
        id,
        customer: id_at(object, "customer"),
        tenant_id: metadata(object, "tenant_id").and_then(|id| id.parse().ok()),
        status,
        lookup_key,
        plan_id: metadata(object, "plan_id"),
        current_period_end: period_end,
        cancel_at_period_end: cancelling,
    })
}

fn invoice(object: &Value) -> Invoice {
    // Current API versions name the subscription under `parent`; older ones at the top.
    let subscription = object
        .pointer("/parent/subscription_details/subscription")
        .and_then(expandable_id)
        .or_else(|| id_at(object, "subscription"));
    let period_end = object.pointer("/lines/data").and_then(Value::as_array).and_then(|lines| {
        lines.iter().filter_map(|line| line.pointer("/period/end")).filter_map(as_time).max()
    });
    Invoice { customer: id_at(object, "customer"), subscription, period_end }
}

fn as_string(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn as_time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_i64().and_then(|secs| DateTime::from_timestamp(secs, 0))
}

fn str_at(object: &Value, key: &str) -> Option<String> {
    object.get(key).and_then(as_string)
}

fn time_at(object: &Value, key: &str) -> Option<DateTime<Utc>> {
    object.get(key).and_then(as_time)
}

/// An id, whether the field holds it or the expanded object.
fn expandable_id(value: &Value) -> Option<String> {
    as_string(value).or_else(|| value.get("id").and_then(as_string))
}

fn id_at(object: &Value, key: &str) -> Option<String> {
    object.get(key).and_then(expandable_id)
}

fn metadata(object: &Value, key: &str) -> Option<String> {
    object.get("metadata").and_then(|m| m.get(key)).and_then(as_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn envelope(kind: &str, object: Value) -> Envelope {
        let body =
            json!({ "id": "evt_1", "type": kind, "created": 1_700_000_000, "data": { "object": object } });
        Envelope::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_subscription_in_the_current_shape_yields_plan_key_and_period_from_its_items() {
        let object = json!({
            "id": "sub_1", "customer": "cus_1", "status": "active", "cancel_at_period_end": false,
            "cancel_at": null, "metadata": { "tenant_id": "00000000-0000-0000-0000-000000000001" },
            "items": { "data": [{ "current_period_end": 1_800_000_000, "price": { "lookup_key": "pro_monthly" } }] }
        });
        let Some(BillingEvent::Subscription { deleted: false, subscription }) =
            interpret(&envelope("customer.subscription.updated", object)).unwrap()
        else {
            panic!("not a subscription event")
        };
        assert_eq!(subscription.lookup_key.as_deref(), Some("pro_monthly"));
        assert_eq!(subscription.current_period_end, DateTime::from_timestamp(1_800_000_000, 0));
        assert_eq!(subscription.tenant_id, Some(Uuid::from_u128(1)));
        assert!(!subscription.cancel_at_period_end);
    }

    #[test]
    fn an_older_shape_with_an_expanded_customer_and_top_level_period_is_read_too() {
        let object = json!({
            "id": "sub_1", "customer": { "id": "cus_9", "object": "customer" }, "status": "past_due",
            "current_period_end": 1_800_000_000, "cancel_at": 1_800_000_000, "items": { "data": [] },
            "some_future_field": { "nested": true }
        });
        let Some(BillingEvent::Subscription { subscription, .. }) =
            interpret(&envelope("customer.subscription.updated", object)).unwrap()
        else {
            panic!("not a subscription event")
        };
        assert_eq!(subscription.customer.as_deref(), Some("cus_9"));
        assert!(subscription.cancel_at_period_end);
        assert_eq!(subscription.current_period_end, DateTime::from_timestamp(1_800_000_000, 0));
    }

    #[test]
    fn invoices_name_their_subscription_under_parent_or_at_the_top() {
        let current = json!({ "customer": "cus_1", "parent": { "subscription_details": { "subscription": "sub_1" } },
            "lines": { "data": [{ "period": { "end": 10 } }, { "period": { "end": 20 } }] } });
        let older = json!({ "customer": "cus_1", "subscription": "sub_2", "lines": { "data": [] } });
        let Some(BillingEvent::InvoicePaid(paid)) = interpret(&envelope("invoice.paid", current)).unwrap()
        else {
            panic!()
        };
        assert_eq!(paid.subscription.as_deref(), Some("sub_1"));
        assert_eq!(paid.period_end, DateTime::from_timestamp(20, 0));
        let Some(BillingEvent::InvoicePaymentFailed(failed)) =
            interpret(&envelope("invoice.payment_failed", older)).unwrap()
        else {
            panic!()
        };
        assert_eq!(failed.subscription.as_deref(), Some("sub_2"));
    }

    #[test]
    fn unknown_types_are_not_interpreted_and_broken_envelopes_are_refused() {
        assert_eq!(interpret(&envelope("charge.refunded", json!({}))).unwrap(), None);
        assert!(!is_known("charge.refunded"));
        assert!(Envelope::parse(b"not json").is_none());
        assert!(Envelope::parse(br#"{"id":"evt_1","type":"x","created":1}"#).is_none());
        assert!(Envelope::parse(br#"{"id":"","type":"x","created":1,"data":{"object":{}}}"#).is_none());
    }

    #[test]
    fn a_subscription_without_a_status_is_unusable() {
        let err =
            interpret(&envelope("customer.subscription.updated", json!({ "id": "sub_1" }))).unwrap_err();
        assert_eq!(err, Unusable("subscription without a status"));
    }
}
