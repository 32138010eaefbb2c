//! `GET /sso/callback`: where an OpenID Provider sends the browser back. The flow is taken by
//! its `state` (once); the browser is then redirected to the frontend's `redirectUrl` with
//! `#code=<one-time code>` (exchanged by `completeSsoSignIn`) or `#error=<CODE>&message=…` in
//! the fragment: never a token, and never in the query. A state that names no flow has no
//! frontend to go back to: 400 with a GraphQL-shaped body.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::sso::flow::{self, CallbackParams};
use crate::state::AppState;

pub async fn handler(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let mut params = CallbackParams::default();
    // The first of each; providers add others (`iss`, `session_state`), which are ignored.
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let slot = match name.as_ref() {
            "state" => &mut params.state,
            "code" => &mut params.code,
            "error" => &mut params.error,
            _ => continue,
        };
        slot.get_or_insert_with(|| value.into_owned());
    }
    let h = state.single_sign_on();
    let taken = match flow::take(h, params.state.as_deref()).await {
        Ok(taken) => taken,
        Err(err) => {
            tracing::info!(code = err.code(), "SSO callback refused");
            return err.into_response();
        }
    };
    let fragment = match flow::callback(h, &taken, &params).await {
        Ok(code) => url::form_urlencoded::Serializer::new(String::new()).append_pair("code", &code).finish(),
        Err(err) => {
            let code = err.code();
            let message = err.message();
            if let AppError::Internal(_) = err {
                // Logged once, here; the browser only learns that it failed.
                tracing::error!(error = format!("{:#}", err.into_anyhow()), "SSO callback failed");
            } else {
                tracing::info!(code, "SSO sign-in refused");
            }
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("error", code)
                .append_pair("message", &message)
                .finish()
        }
    };
    let mut target = taken.redirect_url;
    target.push('#');
    target.push_str(&fragment);
    let Ok(location) = HeaderValue::from_str(&target) else {
        return AppError::internal(anyhow::anyhow!("redirect URL is not a header value")).into_response();
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
