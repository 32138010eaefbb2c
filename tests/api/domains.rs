//! Custom domains route only once proven: the claim is pending until the domain serves its
//! token over HTTP (`verifyDomain`); the API's own hosts can never be claimed; a domain
//! another tenant proved is a conflict.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{As, TestApp, error_code, project_names, spawn_app_with};

const CLAIM: &str = "mutation($d: String) { updateTenant(domain: $d) {
    domain customDomain { domain status verificationUrl verificationToken } } }";
const VERIFY: &str = "mutation { verifyDomain { domain customDomain { domain status } } }";

/// A web site on loopback standing for the tenant's own server at `shop.test`: it serves the
/// tokens it was given under the challenge path.
#[derive(Clone, Default)]
struct Site {
    served: Arc<Mutex<Vec<String>>>,
}

impl Site {
    async fn start() -> (Self, SocketAddr) {
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

    fn serve(&self, token: &str) {
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
