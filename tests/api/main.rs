//! All integration tests in one binary: each test gets its own server and database.

mod embedded;
mod health;
mod helpers;
mod http;
mod isolation;
mod load;
mod migrations;
mod plans;
mod schema;
mod tenants;
mod validation;
