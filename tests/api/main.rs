//! All integration tests in one binary: each test gets its own server and database.

mod api_keys;
mod embedded;
mod export;
mod health;
mod helpers;
mod http;
mod identity;
mod isolation;
mod load;
mod logs;
mod mail;
mod members;
mod migrations;
mod observability;
mod plans;
mod process;
mod schema;
mod secrets;
mod shutdown;
mod tenants;
mod validation;
