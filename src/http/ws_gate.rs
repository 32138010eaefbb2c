//! The client's side of `/graphql/ws`, checked before async-graphql reads it: what the client
//! has sent (`connection_init`, the subscriptions running), and the socket's limits — a
//! subscription before `connection_init` (4401), a duplicate id (4409), more subscriptions than
//! `WS_MAX_SUBSCRIPTIONS_PER_SOCKET` (an error for that id), a message over the size limit (1009).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use async_graphql::http::WebSocketProtocols;
use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::error::AppError;

/// Larger client messages (a subscription document) close the socket with 1009.
pub(super) const MAX_MESSAGE: usize = 64 * 1024;
/// A subscription before `connection_init`.
pub(super) const CLOSE_UNAUTHORIZED: u16 = 4401;
/// A subscription id already running.
const CLOSE_DUPLICATE: u16 = 4409;

/// What the socket's client has sent, as the gate saw it.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) init: bool,
    /// Ids of the subscriptions running now.
    pub(super) ids: HashSet<String>,
    /// Most subscriptions held at once (memory is handed back after a big socket closes).
    pub(super) peak: usize,
    /// When the socket last had no subscription.
    pub(super) empty_since: Option<Instant>,
    /// Close code and reason the gate decided on.
    pub(super) close: Option<(u16, String)>,
}

/// The client's messages on their way to async-graphql: refuses what breaks the socket's
/// limits (answering, or closing with a code) before async-graphql sees it.
pub(super) struct Gate {
    pub(super) inner: futures::stream::SplitStream<WebSocket>,
    pub(super) seen: Arc<Mutex<Seen>>,
    /// Answers the gate sends itself (the serving loop writes them).
    pub(super) outbox: mpsc::Sender<Message>,
    pub(super) protocol: WebSocketProtocols,
    pub(super) max_subscriptions: usize,
}

/// Where the gate moves a subscription's `documentId` (a trusted document's id): async-graphql
/// reads the payload's `query`, `variables`, `operationName` and `extensions` only.
pub(super) const DOCUMENT_ID: &str = "documentId";

/// The fields of a client message the gate looks at.
#[derive(serde::Deserialize)]
struct Peek {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    payload: Option<PayloadPeek>,
}

#[derive(serde::Deserialize)]
struct PayloadPeek {
    #[serde(rename = "documentId")]
    document_id: Option<serde_json::Value>,
}

/// The message with its payload's `documentId` moved into the payload's extensions.
fn move_document_id(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut message: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let payload = message.get_mut("payload")?.as_object_mut()?;
    let id = payload.remove(DOCUMENT_ID)?;
    let extensions = payload.entry("extensions").or_insert_with(|| serde_json::json!({}));
    extensions.as_object_mut()?.insert(DOCUMENT_ID.to_owned(), id);
    serde_json::to_vec(&message).ok()
}

impl Gate {
    fn close(&self, code: u16, reason: String) -> Poll<Option<Vec<u8>>> {
        lock(&self.seen).close = Some((code, reason));
        Poll::Ready(None)
    }

    /// The error a refused subscription gets: `error` in both protocols (the operation ends).
    fn refusal(&self, id: &str, err: AppError) -> Message {
        let error = async_graphql::Error::from(err).into_server_error(async_graphql::Pos::default());
        let payload = match self.protocol {
            WebSocketProtocols::GraphQLWS => serde_json::json!([error]),
            WebSocketProtocols::SubscriptionsTransportWS => serde_json::json!(error),
        };
        Message::Text(serde_json::json!({ "type": "error", "id": id, "payload": payload }).to_string().into())
    }
}

impl futures::Stream for Gate {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        loop {
            if lock(&self.seen).close.is_some() {
                return Poll::Ready(None);
            }
            // Answers not yet written: read nothing more until they are (the serving loop is
            // woken by them and polls again), so a client cannot queue answers without bound.
            if self.outbox.capacity() == 0 {
                return Poll::Pending;
            }
            let bytes = match std::task::ready!(self.inner.poll_next_unpin(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(Message::Text(text))) => text.as_str().as_bytes().to_vec(),
                Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                Some(Ok(_)) => continue,
                Some(Err(err)) => {
                    if too_long(err) {
                        return self.close(1009, format!("message too large (at most {MAX_MESSAGE} bytes)"));
                    }
                    return Poll::Ready(None);
                }
            };
            // What does not parse goes on: async-graphql answers it (1002).
            let Ok(peek) = serde_json::from_slice::<Peek>(&bytes) else { return Poll::Ready(Some(bytes)) };
            let id = peek.id.unwrap_or_default();
            let by_id = peek.payload.is_some_and(|payload| payload.document_id.is_some());
            let bytes = if by_id { move_document_id(&bytes).unwrap_or(bytes) } else { bytes };
            let mut seen = lock(&self.seen);
            match peek.kind.as_str() {
                "connection_init" => {
                    seen.init = true;
                    // Idle from now on until a subscription starts.
                    if seen.ids.is_empty() {
                        seen.empty_since = Some(Instant::now());
                    }
                }
                "subscribe" | "start" => {
                    if !seen.init {
                        drop(seen);
                        return self.close(CLOSE_UNAUTHORIZED, "Unauthorized".into());
                    }
                    if seen.ids.contains(&id) {
                        drop(seen);
                        return self.close(CLOSE_DUPLICATE, format!("Subscriber for {id} already exists"));
                    }
                    if seen.ids.len() >= self.max_subscriptions {
                        drop(seen);
                        let err = AppError::validation(
                            "subscribe",
                            format!(
                                "a socket holds at most {} subscriptions; complete one or open another socket",
                                self.max_subscriptions
                            ),
                        );
                        let reply = self.refusal(&id, err);
                        let _ = self.outbox.try_send(reply);
                        continue;
                    }
                    seen.ids.insert(id);
                    seen.peak = seen.peak.max(seen.ids.len());
                    seen.empty_since = None;
                }
                "complete" | "stop" => {
                    seen.ids.remove(&id);
                    if seen.ids.is_empty() && seen.empty_since.is_none() {
                        seen.empty_since = Some(Instant::now());
                    }
                }
                _ => {}
            }
            return Poll::Ready(Some(bytes));
        }
    }
}

/// Whether a read failed because the client's message passed the size limit.
fn too_long(err: axum::Error) -> bool {
    err.into_inner().downcast_ref::<tungstenite::Error>().is_some_and(|err| {
        matches!(err, tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong { .. }))
    })
}

/// Locks, going on after a panic elsewhere (the data stays usable).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
