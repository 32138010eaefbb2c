//! Custom domains: claimed (pending, with a token), then verified by `verifyDomain`; only a
//! verified domain (`control.tenants.domain`) routes requests.

use async_graphql::{Enum, SimpleObject};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::domain_proof::DomainProof;
use super::model::{TENANT_COLUMNS, Tenant};
use crate::audit::{self, Actor};
use crate::db::TenantTx;
use crate::db::notify::{TENANT_CHANGED, publish};
use crate::db::rows::Columns;
use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum DomainStatus {
    /// Claimed; requests to it are not routed until its token is served and `verifyDomain` runs.
    Pending,
    /// Proven; requests to it are routed to the tenant.
    Verified,
}

/// A tenant's custom domain and, while pending, how to prove it.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "CustomDomain")]
pub struct CustomDomain {
    pub domain: String,
    pub status: DomainStatus,
    /// While pending: the URL that must answer 200 with exactly `verificationToken`.
    pub verification_url: Option<String>,
    pub verification_token: Option<String>,
}

/// The pending claim if there is one, else the verified domain, else `None`.
pub async fn custom_domain(
    db: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<Option<CustomDomain>, AppError> {
    let row = db
        .query_opt(
            "select domain, pending_domain, domain_token from control.tenants where id = $1",
            &[&tenant_id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let c = Columns::of(&row, "tenancy::domains::custom_domain");
    let (verified, pending, token): (Option<String>, Option<String>, Option<String>) =
        (c.try_get("domain")?, c.try_get("pending_domain")?, c.try_get("domain_token")?);
    Ok(match (pending, token, verified) {
        (Some(domain), Some(token), _) => Some(CustomDomain {
            verification_url: Some(DomainProof::url(&domain, &token)),
            verification_token: Some(token),
            domain,
            status: DomainStatus::Pending,
        }),
        (_, _, Some(domain)) => Some(CustomDomain {
            domain,
            status: DomainStatus::Verified,
            verification_url: None,
            verification_token: None,
        }),
        _ => None,
    })
}

/// The pending claim, `(domain, token)`, checked by `DomainProof::check` before `mark_verified`.
pub async fn pending_claim(db: &impl GenericClient, tenant_id: Uuid) -> Result<(String, String), AppError> {
    let row = db
        .query_opt(
            "select pending_domain, domain_token from control.tenants
              where id = $1 and pending_domain is not null and domain_token is not null",
            &[&tenant_id],
        )
        .await?;
    let Some(row) = row else {
        return Err(AppError::validation(
            "domain",
            "no domain awaits verification; claim one with updateTenant(domain:) first",
        ));
    };
    let c = Columns::of(&row, "tenancy::domains::pending_claim");
    Ok((c.try_get("pending_domain")?, c.try_get("domain_token")?))
}

/// Makes the proven claim the tenant's routed domain, with its audit entry and a notification
/// so every replica routes it at once.
pub async fn mark_verified(
    tx: &mut TenantTx,
    actor: Actor,
    tenant_id: Uuid,
    (domain, token): &(String, String),
) -> Result<Tenant, AppError> {
    let sql = format!(
        "update control.tenants set domain = pending_domain, pending_domain = null, domain_token = null,
                updated_at = now()
          where id = $1 and pending_domain = $2 and domain_token = $3 returning {TENANT_COLUMNS}"
    );
    let row = tx
        .control()
        .query_opt(&sql, &[&tenant_id, domain, token])
        .await
        .map_err(|err| if err.constraint() == Some("tenants_domain_key") { taken() } else { err })?;
    let Some(row) = row else {
        return Err(AppError::validation("domain", "the claimed domain changed meanwhile; verify it again"));
    };
    let tenant = Tenant::from_row(&row)?;
    let details = serde_json::json!({ "domain": domain });
    audit::record(tx, actor, "tenant.domain_verified", "tenant", &tenant_id.to_string(), details).await?;
    publish(tx.control(), TENANT_CHANGED, &tenant_id.to_string()).await?;
    Ok(tenant)
}

/// The error for a domain another tenant has proven.
pub fn taken() -> AppError {
    AppError::Conflict {
        field: "domain",
        message: "this domain is already verified by another tenant".into(),
    }
}
