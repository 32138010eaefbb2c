//! GraphQL over HTTP content negotiation: which media type a response uses, from `Accept`.
//!
//! `application/graphql-response+json` when the client asks for it; `application/json` when it
//! accepts only that, sends `*/*`, or sends no `Accept` at all (the spec's legacy rule), and then
//! request errors are answered 200 as legacy clients expect; 406 when neither is acceptable.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The media type of a GraphQL response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/graphql-response+json`: request errors are 4xx.
    GraphqlResponse,
    /// `application/json`: request errors are 200 (legacy clients read the body, not the status).
    Json,
}

pub const GRAPHQL_RESPONSE: &str = "application/graphql-response+json; charset=utf-8";
pub const JSON: &str = "application/json; charset=utf-8";

impl Media {
    /// The `Content-Type` header value.
    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphqlResponse => GRAPHQL_RESPONSE,
            Self::Json => JSON,
        })
    }

    /// The status of a request error (one that stopped the request before execution).
    pub fn request_error_status(self, status: StatusCode) -> StatusCode {
        match self {
            Self::GraphqlResponse => status,
            Self::Json => StatusCode::OK,
        }
    }
}

/// The media type to answer with, or `None` when the client accepts neither.
pub fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let accept: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
    if accept.is_empty() {
        return Some(Media::Json);
    }
    // The best quality each media type gets; an explicit type beats a wildcard's quality.
    let (mut graphql, mut json, mut wildcard): (Option<f32>, Option<f32>, Option<f32>) = (None, None, None);
    for range in accept.iter().flat_map(|value| value.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|param| param.trim().split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0));
        let slot = match media.as_str() {
            "application/graphql-response+json" => &mut graphql,
            "application/json" => &mut json,
            "*/*" | "application/*" => &mut wildcard,
            _ => continue,
        };
        *slot = Some(slot.map_or(quality, |q: f32| q.max(quality)));
    }
    let json = json.or(wildcard).unwrap_or(0.0);
    let graphql = graphql.unwrap_or(0.0);
    if graphql <= 0.0 && json <= 0.0 {
        None
    } else if graphql >= json {
        Some(Media::GraphqlResponse)
    } else {
        Some(Media::Json)
    }
}

/// A GraphQL-shaped error body (no `data` entry) with `code`, in `media`.
pub fn error_response(media: Media, status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, [(header::CONTENT_TYPE, media.content_type())], axum::Json(body)).into_response()
}

/// 406: the client accepts neither GraphQL response type. Its body is JSON all the same.
pub fn not_acceptable() -> Response {
    error_response(
        Media::Json,
        StatusCode::NOT_ACCEPTABLE,
        "VALIDATION",
        "accept application/graphql-response+json or application/json",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: Option<&str>) -> Option<Media> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, accept.parse().unwrap());
        }
        negotiate(&headers)
    }

    #[test]
    fn the_client_gets_the_type_it_prefers() {
        assert_eq!(pick(None), Some(Media::Json), "no Accept: legacy JSON");
        assert_eq!(pick(Some("*/*")), Some(Media::Json));
        assert_eq!(pick(Some("application/json")), Some(Media::Json));
        assert_eq!(pick(Some("application/graphql-response+json")), Some(Media::GraphqlResponse));
        assert_eq!(
            pick(Some("application/graphql-response+json, application/json;q=0.9")),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            pick(Some("application/graphql-response+json;q=0.5, application/json")),
            Some(Media::Json)
        );
        assert_eq!(pick(Some("text/html")), None);
        assert_eq!(pick(Some("application/json;q=0")), None);
    }
}
