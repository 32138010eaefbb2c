//! All integration tests in one binary: each test gets its own server and database.

mod embedded;
mod export;
mod health;
mod helpers;
mod http;
mod isolation;
mod load;
mod migrations;
mod schema;
mod tenants;
mod validation;
