//! Enterprise single sign-on: one OpenID Connect connection per tenant (set by an OWNER),
//! email domains the tenant proves it controls, the sign-in flow (`flow`), and what SSO
//! changes for other credentials (`enforcement`). Everything it stores is in `control` and
//! goes through the control pool, never a tenant transaction. docs/sso.md has the decisions.

pub mod enforcement;
pub mod flow;
pub mod http;
pub mod provider;
pub mod repo;
pub mod rotation;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use openidconnect::RedirectUrl;
use uuid::Uuid;

use self::provider::Providers;
use self::repo::{ConnectionWrite, SsoDomain};
use crate::auth::token::TokenKeys;
use crate::crypto::Keyring;
use crate::db::notify::{API_KEY_CHANGED, publish};
use crate::error::AppError;
use crate::members::Role;
use crate::plans::{AccessCache, PlanCatalog};
use crate::tenancy::domain_proof::{self, DomainProof};
use crate::tenancy::model::Domain;

/// The SSO service's own state: the providers' cache and where providers send browsers back.
#[derive(Clone)]
pub struct Sso {
    pub providers: Providers,
    /// `<PUBLIC_URL>/sso/callback`, registered at each provider as the redirect URI.
    pub callback: RedirectUrl,
}

impl Sso {
    pub fn new(public_url: &str, allow_local_issuers: bool) -> anyhow::Result<Self> {
        let callback = RedirectUrl::new(format!("{}/sso/callback", public_url.trim_end_matches('/')))
            .map_err(|err| anyhow::anyhow!("PUBLIC_URL does not make a callback URL: {err}"))?;
        Ok(Self { providers: Providers::new(allow_local_issuers), callback })
    }
}

/// The handles SSO uses, lent by `AppState::single_sign_on`.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub pool: &'a Pool,
    pub keys: &'a Keyring,
    pub tokens: &'a TokenKeys,
    pub plans: &'a PlanCatalog,
    pub access: &'a AccessCache,
    pub sso: &'a Sso,
    pub domain_proof: &'a DomainProof,
    pub base_domain: &'a str,
    pub public_url: &'a str,
}

/// A tenant's connection as its OWNER sees it (never the secret).
#[derive(Debug, Clone)]
pub struct Connection {
    pub issuer: String,
    pub client_id: String,
    pub default_role: Role,
    pub enforced_at: Option<DateTime<Utc>>,
    pub domains: Vec<SsoDomain>,
    pub callback_url: String,
    pub updated_at: DateTime<Utc>,
}

/// What `configureSso` asks for, unparsed.
pub struct Configure<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// `None` keeps the stored secret (required the first time).
    pub client_secret: Option<&'a str>,
    pub domains: &'a [String],
    pub default_role: Role,
    pub enforced: bool,
}

/// The associated data sealing a connection's client secret to its tenant.
fn secret_aad(tenant_id: Uuid) -> Vec<u8> {
    format!("sso client secret:{tenant_id}").into_bytes()
}

/// The tenant's connection, if it has one.
pub async fn connection(h: Handles<'_>, tenant_id: Uuid) -> Result<Option<Connection>, AppError> {
    let client = h.pool.get().await?;
    let Some(stored) = repo::connection(&client, tenant_id).await? else { return Ok(None) };
    Ok(Some(Connection {
        issuer: stored.issuer,
        client_id: stored.client_id,
        default_role: stored.default_role,
        enforced_at: stored.enforced_at,
        domains: repo::domains(&client, tenant_id).await?,
        callback_url: h.sso.callback.as_str().to_owned(),
        updated_at: stored.updated_at,
    }))
}

/// Creates or replaces the tenant's connection after discovering the provider (so a wrong
/// issuer is reported now, not at the first sign-in). Turning enforcement on revokes the
/// tenant's API keys created until then (docs/sso.md).
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id))]
pub async fn configure(
    h: Handles<'_>,
    tenant_id: Uuid,
    input: &Configure<'_>,
) -> Result<Connection, AppError> {
    let issuer = h.sso.providers.parse_issuer(input.issuer)?;
    let client_id = input.client_id.trim();
    if !(1..=255).contains(&client_id.len()) {
        return Err(AppError::validation("clientId", "must be 1 to 255 characters long"));
    }
    if input.client_secret.is_some_and(|s| !(1..=1024).contains(&s.len())) {
        return Err(AppError::validation("clientSecret", "must be 1 to 1024 characters long"));
    }
    if input.default_role == Role::Owner {
        return Err(AppError::validation(
            "defaultRole",
            "new members can be ADMIN, MEMBER or VIEWER, not OWNER",
        ));
    }
    let domains = parse_domains(h, input.domains)?;
    h.sso.providers.metadata(&issuer, true).await?;
    let sealed = input.client_secret.map(|secret| h.keys.encrypt(secret.as_bytes(), &secret_aad(tenant_id)));
    let key_id = h.keys.current_id().hex();
    let mut client = h.pool.get().await?;
    let tx = client.transaction().await?;
    for domain in &domains {
        if repo::verified_elsewhere(&tx, tenant_id, domain).await? {
            return Err(repo::domain_taken());
        }
    }
    let write = ConnectionWrite {
        issuer: issuer.as_str(),
        client_id,
        client_secret: sealed.as_deref().map(|s| (s, key_id.as_str())),
        default_role: input.default_role,
        enforced: input.enforced,
    };
    let before = repo::connection(&tx, tenant_id).await?;
    let Some(stored) = repo::upsert(&tx, tenant_id, &write).await? else {
        return Err(AppError::validation("clientSecret", "is required when the connection is first set"));
    };
    repo::set_domains(&tx, tenant_id, &domains).await?;
    let newly_enforced = before.is_none_or(|b| b.enforced_at.is_none());
    if let (Some(since), true) = (stored.enforced_at, newly_enforced) {
        for prefix in repo::revoke_keys_before(&tx, tenant_id, since).await? {
            publish(&tx, API_KEY_CHANGED, &prefix).await?;
        }
    }
    tx.commit().await?;
    tracing::info!(enforced = input.enforced, "SSO connection configured");
    drop(client);
    connection(h, tenant_id).await?.ok_or(AppError::NotFound("SSO connection"))
}

/// Lowercased, deduplicated domain names (at most 20), each one a claimable host name.
fn parse_domains(h: Handles<'_>, raw: &[String]) -> Result<Vec<String>, AppError> {
    if raw.len() > 20 {
        return Err(AppError::validation("domains", "at most 20 email domains per connection"));
    }
    let mut out: Vec<String> = Vec::new();
    for entry in raw {
        let domain = Domain::parse(entry, h.base_domain)
            .map_err(|err| AppError::validation("domains", err.message()))?;
        domain_proof::claimable(&domain, h.public_url)
            .map_err(|err| AppError::validation("domains", err.message()))?;
        let domain = domain.as_str().to_owned();
        if !out.contains(&domain) {
            out.push(domain);
        }
    }
    Ok(out)
}

/// Proves a claimed email domain with the token served over HTTP (as custom domains are).
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id))]
pub async fn verify_domain(h: Handles<'_>, tenant_id: Uuid, raw: &str) -> Result<Connection, AppError> {
    let domain = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let claim = {
        let client = h.pool.get().await?;
        repo::domains(&client, tenant_id).await?.into_iter().find(|d| d.domain == domain)
    };
    let Some(claim) = claim else {
        return Err(AppError::validation(
            "domain",
            "is not claimed by this tenant; add it with configureSso(domains:)",
        ));
    };
    if claim.verified_at.is_none() {
        h.domain_proof.check(&claim.domain, &claim.token).await?;
        let client = h.pool.get().await?;
        if !repo::mark_verified(&client, tenant_id, &claim.domain, &claim.token).await? {
            return Err(AppError::validation("domain", "the claim changed meanwhile; verify it again"));
        }
        tracing::info!("SSO email domain verified");
    }
    connection(h, tenant_id).await?.ok_or(AppError::NotFound("SSO connection"))
}

/// The domain of an email address (`EmailAddress` keeps exactly one `@`).
pub fn email_domain(email: &str) -> &str {
    email.rsplit_once('@').map_or("", |(_, domain)| domain)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_emails_domain_is_what_follows_the_at_sign() {
        assert_eq!(super::email_domain("alice@example.com"), "example.com");
        assert_eq!(super::email_domain("no-at-sign"), "");
    }
}
