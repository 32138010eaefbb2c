//! tenantry: a multi-tenant SaaS backend — one GraphQL API, one PostgreSQL schema per tenant.

// `unsafe` only where a measured gain or a foreign call needs it: each such site allows it
// itself, with a `// SAFETY:` argument.
#![deny(unsafe_code)]

pub mod api_keys;
pub mod app;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod graphql;
pub mod health;
pub mod http;
pub mod invitations;
pub mod jobs;
pub mod mail;
pub mod members;
pub mod plans;
pub mod projects;
pub mod request;
pub mod secrets;
pub mod sso;
pub mod state;
pub mod telemetry;
pub mod tenancy;
pub mod usage;
