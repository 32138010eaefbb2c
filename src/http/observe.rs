//! Per-request observability: the request id, the request span, one log line per request, the
//! HTTP metrics, the request timeout, and the answer to a handler that panicked.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use tracing::Instrument;
use tracing::field::Empty;
use uuid::Uuid;

use super::HttpSettings;
use crate::telemetry::metrics as m;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 64;

/// The request's id, in the request extensions for handlers that want to quote it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A client's `X-Request-ID` is kept when it is 1–64 characters of `[A-Za-z0-9._:-]` (enough
/// for UUIDs, ULIDs and trace ids; nothing that could break a log line or a header).
pub fn is_well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Marks the response `CatchPanicLayer` made from a panic, so the request id can be added here.
#[derive(Debug, Clone, Copy)]
pub struct Panicked;

/// Keeps `http_requests_in_flight` right even when the client goes away mid-request.
struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    fn start(gauge: &'a Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What a handler learnt about its request, for the request's span (so its log line).
#[derive(Debug, Default, Clone, Copy)]
pub struct Described<'a> {
    pub tenant: Option<Uuid>,
    pub user: Option<Uuid>,
    pub api_key: Option<Uuid>,
    /// The GraphQL operation's type and name.
    pub operation: Option<(&'static str, &'a str)>,
}

/// Puts `fields` on the current request span in one `record_all`: each `Span::record` walks the
/// subscriber's layers and appends to the span's stored fields, so four of them cost four
/// walks. Ids go as text encoded on the stack (a `Display` value takes the formatting
/// machinery). Outside a request span (a handler called directly) nothing is recorded.
pub fn describe(fields: Described<'_>) {
    use tracing::field::Value;
    let span = tracing::Span::current();
    let Some(meta) = span.metadata() else { return };
    let set = meta.fields();
    let (Some(tenant_f), Some(user_f), Some(key_f), Some(type_f), Some(op_f)) = (
        set.field("tenant.id"),
        set.field("user.id"),
        set.field("api_key.id"),
        set.field("graphql.type"),
        set.field("graphql.operation"),
    ) else {
        return;
    };
    let mut buffers = [Uuid::encode_buffer(); 3];
    let [tenant_buf, user_buf, key_buf] = &mut buffers;
    let tenant = fields.tenant.map(|id| &*id.hyphenated().encode_lower(tenant_buf));
    let user = fields.user.map(|id| &*id.hyphenated().encode_lower(user_buf));
    let key = fields.api_key.map(|id| &*id.hyphenated().encode_lower(key_buf));
    let (ty, op) = fields.operation.unzip();
    fn value<'a>(text: &'a Option<&'a str>) -> Option<&'a dyn Value> {
        text.as_ref().map(|v| v as &dyn Value)
    }
    let values = [
        (&tenant_f, value(&tenant)),
        (&user_f, value(&user)),
        (&key_f, value(&key)),
        (&type_f, value(&ty)),
        (&op_f, value(&op)),
    ];
    // `value_set` is how tracing's own macros build a value set (hidden from its docs).
    span.record_all(&set.value_set(&values));
}

/// Method, route and status labels.
type Labels = (&'static str, Cow<'static, str>, Cow<'static, str>);
/// More label sets than this (an embedding app's routes × statuses) are looked up each time.
const MAX_LABEL_SETS: usize = 4096;

/// The HTTP metrics' handles, each label set looked up in the recorder once: the `metrics`
/// macros build a key and search the recorder's registry on every call.
pub struct RequestMetrics {
    in_flight: Gauge,
    /// The GraphQL operations and errors.
    pub graphql: m::GraphqlCounters,
    handles: RwLock<HashMap<Labels, (Counter, Histogram)>>,
}

impl RequestMetrics {
    /// Handles from the process's recorder (install it first).
    pub fn new() -> Self {
        Self {
            in_flight: gauge!(m::HTTP_IN_FLIGHT),
            graphql: m::GraphqlCounters::new(),
            handles: RwLock::default(),
        }
    }

    /// Counts a finished request and records its duration.
    fn finished(&self, labels: Labels, seconds: f64) {
        let read = self.handles.read().unwrap_or_else(|p| p.into_inner());
        if let Some((count, duration)) = read.get(&labels) {
            count.increment(1);
            duration.record(seconds);
            return;
        }
        drop(read);
        let (method, route, status) = labels;
        let count = counter!(m::HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status.clone());
        let duration = histogram!(m::HTTP_DURATION, "method" => method, "route" => route.clone());
        count.increment(1);
        duration.record(seconds);
        let mut handles = self.handles.write().unwrap_or_else(|p| p.into_inner());
        if handles.len() < MAX_LABEL_SETS {
            handles.insert((method, route, status), (count, duration));
        }
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The middleware: everything the request does runs inside its span, so handlers record
/// `tenant.id`, `user.id` and the GraphQL operation on it and they appear on the request's line.
pub async fn observe(State(settings): State<Arc<HttpSettings>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_well_formed(id))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    let id_header = HeaderValue::from_str(&request_id).expect("request ids are visible ASCII");
    req.headers_mut().insert(X_REQUEST_ID, id_header.clone());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = method_label(req.method());
    // The matched route, never the raw path: ids in paths would make unbounded label sets.
    let route = route_label(req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str));
    let span = tracing::info_span!(
        "request",
        request.id = request_id.as_str(),
        http.method = method,
        http.route = route.as_ref(),
        tenant.id = Empty,
        user.id = Empty,
        api_key.id = Empty,
        graphql.operation = Empty,
        graphql.type = Empty,
    );
    let in_flight = InFlight::start(&settings.request_metrics.in_flight);
    let run = tokio::time::timeout(settings.request_timeout, next.run(req)).instrument(span.clone());
    let mut response = match run.await {
        Ok(response) => response,
        Err(_) => timed_out(settings.request_timeout.as_secs()),
    };
    drop(in_flight);
    if response.extensions().get::<Panicked>().is_some() {
        counter!(m::HTTP_PANICS).increment(1);
        span.in_scope(|| tracing::error!("handler panicked; answered 500"));
        response = panicked(&request_id);
    }
    let headers = response.headers_mut();
    headers.reserve(super::hardening::HEADERS.len() + 1);
    headers.insert(X_REQUEST_ID, id_header);
    super::hardening::security_headers(headers);
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let status_label = status_label(status);
    settings.request_metrics.finished((method, route, status_label), elapsed.as_secs_f64());
    let duration_ms = (elapsed.as_secs_f64() * 1e4).round() / 10.0;
    span.in_scope(|| tracing::info!(http.status = status, duration_ms, "request"));
    response
}

/// The route label: the product's own routes as static strings (no allocation per request), an
/// embedding application's routes as they matched.
fn route_label(matched: &str) -> Cow<'static, str> {
    const OWN: [&str; 8] = [
        "/graphql",
        "/graphql/ws",
        "/api/health",
        "/api/stripe/webhook",
        "/livez",
        "/readyz",
        "/metrics",
        "unmatched",
    ];
    match OWN.iter().find(|own| **own == matched) {
        Some(own) => Cow::Borrowed(own),
        None => Cow::Owned(matched.to_owned()),
    }
}

/// The status label, without formatting the usual ones.
fn status_label(status: u16) -> Cow<'static, str> {
    match status {
        200 => Cow::Borrowed("200"),
        400 => Cow::Borrowed("400"),
        401 => Cow::Borrowed("401"),
        403 => Cow::Borrowed("403"),
        404 => Cow::Borrowed("404"),
        413 => Cow::Borrowed("413"),
        429 => Cow::Borrowed("429"),
        500 => Cow::Borrowed("500"),
        503 => Cow::Borrowed("503"),
        other => Cow::Owned(other.to_string()),
    }
}

/// Methods outside the standard set share one label value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn error_body(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, [(header::CONTENT_TYPE, "application/graphql-response+json")], axum::Json(body)).into_response()
}

fn timed_out(secs: u64) -> Response {
    error_body(
        StatusCode::REQUEST_TIMEOUT,
        "INTERNAL",
        format!("the request took longer than {secs} s and was stopped; retry it, or ask for less at once"),
    )
}

fn panicked(request_id: &str) -> Response {
    error_body(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        format!("internal error; it has been logged with request id {request_id}"),
    )
}

/// The `CatchPanicLayer` handler. The panic message is not sent: it may quote internal state.
pub fn on_panic(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response.extensions_mut().insert(Panicked);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_kept_only_when_short_and_plain() {
        assert!(is_well_formed("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_well_formed("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert!(!is_well_formed(""));
        assert!(!is_well_formed(&"a".repeat(65)));
        assert!(!is_well_formed("id with spaces"));
        assert!(!is_well_formed("id\"},{\"injected\":1"));
        assert!(!is_well_formed("ünïcode"));
    }
}
