//! Database plumbing: the pool, tenant scoping, embedded Postgres, migrations, notifications.

pub mod citus;
pub mod embedded;
pub mod migrate;
pub mod migration_lag;
pub mod notify;
pub mod pg_bin;
mod pool;
pub mod rows;
mod schema_name;
pub mod script;
mod statements;
pub mod supervise;
pub mod tenant_role;
mod tenant_tx;
pub mod unnamed;

pub use pool::{Retire, build_pool, build_pool_retiring, check_reachable};
pub use schema_name::{InvalidSchemaName, SchemaName};
pub use statements::Statements;
pub use tenant_tx::{Control, TenantTx, guard};
pub use unnamed::TenantPool;
