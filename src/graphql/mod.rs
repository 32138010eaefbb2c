//! Schema assembly: one merged root per operation type, each feature contributing its part.

pub mod context;
pub mod documents;
pub mod guards;
pub mod input_check;
pub mod scalars;

use async_graphql::{MergedObject, MergedSubscription, Schema};

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
use crate::usage::graphql::{UsageQuery, UsageSubscription};

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

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
    UsageQuery,
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

#[derive(MergedSubscription, Default)]
pub struct SubscriptionRoot(UsageSubscription);

/// The schema with introspection. Request data (`RequestCtx`) is attached per request, so this
/// needs no state.
pub fn build_schema() -> AppSchema {
    build_schema_for(true)
}

/// The schema, answering introspection only if `introspection` (`INTROSPECTION`; off in
/// production by default). Variables are coerced and checked before anything runs.
pub fn build_schema_for(introspection: bool) -> AppSchema {
    let builder = || {
        Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot::default())
            .limit_depth(16)
            .limit_complexity(2_000)
    };
    let types = input_check::capture_registry(
        |capture| builder().extension(capture).finish(),
        |schema| Box::pin(async move { schema.execute("{ __typename }").await }),
    );
    let mut schema = builder();
    if let Some(types) = types {
        schema = schema.data(types);
    }
    if introspection { schema.finish() } else { schema.disable_introspection().finish() }
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema().sdl()
}
