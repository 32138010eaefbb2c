//! All integration tests in one binary: each test gets its own server and database.

mod api_keys;
mod bench_guard;
#[allow(dead_code, reason = "the tests use the bench harness's database guard only")]
#[path = "../../benches/support/mod.rs"]
mod bench_support;
mod domains;
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
mod migration_locks;
mod migrations;
mod outage;
mod plans;
mod playground;
mod product;
mod schema;
mod statements;
mod tenants;
mod validation;
