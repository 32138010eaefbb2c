//! A fake Stripe API for the billing tests: axum on 127.0.0.1:0, answering with Stripe's own
//! example objects (tests/fixtures/stripe) with the requested fields filled in.
//!
//! It honours `Idempotency-Key` on customer creation (as Stripe does) and records what it was
//! asked, so tests can assert on the requests the server made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub fn fixture(name: &str) -> Value {
    let text = match name {
        "checkout_session" => include_str!("../fixtures/stripe/checkout_session.json"),
        "customer" => include_str!("../fixtures/stripe/customer.json"),
        "subscription" => include_str!("../fixtures/stripe/subscription.json"),
        "invoice" => include_str!("../fixtures/stripe/invoice.json"),
        "price" => include_str!("../fixtures/stripe/price.json"),
        "product" => include_str!("../fixtures/stripe/product.json"),
        "billing_portal_session" => include_str!("../fixtures/stripe/billing_portal_session.json"),
        "event" => include_str!("../fixtures/stripe/event.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

/// A form body as Stripe receives it: `key[sub][0]=value` pairs, keys kept as sent.
pub type Form = HashMap<String, String>;

#[derive(Default)]
pub struct Recorded {
    pub customers: Vec<Form>,
    pub checkout_sessions: Vec<Form>,
    pub portal_sessions: Vec<Form>,
    pub products: Vec<Value>,
    pub prices: Vec<Value>,
    idempotent: HashMap<String, Value>,
    /// Answer every request with this status and Stripe error body.
    pub fail_with: Option<(u16, Value)>,
}

#[derive(Clone, Default)]
pub struct FakeStripe {
    pub url: String,
    pub recorded: Arc<Mutex<Recorded>>,
}

impl FakeStripe {
    /// Starts the fake; it knows the active prices `pro_monthly` and `enterprise_monthly`.
    pub async fn start() -> Self {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        {
            let mut r = recorded.lock().unwrap();
            for (key, cents) in [("pro_monthly", 2999), ("enterprise_monthly", 19999)] {
                let mut price = fixture("price");
                price["id"] = json!(format!("price_{key}"));
                price["lookup_key"] = json!(key);
                price["unit_amount"] = json!(cents);
                price["unit_amount_decimal"] = json!(cents.to_string());
                r.prices.push(price);
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let fake = Self { url, recorded };
        let router = Router::new()
            .route("/v1/customers", post(create_customer))
            .route("/v1/prices", get(list_prices).post(create_price))
            .route("/v1/products", post(create_product))
            .route("/v1/products/{id}", get(retrieve_product))
            .route("/v1/checkout/sessions", post(create_checkout))
            .route("/v1/billing_portal/sessions", post(create_portal))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        fake
    }

    /// Starts with no prices at all (for `sync-prices`).
    pub async fn start_empty() -> Self {
        let fake = Self::start().await;
        fake.recorded.lock().unwrap().prices.clear();
        fake
    }

    pub fn fail_with(&self, status: u16, error: Value) {
        self.recorded.lock().unwrap().fail_with = Some((status, json!({ "error": error })));
    }

    pub fn checkout_sessions(&self) -> Vec<Form> {
        self.recorded.lock().unwrap().checkout_sessions.clone()
    }

    pub fn customers(&self) -> Vec<Form> {
        self.recorded.lock().unwrap().customers.clone()
    }
}

fn form(body: &Bytes) -> Form {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn failure(fake: &FakeStripe) -> Option<Response> {
    let (status, body) = fake.recorded.lock().unwrap().fail_with.clone()?;
    Some((StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response())
}

fn metadata_of(form: &Form) -> Value {
    let map: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_owned(), json!(v))))
        .collect();
    Value::Object(map)
}

async fn create_customer(State(fake): State<FakeStripe>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(failed) = failure(&fake) {
        return failed;
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut r = fake.recorded.lock().unwrap();
    if let Some(previous) = key.as_ref().and_then(|k| r.idempotent.get(k)) {
        return axum::Json(previous.clone()).into_response();
    }
    let form = form(&body);
    let mut customer = fixture("customer");
    customer["id"] = json!(format!("cus_fake{}", r.customers.len() + 1));
    customer["name"] = json!(form.get("name"));
    customer["metadata"] = metadata_of(&form);
    r.customers.push(form);
    if let Some(key) = key {
        r.idempotent.insert(key, customer.clone());
    }
    axum::Json(customer).into_response()
}

async fn list_prices(State(fake): State<FakeStripe>, RawQuery(query): RawQuery) -> Response {
    if let Some(failed) = failure(&fake) {
        return failed;
    }
    let query: Form =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let wanted: Vec<&String> =
        query.iter().filter(|(k, _)| k.starts_with("lookup_keys")).map(|(_, v)| v).collect();
    let r = fake.recorded.lock().unwrap();
    let data: Vec<Value> = r
        .prices
        .iter()
        .filter(|p| p["active"] == true && wanted.iter().any(|k| p["lookup_key"] == json!(k)))
        .cloned()
        .collect();
    axum::Json(json!({ "object": "list", "data": data, "has_more": false, "url": "/v1/prices" }))
        .into_response()
}

async fn create_price(State(fake): State<FakeStripe>, body: Bytes) -> Response {
    let form = form(&body);
    let mut r = fake.recorded.lock().unwrap();
    let key = form.get("lookup_key").cloned();
    if form.get("transfer_lookup_key").map(String::as_str) == Some("true") {
        for price in r.prices.iter_mut().filter(|p| p["lookup_key"] == json!(key)) {
            price["lookup_key"] = Value::Null;
        }
    }
    let mut price = fixture("price");
    price["id"] = json!(format!("price_fake{}", r.prices.len() + 1));
    price["lookup_key"] = json!(key);
    price["product"] = json!(form.get("product"));
    price["currency"] = json!(form.get("currency"));
    let cents: i64 = form.get("unit_amount").and_then(|a| a.parse().ok()).unwrap_or_default();
    price["unit_amount"] = json!(cents);
    price["unit_amount_decimal"] = json!(cents.to_string());
    price["recurring"]["interval"] = json!(form.get("recurring[interval]"));
    price["metadata"] = metadata_of(&form);
    r.prices.push(price.clone());
    axum::Json(price).into_response()
}

async fn create_product(State(fake): State<FakeStripe>, body: Bytes) -> Response {
    let form = form(&body);
    let mut product = fixture("product");
    product["id"] = json!(form.get("id"));
    product["name"] = json!(form.get("name"));
    product["metadata"] = metadata_of(&form);
    fake.recorded.lock().unwrap().products.push(product.clone());
    axum::Json(product).into_response()
}

async fn retrieve_product(State(fake): State<FakeStripe>, Path(id): Path<String>) -> Response {
    let r = fake.recorded.lock().unwrap();
    match r.products.iter().find(|p| p["id"] == json!(id)) {
        Some(product) => axum::Json(product.clone()).into_response(),
        None => {
            let error = json!({ "error": { "type": "invalid_request_error", "code": "resource_missing",
                "message": format!("No such product: '{id}'") } });
            (StatusCode::NOT_FOUND, axum::Json(error)).into_response()
        }
    }
}

async fn create_checkout(State(fake): State<FakeStripe>, body: Bytes) -> Response {
    if let Some(failed) = failure(&fake) {
        return failed;
    }
    let form = form(&body);
    let mut r = fake.recorded.lock().unwrap();
    let id = format!("cs_test_fake{}", r.checkout_sessions.len() + 1);
    let mut session = fixture("checkout_session");
    session["id"] = json!(id);
    session["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}"));
    session["mode"] = json!(form.get("mode"));
    session["customer"] = json!(form.get("customer"));
    session["client_reference_id"] = json!(form.get("client_reference_id"));
    session["success_url"] = json!(form.get("success_url"));
    session["cancel_url"] = json!(form.get("cancel_url"));
    session["metadata"] = metadata_of(&form);
    session["payment_intent"] = Value::Null;
    r.checkout_sessions.push(form);
    axum::Json(session).into_response()
}

async fn create_portal(State(fake): State<FakeStripe>, body: Bytes) -> Response {
    if let Some(failed) = failure(&fake) {
        return failed;
    }
    let form = form(&body);
    let mut r = fake.recorded.lock().unwrap();
    let mut session = fixture("billing_portal_session");
    let id = format!("bps_fake{}", r.portal_sessions.len() + 1);
    session["id"] = json!(id);
    session["customer"] = json!(form.get("customer"));
    session["return_url"] = json!(form.get("return_url"));
    session["url"] = json!(format!("https://billing.stripe.com/p/session/{id}"));
    r.portal_sessions.push(form);
    axum::Json(session).into_response()
}
