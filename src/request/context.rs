//! `RequestCtx`: what a resolver knows about its request — tenant, caller, role — and the
//! only way to open a `TenantTx`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use deadpool_postgres::Object;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::api_keys::{self, KeyCaller};
use crate::audit::Actor;
use crate::auth::token::TokenRejected;
use crate::db::TenantTx;
use crate::error::AppError;
use crate::members::Role;
use crate::plans::{Feature, TenantAccess};
use crate::state::AppState;
use crate::tenancy::model::Tenant;

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    Anonymous,
    /// Credentials were sent but refused; only operations that need a caller fail.
    Rejected(TokenRejected),
    User(Uuid),
    ApiKey(KeyCaller),
}

impl Caller {
    /// Reads `Authorization: Bearer <access token | API key>`.
    pub async fn from_headers(state: &AppState, headers: &HeaderMap) -> Self {
        Self::from_headers_until(state, headers).await.0
    }

    /// `from_headers`, with the access token's `exp` (Unix seconds) for a signed-in user.
    pub async fn from_headers_until(state: &AppState, headers: &HeaderMap) -> (Self, Option<i64>) {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return (Self::Anonymous, None);
        };
        let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) else {
            return (Self::Rejected(TokenRejected::Invalid), None);
        };
        let verified = if api_keys::looks_like_key(token) {
            state.api_keys.authenticate(&state.pool, token).await.map(|key| (Self::ApiKey(key), None))
        } else {
            state.tokens.verify_until(token).map(|(user, exp)| (Self::User(user), Some(exp)))
        };
        verified.unwrap_or_else(|reason| (Self::Rejected(reason), None))
    }
}

/// What a request (a subscription above all) was checked for: the least privileged role that
/// still passes, and the plan features it needed. A live subscription is ended when its
/// caller's role or tenant's plan no longer meets them.
#[derive(Debug, Default)]
pub struct Needs {
    inner: std::sync::Mutex<NeedsInner>,
}

#[derive(Debug, Default)]
struct NeedsInner {
    role: Option<Role>,
    features: Vec<Feature>,
}

impl Needs {
    fn role(&self, role: Role) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Roles order from most (Owner) to least (Viewer) privileged: keep the most demanding.
        inner.role = Some(inner.role.map_or(role, |seen| seen.min(role)));
    }

    fn feature(&self, feature: Feature) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !inner.features.contains(&feature) {
            inner.features.push(feature);
        }
    }

    /// Whether a caller with `role` in a tenant with `access` still meets every need.
    pub fn met_by(
        &self,
        role: Role,
        access: &TenantAccess,
        plans: &crate::plans::PlanCatalog,
    ) -> Result<(), AppError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.role.is_some_and(|needed| role > needed) {
            return Err(AppError::Forbidden("your role in this tenant no longer allows this subscription"));
        }
        for feature in &inner.features {
            access.require(*feature, plans)?;
        }
        Ok(())
    }
}

pub struct RequestCtx {
    pub state: AppState,
    /// The tenant the request names, with its plan.
    pub tenant: Option<Arc<TenantAccess>>,
    pub caller: Caller,
    /// The caller's role in the tenant, looked up once per request.
    role: OnceCell<Role>,
    /// Turns to hold a pooled connection: `DB_CONNECTIONS_PER_REQUEST` per request.
    connections: Arc<Semaphore>,
    /// The client's address (peer, or forwarded by a trusted proxy), for per-IP throttles.
    client_ip: Option<IpAddr>,
    /// Whether the request has run its one operation that hashes a password or sends mail.
    costly_spent: AtomicBool,
    /// What the request was checked for (roles, plan features).
    needs: Arc<Needs>,
}

/// A pooled connection held under one of the request's turns.
pub struct RequestConnection {
    client: Object,
    _turn: OwnedSemaphorePermit,
}

impl std::ops::Deref for RequestConnection {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.client
    }
}

impl RequestCtx {
    pub fn new(state: AppState, tenant: Option<Arc<TenantAccess>>, caller: Caller) -> Self {
        let connections = Arc::new(Semaphore::new(state.connections_per_request.max(1)));
        Self {
            state,
            tenant,
            caller,
            role: OnceCell::new(),
            connections,
            client_ip: None,
            costly_spent: AtomicBool::new(false),
            needs: Arc::default(),
        }
    }

    /// What the request has been checked for so far (its guards and `role()` record it).
    pub fn needs(&self) -> Arc<Needs> {
        Arc::clone(&self.needs)
    }

    /// Notes that the request needs `role` or a more privileged one (`RoleGuard`).
    pub fn need_role(&self, role: Role) {
        self.needs.role(role);
    }

    /// Notes that the request needs the tenant's plan to have `feature` (`FeatureGuard`).
    pub fn need_feature(&self, feature: Feature) {
        self.needs.feature(feature);
    }

    /// The client's IP address, as the HTTP layer determined it.
    #[must_use]
    pub fn with_client_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.client_ip = ip;
        self
    }

    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// Claims the request's one operation that hashes a password or sends mail (`field` is the
    /// GraphQL field asking). A second one in the same request — aliases of `signIn`, or
    /// `signUp` next to `requestPasswordReset` — is refused, so one request costs at most one.
    pub fn spend_costly(&self, field: &'static str) -> Result<(), AppError> {
        if self.costly_spent.swap(true, Ordering::AcqRel) {
            return Err(AppError::validation(
                field,
                "a request may run only one operation that hashes a password or sends mail \
                 (signUp, signIn, requestPasswordReset, resetPassword, changePassword, \
                 resendVerificationEmail, inviteMember, resendInvitation); send this one in a request of its own",
            ));
        }
        Ok(())
    }

    /// Waits for the request's turn to hold a pooled connection. A request holds at most
    /// `DB_CONNECTIONS_PER_REQUEST` at once, so a field aliased hundreds of times queues inside
    /// its own request instead of draining the pool every tenant shares.
    pub async fn connection_turn(&self) -> Result<OwnedSemaphorePermit, AppError> {
        Arc::clone(&self.connections)
            .acquire_owned()
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("the request's connection turns were closed")))
    }

    /// A pooled connection for control-plane reads, taken in the request's turn.
    pub async fn connection(&self) -> Result<RequestConnection, AppError> {
        let turn = self.connection_turn().await?;
        Ok(RequestConnection { client: self.state.pool.get().await?, _turn: turn })
    }

    /// The signed-in user, or `UNAUTHENTICATED` (`FORBIDDEN` for an API key).
    pub fn user_id(&self) -> Result<Uuid, AppError> {
        match self.caller {
            Caller::User(id) => Ok(id),
            Caller::ApiKey(_) => Err(AppError::Forbidden(
                "this operation needs a signed-in user; an API key acts only on its tenant's data",
            )),
            Caller::Rejected(reason) => Err(reason.into()),
            Caller::Anonymous => {
                Err(AppError::Unauthenticated("sign in first: send `Authorization: Bearer <access token>`"))
            }
        }
    }

    /// Who acts, for the audit log.
    pub fn actor(&self) -> Result<Actor, AppError> {
        match self.caller {
            Caller::ApiKey(key) => Ok(Actor::ApiKey(key.id)),
            _ => self.user_id().map(Actor::User),
        }
    }

    /// The request's tenant, or `TENANT_NOT_FOUND` explaining how to name one.
    pub fn tenant(&self) -> Result<&Arc<TenantAccess>, AppError> {
        self.tenant.as_ref().ok_or_else(|| {
            AppError::TenantNotFound(
                "this operation needs a tenant: send `X-Tenant: <subdomain>` or use \
                 <subdomain>.<base domain> as the host"
                    .into(),
            )
        })
    }

    /// The caller's role in the request's tenant; `FORBIDDEN` for non-members and for API keys
    /// of other tenants.
    pub async fn role(&self) -> Result<Role, AppError> {
        // Any role: a member, or a key of the tenant.
        self.needs.role(Role::Viewer);
        if let Caller::ApiKey(key) = self.caller {
            self.needs.feature(Feature::ApiAccess);
            let access = self.tenant()?;
            if key.tenant_id != access.tenant.id {
                return Err(AppError::Forbidden("this API key belongs to another tenant"));
            }
            access.require(Feature::ApiAccess, &self.state.plans)?;
            return Ok(key.role);
        }
        let user_id = self.user_id()?;
        let tenant_id = self.tenant()?.tenant.id;
        self.role
            .get_or_try_init(|| async {
                let role = self.state.members.role(&self.state.pool, tenant_id, user_id).await?;
                role.ok_or(AppError::Forbidden("you are not a member of this tenant"))
            })
            .await
            .copied()
    }

    /// A transaction on the tenant's schema, for members only. The one path to tenant data.
    pub async fn tenant_tx(&self) -> Result<TenantTx, AppError> {
        let tenant = self.member_tenant().await?;
        let turn = self.connection_turn().await?;
        let tx = TenantTx::begin(&self.state.tenant_pool, &tenant.schema).await?;
        Ok(tx.at_version(tenant.migration_version).holding(turn))
    }

    /// Like `tenant_tx`, for a resolver that runs exactly one statement: its commit rides in
    /// the same round trip (see `TenantTx::begin_single`).
    pub async fn tenant_tx_single(&self) -> Result<TenantTx, AppError> {
        let tenant = self.member_tenant().await?;
        let turn = self.connection_turn().await?;
        let tx = TenantTx::begin_single(&self.state.tenant_pool, &tenant.schema).await?;
        Ok(tx.at_version(tenant.migration_version).holding(turn))
    }

    /// The tenant, once the caller is known to be a member (or its API key).
    async fn member_tenant(&self) -> Result<&Tenant, AppError> {
        self.role().await?;
        Ok(&self.tenant()?.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::SchemaName;
    use crate::plans::PlanCatalog;
    use crate::tenancy::model::TenantStatus;

    fn on_plan(plan: &str, catalog: &PlanCatalog) -> TenantAccess {
        let id = Uuid::new_v4();
        let tenant = Tenant {
            id,
            name: "Acme".into(),
            subdomain: "acme".into(),
            domain: None,
            plan: plan.into(),
            status: TenantStatus::Active,
            expires_at: None,
            settings: serde_json::json!({}),
            owner_id: None,
            schema: SchemaName::for_tenant(id),
            migration_version: 0,
            created_at: chrono::Utc::now(),
            deleted_at: None,
        };
        TenantAccess::new(tenant, catalog)
    }

    #[test]
    fn needs_keep_the_most_demanding_role_and_every_feature_checked() {
        let catalog = PlanCatalog::builtin();
        let (enterprise, free) = (on_plan("enterprise", &catalog), on_plan("free", &catalog));
        let needs = Needs::default();
        assert!(needs.met_by(Role::Viewer, &free, &catalog).is_ok(), "nothing checked, nothing needed");
        needs.role(Role::Viewer);
        needs.role(Role::Admin);
        needs.role(Role::Member);
        assert!(needs.met_by(Role::Admin, &free, &catalog).is_ok());
        let demoted = needs.met_by(Role::Member, &free, &catalog).unwrap_err();
        assert_eq!(demoted.code(), "FORBIDDEN", "demoted below the role a guard asked for");
        needs.feature(Feature::AdvancedAnalytics);
        assert!(needs.met_by(Role::Owner, &enterprise, &catalog).is_ok());
        let downgraded = needs.met_by(Role::Owner, &free, &catalog).unwrap_err();
        assert_eq!(downgraded.code(), "FEATURE_NOT_IN_PLAN");
    }
}
