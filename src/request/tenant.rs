//! The tenant a request names (`X-Tenant`, subdomain or custom domain), with its plan, checked
//! to be open for requests.

use std::sync::Arc;

use axum::http::HeaderMap;
use uuid::Uuid;

use crate::error::AppError;
use crate::plans::TenantAccess;
use crate::state::AppState;
use crate::tenancy::resolve::{TenantKey, tenant_key, unknown_subdomain};

/// The request's tenant and its access, if it names one, checked to be open for requests.
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Option<Arc<TenantAccess>>, AppError> {
    let Some(key) = tenant_key(headers, &state.base_domain)? else {
        return Ok(None);
    };
    let access = match state.tenants.get(&state.pool, &key).await? {
        Some(id) => by_id(state, id).await?,
        None => None,
    };
    match (access, &key) {
        (Some(access), _) => Ok(Some(access)),
        (None, TenantKey::Subdomain(sub)) => Err(unknown_subdomain(sub)),
        (None, TenantKey::Domain(_)) => Ok(None),
    }
}

/// A tenant by id (e.g. an API key's), checked to be open for requests.
pub async fn by_id(state: &AppState, id: Uuid) -> Result<Option<Arc<TenantAccess>>, AppError> {
    let access = state.access.get(&state.pool, &state.plans, id).await?;
    if let Some(access) = &access {
        access.tenant.check_open(chrono::Utc::now())?;
    }
    Ok(access)
}
