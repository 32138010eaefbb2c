//! Bounds on what a request may carry, checked before any handler reads it: one header's
//! length (431) and the body's size (413, decided from `Content-Length` before reading, or as
//! soon as a streamed body passes the limit). hyper bounds the request head as a whole (see
//! `serve`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::HttpSettings;
use crate::error::AppError;

pub async fn limit(State(settings): State<Arc<HttpSettings>>, req: Request, next: Next) -> Response {
    let edge = settings.edge;
    if let Some((name, _)) = req.headers().iter().find(|(_, value)| value.len() > edge.max_header_value_bytes)
    {
        let header = name.as_str().chars().take(64).collect();
        return AppError::HeaderTooLarge { header, limit: edge.max_header_value_bytes }.into_response();
    }
    let too_large = AppError::PayloadTooLarge { limit: edge.max_body_bytes };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(edge.max_body_bytes).unwrap_or(u64::MAX)) {
        return too_large.into_response();
    }
    // Read the body here, never more than the limit: a handler sees it whole or not at all.
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, edge.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => return too_large.into_response(),
        Err(_) => {
            return AppError::validation("body", "the request body could not be read completely")
                .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}
