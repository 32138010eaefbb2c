//! All integration tests in one binary: each test gets its own server and database.

mod api_key_creators;
mod api_keys;
mod bench_guard;
#[allow(dead_code, reason = "the tests use the bench harness's database guard only")]
#[path = "../../benches/support/mod.rs"]
mod bench_support;
mod billing_checkout;
mod billing_dunning;
mod billing_fake;
mod billing_support;
mod billing_webhooks;
mod domains;
mod embedded;
mod export;
mod freshness;
mod health;
mod helpers;
mod http;
mod identity;
mod identity_abuse;
mod isolation;
mod live;
mod live_migrations;
mod load;
mod logs;
mod mail;
mod members;
mod metering;
mod migration_locks;
mod migrations;
mod observability;
mod outage;
mod pgbouncer;
mod plans;
mod playground;
mod process;
mod product;
mod schema;
mod secrets;
mod shutdown;
mod statements;
mod tenants;
mod usage;
mod validation;
