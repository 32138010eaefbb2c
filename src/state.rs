//! `AppState`: the handles every request shares — pools, caches, plan catalog, services and the
//! settings features read.
//!
//! It sits above the features (it holds their handles) and below the request context; no
//! feature imports it: a feature's functions take the handles they need. It is built by the
//! assembly (`app::services`) and knows nothing of GraphQL or HTTP.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;

use crate::api_keys::ApiKeyCache;
use crate::auth::hasher::Hasher;
use crate::auth::throttle::Throttles;
use crate::auth::token::TokenKeys;
use crate::billing::Billing;
use crate::billing::origins::AllowedOrigins;
use crate::crypto::Keyring;
use crate::db::TenantPool;
use crate::db::migrate::MigrationSet;
use crate::db::migration_lag::MigrationLag;
use crate::mail::Mailer;
use crate::members::MemberCache;
use crate::plans::{AccessCache, PlanCatalog};
use crate::sso::Sso;
use crate::tenancy::domain_proof::DomainProof;
use crate::tenancy::resolve::TenantCache;
use crate::usage::Usage;

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    /// The control plane's pool (users, tenants, memberships, keys…).
    pub pool: Pool,
    /// The pool tenant transactions (`TenantTx`) use: the same pool, except behind a
    /// transaction pooler (DATABASE_POOLER=transaction), where it goes through the pooler.
    pub tenant_pool: TenantPool,
    pub base_domain: String,
    pub tokens: TokenKeys,
    /// Encrypts and decrypts stored secrets.
    pub keys: Keyring,
    pub tenants: TenantCache,
    pub access: AccessCache,
    pub plans: PlanCatalog,
    pub members: MemberCache,
    pub api_keys: ApiKeyCache,
    pub tenant_migrations: MigrationSet,
    /// Tenants behind `tenant_migrations`, counted periodically by `serve`.
    pub migration_lag: MigrationLag,
    /// Pooled connections one request may hold at once (`DB_CONNECTIONS_PER_REQUEST`).
    pub connections_per_request: usize,
    pub mailer: Mailer,
    /// Base URL for mailed links.
    pub public_url: String,
    pub require_verified_email: bool,
    /// Cluster-wide sign-up and mail throttles.
    pub throttles: Throttles,
    /// Dedicated threads for password hashing.
    pub hasher: Hasher,
    /// How long a deleted tenant's data is kept.
    pub purge_after: chrono::Duration,
    /// Warm tenant schemas to keep ready (`TENANT_WARM_POOL`).
    pub warm_pool: usize,
    /// Tenant roles to keep made ahead (`TENANT_ROLES_AHEAD`).
    pub roles_ahead: usize,
    pub started_at: Instant,
    /// Memory budget the health check compares RSS with.
    pub memory_limit_bytes: Option<u64>,
    /// Request counts, quotas, rate limits, gauges and live usage.
    pub usage: Usage,
    /// Stripe client and billing settings.
    pub billing: Billing,
    /// Checks custom-domain claims (`verifyDomain`).
    pub domain_proof: DomainProof,
    /// Single sign-on: the providers' cache and the callback URL.
    pub sso: Sso,
    /// Where the frontend may be sent back to after SSO (`APP_ALLOWED_ORIGINS`).
    pub app_origins: AllowedOrigins,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Wraps handles the assembly built (`app::services::app_state`).
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// What sign-up, sign-in and the password and verification flows use.
    pub fn identity(&self) -> crate::auth::Handles<'_> {
        crate::auth::Handles {
            pool: &self.pool,
            tokens: &self.tokens,
            keys: &self.keys,
            hasher: &self.hasher,
            throttles: &self.throttles,
            public_url: &self.public_url,
        }
    }

    /// What checkout, the customer portal and Stripe's events use.
    pub fn payments(&self) -> crate::billing::Handles<'_> {
        crate::billing::Handles { pool: &self.pool, plans: &self.plans, billing: &self.billing }
    }

    /// What single sign-on uses.
    pub fn single_sign_on(&self) -> crate::sso::Handles<'_> {
        crate::sso::Handles {
            pool: &self.pool,
            keys: &self.keys,
            tokens: &self.tokens,
            plans: &self.plans,
            access: &self.access,
            sso: &self.sso,
            domain_proof: &self.domain_proof,
            base_domain: &self.base_domain,
            public_url: &self.public_url,
        }
    }

    /// What creating a tenant uses.
    pub fn provisioning(&self) -> crate::tenancy::Handles<'_> {
        crate::tenancy::Handles {
            pool: &self.pool,
            tenant_migrations: &self.tenant_migrations,
            tenants: &self.tenants,
            members: &self.members,
            require_verified_email: self.require_verified_email,
        }
    }
}
