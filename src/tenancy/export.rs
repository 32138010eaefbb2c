//! Per-tenant export and import. An export is one JSON file: the tenant's `control.tenants` row,
//! its memberships, and a plain `pg_dump` of its schema (see `docs/export.md`).
//!
//! Import restores into the same tenant (same id, subdomain and schema; it must not exist) or
//! into a new one (new id, so a new schema name, and a new subdomain). Rows, schema and data
//! commit in one transaction: a failed import leaves nothing behind.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::dump::{Restore, SchemaDump};
use super::model::{Subdomain, Tenant, TenantName};
use super::{by_subdomain, repo};
use crate::db::migrate::lock_schema;
use crate::db::{SchemaName, citus};
use crate::error::AppError;

const FORMAT: &str = "tenantry-tenant-export";
const VERSION: u32 = 1;

/// The file's shape. `tenant` and `memberships` are the rows as `to_jsonb` writes them.
#[derive(Serialize, Deserialize)]
struct ExportFile {
    format: String,
    version: u32,
    exported_at: DateTime<Utc>,
    schema: String,
    tenant: Value,
    memberships: Value,
    dump: String,
}

/// Where an import goes.
pub enum ImportAs {
    /// The exported tenant itself, with its id, subdomain and schema.
    Same,
    /// A copy under a new id (and so a new schema) and this subdomain.
    New(Subdomain),
}

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    pub tenant: Tenant,
    pub memberships: u64,
    /// Memberships of users that do not exist in this database.
    pub skipped_memberships: usize,
}

/// Writes tenant `subdomain` to `path`. For a consistent copy of a busy tenant, suspend it first.
#[tracing::instrument(skip_all, fields(tenant.id))]
pub async fn export(
    pool: &deadpool_postgres::Pool,
    url: &str,
    subdomain: &str,
    path: &Path,
) -> Result<Tenant, AppError> {
    let tenant = by_subdomain(pool, subdomain).await?;
    tracing::Span::current().record("tenant.id", tracing::field::display(tenant.id));
    let (row, memberships) = repo::export_rows(&pool.get().await?, tenant.id).await?;
    let dump = SchemaDump::take(url, &tenant.schema).await.map_err(AppError::Internal)?;
    let file = ExportFile {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: Utc::now(),
        schema: tenant.schema.as_str().to_owned(),
        tenant: row,
        memberships,
        dump: dump.as_sql().to_owned(),
    };
    let bytes = serde_json::to_vec(&file).map_err(AppError::internal)?;
    tokio::fs::write(path, bytes)
        .await
        .with_context(|| format!("writing {}", path.display()))
        .map_err(AppError::Internal)?;
    tracing::info!("tenant exported");
    Ok(tenant)
}

/// A `control.tenants` row as the export file carries it (`to_jsonb`); other fields are ignored.
#[derive(Debug, Deserialize)]
pub struct ExportedTenant {
    pub id: Uuid,
    pub name: String,
    pub subdomain: String,
    pub domain: Option<String>,
    pub plan: String,
    pub status: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub settings: Value,
    pub stripe_customer_id: Option<String>,
    pub owner_id: Option<Uuid>,
    pub schema_name: String,
    pub migration_version: i32,
    pub created_at: DateTime<Utc>,
}

/// A `control.memberships` row as the export file carries it.
#[derive(Debug, Deserialize)]
pub struct ExportedMembership {
    pub user_id: Uuid,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

fn refused(message: impl Into<String>) -> AppError {
    AppError::validation("file", message)
}

/// Restores the export at `path` on the database at `url`. The file is operator input: the
/// schema is derived from the tenant id (never taken from the file), and the dump must touch
/// nothing but that schema (`SchemaDump::plan`); a refused file changes nothing.
#[tracing::instrument(skip_all, fields(tenant.id))]
pub async fn import(url: &str, path: &Path, target: ImportAs) -> Result<Imported, AppError> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading {}", path.display()))
        .map_err(AppError::Internal)?;
    let file: ExportFile = serde_json::from_slice(&bytes)
        .map_err(|err| refused(format!("not a tenantry tenant export: {err}")))?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(refused(format!("expected {FORMAT} version {VERSION}")));
    }
    let mut tenant: ExportedTenant = serde_json::from_value(file.tenant)
        .map_err(|err| refused(format!("the tenant row is not readable: {err}")))?;
    let memberships: Vec<ExportedMembership> = serde_json::from_value(file.memberships)
        .map_err(|err| refused(format!("the memberships are not readable: {err}")))?;
    let old_schema = SchemaName::parse(&file.schema).map_err(|err| refused(err.to_string()))?;
    match &target {
        ImportAs::Same if old_schema != SchemaName::for_tenant(tenant.id) => {
            return Err(refused(format!(
                "the file's schema {old_schema} is not the schema of its tenant {}; a tenant's schema \
                 is always t_ and its id",
                tenant.id
            )));
        }
        ImportAs::Same => {
            // The file's own names, checked as `createTenant` checks them.
            TenantName::parse(&tenant.name)?;
            Subdomain::parse(&tenant.subdomain)?;
        }
        ImportAs::New(subdomain) => {
            tenant.id = Uuid::new_v4();
            tenant.subdomain = subdomain.as_str().to_owned();
            // A custom domain and a billing identity belong to the original tenant.
            tenant.domain = None;
            tenant.stripe_customer_id = None;
            tenant.created_at = Utc::now();
        }
    }
    let schema = SchemaName::for_tenant(tenant.id);
    tenant.schema_name = schema.as_str().to_owned();
    tracing::Span::current().record("tenant.id", tracing::field::display(tenant.id));
    let restore = SchemaDump::from_sql(file.dump)
        .renamed(&old_schema, &schema)
        .plan(&schema)
        .map_err(|err| refused(err.to_string()))?;

    // A connection of its own, closed afterwards: the restore's settings are transaction-local,
    // and a long restore should not hold one of the request pool's connections.
    let own = crate::db::build_pool(url, 1).map_err(AppError::Internal)?;
    let mut client = own.get().await?;
    let tx = client.transaction().await?;
    let mut people: Vec<Uuid> = memberships.iter().map(|m| m.user_id).collect();
    people.extend(tenant.owner_id);
    let known = repo::existing_users(&tx, &people).await?;
    tenant.owner_id = tenant.owner_id.filter(|owner| known.contains(owner));
    repo::insert_exported(&tx, &tenant).await?;
    let mut inserted = 0;
    for membership in memberships.iter().filter(|m| known.contains(&m.user_id)) {
        repo::insert_exported_membership(&tx, tenant.id, membership).await?;
        inserted += 1;
    }
    lock_schema(&tx, &schema).await?;
    restore_schema(&tx, &schema, &restore).await?;
    crate::db::notify::tenant_changed(&tx, tenant.id).await?;
    let imported = repo::find_by_id(&tx, tenant.id).await?.ok_or(AppError::NotFound("imported tenant"))?;
    tx.commit().await?;
    drop(deadpool_postgres::Object::take(client));
    own.close();
    tracing::info!("tenant imported");
    Ok(Imported {
        tenant: imported,
        memberships: inserted,
        skipped_memberships: memberships.len() - usize::try_from(inserted).unwrap_or(0),
    })
}

/// Runs the restore. Under Citus the schema is restored as a plain local schema (Citus refuses
/// some of pg_dump's statements on distributed tables, such as adding an identity column) and
/// distributed before commit when new schemas are distributed here.
async fn restore_schema(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
    restore: &Restore,
) -> Result<(), AppError> {
    let distribute = if citus::installed(tx).await? {
        let sharding = citus::schema_sharding_on(tx).await?;
        citus::keep_schemas_local(tx).await?;
        sharding
    } else {
        false
    };
    restore.run(tx).await.map_err(AppError::Internal)?;
    if distribute {
        citus::distribute(tx, schema).await?;
    }
    Ok(())
}
