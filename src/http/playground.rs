//! `GET /playground`: GraphiQL, built from `playground/` into static assets that are embedded in
//! the binary, so it works with no CDN and no internet. Rebuild with `npm ci && npm run build` in
//! `playground/` (see docs/playground.md).

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

const INDEX: &str = include_str!("../../playground/dist/index.html");
const SCRIPT: &str = include_str!("../../playground/dist/playground.js");
const STYLE: &str = include_str!("../../playground/dist/playground.css");

/// The page may only load its own assets and talk to this origin (HTTP and websocket).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/playground", get(index))
        .route("/playground/", get(|| async { Redirect::permanent("/playground") }))
        .route("/playground/playground.js", get(script))
        .route("/playground/playground.css", get(style))
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], SCRIPT)
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], STYLE)
}
