//! Proof that a tenant controls a custom domain: the token served over HTTP at
//! `http://<domain>/.well-known/tenantry-challenge/<token>`, and the hosts no tenant may claim.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// Fetches challenge tokens. Names are resolved once by `resolver`, every answer is checked
/// (`refused_range`) and the check connects to exactly an address that passed, so a name that
/// answers differently the next time (DNS rebinding) gains nothing. `DOMAIN_CHECK_HOSTS` pins
/// domains to addresses: an explicit operator override that skips resolution and the check.
#[derive(Debug, Clone, Default)]
pub struct DomainProof {
    pinned: HashMap<String, SocketAddr>,
    resolver: Resolver,
}

/// Where a claimed domain's addresses come from.
#[derive(Debug, Clone, Default)]
pub enum Resolver {
    /// The system's resolver (`getaddrinfo`), port 80.
    #[default]
    System,
    /// Fixed answers (`DOMAIN_CHECK_RESOLVE`, for tests): the listed names resolve to the listed
    /// addresses, any other name does not resolve. The answers are checked like DNS answers.
    Fixed(HashMap<String, Vec<SocketAddr>>),
}

impl Resolver {
    /// Parses `host=ip`, `host=ip:port` or `host=[ipv6]:port` answers (port 80 when none is
    /// given); a name listed more than once has several addresses. None at all: the system's.
    pub fn new(answers: &[String]) -> anyhow::Result<Self> {
        let mut fixed: HashMap<String, Vec<SocketAddr>> = HashMap::new();
        for (host, addr) in host_pairs("DOMAIN_CHECK_RESOLVE", answers, |a| {
            a.parse::<SocketAddr>().ok().or_else(|| Some(SocketAddr::new(a.parse().ok()?, 80)))
        })? {
            fixed.entry(host).or_default().push(addr);
        }
        Ok(if fixed.is_empty() { Self::System } else { Self::Fixed(fixed) })
    }

    async fn resolve(&self, domain: &str) -> Result<Vec<SocketAddr>, String> {
        let unresolved = || format!("{domain} does not resolve");
        match self {
            Self::System => {
                Ok(tokio::net::lookup_host((domain, 80)).await.map_err(|_| unresolved())?.collect())
            }
            Self::Fixed(answers) => answers.get(domain).cloned().ok_or_else(unresolved),
        }
    }
}

/// `host=address` pairs of a comma-separated setting, the host lowercased.
fn host_pairs(
    setting: &str,
    pairs: &[String],
    address: impl Fn(&str) -> Option<SocketAddr>,
) -> anyhow::Result<Vec<(String, SocketAddr)>> {
    pairs
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .and_then(|(h, a)| Some((h.trim().to_ascii_lowercase(), address(a.trim())?)))
                .ok_or_else(|| anyhow::anyhow!("{setting}: {pair:?} is not host=address"))
        })
        .collect()
}

impl DomainProof {
    /// `pins`: `DOMAIN_CHECK_HOSTS`, `host=ip:port` pairs; `resolver`: where other names resolve.
    pub fn new(pins: &[String], resolver: Resolver) -> anyhow::Result<Self> {
        let pinned = host_pairs("DOMAIN_CHECK_HOSTS", pins, |a| a.parse().ok())?.into_iter().collect();
        Ok(Self { pinned, resolver })
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
        // A claim stored before claims were parsed as browsers parse hosts may be an address.
        if !matches!(url::Host::parse(domain), Ok(url::Host::Domain(_))) {
            return Err(AppError::validation(
                "domain",
                format!("{domain} is not a host name; claim a domain name instead"),
            ));
        }
        let fetched = tokio::time::timeout(CHECK_TIMEOUT, self.fetch(domain, token)).await;
        match fetched {
            Err(_) => Err(failed(format!("{url} did not answer within {} s", CHECK_TIMEOUT.as_secs()))),
            Ok(Err(why)) => Err(failed(why)),
            Ok(Ok((200, body))) if body.trim_ascii() == token.as_bytes() => Ok(()),
            Ok(Ok((200, _))) => Err(failed(format!("{url} answered 200 with another text"))),
            Ok(Ok((status, _))) => Err(failed(format!("{url} answered HTTP {status}"))),
        }
    }

    /// The addresses the check may connect to: the pin, or the resolved public addresses.
    async fn addresses(&self, domain: &str) -> Result<Vec<SocketAddr>, String> {
        if let Some(pinned) = self.pinned.get(domain) {
            return Ok(vec![*pinned]);
        }
        let resolved = self.resolver.resolve(domain).await?;
        let (public, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            resolved.into_iter().partition(|a| refused_range(a.ip()).is_none());
        for addr in &refused {
            // For the operator; the person is not told which internal addresses a name has.
            tracing::info!(domain, address = %addr.ip(), range = refused_range(addr.ip()), "not fetched");
        }
        if public.is_empty() {
            return Err(format!(
                "{domain} resolves to no public address (verifyDomain never connects to loopback, \
                 private, link-local or other internal addresses)"
            ));
        }
        Ok(public)
    }

    async fn fetch(&self, domain: &str, token: &str) -> Result<(u16, Bytes), String> {
        let mut last_error = String::new();
        let mut stream = None;
        // Exactly the checked addresses, in the resolver's order; nothing is resolved again.
        for addr in self.addresses(domain).await? {
            match TcpStream::connect(addr).await {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(e) => last_error = format!("cannot connect to {domain}: {e}"),
            }
        }
        let stream = stream.ok_or(last_error)?;
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

/// Why the check never connects to `ip`, or `None` for a public unicast address. IPv6 forms
/// that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address;
/// any other IPv6 address must be global unicast (2000::/3) outside the special ranges.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "this network (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "carrier-grade NAT (100.64.0.0/10)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        // 255.255.255.255, the broadcast address, is in 240.0.0.0/4 too.
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4).map(|_| "IPv4-mapped form of a refused address");
    }
    if s[..6] == [0; 6] {
        // ::/96, IPv4-compatible (:: and ::1 embed 0.0.0.0 and 0.0.0.1, in 0.0.0.0/8).
        return refused_v4(embedded(s[6], s[7])).map(|_| "IPv4-compatible form of a refused address");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return refused_v4(embedded(s[6], s[7])).map(|_| "NAT64 form of a refused address");
    }
    if s[0] == 0x2002 {
        return refused_v4(embedded(s[1], s[2])).map(|_| "6to4 form of a refused address");
    }
    Some(match s[0] {
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x2001 if s[1] < 0x0200 => "IETF protocol assignments (2001::/23, Teredo included)",
        0x3ff0..=0x3fff => "documentation (3fff::/20)",
        0x2000..=0x3fff => return None,
        0xfc00..=0xfdff => "unique local (fc00::/7)",
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10)",
        0xff00..=0xffff => "multicast (ff00::/8)",
        _ => "not global unicast (outside 2000::/3)",
    })
}

/// Refuses the API's own hosts: `localhost` and anything under it, and PUBLIC_URL's host
/// (BASE_DOMAIN, its subdomains, IP addresses and single labels are refused by `Domain::parse`).
pub fn claimable(domain: &Domain, public_url: &str) -> Result<(), AppError> {
    let host = domain.as_str();
    let public_host = url::Url::parse(public_url)
        .ok()
        .and_then(|url| url.host_str().map(|h| h.trim_end_matches('.').to_owned()))
        .unwrap_or_default();
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
    fn only_public_unicast_addresses_are_fetched() {
        for ip in [
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:1::",
            "2001:db8::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "3fff::1",
            "fc00::1",
            "fd00::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "5f00::1",
        ] {
            assert!(refused_range(ip.parse().unwrap()).is_some(), "{ip} would be fetched");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            "2001:200::1",
        ] {
            assert_eq!(refused_range(ip.parse().unwrap()), None, "{ip} is public");
        }
    }

    #[test]
    fn pins_and_fixed_answers_are_parsed_and_bad_pairs_refused() {
        assert!(DomainProof::new(&["shop.test=127.0.0.1:8080".into()], Resolver::System).is_ok());
        assert!(DomainProof::new(&["shop.test".into()], Resolver::System).is_err());
        let Resolver::Fixed(answers) =
            Resolver::new(&["A.test=10.0.0.1".into(), "a.test=[::1]:81".into()]).unwrap()
        else {
            panic!("fixed answers make a fixed resolver");
        };
        let expected: Vec<SocketAddr> = vec!["10.0.0.1:80".parse().unwrap(), "[::1]:81".parse().unwrap()];
        assert_eq!(answers["a.test"], expected);
        assert!(matches!(Resolver::new(&[]).unwrap(), Resolver::System));
        assert!(Resolver::new(&["a.test=nowhere".into()]).is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_only_to_internal_addresses_is_not_connected_to() {
        let resolver = Resolver::new(&["in.test=127.0.0.1".into(), "in.test=10.0.0.1".into()]).unwrap();
        let proof = DomainProof::new(&[], resolver).unwrap();
        let err = proof.addresses("in.test").await.unwrap_err();
        assert!(err.contains("no public address"), "{err}");
        let mixed = Resolver::new(&["mixed.test=127.0.0.1".into(), "mixed.test=93.184.216.34".into()]);
        let proof = DomainProof::new(&[], mixed.unwrap()).unwrap();
        assert_eq!(proof.addresses("mixed.test").await.unwrap(), ["93.184.216.34:80".parse().unwrap()]);
        let err = proof.check("127.1", "t").await.unwrap_err();
        assert!(err.message().contains("not a host name"), "{}", err.message());
    }
}
