//! Schema assembly: one merged root per operation type, each feature contributing its part.

pub mod context;
pub mod documents;
pub mod guards;
pub mod scalars;

use async_graphql::{EmptySubscription, MergedObject, Schema};

use crate::api_keys::graphql::{ApiKeyMutation, ApiKeyQuery};
use crate::audit::graphql::AuditQuery;
use crate::auth::graphql::{AuthMutation, AuthQuery};
use crate::billing::graphql::BillingMutation;
use crate::health::graphql::HealthQuery;
use crate::members::graphql::{MemberMutation, MemberQuery};
use crate::plans::graphql::PlanQuery;
use crate::projects::graphql::{ProjectMutation, ProjectQuery};
use crate::secrets::graphql::{SecretMutation, SecretQuery};
use crate::tenancy::graphql::{TenantMutation, TenantQuery};

pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    HealthQuery,
    PlanQuery,
    AuthQuery,
    TenantQuery,
    MemberQuery,
    ApiKeyQuery,
    AuditQuery,
    ProjectQuery,
    SecretQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    AuthMutation,
    TenantMutation,
    MemberMutation,
    ApiKeyMutation,
    BillingMutation,
    ProjectMutation,
    SecretMutation,
);

/// The schema. Request data (`RequestCtx`) is attached per request, so this needs no state.
pub fn build_schema() -> AppSchema {
    Schema::build(QueryRoot::default(), MutationRoot::default(), EmptySubscription)
        .limit_depth(16)
        .limit_complexity(2_000)
        .finish()
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema().sdl()
}
