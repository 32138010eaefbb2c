//! All integration tests in one binary: each test gets its own server and database.

mod api_keys;
mod embedded;
mod export;
mod health;
mod helpers;
mod http;
mod identity;
mod isolation;
mod live;
mod load;
mod mail;
mod members;
mod metering;
mod migrations;
mod plans;
mod schema;
mod tenants;
mod usage;
mod validation;
