//! Per-tenant export and import. An export is one JSON file: the tenant's `control.tenants` row,
//! its memberships, and a plain `pg_dump` of its schema (see `docs/export.md`).
//!
//! Import restores into the same tenant (same id, subdomain and schema; it must not exist) or
//! into a new one (new id, so a new schema name, and a new subdomain). Rows, schema and data
//! commit in one transaction: a failed import leaves nothing behind. The control fields that
//! stand for a proof or a payment (domain verification, plan, status, expiry, Stripe id) are
//! not taken from the file unless the operator trusts it (`ControlFields::Trust`).

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::dump::{Restore, SchemaDump};
use super::model::{Domain, Subdomain, Tenant, TenantName};
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

/// Whether the file's control fields are believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFields {
    /// The default: a verified domain comes back pending (to be proven again), the plan is
    /// `free` without expiry, the status active (a suspension is kept: it only takes access
    /// away), and there is no Stripe customer.
    Reset,
    /// Take them from the file as they are (`--trust-control-fields`): the operator vouches
    /// for the file. A copy still gets no domain and no Stripe customer (the original's).
    Trust,
}

/// The plan a tenant gets when the file's is not trusted (the plan new tenants start on).
pub const DEFAULT_PLAN: &str = "free";

/// One control field of an import: what the file said and what the tenant got.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlField {
    pub field: &'static str,
    pub in_file: Value,
    pub restored: Value,
    /// `restored` is what the file said.
    pub kept: bool,
}

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    pub tenant: Tenant,
    pub memberships: u64,
    /// Memberships of users that do not exist in this database.
    pub skipped_memberships: usize,
    /// The control fields, kept or dropped, in a fixed order.
    pub control: Vec<ControlField>,
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
    /// The verified domain.
    pub domain: Option<String>,
    /// A claim awaiting proof, and its token (absent from files written before V14).
    #[serde(default)]
    pub pending_domain: Option<String>,
    #[serde(default)]
    pub domain_token: Option<String>,
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
/// The file's control fields are not trusted (`ControlFields::Reset`); see `import_with`.
pub async fn import(url: &str, path: &Path, target: ImportAs) -> Result<Imported, AppError> {
    import_with(url, path, target, ControlFields::Reset).await
}

/// `import`, with the file's control fields trusted or not.
#[tracing::instrument(skip_all, fields(tenant.id))]
pub async fn import_with(
    url: &str,
    path: &Path,
    target: ImportAs,
    control_fields: ControlFields,
) -> Result<Imported, AppError> {
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
    TenantName::parse(&tenant.name)?;
    match &target {
        ImportAs::Same if old_schema != SchemaName::for_tenant(tenant.id) => {
            return Err(refused(format!(
                "the file's schema {old_schema} is not the schema of its tenant {}; a tenant's schema \
                 is always t_ and its id",
                tenant.id
            )));
        }
        ImportAs::Same => {
            // The file's own subdomain, checked as `createTenant` checks it.
            Subdomain::parse(&tenant.subdomain)?;
        }
        ImportAs::New(subdomain) => {
            tenant.id = Uuid::new_v4();
            tenant.subdomain = subdomain.as_str().to_owned();
            tenant.created_at = Utc::now();
        }
    }
    let control = settle_control_fields(&mut tenant, &target, control_fields);
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
    // Restored objects are owned by the login role, as provisioned ones; the role is granted alike.
    crate::db::tenant_role::grant(&tx, &schema).await?;
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
        control,
    })
}

/// The control fields as `tenant` will be inserted, and the report of what the file said.
/// Untrusted, nothing that stands for a proof or a payment comes from the file: a verified
/// domain (or else a pending claim that is a host name) comes back as a pending claim with a
/// fresh token, the plan is `DEFAULT_PLAN` without expiry, the status is active unless the
/// file says suspended, and there is no Stripe customer. A copy never takes the original's
/// domain or Stripe customer.
fn settle_control_fields(
    tenant: &mut ExportedTenant,
    target: &ImportAs,
    trust: ControlFields,
) -> Vec<ControlField> {
    let domain_view = |t: &ExportedTenant| match (&t.domain, &t.pending_domain) {
        (Some(verified), Some(pending)) => format!("{verified} (verified), {pending} (pending)"),
        (Some(verified), None) => format!("{verified} (verified)"),
        (None, Some(pending)) => format!("{pending} (pending)"),
        (None, None) => String::new(),
    };
    let view = |t: &ExportedTenant| {
        let domain = domain_view(t);
        [
            ("domain", if domain.is_empty() { Value::Null } else { Value::from(domain) }),
            ("plan", Value::from(t.plan.clone())),
            ("status", Value::from(t.status.clone())),
            ("expires_at", t.expires_at.map_or(Value::Null, |at| Value::from(at.to_rfc3339()))),
            ("stripe_customer_id", t.stripe_customer_id.clone().map_or(Value::Null, Value::from)),
        ]
    };
    let in_file = view(tenant);
    let copy = matches!(target, ImportAs::New(_));
    if copy {
        // A custom domain and a billing identity belong to the original tenant.
        tenant.domain = None;
        tenant.pending_domain = None;
        tenant.domain_token = None;
        tenant.stripe_customer_id = None;
    }
    if trust == ControlFields::Reset {
        // Only a host name is claimed again; it is proven again before it routes.
        let claim = tenant.domain.take().or(tenant.pending_domain.take());
        tenant.pending_domain = claim.filter(|d| Domain::parse(d, "").is_ok_and(|p| p.as_str() == d));
        tenant.domain_token = None;
        tenant.plan = DEFAULT_PLAN.to_owned();
        tenant.expires_at = None;
        if tenant.status != "suspended" {
            tenant.status = "active".to_owned();
        }
        tenant.stripe_customer_id = None;
    }
    if tenant.pending_domain.is_some() && tenant.domain_token.is_none() {
        tenant.domain_token = Some(Uuid::new_v4().simple().to_string());
    }
    in_file
        .into_iter()
        .zip(view(tenant))
        .map(|((field, in_file), (_, restored))| ControlField {
            field,
            kept: in_file == restored,
            in_file,
            restored,
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(changes: Value) -> ExportedTenant {
        let mut row = serde_json::json!({
            "id": Uuid::new_v4(), "name": "Acme", "subdomain": "acme", "domain": null, "plan": "free",
            "status": "active", "expires_at": null, "settings": {}, "stripe_customer_id": null,
            "owner_id": null, "schema_name": "t_0", "migration_version": 2,
            "created_at": "2026-01-01T00:00:00Z",
        });
        for (key, value) in changes.as_object().unwrap() {
            row[key] = value.clone();
        }
        serde_json::from_value(row).unwrap()
    }

    fn fields(report: &[ControlField]) -> Vec<(&str, bool)> {
        report.iter().map(|f| (f.field, f.kept)).collect()
    }

    #[test]
    fn untrusted_control_fields_keep_only_restrictions_and_claims_to_prove_again() {
        let forged = serde_json::json!({
            "domain": "shop.test", "plan": "enterprise", "status": "expired",
            "expires_at": "2099-01-01T00:00:00Z", "stripe_customer_id": "cus_1",
        });
        let mut t = exported(forged.clone());
        let report = settle_control_fields(&mut t, &ImportAs::Same, ControlFields::Reset);
        assert_eq!((t.domain.as_deref(), t.pending_domain.as_deref()), (None, Some("shop.test")));
        assert!(t.domain_token.as_ref().is_some_and(|token| token.len() == 32));
        assert_eq!((t.plan.as_str(), t.status.as_str(), t.expires_at), ("free", "active", None));
        assert_eq!(t.stripe_customer_id, None);
        let all_dropped =
            ["domain", "plan", "status", "expires_at", "stripe_customer_id"].map(|f| (f, false));
        assert_eq!(fields(&report), all_dropped);

        // A suspension only takes access away: it stays. A pending claim that is an address
        // (made before claims were parsed as browsers parse them) is not claimed again.
        let mut t = exported(
            serde_json::json!({ "status": "suspended", "pending_domain": "127.1", "domain_token": "x" }),
        );
        settle_control_fields(&mut t, &ImportAs::Same, ControlFields::Reset);
        assert_eq!((t.status.as_str(), t.pending_domain, t.domain_token), ("suspended", None, None));

        // Trusted: as the file says; a copy still gets neither the domain nor the customer.
        let mut t = exported(forged.clone());
        let report = settle_control_fields(&mut t, &ImportAs::Same, ControlFields::Trust);
        assert!(report.iter().all(|f| f.kept), "{report:?}");
        assert_eq!(
            (t.domain.as_deref(), t.stripe_customer_id.as_deref()),
            (Some("shop.test"), Some("cus_1"))
        );
        let mut t = exported(forged);
        let copy = ImportAs::New(Subdomain::parse("copy").unwrap());
        let report = settle_control_fields(&mut t, &copy, ControlFields::Trust);
        assert_eq!((t.domain, t.pending_domain, t.stripe_customer_id), (None, None, None));
        assert_eq!((t.plan.as_str(), t.status.as_str()), ("enterprise", "expired"));
        assert_eq!(fields(&report)[0], ("domain", false));
    }
}
