//! `GET|POST /graphql`: tenant resolution and status checks before GraphQL runs, then execution.

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::graphql::context::{Caller, RequestCtx};
use crate::tenancy::resolve::Resolver;

pub async fn handler(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    // Unknown, suspended or expired tenants fail with a proper HTTP status before any resolver.
    let resolver = Resolver {
        tenants: &state.tenants,
        access: &state.access,
        catalog: &state.plans,
        pool: &state.pool,
        base_domain: &state.base_domain,
    };
    let caller = Caller::from_headers(&state, &headers).await;
    let tenant = match resolver.resolve(&headers).await {
        // An API key names its own tenant when the request names none.
        Ok(None) => match caller {
            Caller::ApiKey(key) => match resolver.by_id(key.tenant_id).await {
                Ok(tenant) => tenant,
                Err(err) => return err.into_response(),
            },
            _ => None,
        },
        Ok(tenant) => tenant,
        Err(err) => return err.into_response(),
    };
    let mut request = request.into_inner();
    if method == Method::GET && is_mutation(&mut request) {
        let body = serde_json::json!({ "data": null, "errors": [{
            "message": "mutations must be sent with POST",
            "extensions": { "code": "VALIDATION" }
        }]});
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")], axum::Json(body)).into_response();
    }
    let ctx = RequestCtx::new(state.clone(), tenant, caller);
    let response = state.schema.execute(request.data(ctx)).await;
    let retry_after = rate_limited(&response);
    let mut http = GraphQLResponse::from(response).into_response();
    // A rate limit found inside a resolver (sign-in attempts) is still an HTTP 429.
    if let Some(seconds) = retry_after {
        *http.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        http.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    http
}

/// `Retry-After` seconds if any error is `RATE_LIMITED`.
fn rate_limited(response: &async_graphql::Response) -> Option<u64> {
    response.errors.iter().find_map(|err| {
        let ext = err.extensions.as_ref()?;
        if ext.get("code") != Some(&async_graphql::Value::from("RATE_LIMITED")) {
            return None;
        }
        match ext.get("retryAfter") {
            Some(async_graphql::Value::Number(n)) => n.as_u64(),
            _ => Some(60),
        }
    })
}

/// Whether the operation the request would run is a mutation (GraphQL over HTTP forbids it on GET).
fn is_mutation(request: &mut async_graphql::Request) -> bool {
    let name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return false;
    };
    match &doc.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(ops) => match name {
            Some(name) => ops.get(name.as_str()).is_some_and(|op| op.node.ty == OperationType::Mutation),
            None => ops.values().any(|op| op.node.ty == OperationType::Mutation),
        },
    }
}
