//! `GET /graphql/ws`: subscriptions over websockets, in the graphql-transport-ws protocol or the
//! legacy graphql-ws one. Caller and tenant come in the `connection_init` payload
//! `{"authorization": "Bearer …", "tenant": "<subdomain>"}`.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::HttpState;
use super::client_ip::ClientIp;
use super::ws_executor::SubscriptionsOnly;
use super::ws_gate::{CLOSE_UNAUTHORIZED, Gate, MAX_MESSAGE, Seen, lock};
use super::ws_registry::Registration;
use crate::error::AppError;
use crate::members::Role;
use crate::plans::TenantAccess;
use crate::request::context::{Caller, RequestCtx};
use crate::request::tenant as resolve;
use crate::state::AppState;

/// How often the server pings an idle socket (keeps proxies from closing it).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const READ_BUFFER: usize = 4 * 1024;
/// Close codes: the graphql-transport-ws ones for a refused `connection_init`, a late one,
/// and too many sockets (the gate's own are in `ws_gate`).
const CLOSE_FORBIDDEN: u16 = 4403;
const CLOSE_INIT_TIMEOUT: u16 = 4408;
const CLOSE_TOO_MANY: u16 = 4429;

/// Limits on `/graphql/ws` (built by `app::services::http_settings`).
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    /// `WS_INIT_TIMEOUT_SECS`: time to send `connection_init` (else 4408).
    pub init_timeout: Duration,
    /// `WS_IDLE_TIMEOUT_SECS`: time a socket may stay open without a subscription.
    pub idle_timeout: Duration,
    /// `WS_MAX_SUBSCRIPTIONS_PER_SOCKET`.
    pub max_subscriptions: usize,
}

pub async fn handler(
    State(http): State<HttpState>,
    ClientIp(client_ip): ClientIp,
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
    let registration = http.settings.live.open(client_ip);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // Client messages are small; the 128 KiB default read buffer, allocated up front per
        // socket, would cost over a gigabyte at 10,000 subscribers.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |mut socket| async move {
            match registration {
                Ok(registration) => serve(http, socket, protocol, client_ip, registration).await,
                Err(reason) => {
                    let frame = CloseFrame { code: CLOSE_TOO_MANY, reason: truncate(reason).into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                }
            }
        })
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

/// What a socket learned from its accepted `connection_init`.
struct Conn {
    /// The `connection_init` as headers: the credential is checked again on every change.
    headers: HeaderMap,
    tenant: Uuid,
}

/// The socket's current standing: the caller and tenant subscriptions run for, or why they no
/// longer may (`None` before `connection_init` is accepted).
pub(super) type Standing = Option<Result<Arc<Granted>, async_graphql::Error>>;

pub(super) struct Granted {
    pub(super) caller: Caller,
    pub(super) access: Arc<TenantAccess>,
    pub(super) role: Role,
}

/// What the socket task and its subscriptions share.
pub(super) struct Shared {
    conn: Mutex<Option<Conn>>,
    pub(super) standing: watch::Sender<Standing>,
    pub(super) client_ip: Option<IpAddr>,
}

async fn serve(
    http: HttpState,
    socket: WebSocket,
    protocol: WebSocketProtocols,
    client_ip: Option<IpAddr>,
    registration: Registration,
) {
    let settings = http.settings.ws;
    let (mut sink, stream) = socket.split();
    let seen = Arc::new(Mutex::new(Seen { empty_since: Some(Instant::now()), ..Seen::default() }));
    let (outbox, mut replies) = mpsc::channel(8);
    let gate = Gate {
        inner: stream,
        seen: seen.clone(),
        outbox,
        protocol,
        max_subscriptions: settings.max_subscriptions,
    };
    let shared = Arc::new(Shared { conn: Mutex::default(), standing: watch::Sender::new(None), client_ip });
    let registration = Arc::new(registration);
    // The close code a refused `connection_init` should end with.
    let refused: Arc<Mutex<Option<u16>>> = Arc::default();
    // The access token's `exp`, for a signed-in caller.
    let expires: Arc<Mutex<Option<i64>>> = Arc::default();
    let state = http.app.clone();
    let on_init = {
        let (refused, shared, registration, expires) =
            (refused.clone(), shared.clone(), registration.clone(), expires.clone());
        move |payload: serde_json::Value| async move {
            let accepted = connect(&state, &payload).await.and_then(|(conn, granted, exp)| {
                registration
                    .join(conn.tenant, &granted.caller)
                    .map_err(|reason| (CLOSE_TOO_MANY, AppError::validation("connection_init", reason)))?;
                Ok((conn, granted, exp))
            });
            match accepted {
                Ok((conn, granted, exp)) => {
                    *lock(&expires) = exp;
                    *lock(&shared.conn) = Some(conn);
                    shared.standing.send_replace(Some(Ok(Arc::new(granted))));
                    Ok(Data::default())
                }
                Err((code, err)) => {
                    *lock(&refused) = Some(code);
                    Err(async_graphql::Error::new(format!("{}: {}", err.code(), err.message())))
                }
            }
        }
    };
    let executor = SubscriptionsOnly {
        documents: http.settings.documents.clone(),
        trusted: http.settings.trusted.clone(),
        state: http.app.clone(),
        shared: shared.clone(),
    };
    let mut messages =
        async_graphql::http::WebSocket::new(executor, gate, protocol).on_connection_init(on_init);
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let mut stopping = http.app.usage.live.stopping();
    let ping = match protocol {
        WebSocketProtocols::GraphQLWS => r#"{"type":"ping"}"#,
        WebSocketProtocols::SubscriptionsTransportWS => r#"{"type":"ka"}"#,
    };
    let opened = Instant::now();
    let mut close = None;
    loop {
        let (init, idle_since) = {
            let seen = lock(&seen);
            (seen.init, seen.empty_since)
        };
        // Before `connection_init`: its deadline; after: the idle deadline while nothing runs.
        let deadline = if init {
            idle_since.map(|since| (since + settings.idle_timeout, false))
        } else {
            Some((opened + settings.init_timeout, true))
        };
        let expiry = lock(&expires).map(until_unix);
        let outgoing = tokio::select! {
            message = messages.next() => match message {
                Some(WsMessage::Text(text)) => {
                    if let Some(id) = completed_id(&text) {
                        let mut seen = lock(&seen);
                        seen.ids.remove(&id);
                        if seen.ids.is_empty() && seen.empty_since.is_none() {
                            seen.empty_since = Some(Instant::now());
                        }
                    }
                    Message::Text(text.into())
                }
                Some(WsMessage::Close(code, reason)) => {
                    close = Some((code, reason));
                    break;
                }
                None => break,
            },
            Some(reply) = replies.recv() => reply,
            _ = keep_alive.tick() => Message::Text(ping.into()),
            () = registration.recheck().notified() => {
                recheck(&http.app, &shared).await;
                continue;
            }
            () = sleep_until(deadline.map(|(at, _)| at)) => {
                close = Some(if deadline.is_some_and(|(_, init)| init) {
                    (CLOSE_INIT_TIMEOUT, "Connection initialisation timeout".into())
                } else {
                    (1000, format!("no subscription for {} s; reconnect when you need one", settings.idle_timeout.as_secs()))
                });
                break;
            }
            () = sleep_until(expiry) => {
                close = Some((CLOSE_FORBIDDEN, "the access token expired; reconnect with a fresh one".into()));
                break;
            }
            () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                close = Some((1001, "the server is restarting; reconnect".into()));
                break;
            }
        };
        if sink.send(outgoing).await.is_err() {
            break;
        }
    }
    let refused = *lock(&refused);
    let gate_close = lock(&seen).close.take();
    if let Some(code) = refused {
        let reason = close.map(|(_, reason)| reason).unwrap_or_default();
        close = Some((code, reason));
    } else if gate_close.is_some() {
        close = gate_close;
    }
    let frame = close.map(|(code, reason)| CloseFrame { code, reason: truncate(reason).into() });
    let _ = sink.send(Message::Close(frame)).await;
    drop(messages);
    let peak = lock(&seen).peak;
    http.settings.live.released(peak);
}

/// Resolves at `at`, never without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The instant of a Unix time in seconds (now, if it has passed).
fn until_unix(unix: i64) -> Instant {
    let left = unix.saturating_sub(chrono::Utc::now().timestamp()).max(0);
    Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0))
}

/// The id of a `complete` message async-graphql sends (it serialises the type first).
fn completed_id(text: &str) -> Option<String> {
    if !text.starts_with(r#"{"type":"complete""#) {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(text).ok()?["id"].as_str().map(str::to_owned)
}

/// Checks the socket's caller and tenant again after a change, and tells its subscriptions.
async fn recheck(state: &AppState, shared: &Shared) {
    let conn = lock(&shared.conn).as_ref().map(|conn| (conn.headers.clone(), conn.tenant));
    let Some((headers, tenant)) = conn else { return };
    let standing = match standing(state, &headers, tenant).await {
        Ok(granted) => Ok(Arc::new(granted)),
        Err(err) => Err(err.into()),
    };
    shared.standing.send_replace(Some(standing));
}

/// Whether the caller named by `headers` may still use `tenant`, and with which role.
async fn standing(state: &AppState, headers: &HeaderMap, tenant: Uuid) -> Result<Granted, AppError> {
    let caller = Caller::from_headers(state, headers).await;
    if let Caller::Rejected(reason) = caller {
        return Err(reason.into());
    }
    let access = resolve::by_id(state, tenant).await?.ok_or(AppError::NotFound("tenant"))?;
    let ctx = RequestCtx::new(state.clone(), Some(access.clone()), caller);
    let role = ctx.role().await?;
    Ok(Granted { caller, access, role })
}

/// Close reasons must fit a control frame (123 bytes).
fn truncate(mut reason: String) -> String {
    while reason.len() > 123 {
        reason.pop();
    }
    reason
}

/// Authenticates a `connection_init` payload: what the socket keeps, the standing its
/// subscriptions start from, and the access token's `exp`; or the close code and error.
async fn connect(
    state: &AppState,
    payload: &serde_json::Value,
) -> Result<(Conn, Granted, Option<i64>), (u16, AppError)> {
    let init = Init::parse(payload).map_err(|err| (CLOSE_FORBIDDEN, err))?;
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
    let (caller, expires) = Caller::from_headers_until(state, &headers).await;
    if let Caller::Anonymous | Caller::Rejected(_) = caller {
        return Err((
            CLOSE_UNAUTHORIZED,
            AppError::Unauthenticated(
                "send a valid `authorization: Bearer <access token or API key>` in connection_init",
            ),
        ));
    }
    let tenant = match resolve::resolve(state, &headers).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => {
            let err =
                AppError::TenantNotFound("name the tenant: `tenant: <subdomain>` in connection_init".into());
            return Err((CLOSE_FORBIDDEN, err));
        }
        Err(err) => return Err((CLOSE_FORBIDDEN, err)),
    };
    let ctx = RequestCtx::new(state.clone(), Some(tenant.clone()), caller);
    let role = ctx.role().await.map_err(|err| (CLOSE_FORBIDDEN, err))?;
    headers.remove("x-tenant");
    let conn = Conn { headers, tenant: tenant.tenant.id };
    Ok((conn, Granted { caller, access: tenant, role }, expires))
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
