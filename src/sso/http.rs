//! The HTTP client single sign-on lends `openidconnect` (discovery, keys, code exchange,
//! refresh): hyper with rustls, every exchange bounded in time and size, no redirects
//! followed, and, unless `SSO_ALLOW_LOCAL_ISSUERS` is on, no connection to loopback, private
//! or other internal addresses (an OWNER chooses the issuer URL; it must not reach inside).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use openidconnect::{HttpRequest, HttpResponse};

use crate::tenancy::domain_proof::refused_range;

/// One exchange with the provider (connect, send, read the answer) gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Larger than any discovery document, key set or token answer; a larger one is not read.
const MAX_BODY: usize = 256 * 1024;

/// Why an exchange with the provider failed; worded for the person configuring SSO.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} did not answer within {secs} s", secs = TIMEOUT.as_secs())]
    Timeout(String),
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("the answer from {0} is larger than {MAX_BODY} bytes")]
    TooLarge(String),
    #[error("{0} is an internal address; only public providers are reached (SSO_ALLOW_LOCAL_ISSUERS)")]
    Internal(String),
}

/// The provider client: cheap to clone.
#[derive(Clone)]
pub struct ProviderHttp {
    client: Client<HttpsConnector<HttpConnector<PublicResolver>>, Full<Bytes>>,
    allow_local: bool,
}

impl ProviderHttp {
    /// `allow_local`: loopback and private addresses and plain `http` may be reached.
    pub fn new(allow_local: bool) -> Self {
        let mut http = HttpConnector::new_with_resolver(PublicResolver { allow_local });
        http.enforce_http(false);
        http.set_connect_timeout(Some(TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self { client: Client::builder(TokioExecutor::new()).build(https), allow_local }
    }

    pub fn allow_local(&self) -> bool {
        self.allow_local
    }

    /// Sends `request` and reads the answer, bounded by `TIMEOUT` and `MAX_BODY`. The future
    /// owns a clone of the client (it borrows nothing, as `openidconnect` needs in `Send` code).
    pub fn fetch(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, FetchError>> + Send + 'static {
        let this = self.clone();
        async move { this.send(request).await }
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, FetchError> {
        let host = request.uri().host().unwrap_or_default().to_owned();
        // A literal address is not resolved, so the resolver's rule is applied here.
        if !self.allow_local
            && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse()
            && refused_range(ip).is_some()
        {
            return Err(FetchError::Internal(host));
        }
        let (parts, body) = request.into_parts();
        let request = hyper::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| {
                tracing::info!(sso.host = %host, error = ?err, "SSO provider unreachable");
                FetchError::Connect(host.clone())
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|_| FetchError::TooLarge(host.clone()))?
                .to_bytes();
            Ok(hyper::Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| FetchError::Timeout(host.clone()))?
    }
}

/// Resolves names with the system's resolver and drops internal addresses (unless allowed).
#[derive(Clone, Copy)]
struct PublicResolver {
    allow_local: bool,
}

type Resolving = Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower::Service<Name> for PublicResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let usable: Vec<SocketAddr> =
                resolved.filter(|addr| allow_local || refused_range(addr.ip()).is_none()).collect();
            if usable.is_empty() {
                return Err(std::io::Error::other(format!("{name} resolves to no public address")));
            }
            Ok(usable.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_addresses_are_not_reached_unless_allowed() {
        let http = ProviderHttp::new(false);
        let request = hyper::Request::get("http://127.0.0.1:9/.well-known/openid-configuration")
            .body(Vec::new())
            .unwrap();
        assert!(matches!(http.fetch(request).await, Err(FetchError::Internal(_))));
        let request = hyper::Request::get("http://localhost:9/x").body(Vec::new()).unwrap();
        assert!(matches!(http.fetch(request).await, Err(FetchError::Connect(_))));
    }
}
