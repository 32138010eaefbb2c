//! The SSO tests' world: a real OpenID Provider (`tests/oidc-provider`, the certified
//! `oidc-provider` package on Node) started per test, a browser (a cookie-keeping HTTP client
//! that follows the provider's redirects and stops at the API's callback), a site serving
//! email-domain proofs, and a tenant whose connection is configured and domain verified.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use url::Url;

use crate::domains::Site;
use crate::helpers::{As, TestApp, skip_without, spawn_app_with};

/// The provider's clients: (client id, secret), one per tenant in the tests.
pub const ACME: (&str, &str) = ("acme-client", "acme-secret-0123456789");
pub const BETA: (&str, &str) = ("beta-client", "beta-secret-0123456789");

/// Where the frontend lives (PUBLIC_URL's origin in the test settings).
pub const FRONTEND: &str = "http://app.test/signed-in";

pub struct Provider {
    pub issuer: String,
    admin: reqwest::Client,
    _child: tokio::process::Child,
}

impl Provider {
    /// Starts the provider; `None` (the test skips) when Node is not installed.
    pub async fn start() -> Option<Self> {
        let node = which("node");
        if skip_without("node", node.as_deref(), "apt-get install nodejs npm") {
            return None;
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "run `npm ci` in tests/oidc-provider first (.ci/run does)"
        );
        let clients: Vec<Value> = [ACME, BETA]
            .iter()
            .map(|(id, secret)| {
                json!({ "client_id": id, "client_secret": secret,
                        "redirect_uris": ["http://app.test/sso/callback"] })
            })
            .collect();
        let mut child = tokio::process::Command::new(node.unwrap())
            .arg("provider.js")
            .current_dir(&dir)
            .env("CLIENTS", serde_json::to_string(&clients).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the OpenID Provider");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = loop {
            let line = lines.next_line().await.unwrap().expect("the provider exited before listening");
            if let Some(url) = line.strip_prefix("listening ") {
                break url.to_owned();
            }
        };
        Some(Self { issuer, admin: reqwest::Client::new(), _child: child })
    }

    pub async fn admin(&self, path: &str, body: Value) {
        let res = self.admin.post(format!("{}/admin/{path}", self.issuer)).json(&body).send().await.unwrap();
        assert!(res.status().is_success(), "admin {path}: {}", res.status());
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| p.exists())
}

/// A browser: keeps the provider's cookies, follows its redirects, stops at the API callback.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().host_str() == Some("app.test") || attempt.previous().len() > 10 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .unwrap()
}

pub struct World {
    pub app: TestApp,
    pub provider: Provider,
    pub site: Site,
    /// An OWNER of `acme` (owner@example.com), whose connection uses `ACME` and verified example.com.
    pub owner: String,
}

pub const CONFIGURE: &str = "mutation($i: SsoInput!) { configureSso(input: $i) {
    issuer clientId defaultRole enforced callbackUrl domains { domain status verificationToken } } }";
const VERIFY: &str = "mutation($d: String!) { verifySsoDomain(domain: $d) { domains { domain status } } }";
const START: &str = "mutation($e: String, $t: String, $r: String!) {
    startSsoSignIn(email: $e, tenant: $t, redirectUrl: $r) { authorizationUrl browserKey expiresAt } }";
pub const COMPLETE: &str = "mutation($c: String!, $k: String!) {
    completeSsoSignIn(code: $c, browserKey: $k) { accessToken refreshToken user { id email emailVerified } } }";

impl World {
    pub async fn new() -> Option<Self> {
        let provider = Provider::start().await?;
        let (site, addr) = Site::start().await;
        let app = app_reaching(addr).await;
        let owner = app.sign_up("owner").await;
        app.create_tenant(&owner, "acme").await;
        app.set_plan("acme", "enterprise").await;
        let world = Self { app, provider, site, owner };
        world.connect(&world.owner, "acme", ACME, "example.com", false).await;
        Some(world)
    }

    /// Configures `tenant`'s connection with `client` and proves `domain`.
    pub async fn connect(
        &self,
        owner: &str,
        tenant: &str,
        client: (&str, &str),
        domain: &str,
        enforced: bool,
    ) {
        let input = json!({ "issuer": self.provider.issuer, "clientId": client.0, "clientSecret": client.1,
                            "domains": [domain], "enforced": enforced });
        let body = self.app.graphql(As::member(owner, tenant), CONFIGURE, json!({ "i": input })).await.1;
        let token = body["data"]["configureSso"]["domains"][0]["verificationToken"]
            .as_str()
            .unwrap_or_else(|| panic!("configureSso: {body}"));
        self.site.serve(token);
        let body = self.app.graphql(As::member(owner, tenant), VERIFY, json!({ "d": domain })).await.1;
        assert_eq!(body["data"]["verifySsoDomain"]["domains"][0]["status"], "VERIFIED", "{body}");
    }

    /// `startSsoSignIn`; returns its answer (data or errors).
    pub async fn start(&self, email: Option<&str>, tenant: Option<&str>) -> Value {
        let vars = json!({ "e": email, "t": tenant, "r": FRONTEND });
        self.app.graphql(As::default(), START, vars).await.1
    }

    /// The browser at the provider as `login` until it is sent to the callback; returns that URL.
    pub async fn at_provider(&self, authorization_url: &str, login: &str) -> Url {
        let mut url = Url::parse(authorization_url).unwrap();
        let kept: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| k != "login_hint").map(|(k, v)| (k.into(), v.into())).collect();
        url.query_pairs_mut().clear().extend_pairs(kept).append_pair("login_hint", login);
        let res = browser().get(url).send().await.unwrap();
        let location =
            res.headers().get("location").unwrap_or_else(|| panic!("provider answered {}", res.status()));
        let callback = Url::parse(location.to_str().unwrap()).unwrap();
        assert_eq!(callback.path(), "/sso/callback", "{callback}");
        callback
    }

    /// The browser delivers the callback URL to the API; returns the status and the fragment
    /// pairs of where it is sent next (empty when not redirected).
    pub async fn callback(&self, callback: &Url) -> (u16, Vec<(String, String)>, Value) {
        let url = format!("{}/sso/callback?{}", self.app.address, callback.query().unwrap_or_default());
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let res = client.get(url).send().await.unwrap();
        let status = res.status().as_u16();
        let Some(location) = res.headers().get("location").cloned() else {
            return (status, Vec::new(), res.json().await.unwrap_or_default());
        };
        let target = Url::parse(location.to_str().unwrap()).unwrap();
        assert!(target.as_str().starts_with(FRONTEND), "{target}");
        assert_eq!(target.query(), None, "nothing in the query: {target}");
        let pairs = url::form_urlencoded::parse(target.fragment().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        (status, pairs, Value::Null)
    }

    /// A whole sign-in as `login` through `tenant`'s (or the email's) provider: the fragment.
    pub async fn sign_in(&self, login: &str, tenant: Option<&str>) -> (Vec<(String, String)>, String) {
        let email = tenant.is_none().then_some(login);
        let body = self.start(email, tenant).await;
        let started = &body["data"]["startSsoSignIn"];
        let url = started["authorizationUrl"].as_str().unwrap_or_else(|| panic!("start: {body}"));
        let callback = self.at_provider(url, login).await;
        let (status, fragment, _) = self.callback(&callback).await;
        assert_eq!(status, 303);
        (fragment, started["browserKey"].as_str().unwrap().to_owned())
    }

    /// A sign-in that must succeed: the `completeSsoSignIn` payload.
    pub async fn signed_in(&self, login: &str, tenant: Option<&str>) -> Value {
        let (fragment, key) = self.sign_in(login, tenant).await;
        let code = pair(&fragment, "code").unwrap_or_else(|| panic!("no code: {fragment:?}"));
        let body = self.app.graphql(As::default(), COMPLETE, json!({ "c": code, "k": key })).await.1;
        assert!(body["data"]["completeSsoSignIn"].is_object(), "{body}");
        body["data"]["completeSsoSignIn"].clone()
    }
}

pub fn pair(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// An app whose domain proofs for example.com and other.test are fetched from `site`, and
/// which may reach a provider on loopback.
async fn app_reaching(site: SocketAddr) -> TestApp {
    spawn_app_with(|config| {
        config.domain_check_hosts = vec![format!("example.com={site}"), format!("other.test={site}")];
        config.sso_allow_local_issuers = Some(true);
    })
    .await
}
