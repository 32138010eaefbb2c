//! Custom domains route only once proven: the claim is pending until the domain serves its
//! token over HTTP (`verifyDomain`); the API's own hosts, IP addresses (as browsers read them)
//! and single labels can never be claimed; the check never connects to an internal address; a
//! domain another tenant proved is a conflict.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{As, TestApp, error_code, project_names, spawn_app, spawn_app_with};

const CLAIM: &str = "mutation($d: String) { updateTenant(domain: $d) {
    domain customDomain { domain status verificationUrl verificationToken } } }";
const VERIFY: &str = "mutation { verifyDomain { domain customDomain { domain status } } }";

/// A web site on loopback standing for the tenant's own server at `shop.test`: it serves the
/// tokens it was given under the challenge path.
#[derive(Clone, Default)]
pub struct Site {
    served: Arc<Mutex<Vec<String>>>,
}

impl Site {
    pub async fn start() -> (Self, SocketAddr) {
        let site = Self::default();
        let router = axum::Router::new()
            .route("/.well-known/tenantry-challenge/{token}", axum::routing::get(Self::challenge))
            .with_state(site.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (site, addr)
    }

    async fn challenge(State(site): State<Self>, Path(token): Path<String>) -> (StatusCode, String) {
        if site.served.lock().unwrap().contains(&token) {
            (StatusCode::OK, format!("{token}\n"))
        } else {
            (StatusCode::NOT_FOUND, "not here".into())
        }
    }

    pub fn serve(&self, token: &str) {
        self.served.lock().unwrap().push(token.to_owned());
    }
}

/// An app that reaches `shop.test` at `site`, and a signed-in owner of `subdomain` on a plan
/// with custom domains.
async fn app_with_shop(site: SocketAddr) -> TestApp {
    spawn_app_with(|config| config.domain_check_hosts = vec![format!("shop.test={site}")]).await
}

async fn owner_on_pro(app: &TestApp, name: &str, subdomain: &str) -> String {
    let token = app.sign_up(name).await;
    app.create_tenant(&token, subdomain).await;
    app.set_plan(subdomain, "enterprise").await;
    token
}

async fn claim(app: &TestApp, token: &str, tenant: &str, domain: Option<&str>) -> Value {
    app.graphql(As::member(token, tenant), CLAIM, json!({ "d": domain })).await.1
}

#[tokio::test]
async fn a_claimed_domain_routes_only_after_its_token_is_served() {
    let (site, addr) = Site::start().await;
    let app = app_with_shop(addr).await;
    let ann = owner_on_pro(&app, "ann", "acme").await;
    app.create_project(&ann, "acme", "launch").await;

    let body = claim(&app, &ann, "acme", Some("Shop.Test")).await;
    let claimed = &body["data"]["updateTenant"];
    assert_eq!(claimed["domain"], Value::Null, "a claim does not route: {body}");
    assert_eq!(claimed["customDomain"]["domain"], "shop.test");
    assert_eq!(claimed["customDomain"]["status"], "PENDING");
    let proof = claimed["customDomain"]["verificationToken"].as_str().unwrap().to_owned();
    assert_eq!(
        claimed["customDomain"]["verificationUrl"],
        format!("http://shop.test/.well-known/tenantry-challenge/{proof}")
    );

    let on_domain = || As { token: Some(&ann), tenant: None, host: Some("shop.test".into()) };
    let (_, body) = app.graphql(on_domain(), "{ projects { name } }", json!({})).await;
    assert_eq!(error_code(&body), Some("TENANT_NOT_FOUND"), "not routed before proof: {body}");

    let (_, body) = app.graphql(As::member(&ann, "acme"), VERIFY, json!({})).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("HTTP 404") && message.contains(&proof), "{message}");

    site.serve(&proof);
    let (_, body) = app.graphql(As::member(&ann, "acme"), VERIFY, json!({})).await;
    assert_eq!(body["data"]["verifyDomain"]["domain"], "shop.test", "{body}");
    assert_eq!(body["data"]["verifyDomain"]["customDomain"]["status"], "VERIFIED");
    let (_, body) = app.graphql(on_domain(), "{ projects { name } }", json!({})).await;
    assert_eq!(project_names(&body), ["launch"]);

    // Removing the domain stops the routing at once.
    let body = claim(&app, &ann, "acme", None).await;
    assert_eq!(body["data"]["updateTenant"]["customDomain"], Value::Null, "{body}");
    let (_, body) = app.graphql(on_domain(), "{ projects { name } }", json!({})).await;
    assert_eq!(error_code(&body), Some("TENANT_NOT_FOUND"), "{body}");
}

#[tokio::test]
async fn the_apis_own_hosts_and_ip_addresses_can_never_be_claimed() {
    let (_, addr) = Site::start().await;
    let app = app_with_shop(addr).await;
    let ann = owner_on_pro(&app, "ann", "acme").await;
    // BASE_DOMAIN is `localhost` and PUBLIC_URL `http://app.test` in tests.
    for own in ["localhost", "api.localhost", "acme.localhost", "app.test", "127.0.0.1", "::1"] {
        let body = claim(&app, &ann, "acme", Some(own)).await;
        assert_eq!(error_code(&body), Some("VALIDATION"), "{own}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "domain");
    }
}

#[tokio::test]
async fn a_domain_another_tenant_verified_is_a_conflict() {
    let (site, addr) = Site::start().await;
    let app = app_with_shop(addr).await;
    let ann = owner_on_pro(&app, "ann", "acme").await;
    let bob = owner_on_pro(&app, "bob", "globex").await;
    // Both claim it; only the one serving its token proves it.
    let ann_claim = claim(&app, &ann, "acme", Some("shop.test")).await;
    claim(&app, &bob, "globex", Some("shop.test")).await;
    site.serve(ann_claim["data"]["updateTenant"]["customDomain"]["verificationToken"].as_str().unwrap());
    let (_, body) = app.graphql(As::member(&ann, "acme"), VERIFY, json!({})).await;
    assert_eq!(body["data"]["verifyDomain"]["domain"], "shop.test", "{body}");

    let (_, body) = app.graphql(As::member(&bob, "globex"), VERIFY, json!({})).await;
    assert_eq!(error_code(&body), Some("VALIDATION"), "bob's token is not served: {body}");
    let body = claim(&app, &bob, "globex", Some("shop.test")).await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "{body}");
}

#[tokio::test]
async fn ip_addresses_as_browsers_read_them_and_single_labels_are_never_claimable() {
    let app = spawn_app().await;
    let ann = owner_on_pro(&app, "ann", "acme").await;
    for (domain, why) in [
        ("127.1", "not an IP address (browsers read it as 127.0.0.1)"),
        ("0177.0.0.1", "not an IP address (browsers read it as 127.0.0.1)"),
        ("0x7f.1", "not an IP address (browsers read it as 127.0.0.1)"),
        ("1.1", "not an IP address (browsers read it as 1.0.0.1)"),
        ("[::1]", "not an IP address (browsers read it as ::1)"),
        ("[::ffff:127.0.0.1]", "not an IP address"),
        ("localhost", "at least two labels"),
        ("intranet", "at least two labels"),
        ("shop.1", "must be a host name"),
    ] {
        let body = claim(&app, &ann, "acme", Some(domain)).await;
        assert_eq!(error_code(&body), Some("VALIDATION"), "{domain}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "domain", "{domain}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(why), "{domain}: {message}");
    }
    let (_, body) =
        app.graphql(As::member(&ann, "acme"), "{ tenant { customDomain { domain } } }", json!({})).await;
    assert_eq!(body["data"]["tenant"]["customDomain"], Value::Null, "nothing was claimed: {body}");
}

/// A listener that takes connections one at a time, in the order they arrive, records the
/// `Host` each one asks for and answers 404: it shows whether the check connected at all.
#[derive(Clone, Default)]
struct Tally {
    hosts: Arc<Mutex<Vec<String>>>,
}

impl Tally {
    /// `None` when `ip` cannot be bound here (a host without IPv6 loopback).
    async fn start(ip: &str) -> Option<(Self, SocketAddr)> {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.ok()?;
        let addr = listener.local_addr().unwrap();
        let tally = Self::default();
        let hosts = tally.hosts.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                })
                .await;
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let host = head.lines().find_map(|line| line.strip_prefix("host:")).unwrap_or("(none)");
                hosts.lock().unwrap().push(host.trim().to_owned());
                let answer = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        Some((tally, addr))
    }

    fn hosts(&self) -> Vec<String> {
        self.hosts.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_domain_resolving_to_an_internal_address_is_refused_without_a_connection() {
    let (v4, at4) = Tally::start("127.0.0.1").await.expect("a loopback listener");
    let v6 = Tally::start("::1").await;
    let port = at4.port();
    // What the (test) resolver answers, as DNS would; the answers go through the same check.
    let answers = vec![
        format!("loopback.test=127.0.0.1:{port}"),
        format!("private.test=10.0.0.1:{port}"),
        format!("metadata.test=169.254.169.254:{port}"),
        format!("mapped.test=[::ffff:127.0.0.1]:{port}"),
        format!("nat64.test=[64:ff9b::7f00:1]:{port}"),
        format!("mixed.test=127.0.0.1:{port}"),
        format!("mixed.test=192.0.2.1:{port}"),
        format!("six.test=[::1]:{}", v6.as_ref().map_or(port, |(_, at6)| at6.port())),
    ];
    // The operator override, used below to show the listeners do record a connection.
    let mut pins = vec![format!("pinned.test={at4}")];
    if let Some((_, at6)) = &v6 {
        pins.push(format!("pinned6.test={at6}"));
    }
    let app = spawn_app_with(|config| {
        config.domain_check_resolve = answers;
        config.domain_check_hosts = pins;
    })
    .await;
    let ann = owner_on_pro(&app, "ann", "acme").await;
    for domain in [
        "loopback.test",
        "private.test",
        "metadata.test",
        "mapped.test",
        "nat64.test",
        "mixed.test",
        "six.test",
    ] {
        let body = claim(&app, &ann, "acme", Some(domain)).await;
        assert_eq!(body["data"]["updateTenant"]["customDomain"]["status"], "PENDING", "{domain}: {body}");
        let (_, body) = app.graphql(As::member(&ann, "acme"), VERIFY, json!({})).await;
        assert_eq!(error_code(&body), Some("VALIDATION"), "{domain}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(&format!("{domain} resolves to no public address")), "{domain}: {message}");
        for internal in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1"] {
            assert!(!message.contains(internal), "the answer names an internal address: {message}");
        }
    }
    assert_eq!(v4.hosts(), Vec::<String>::new(), "nothing connected to the IPv4 loopback listener");

    // The listeners do see a connection that is made: a pinned name reaches them. They take
    // connections in arrival order, so one made by the checks above would be recorded first.
    let mut tallies = vec![("pinned.test", v4)];
    if let Some((v6, _)) = v6 {
        tallies.push(("pinned6.test", v6));
    }
    for (domain, tally) in tallies {
        claim(&app, &ann, "acme", Some(domain)).await;
        let (_, body) = app.graphql(As::member(&ann, "acme"), VERIFY, json!({})).await;
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("answered HTTP 404"), "{domain}: {body}");
        assert_eq!(tally.hosts(), [domain], "the only connection is the pinned one");
    }
}
