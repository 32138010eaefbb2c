//! All integration tests in one binary: each test gets its own server and database.

mod api_keys;
mod billing_checkout;
mod billing_dunning;
mod billing_fake;
mod billing_support;
mod billing_webhooks;
mod embedded;
mod export;
mod health;
mod helpers;
mod http;
mod identity;
mod isolation;
mod load;
mod mail;
mod members;
mod migrations;
mod plans;
mod schema;
mod tenants;
mod validation;
