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

use super::dump::SchemaDump;
use super::model::{Subdomain, Tenant};
use super::{by_subdomain, repo};
use crate::db::SchemaName;
use crate::db::migrate::lock_schema;
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

/// Restores the export at `path` on the database at `url`.
#[tracing::instrument(skip_all, fields(tenant.id))]
pub async fn import(url: &str, path: &Path, target: ImportAs) -> Result<Imported, AppError> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading {}", path.display()))
        .map_err(AppError::Internal)?;
    let file: ExportFile =
        serde_json::from_slice(&bytes).context("not a tenantry tenant export").map_err(AppError::Internal)?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(AppError::validation("file", format!("expected {FORMAT} version {VERSION}")));
    }
    let old_schema = SchemaName::parse(&file.schema).map_err(AppError::internal)?;
    let mut row = file.tenant;
    let (id, schema) = match &target {
        ImportAs::Same => {
            let id: Uuid = serde_json::from_value(row["id"].clone()).map_err(AppError::internal)?;
            (id, old_schema.clone())
        }
        ImportAs::New(subdomain) => {
            let id = Uuid::new_v4();
            row["id"] = Value::String(id.to_string());
            row["subdomain"] = Value::String(subdomain.as_str().to_owned());
            row["schema_name"] = Value::String(SchemaName::for_tenant(id).as_str().to_owned());
            // A custom domain and a billing identity belong to the original tenant.
            row["domain"] = Value::Null;
            row["stripe_customer_id"] = Value::Null;
            row["created_at"] = Value::String(Utc::now().to_rfc3339());
            (id, SchemaName::for_tenant(id))
        }
    };
    tracing::Span::current().record("tenant.id", tracing::field::display(id));
    let dump = SchemaDump::from_sql(file.dump).renamed(&old_schema, &schema);

    // A connection of its own, closed afterwards: the dump changes session settings (it empties
    // the search_path) that a connection shared with requests must not carry.
    let own = crate::db::build_pool(url, 1).map_err(AppError::Internal)?;
    let mut client = own.get().await?;
    let tx = client.transaction().await?;
    repo::insert_exported(&tx, &row).await?;
    let memberships = repo::insert_exported_memberships(&tx, id, &file.memberships).await?;
    lock_schema(&tx, &schema).await?;
    dump.restore(&tx).await.map_err(AppError::Internal)?;
    crate::db::notify::tenant_changed(&tx, id).await?;
    let tenant = repo::find_by_id(&tx, id).await?.ok_or(AppError::NotFound("imported tenant"))?;
    tx.commit().await?;
    drop(deadpool_postgres::Object::take(client));
    own.close();
    tracing::info!("tenant imported");
    let total = file.memberships.as_array().map_or(0, Vec::len);
    Ok(Imported {
        tenant,
        memberships,
        skipped_memberships: total.saturating_sub(usize::try_from(memberships).unwrap_or(0)),
    })
}
