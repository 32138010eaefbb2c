//! All integration tests in one binary: each test gets its own server and database.

mod api_keys;
mod embedded;
mod export;
mod freshness;
mod health;
mod helpers;
mod http;
mod identity;
mod isolation;
mod live_migrations;
mod load;
mod mail;
mod members;
mod migrations;
mod plans;
mod playground;
mod schema;
mod statements;
mod tenants;
mod validation;
