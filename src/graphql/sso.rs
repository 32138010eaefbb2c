//! GraphQL: `sso`, `configureSso`, `verifySsoDomain` (OWNER, plan feature `sso`) and the
//! sign-in, `startSsoSignIn` and `completeSsoSignIn` (anyone). docs/sso.md.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::auth::throttle::{self, Bucket};
use crate::error::AppError;
use crate::graphql::auth::AuthPayload;
use crate::members::Role;
use crate::plans::Feature;
use crate::request::context::RequestCtx;
use crate::request::guards::{FeatureGuard, RoleGuard};
use crate::sso::repo::SsoDomain;
use crate::sso::{self, Configure, Connection, flow};
use crate::tenancy::domain_proof::DomainProof;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum SsoDomainStatus {
    /// Claimed; sign-ins with addresses in it are refused until `verifySsoDomain` succeeds.
    Pending,
    /// Proven: the tenant's provider signs in addresses in this domain.
    Verified,
}

/// An email domain claimed for single sign-on.
#[derive(SimpleObject)]
pub struct SsoDomainObject {
    domain: String,
    status: SsoDomainStatus,
    /// While pending: the URL that must answer 200 with exactly `verificationToken`.
    verification_url: Option<String>,
    verification_token: Option<String>,
    verified_at: Option<DateTime<Utc>>,
}

impl From<SsoDomain> for SsoDomainObject {
    fn from(d: SsoDomain) -> Self {
        let pending = d.verified_at.is_none();
        Self {
            verification_url: pending.then(|| DomainProof::url(&d.domain, &d.token)),
            verification_token: pending.then_some(d.token),
            status: if pending { SsoDomainStatus::Pending } else { SsoDomainStatus::Verified },
            verified_at: d.verified_at,
            domain: d.domain,
        }
    }
}

/// A tenant's OpenID Connect connection. The client secret is stored encrypted and never
/// returned.
#[derive(SimpleObject)]
#[graphql(name = "SsoConnection")]
pub struct SsoConnectionObject {
    issuer: String,
    client_id: String,
    default_role: Role,
    /// Password sign-in and sessions opened without SSO are refused for the verified domains.
    enforced: bool,
    enforced_at: Option<DateTime<Utc>>,
    domains: Vec<SsoDomainObject>,
    /// Register this as the redirect URI of the client at the provider.
    callback_url: String,
    updated_at: DateTime<Utc>,
}

impl From<Connection> for SsoConnectionObject {
    fn from(c: Connection) -> Self {
        Self {
            issuer: c.issuer,
            client_id: c.client_id,
            default_role: c.default_role,
            enforced: c.enforced_at.is_some(),
            enforced_at: c.enforced_at,
            domains: c.domains.into_iter().map(Into::into).collect(),
            callback_url: c.callback_url,
            updated_at: c.updated_at,
        }
    }
}

/// What `configureSso` sets.
#[derive(InputObject)]
pub struct SsoInput {
    /// The provider's issuer URL (https; its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`).
    issuer: String,
    client_id: String,
    /// Required the first time; omitted, the stored secret is kept.
    #[graphql(secret)]
    client_secret: Option<String>,
    /// Email domains whose addresses this provider signs in, once verified.
    domains: Vec<String>,
    /// The role of a member SSO adds (ADMIN, MEMBER or VIEWER). MEMBER when omitted.
    default_role: Option<Role>,
    /// Require SSO for the verified domains. False when omitted.
    enforced: Option<bool>,
}

/// A started sign-in.
#[derive(SimpleObject)]
pub struct SsoSignIn {
    /// Send the browser here.
    authorization_url: String,
    /// Keep it in the browser (e.g. sessionStorage) and pass it to `completeSsoSignIn`: only
    /// the browser that started the sign-in can finish it.
    browser_key: String,
    expires_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct SsoQuery;

#[Object]
impl SsoQuery {
    /// The request tenant's single sign-on connection, if it has one. OWNER.
    #[graphql(guard = "RoleGuard::at_least(Role::Owner).and(FeatureGuard::new(Feature::Sso))")]
    async fn sso(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<SsoConnectionObject>> {
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        Ok(sso::connection(rc.state.single_sign_on(), tenant_id).await?.map(Into::into))
    }
}

#[derive(Default)]
pub struct SsoMutation;

#[Object]
impl SsoMutation {
    /// Sets the request tenant's OpenID Connect connection (the provider is discovered now, so
    /// a wrong issuer fails here). New domains start pending: prove each with
    /// `verifySsoDomain`. Turning `enforced` on revokes the tenant's existing API keys. OWNER.
    #[graphql(guard = "RoleGuard::at_least(Role::Owner).and(FeatureGuard::new(Feature::Sso))")]
    async fn configure_sso(
        &self,
        ctx: &Context<'_>,
        input: SsoInput,
    ) -> async_graphql::Result<SsoConnectionObject> {
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        let configure = Configure {
            issuer: &input.issuer,
            client_id: &input.client_id,
            client_secret: input.client_secret.as_deref(),
            domains: &input.domains,
            default_role: input.default_role.unwrap_or(Role::Member),
            enforced: input.enforced.unwrap_or(false),
        };
        Ok(sso::configure(rc.state.single_sign_on(), tenant_id, &configure).await?.into())
    }

    /// Proves a claimed email domain: `http://<domain>/.well-known/tenantry-challenge/<token>`
    /// must answer 200 with exactly the token (see `sso.domains`). A domain one tenant verified
    /// cannot be verified by another (CONFLICT). OWNER.
    #[graphql(guard = "RoleGuard::at_least(Role::Owner).and(FeatureGuard::new(Feature::Sso))")]
    async fn verify_sso_domain(
        &self,
        ctx: &Context<'_>,
        domain: String,
    ) -> async_graphql::Result<SsoConnectionObject> {
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        Ok(sso::verify_domain(rc.state.single_sign_on(), tenant_id, &domain).await?.into())
    }

    /// Starts signing in through a tenant's provider, found by the email's verified domain or
    /// named by subdomain (`tenant`). `redirectUrl` (on an allowed origin) is where the browser
    /// lands afterwards, with `#code=…` (or `#error=CODE&message=…`) in its fragment. Counts
    /// against the client IP's sign-in attempts (SIGN_INS_PER_IP_PER_MINUTE).
    async fn start_sso_sign_in(
        &self,
        ctx: &Context<'_>,
        email: Option<String>,
        tenant: Option<String>,
        redirect_url: String,
    ) -> async_graphql::Result<SsoSignIn> {
        let rc = ctx.data::<RequestCtx>()?;
        rc.spend_costly("startSsoSignIn")?;
        let redirect = rc.state.app_origins.check("redirectUrl", &redirect_url)?;
        // Each start stores a flow: it counts as a sign-in attempt of the client's IP.
        let ip = throttle::ip_key(rc.client_ip());
        let client = rc.state.pool.get().await.map_err(AppError::from)?;
        rc.state.throttles.hit(&client, &[(Bucket::SignInIp, ip.as_str())]).await?;
        drop(client);
        let h = rc.state.single_sign_on();
        let (tenant_id, hint) = match (email, tenant) {
            (Some(email), None) => {
                let (tenant_id, email) = flow::tenant_for_email(h, &email).await?;
                (tenant_id, Some(email))
            }
            (None, Some(subdomain)) => {
                (crate::tenancy::by_subdomain(&rc.state.pool, &subdomain).await?.id, None)
            }
            _ => {
                return Err(crate::error::AppError::validation(
                    "email",
                    "give exactly one of email and tenant",
                )
                .into());
            }
        };
        let started = flow::start(h, tenant_id, hint.as_ref(), &redirect).await?;
        Ok(SsoSignIn {
            authorization_url: started.authorization_url,
            browser_key: started.browser_key,
            expires_at: started.expires_at,
        })
    }

    /// Exchanges the one-time code from the redirect's fragment, with the browser key from
    /// `startSsoSignIn`, for a token pair.
    async fn complete_sso_sign_in(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] code: String,
        #[graphql(secret)] browser_key: String,
    ) -> async_graphql::Result<AuthPayload> {
        let rc = ctx.data::<RequestCtx>()?;
        let (user, tokens) = flow::complete(rc.state.single_sign_on(), &code, &browser_key).await?;
        Ok(AuthPayload::new(user, tokens))
    }
}
