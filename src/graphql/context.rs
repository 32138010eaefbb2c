//! `RequestCtx`: what a resolver knows about its request — tenant, caller, role — and the
//! only way to open a `TenantTx`.

use std::sync::Arc;

use axum::http::HeaderMap;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::token::TokenRejected;
use crate::db::TenantTx;
use crate::error::AppError;
use crate::members::Role;
use crate::tenancy::model::Tenant;

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    Anonymous,
    /// Credentials were sent but refused; only operations that need a caller fail.
    Rejected(TokenRejected),
    User(Uuid),
}

pub struct RequestCtx {
    pub state: AppState,
    pub tenant: Option<Arc<Tenant>>,
    pub caller: Caller,
    /// The caller's role in the tenant, looked up once per request.
    role: OnceCell<Role>,
}

impl RequestCtx {
    pub fn new(state: AppState, tenant: Option<Arc<Tenant>>, headers: &HeaderMap) -> Self {
        let caller = match headers.get(axum::http::header::AUTHORIZATION) {
            None => Caller::Anonymous,
            Some(value) => match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
                Some(token) => match state.tokens.verify(token.trim()) {
                    Ok(user_id) => Caller::User(user_id),
                    Err(rejected) => Caller::Rejected(rejected),
                },
                None => Caller::Rejected(TokenRejected::Invalid),
            },
        };
        Self {
            state,
            tenant,
            caller,
            role: OnceCell::new(),
        }
    }

    /// The signed-in user, or `UNAUTHENTICATED`.
    pub fn user_id(&self) -> Result<Uuid, AppError> {
        match self.caller {
            Caller::User(id) => Ok(id),
            Caller::Rejected(reason) => Err(reason.into()),
            Caller::Anonymous => Err(AppError::Unauthenticated(
                "sign in first: send `Authorization: Bearer <access token>`",
            )),
        }
    }

    /// The request's tenant, or `TENANT_NOT_FOUND` explaining how to name one.
    pub fn tenant(&self) -> Result<&Arc<Tenant>, AppError> {
        self.tenant.as_ref().ok_or_else(|| {
            AppError::TenantNotFound(
                "this operation needs a tenant: send `X-Tenant: <subdomain>` or use \
                 <subdomain>.<base domain> as the host"
                    .into(),
            )
        })
    }

    /// The caller's role in the request's tenant; `FORBIDDEN` for non-members.
    pub async fn role(&self) -> Result<Role, AppError> {
        let user_id = self.user_id()?;
        let tenant = self.tenant()?;
        self.role
            .get_or_try_init(|| async {
                let role = self
                    .state
                    .members
                    .role(&self.state.pool, tenant.id, user_id)
                    .await?;
                role.ok_or(AppError::Forbidden("you are not a member of this tenant"))
            })
            .await
            .copied()
    }

    /// A transaction on the tenant's schema, for members only. The one path to tenant data.
    pub async fn tenant_tx(&self) -> Result<TenantTx, AppError> {
        self.role().await?;
        let tenant = self.tenant()?;
        TenantTx::begin(&self.state.pool, &tenant.schema).await
    }

    /// Like `tenant_tx`, for a resolver that runs exactly one statement: its commit rides in
    /// the same round trip (see `TenantTx::begin_single`).
    pub async fn tenant_tx_single(&self) -> Result<TenantTx, AppError> {
        self.role().await?;
        let tenant = self.tenant()?;
        TenantTx::begin_single(&self.state.pool, &tenant.schema).await
    }
}
