//! `GET|POST /graphql`: tenant resolution and status checks before GraphQL runs, then execution.

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::graphql::context::RequestCtx;
use crate::tenancy::resolve::resolve;

pub async fn handler(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    // Unknown, suspended or expired tenants fail with a proper HTTP status before any resolver.
    let tenant = match resolve(&state.tenants, &state.pool, &headers, &state.base_domain).await {
        Ok(tenant) => tenant,
        Err(err) => return err.into_response(),
    };
    let mut request = request.into_inner();
    if method == Method::GET && is_mutation(&mut request) {
        let body = serde_json::json!({ "data": null, "errors": [{
            "message": "mutations must be sent with POST",
            "extensions": { "code": "VALIDATION" }
        }]});
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            axum::Json(body),
        )
            .into_response();
    }
    state.documents.attach(&mut request).await;
    let ctx = RequestCtx::new(state.clone(), tenant, &headers);
    GraphQLResponse::from(state.schema.execute(request.data(ctx)).await).into_response()
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
            Some(name) => ops
                .get(name.as_str())
                .is_some_and(|op| op.node.ty == OperationType::Mutation),
            None => ops.values().any(|op| op.node.ty == OperationType::Mutation),
        },
    }
}
