//! `GET|POST /graphql`: tenant resolution and status checks before GraphQL runs, then execution.

mod parse;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::client_ip::ClientIp;
use super::negotiate::{self, Media, negotiate};
use crate::graphql::trusted::Choice;
use crate::request::context::{Caller, RequestCtx};
use crate::request::tenant as resolve;
use crate::usage::RateHeaders;

pub async fn handler(
    State(http): State<HttpState>,
    method: Method,
    headers: HeaderMap,
    ClientIp(client_ip): ClientIp,
    RawQuery(query_string): RawQuery,
    body: Bytes,
) -> Response {
    let Some(media) = negotiate(&headers) else { return negotiate::not_acceptable() };
    let mut response = run(http, method, headers, client_ip, query_string, body, media).await;
    response.headers_mut().insert(header::CONTENT_TYPE, media.content_type());
    response
}

async fn run(
    http: HttpState,
    method: Method,
    headers: HeaderMap,
    client_ip: Option<std::net::IpAddr>,
    query_string: Option<String>,
    body: Bytes,
    media: Media,
) -> Response {
    let parsed = if method == Method::POST {
        if !is_json(&headers) {
            return request_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the GraphQL request as application/json",
            );
        }
        parse::from_body(&body)
    } else {
        parse::from_query_string(query_string.as_deref().unwrap_or_default())
    };
    let (mut request, document_id) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return request_error(StatusCode::BAD_REQUEST, &message),
    };
    let settings = &*http.settings;
    // The document: a trusted one by id (prepared at load), or the request's own text where the
    // mode allows it. Refused before any credential or tenant is looked at.
    let (prepared, cacheable) = match settings.trusted.choose(&request, document_id.as_deref()) {
        Ok(Choice::Trusted(trusted)) => {
            request.set_parsed_query(trusted.prepared.doc.clone());
            (Some(trusted.prepared.clone()), method == Method::GET && request.query.is_empty())
        }
        Ok(Choice::AdHoc) => (None, false),
        Err(refused) => {
            let status = media.request_error_status(StatusCode::BAD_REQUEST);
            return negotiate::error_response(Media::GraphqlResponse, status, refused.code, refused.message);
        }
    };
    let state = &http.app;
    let credentials = headers.contains_key(header::AUTHORIZATION);
    // Unknown, suspended or expired tenants fail with a proper HTTP status before any resolver.
    let caller = Caller::from_headers(state, &headers).await;
    let tenant = match resolve::resolve(state, &headers).await {
        // An API key names its own tenant when the request names none.
        Ok(None) => match caller {
            Caller::ApiKey(key) => match resolve::by_id(state, key.tenant_id).await {
                Ok(tenant) => tenant,
                Err(err) => return err.into_response(),
            },
            _ => None,
        },
        Ok(tenant) => tenant,
        Err(err) => return err.into_response(),
    };
    // A query text seen before skips parsing, and validation once it passed (the cache is bounded).
    let prepared = match prepared {
        Some(prepared) => Some(prepared),
        None => settings.documents.attach(&mut request).await,
    };
    let operation = describe(&mut request, tenant.as_deref().map(|t| t.tenant.id), &caller);
    let mutation = operation == Some(OperationType::Mutation);
    if method == Method::GET && mutation {
        let mut response = request_error(StatusCode::METHOD_NOT_ALLOWED, "mutations must be sent with POST");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let ctx = RequestCtx::new(state.clone(), tenant.clone(), caller).with_client_ip(client_ip);
    // Requests a tenant answers for (its members' and its API keys') are counted and limited;
    // anyone else's fail in the resolvers without touching the tenant's quota.
    let metered = match tenant {
        Some(access) if state.usage.metering() && ctx.role().await.is_ok() => Some(access),
        _ => None,
    };
    let mut limits = None;
    if let Some(access) = &metered {
        match state.usage.admit(&state.pool, access).await {
            Ok(headers) => limits = headers,
            Err(refusal) => {
                let mut response = refusal.error.into_response();
                if let Some(headers) = refusal.headers {
                    set_rate_headers(&mut response, headers);
                }
                return response;
            }
        }
    }
    let mut response = settings.documents.execute(request.data(ctx), prepared).await;
    if let Some(access) = &metered
        && mutation
    {
        // Its storage is measured again shortly (never per request).
        state.usage.gauges.written(access.tenant.id);
    }
    // A document that failed to parse or validate, or whose variables did not coerce, never
    // executed: a request error, HTTP 400 (200 for legacy `application/json` clients).
    let request_failed = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|err| err.path.is_empty());
    for err in &mut response.errors {
        let input = err.path.is_empty() || parse::is_input_error(&err.message);
        let extensions = err.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", if input { "VALIDATION" } else { "INTERNAL" });
        }
        err.message = crate::error::clip(&err.message);
    }
    count_operation(&settings.request_metrics.graphql, operation, &response);
    if request_failed {
        let body = serde_json::json!({ "errors": response.errors });
        let status = media.request_error_status(StatusCode::BAD_REQUEST);
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(headers) = limits {
            set_rate_headers(&mut response, headers);
        }
        return response;
    }
    let kept = response.errors.is_empty();
    let retry_after = come_back_later(&response);
    let mut http = graphql_response(&response);
    // A rate limit found inside a resolver (sign-in attempts) is still an HTTP 429, and a
    // database outage met by a resolver an HTTP 503.
    if let Some((status, seconds)) = retry_after {
        *http.status_mut() = status;
        http.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    if let Some(headers) = limits {
        set_rate_headers(&mut http, headers);
    }
    if cacheable {
        cache_headers(&mut http, kept, credentials);
    }
    http
}

/// The answer's body and headers (room for the headers `observe` and the edge add, so the map
/// grows once, not three times).
fn graphql_response(response: &async_graphql::Response) -> Response {
    let body = match serde_json::to_vec(response) {
        Ok(body) => body,
        Err(err) => return crate::error::AppError::internal(anyhow::Error::from(err)).into_response(),
    };
    let mut http = Response::new(axum::body::Body::from(body));
    let headers = http.headers_mut();
    headers.reserve(16);
    headers.extend(response.http_headers.iter().map(|(name, value)| (name.clone(), value.clone())));
    http
}

/// A GET naming a trusted document by id is a short, stable URL: its answer may be kept, by the
/// caller's own cache when it carries credentials, by shared caches when it does not; either
/// way keyed by the headers that choose the caller and the tenant. Errors are never kept.
fn cache_headers(response: &mut Response, kept: bool, credentials: bool) {
    let headers = response.headers_mut();
    let value = if !kept {
        "no-store"
    } else if credentials {
        "private, max-age=10"
    } else {
        "public, max-age=60"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    headers.insert(header::VARY, HeaderValue::from_static("authorization, x-tenant"));
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the window resets).
fn set_rate_headers(response: &mut Response, limits: RateHeaders) {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", limits.limit.into());
    headers.insert("x-ratelimit-remaining", limits.remaining.into());
    headers.insert("x-ratelimit-reset", limits.reset_secs.into());
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// A GraphQL-over-HTTP request error: no `data` entry, one error with a code. (The handler
/// sets the negotiated content type.)
fn request_error(status: StatusCode, message: &str) -> Response {
    negotiate::error_response(Media::GraphqlResponse, status, "VALIDATION", message)
}

/// The status and `Retry-After` seconds if any error is `DATABASE_UNAVAILABLE` (503, first) or
/// `RATE_LIMITED` (429).
fn come_back_later(response: &async_graphql::Response) -> Option<(StatusCode, u64)> {
    let with_code = |code: &str, status: StatusCode| {
        response.errors.iter().find_map(|err| {
            let ext = err.extensions.as_ref()?;
            if ext.get("code") != Some(&async_graphql::Value::from(code)) {
                return None;
            }
            match ext.get("retryAfter") {
                Some(async_graphql::Value::Number(n)) => n.as_u64().map(|s| (status, s)),
                _ => Some((status, 60)),
            }
        })
    };
    with_code("DATABASE_UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE)
        .or_else(|| with_code("RATE_LIMITED", StatusCode::TOO_MANY_REQUESTS))
}

/// The request's fields on its span (so on its log line), recorded at once: the tenant and the
/// caller (ids only), and the operation's type and name — its own name, else its first root
/// field (both from the parsed document, never from free text). Returns the type of the
/// operation the request would run; with several operations and none chosen, a mutation among
/// them counts (GET must refuse it).
fn describe(
    request: &mut async_graphql::Request,
    tenant: Option<uuid::Uuid>,
    caller: &Caller,
) -> Option<OperationType> {
    use async_graphql::parser::types::{OperationDefinition, Selection};
    fn type_and_name<'a>(name: Option<&'a str>, op: &'a OperationDefinition) -> (OperationType, &'a str) {
        let first_field = op.selection_set.node.items.iter().find_map(|item| match &item.node {
            Selection::Field(field) => Some(field.node.name.node.as_str()),
            _ => None,
        });
        let name = name.or(first_field).unwrap_or("anonymous");
        (op.ty, name.get(..name.floor_char_boundary(64)).unwrap_or(name))
    }
    let chosen = request.operation_name.clone();
    let operation = match request.parsed_query() {
        Err(_) => None,
        // The parser keeps no name for a lone operation.
        Ok(doc) => match &doc.operations {
            DocumentOperations::Single(op) => Some(type_and_name(None, &op.node)),
            DocumentOperations::Multiple(ops) => match chosen.as_deref() {
                Some(chosen) => {
                    ops.get_key_value(chosen).map(|(name, op)| type_and_name(Some(name.as_str()), &op.node))
                }
                None => ops
                    .iter()
                    .find(|(_, op)| op.node.ty == OperationType::Mutation)
                    .or_else(|| ops.iter().next())
                    .map(|(name, op)| type_and_name(Some(name.as_str()), &op.node)),
            },
        },
    };
    let (user, api_key) = match caller {
        Caller::User(user) => (Some(*user), None),
        Caller::ApiKey(key) => (None, Some(key.id)),
        Caller::Anonymous | Caller::Rejected(_) => (None, None),
    };
    super::observe::describe(super::observe::Described {
        tenant,
        user,
        api_key,
        operation: operation.map(|(ty, name)| (type_label(ty), name)),
    });
    operation.map(|(ty, _)| ty)
}

fn type_label(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// `graphql_operations_total{type,outcome}` and `graphql_errors_total{code}`.
fn count_operation(
    counters: &crate::telemetry::metrics::GraphqlCounters,
    ty: Option<OperationType>,
    response: &async_graphql::Response,
) {
    counters.operation(ty.map_or("unknown", type_label), response.errors.is_empty());
    for err in &response.errors {
        let code = err.extensions.as_ref().and_then(|ext| match ext.get("code") {
            Some(async_graphql::Value::String(code)) => Some(code.as_str()),
            _ => None,
        });
        counters.error(code);
    }
}
