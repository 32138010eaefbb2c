//! Proof that a tenant controls a custom domain: the token served over HTTP at
//! `http://<domain>/.well-known/tenantry-challenge/<token>`, and the hosts no tenant may claim.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::model::Domain;
use crate::error::AppError;

/// The path under which the token is served.
pub const CHALLENGE_PATH: &str = "/.well-known/tenantry-challenge/";
/// The whole check (resolve, connect, answer) gives up after this long.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// More than a token needs; a larger answer is not read.
const MAX_BODY: usize = 1024;

/// Fetches challenge tokens; `DOMAIN_CHECK_HOSTS` pins domains to addresses.
#[derive(Debug, Clone, Default)]
pub struct DomainProof {
    pinned: HashMap<String, SocketAddr>,
}

impl DomainProof {
    /// Parses `host=ip:port` pairs.
    pub fn new(pairs: &[String]) -> anyhow::Result<Self> {
        let mut pinned = HashMap::new();
        for pair in pairs.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let (host, addr) = pair
                .split_once('=')
                .and_then(|(h, a)| Some((h.trim().to_ascii_lowercase(), a.trim().parse().ok()?)))
                .ok_or_else(|| anyhow::anyhow!("DOMAIN_CHECK_HOSTS: {pair:?} is not host=ip:port"))?;
            pinned.insert(host, addr);
        }
        Ok(Self { pinned })
    }

    /// The URL the token must be served at.
    pub fn url(domain: &str, token: &str) -> String {
        format!("http://{domain}{CHALLENGE_PATH}{token}")
    }

    /// `Ok` when `domain` serves exactly `token`; otherwise what was found, for the person.
    pub async fn check(&self, domain: &str, token: &str) -> Result<(), AppError> {
        let url = Self::url(domain, token);
        let failed = |why: String| {
            AppError::validation(
                "domain",
                format!("{domain} is not verified: {why}. Serve exactly {token} at {url}, then try again"),
            )
        };
        let fetched = tokio::time::timeout(CHECK_TIMEOUT, self.fetch(domain, token)).await;
        match fetched {
            Err(_) => Err(failed(format!("{url} did not answer within {} s", CHECK_TIMEOUT.as_secs()))),
            Ok(Err(why)) => Err(failed(why)),
            Ok(Ok((200, body))) if body.trim_ascii() == token.as_bytes() => Ok(()),
            Ok(Ok((200, _))) => Err(failed(format!("{url} answered 200 with another text"))),
            Ok(Ok((status, _))) => Err(failed(format!("{url} answered HTTP {status}"))),
        }
    }

    async fn fetch(&self, domain: &str, token: &str) -> Result<(u16, Bytes), String> {
        let addr = match self.pinned.get(domain) {
            Some(addr) => *addr,
            None => public_address(domain).await?,
        };
        let stream =
            TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {domain}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("no HTTP from {domain}: {e}"))?;
        let driver = tokio::spawn(connection);
        let request = Request::get(format!("{CHALLENGE_PATH}{token}"))
            .header(hyper::header::HOST, domain)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| format!("no HTTP from {domain}: {e}"));
        let result = match response {
            Ok(response) => {
                let status = response.status().as_u16();
                Limited::new(response.into_body(), MAX_BODY)
                    .collect()
                    .await
                    .map(|body| (status, body.to_bytes()))
                    .map_err(|_| format!("the answer from {domain} is larger than {MAX_BODY} bytes"))
            }
            Err(e) => Err(e),
        };
        driver.abort();
        result
    }
}

/// The domain's first address, refusing addresses of this network (no probing of internal
/// services through `verifyDomain`).
async fn public_address(domain: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((domain, 80))
        .await
        .map_err(|_| format!("{domain} does not resolve"))?
        .collect();
    addrs
        .iter()
        .find(|a| is_public(a.ip()))
        .copied()
        .ok_or_else(|| format!("{domain} resolves to no public address"))
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| !is_public(IpAddr::V4(v4))))
        }
    }
}

/// Refuses the API's own hosts: `localhost` and anything under it, and PUBLIC_URL's host
/// (BASE_DOMAIN, its subdomains and IP literals are refused by `Domain::parse`).
pub fn claimable(domain: &Domain, public_url: &str) -> Result<(), AppError> {
    let host = domain.as_str();
    let public_host = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || host == public_host {
        return Err(AppError::validation("domain", "is one of the service's own host names"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_own_hosts_cannot_be_claimed() {
        let public = "https://app.tenantry.io/";
        for own in ["app.tenantry.io", "shop.localhost"] {
            let domain = Domain::parse(own, "example.com").unwrap();
            assert!(claimable(&domain, public).is_err(), "{own} claimable");
        }
        assert!(claimable(&Domain::parse("shop.acme.io", "example.com").unwrap(), public).is_ok());
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in
            ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fd00::1", "::ffff:10.0.0.1"]
        {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public("93.184.216.34".parse().unwrap()));
    }

    #[test]
    fn pinned_hosts_are_parsed_and_bad_pairs_refused() {
        assert!(DomainProof::new(&["shop.test=127.0.0.1:8080".into()]).is_ok());
        assert!(DomainProof::new(&["shop.test".into()]).is_err());
    }
}
