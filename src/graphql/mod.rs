//! The GraphQL layer: each feature's resolvers (one file per feature, above the request context
//! and the features' services) and the schema assembled from them: one merged root per operation
//! type, each feature contributing its part.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod documents;
pub mod health;
pub mod input_check;
pub mod members;
pub mod plans;
pub mod projects;
pub mod scalars;
pub mod secrets;
pub mod sso;
pub mod tenancy;
pub mod trusted;
pub mod usage;

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder};

use self::api_keys::{ApiKeyMutation, ApiKeyQuery};
use self::audit::AuditQuery;
use self::auth::{AuthMutation, AuthQuery};
use self::billing::BillingMutation;
use self::health::HealthQuery;
use self::members::{MemberMutation, MemberQuery};
use self::plans::PlanQuery;
use self::projects::{ProjectMutation, ProjectQuery};
use self::secrets::{SecretMutation, SecretQuery};
use self::sso::{SsoMutation, SsoQuery};
use self::tenancy::{TenantMutation, TenantQuery};
use self::usage::{UsageQuery, UsageSubscription};

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
    SsoQuery,
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
    SsoMutation,
);

#[derive(MergedSubscription, Default)]
pub struct SubscriptionRoot(UsageSubscription);

/// The schema with introspection. Request data (`RequestCtx`) is attached per request, so this
/// needs no state.
pub fn build_schema() -> AppSchema {
    build_schema_for(true)
}

/// The schema, answering introspection and suggesting field names only if `introspection`
/// (`INTROSPECTION`; off in production by default). Variables are coerced and checked before anything runs.
pub fn build_schema_for(introspection: bool) -> AppSchema {
    builder_for(introspection).finish()
}

/// The schema's builder: roots, limits, the input check's types, introspection as asked.
/// (`documents::Documents` finishes it twice: strict and fast validation.)
pub(crate) fn builder_for(introspection: bool) -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
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
    // Without introspection, "Did you mean …?" would describe the schema field by field.
    if introspection { schema } else { schema.disable_introspection().disable_suggestions() }
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema().sdl()
}
