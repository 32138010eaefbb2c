//! The client's IP address for per-IP throttles: the TCP peer, or — when the peer is a trusted
//! proxy (`TRUSTED_PROXIES`) — the nearest untrusted address in `X-Forwarded-For`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use super::HttpSettings;

/// Networks whose `X-Forwarded-For` is believed (load balancers, ingress controllers).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8`-style networks and bare addresses (one host).
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        let nets = entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpNet>().or_else(|_| e.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                    anyhow::anyhow!(
                        "TRUSTED_PROXIES: {e:?} is neither an IP address nor a network like 10.0.0.0/8"
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self(nets))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request that came from `peer`. Forwarded addresses are read
    /// right to left and believed only while each hop is a trusted proxy, so a client cannot
    /// choose its own address by sending the header itself.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if !self.trusts(client) {
            return Some(client);
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in forwarded.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }
}

/// The request's client address (`None` without a socket, e.g. a router driven in-process).
pub struct ClientIp(pub Option<IpAddr>);

impl<S> FromRequestParts<S> for ClientIp
where
    Arc<HttpSettings>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        Ok(Self(Arc::<HttpSettings>::from_ref(state).trusted_proxies.client(peer, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("203.0.113.9"), &headers("1.2.3.4")), ip("203.0.113.9"));

        let lb = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.1".into()]).unwrap();
        assert_eq!(lb.client(ip("10.1.2.3"), &headers("198.51.100.7")), ip("198.51.100.7"));
        // A client's own (spoofed) entry sits left of what the proxies appended: ignored.
        assert_eq!(
            lb.client(ip("10.1.2.3"), &headers("6.6.6.6, 198.51.100.7, 10.9.9.9")),
            ip("198.51.100.7")
        );
        assert_eq!(lb.client(ip("10.1.2.3"), &headers("nonsense, 198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(lb.client(ip("::ffff:192.0.2.1"), &HeaderMap::new()), ip("192.0.2.1"));
        assert_eq!(lb.client(None, &headers("1.2.3.4")), None);
        assert!(TrustedProxies::parse(&["not-an-ip".into()]).is_err());
    }
}
