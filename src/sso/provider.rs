//! OpenID Providers: discovery documents and key sets, cached per issuer (shared by every
//! tenant using that issuer) and fetched again when a token names a key the cached set lacks
//! (the provider rotated its signing key), so rotation needs no restart.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{
    ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, JsonWebKeySet,
    RedirectUrl,
};

use super::http::ProviderHttp;
use crate::error::{AppError, SsoFailure};

/// A client for one tenant's connection, as discovery configures it.
pub type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// How long a discovery document and its keys are trusted before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The longest issuer URL accepted.
const MAX_ISSUER_LEN: usize = 512;

/// The providers' cached metadata and the client that fetches it.
#[derive(Clone)]
pub struct Providers {
    http: ProviderHttp,
    metadata: Cache<String, Arc<CoreProviderMetadata>>,
}

impl Providers {
    /// `allow_local`: `SSO_ALLOW_LOCAL_ISSUERS` (plain http and internal addresses).
    pub fn new(allow_local: bool) -> Self {
        Self {
            http: ProviderHttp::new(allow_local),
            metadata: Cache::builder().max_capacity(10_000).time_to_live(METADATA_TTL).build(),
        }
    }

    pub fn http(&self) -> &ProviderHttp {
        &self.http
    }

    /// Parses an issuer URL: https (http only with `SSO_ALLOW_LOCAL_ISSUERS`), no query or
    /// fragment, at most 512 characters.
    pub fn parse_issuer(&self, raw: &str) -> Result<IssuerUrl, AppError> {
        let raw = raw.trim();
        let invalid = |why: &str| AppError::validation("issuer", why.to_owned());
        if raw.len() > MAX_ISSUER_LEN {
            return Err(invalid("must be at most 512 characters long"));
        }
        let url = url::Url::parse(raw).map_err(|_| invalid("must be an absolute https URL"))?;
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && self.http.allow_local());
        if !scheme_ok || url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "must be the provider's https URL without query or fragment (its discovery document is at <issuer>/.well-known/openid-configuration)",
            ));
        }
        IssuerUrl::new(raw.trim_end_matches('/').to_owned())
            .map_err(|_| invalid("must be an absolute https URL"))
    }

    /// The issuer's discovery document and keys: cached, or fetched when `fresh` or unknown.
    pub async fn metadata(
        &self,
        issuer: &IssuerUrl,
        fresh: bool,
    ) -> Result<Arc<CoreProviderMetadata>, AppError> {
        if !fresh && let Some(known) = self.metadata.get(issuer.as_str()).await {
            return Ok(known);
        }
        let http = |request| self.http.fetch(request);
        let discovered = CoreProviderMetadata::discover_async(issuer.clone(), &http).await.map_err(|err| {
            tracing::info!(error = %err, "SSO discovery failed");
            unavailable(format!(
                "the provider's discovery document ({}/.well-known/openid-configuration) could not be used: {}",
                issuer.as_str(),
                crate::error::clip(&err.to_string())
            ))
        })?;
        let discovered = Arc::new(discovered);
        self.metadata.insert(issuer.as_str().to_owned(), Arc::clone(&discovered)).await;
        Ok(discovered)
    }

    /// Fetches the issuer's key set again (a token named a key the cached set lacks).
    pub async fn refresh_keys(
        &self,
        issuer: &IssuerUrl,
        metadata: &CoreProviderMetadata,
    ) -> Result<Arc<CoreProviderMetadata>, AppError> {
        let http = |request| self.http.fetch(request);
        let keys = JsonWebKeySet::fetch_async(metadata.jwks_uri(), &http).await.map_err(|err| {
            tracing::info!(error = %err, "SSO key set fetch failed");
            unavailable("the provider's key set (jwks_uri) could not be fetched".to_owned())
        })?;
        let refreshed = Arc::new(metadata.clone().set_jwks(keys));
        self.metadata.insert(issuer.as_str().to_owned(), Arc::clone(&refreshed)).await;
        tracing::info!("SSO provider keys fetched again for an unknown key id");
        Ok(refreshed)
    }
}

/// A client for `client_id` at the provider `metadata` describes, redirecting to `callback`.
pub fn client(
    metadata: &CoreProviderMetadata,
    client_id: &str,
    client_secret: String,
    callback: &RedirectUrl,
) -> OidcClient {
    CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(client_id.to_owned()),
        Some(ClientSecret::new(client_secret)),
    )
    .set_redirect_uri(callback.clone())
}

pub fn unavailable(message: String) -> AppError {
    AppError::sso(SsoFailure::ProviderUnavailable, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_https_urls_without_query_unless_local_ones_are_allowed() {
        let strict = Providers::new(false);
        assert_eq!(
            strict.parse_issuer("https://id.example.com/").unwrap().as_str(),
            "https://id.example.com"
        );
        for bad in [
            "http://id.example.com",
            "https://id.example.com/?x=1",
            "https://id.example.com/#f",
            "id.example.com",
            "",
        ] {
            assert_eq!(strict.parse_issuer(bad).unwrap_err().code(), "VALIDATION", "{bad}");
        }
        assert!(strict.parse_issuer(&format!("https://{}.io", "a".repeat(600))).is_err());
        let local = Providers::new(true);
        assert!(local.parse_issuer("http://127.0.0.1:9400").is_ok());
    }
}
