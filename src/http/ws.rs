//! `GET /graphql/ws`: subscriptions over websockets, in the graphql-transport-ws protocol or the
//! legacy graphql-ws one. Caller and tenant come in the `connection_init` payload
//! `{"authorization": "Bearer …", "tenant": "<subdomain>"}`.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Data, Executor, ServerError};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};

use super::HttpState;
use crate::error::AppError;
use crate::graphql::AppSchema;
use crate::graphql::input_check;
use crate::request::context::{Caller, RequestCtx};
use crate::request::tenant as resolve;
use crate::state::AppState;

/// How often the server pings an idle socket (keeps proxies from closing it).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const READ_BUFFER: usize = 4 * 1024;
/// Larger client messages (a subscription document) are refused.
const MAX_MESSAGE: usize = 64 * 1024;
/// Close codes: the graphql-transport-ws ones for a refused `connection_init`.
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_FORBIDDEN: u16 = 4403;

pub async fn handler(
    State(http): State<HttpState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|p| WebSocketProtocols::from_str(p.trim()).ok()));
    let Some(protocol) = protocol else {
        let body = AppError::validation(
            "Sec-WebSocket-Protocol",
            "ask for the graphql-transport-ws (or legacy graphql-ws) subprotocol",
        );
        return (StatusCode::BAD_REQUEST, axum::Json(body.graphql_body())).into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // Client messages are small; the 128 KiB default read buffer, allocated up front per
        // socket, would cost over a gigabyte at 10,000 subscribers.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| serve(http, socket, protocol))
}

/// The `connection_init` payload: `authorization` and `tenant`. Clients also send their HTTP
/// header names in any case (GraphiQL merges its headers pane in: `Authorization`, `X-Tenant`), so
/// keys are matched without case and `x-tenant` counts as `tenant`. Two keys for one field must
/// agree, or the payload is ambiguous and refused.
#[derive(Default, Debug, PartialEq)]
struct Init {
    authorization: Option<String>,
    tenant: Option<String>,
}

impl Init {
    fn parse(payload: &serde_json::Value) -> Result<Self, AppError> {
        let mut init = Self::default();
        let Some(fields) = payload.as_object() else { return Ok(init) };
        for (key, value) in fields {
            let (slot, field) = match key.to_ascii_lowercase().as_str() {
                "authorization" => (&mut init.authorization, "authorization"),
                "tenant" | "x-tenant" => (&mut init.tenant, "tenant"),
                _ => continue,
            };
            let Some(value) = value.as_str() else {
                return Err(AppError::validation(field, "must be a string"));
            };
            match slot {
                Some(seen) if seen != value => {
                    return Err(AppError::validation(field, "given twice with different values"));
                }
                _ => *slot = Some(value.to_owned()),
            }
        }
        Ok(init)
    }
}

async fn serve(http: HttpState, socket: WebSocket, protocol: WebSocketProtocols) {
    let (mut sink, stream) = socket.split();
    let input = stream.take_while(|msg| futures::future::ready(msg.is_ok())).filter_map(|msg| {
        futures::future::ready(match msg {
            Ok(Message::Text(text)) => Some(text.as_str().as_bytes().to_vec()),
            Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
            _ => None,
        })
    });
    // The close code a refused `connection_init` should end with.
    let refused: Arc<Mutex<Option<u16>>> = Arc::default();
    let state = http.app.clone();
    let on_init = {
        let refused = refused.clone();
        move |payload: serde_json::Value| async move {
            connection_data(state, payload).await.map_err(|(code, err)| {
                *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(code);
                async_graphql::Error::new(format!("{}: {}", err.code(), err.message()))
            })
        }
    };
    let mut messages =
        async_graphql::http::WebSocket::new(SubscriptionsOnly(http.schema.clone()), input, protocol)
            .on_connection_init(on_init);
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let mut stopping = http.app.usage.live.stopping();
    let ping = match protocol {
        WebSocketProtocols::GraphQLWS => r#"{"type":"ping"}"#,
        WebSocketProtocols::SubscriptionsTransportWS => r#"{"type":"ka"}"#,
    };
    let mut close = None;
    loop {
        let outgoing = tokio::select! {
            message = messages.next() => match message {
                Some(WsMessage::Text(text)) => Message::Text(text.into()),
                Some(WsMessage::Close(code, reason)) => {
                    close = Some((code, reason));
                    break;
                }
                None => break,
            },
            _ = keep_alive.tick() => Message::Text(ping.into()),
            _ = stopping.wait_for(|stop| *stop) => {
                close = Some((1001, "the server is restarting; reconnect".into()));
                break;
            }
        };
        if sink.send(outgoing).await.is_err() {
            return;
        }
    }
    let refused = *refused.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(code) = refused {
        let reason = close.map(|(_, reason)| reason).unwrap_or_default();
        close = Some((code, reason));
    }
    let frame = close.map(|(code, reason)| CloseFrame { code, reason: truncate(reason).into() });
    let _ = sink.send(Message::Close(frame)).await;
}

/// Close reasons must fit a control frame (123 bytes).
fn truncate(mut reason: String) -> String {
    while reason.len() > 123 {
        reason.pop();
    }
    reason
}

/// Authenticates a `connection_init` payload; the request context every subscription of the
/// socket shares, or the close code and error.
async fn connection_data(state: AppState, payload: serde_json::Value) -> Result<Data, (u16, AppError)> {
    let init = Init::parse(&payload).map_err(|err| (CLOSE_FORBIDDEN, err))?;
    let mut headers = HeaderMap::new();
    let header = |value: &str| {
        HeaderValue::from_str(value)
            .map_err(|_| (CLOSE_FORBIDDEN, AppError::validation("connection_init", "invalid characters")))
    };
    if let Some(authorization) = &init.authorization {
        headers.insert(header::AUTHORIZATION, header(authorization)?);
    }
    if let Some(tenant) = &init.tenant {
        headers.insert("x-tenant", header(tenant)?);
    }
    let caller = Caller::from_headers(&state, &headers).await;
    if let Caller::Anonymous | Caller::Rejected(_) = caller {
        return Err((
            CLOSE_UNAUTHORIZED,
            AppError::Unauthenticated(
                "send a valid `authorization: Bearer <access token or API key>` in connection_init",
            ),
        ));
    }
    let tenant = match resolve::resolve(&state, &headers).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => {
            let err =
                AppError::TenantNotFound("name the tenant: `tenant: <subdomain>` in connection_init".into());
            return Err((CLOSE_FORBIDDEN, err));
        }
        Err(err) => return Err((CLOSE_FORBIDDEN, err)),
    };
    let ctx = RequestCtx::new(state, Some(tenant), caller);
    ctx.role().await.map_err(|err| (CLOSE_FORBIDDEN, err))?;
    let mut data = Data::default();
    data.insert(ctx);
    Ok(data)
}

/// The schema, refusing queries and mutations: those go to `/graphql`, where they are metered.
#[derive(Clone)]
struct SubscriptionsOnly(AppSchema);

impl Executor for SubscriptionsOnly {
    async fn execute(&self, mut request: async_graphql::Request) -> async_graphql::Response {
        match input_check::check_request(&self.0, &mut request) {
            Ok(()) => self.0.execute(request).await,
            Err(refused) => async_graphql::Response::from_errors(vec![refused]),
        }
    }

    fn execute_stream(
        &self,
        mut request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        if let Err(refused) = input_check::check_request(&self.0, &mut request) {
            return futures::stream::once(async move { async_graphql::Response::from_errors(vec![refused]) })
                .boxed();
        }
        if is_subscription(&mut request) {
            return Executor::execute_stream(&self.0, request, session_data);
        }
        let mut error = ServerError::new(
            "only subscriptions go over /graphql/ws; send queries and mutations to /graphql",
            None,
        );
        error.extensions.get_or_insert_with(Default::default).set("code", "VALIDATION");
        futures::stream::once(async move { async_graphql::Response::from_errors(vec![error]) }).boxed()
    }
}

/// Whether the request runs a subscription (a document that does not parse is left to the schema).
fn is_subscription(request: &mut async_graphql::Request) -> bool {
    let name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return true;
    };
    match &doc.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Subscription,
        DocumentOperations::Multiple(ops) => match name {
            Some(name) => ops.get(name.as_str()).is_some_and(|op| op.node.ty == OperationType::Subscription),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Init;

    #[test]
    fn init_keys_match_without_case_and_header_names_count() {
        let init = Init::parse(&json!({
            "authorization": "Bearer a", "Authorization": "Bearer a", "X-Tenant": "acme", "other": 1
        }))
        .unwrap();
        assert_eq!(init, Init { authorization: Some("Bearer a".into()), tenant: Some("acme".into()) });
        assert_eq!(Init::parse(&json!(null)).unwrap(), Init::default());
    }

    #[test]
    fn conflicting_or_non_string_values_are_refused() {
        assert!(Init::parse(&json!({ "tenant": "a", "x-tenant": "b" })).is_err());
        assert!(Init::parse(&json!({ "authorization": 5 })).is_err());
    }
}
