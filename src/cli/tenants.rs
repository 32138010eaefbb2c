//! `tenantry tenants …`: operator commands on tenants.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::audit::Actor;
use crate::billing::model::BillingState;
use crate::billing::repo as billing_repo;
use crate::db::TenantTx;
use crate::db::citus::{self, Moved, Node, TransferMode};
use crate::db::migrate::{LockPolicy, MigrationSet};
use crate::error::AppError;
use crate::plans::{self, PlanCatalog};
use crate::tenancy::export::{self, ControlFields, ImportAs, Imported};
use crate::tenancy::model::{Subdomain, Tenant, TenantName, TenantStatus};
use crate::tenancy::provision::{NewTenant, provision};
use crate::tenancy::{self, repo};

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Provision a tenant (schema + migrations) with no owner yet.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        subdomain: String,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Refuse all requests to a tenant (403 TENANT_SUSPENDED).
    Suspend { subdomain: String },
    /// Serve a suspended tenant again.
    Resume { subdomain: String },
    /// Move a tenant to another plan (downgrades below current usage are allowed).
    SetPlan { subdomain: String, plan: String },
    /// Bring one tenant's schema to the latest version.
    Migrate {
        subdomain: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a tenant (its control rows and a pg_dump of its schema) to one JSON file.
    Export { subdomain: String, file: PathBuf },
    /// Restore an export: as the same tenant (which must not exist), or with --subdomain as a
    /// new tenant with a new id and schema. A file whose dump touches anything but the tenant's
    /// own schema is refused whole. The file's control fields (domain verification, plan,
    /// status, expiry, Stripe customer) are not taken from it unless --trust-control-fields:
    /// a verified domain comes back pending, the plan free. Prints what it kept and dropped.
    Import {
        file: PathBuf,
        #[arg(long)]
        subdomain: Option<String>,
        /// Take the control fields from the file as they are (you vouch for the file).
        #[arg(long)]
        trust_control_fields: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant: gone for requests at once, data purged after TENANT_PURGE_AFTER_DAYS.
    /// `--purge` drops its schema and data now (irreversible). Needs --yes.
    Delete {
        subdomain: String,
        #[arg(long)]
        purge: bool,
        #[arg(long)]
        yes: bool,
    },
    /// Purge tenants deleted longer ago than TENANT_PURGE_AFTER_DAYS (the server does this hourly).
    Purge,
    /// Give every tenant without a database role its role (tenants provisioned before roles
    /// existed), in parallel; resumable, and the server keeps serving meanwhile.
    GrantRoles {
        /// Tenants granted at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        /// Print the summary as JSON (for scripts); no progress bar.
        #[arg(long)]
        json: bool,
    },
    /// Move a tenant to another node of a Citus cluster while it is served (`citus_schema_move`:
    /// logical replication, writes blocked only for the switch-over). Checks first that Citus is
    /// installed, the tenant's schema is distributed, the target is an active node and every
    /// node has `wal_level = logical`. Run it against the coordinator.
    Move {
        subdomain: String,
        /// The target node, as the cluster names it (`pg_dist_node`): HOST:PORT.
        #[arg(long)]
        to: Node,
        #[arg(long, value_enum, default_value_t = TransferMode::Auto)]
        mode: TransferMode,
    },
}

pub async fn run(
    pool: Pool,
    url: String,
    catalog: PlanCatalog,
    purge_after_days: u32,
    lock: LockPolicy,
    cmd: TenantsCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantsCommand::Export { subdomain, file } => {
            let tenant =
                export::export(&pool, &url, &subdomain, &file).await.map_err(AppError::into_anyhow)?;
            println!("exported tenant {} ({}) to {}", tenant.subdomain, tenant.id, file.display());
        }
        TenantsCommand::Import { file, subdomain, trust_control_fields, json } => {
            let target = match subdomain {
                Some(sub) => ImportAs::New(Subdomain::parse(&sub).map_err(AppError::into_anyhow)?),
                None => ImportAs::Same,
            };
            let trust = if trust_control_fields { ControlFields::Trust } else { ControlFields::Reset };
            let imported =
                export::import_with(&url, &file, target, trust).await.map_err(AppError::into_anyhow)?;
            print_imported(&imported, trust, json)?;
        }
        TenantsCommand::Create { name, subdomain } => {
            let new = NewTenant {
                name: TenantName::parse(&name).map_err(AppError::into_anyhow)?,
                subdomain: Subdomain::parse(&subdomain).map_err(AppError::into_anyhow)?,
                owner: None,
            };
            let tenant =
                provision(&pool, &MigrationSet::tenant(), new).await.map_err(AppError::into_anyhow)?;
            println!("created tenant {} ({}) in schema {}", tenant.subdomain, tenant.id, tenant.schema);
        }
        TenantsCommand::List { json } => {
            let client = pool.get().await?;
            let tenants = repo::list_all(&client).await.map_err(AppError::into_anyhow)?;
            let billing = billing_repo::list_states(&client).await.map_err(AppError::into_anyhow)?;
            let billing = billing.into_iter().map(|b| (b.tenant_id, b)).collect();
            print_list(&tenants, &billing, json)?;
        }
        TenantsCommand::Suspend { subdomain } => {
            tenancy::set_status(&pool, &subdomain, TenantStatus::Suspended)
                .await
                .map_err(AppError::into_anyhow)?;
            println!("suspended {subdomain}");
        }
        TenantsCommand::Resume { subdomain } => {
            tenancy::set_status(&pool, &subdomain, TenantStatus::Active)
                .await
                .map_err(AppError::into_anyhow)?;
            println!("resumed {subdomain}");
        }
        TenantsCommand::SetPlan { subdomain, plan } => {
            let tenant = tenancy::by_subdomain(&pool, &subdomain).await.map_err(AppError::into_anyhow)?;
            plans::change_plan(&pool, &catalog, tenant.id, &plan).await.map_err(AppError::into_anyhow)?;
            println!("{subdomain} is now on the {plan} plan (was {})", tenant.plan);
        }
        TenantsCommand::Migrate { subdomain, json } => {
            let tenant = tenancy::by_subdomain(&pool, &subdomain).await.map_err(AppError::into_anyhow)?;
            return super::migrate::migrate_and_report(
                &pool,
                &MigrationSet::tenant(),
                1,
                Some(tenant.id),
                lock,
                json,
            )
            .await;
        }
        TenantsCommand::Delete { subdomain, purge, yes } => {
            if !yes {
                eprintln!("this deletes tenant {subdomain:?} and all its data; re-run with --yes to confirm");
                return Ok(ExitCode::FAILURE);
            }
            let tenant = tenancy::by_subdomain(&pool, &subdomain).await.map_err(AppError::into_anyhow)?;
            if purge {
                tenancy::purge(&pool, &tenant).await.map_err(AppError::into_anyhow)?;
                println!("purged tenant {} ({}) and its data", tenant.subdomain, tenant.id);
            } else {
                let mut tx = TenantTx::begin(&pool, &tenant.schema).await.map_err(AppError::into_anyhow)?;
                tenancy::soft_delete(&mut tx, Actor::System, tenant.id)
                    .await
                    .map_err(AppError::into_anyhow)?;
                tx.commit().await.map_err(AppError::into_anyhow)?;
                println!(
                    "deleted tenant {}; its data is purged after {purge_after_days} days",
                    tenant.subdomain
                );
            }
        }
        TenantsCommand::GrantRoles { jobs, json } => {
            return super::migrate::grant_roles_and_report(&pool, usize::from(jobs), json).await;
        }
        TenantsCommand::Move { subdomain, to, mode } => {
            let tenant = tenancy::by_subdomain(&pool, &subdomain).await.map_err(AppError::into_anyhow)?;
            let started = std::time::Instant::now();
            match citus::move_schema(&pool, &tenant.schema, &to, mode).await? {
                Moved::AlreadyThere => println!("{subdomain} is already on {to}"),
                Moved::From(from) => println!(
                    "moved {subdomain} ({}) from {from} to {to} in {:.1} s",
                    tenant.schema,
                    started.elapsed().as_secs_f64()
                ),
            }
        }
        TenantsCommand::Purge => {
            let grace = chrono::Duration::days(i64::from(purge_after_days));
            let purged = tenancy::purge_deleted(&pool, grace).await.map_err(AppError::into_anyhow)?;
            println!("purged {purged} deleted tenant(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_imported(imported: &Imported, trust: ControlFields, json: bool) -> anyhow::Result<()> {
    let t = &imported.tenant;
    let trusted = trust == ControlFields::Trust;
    if json {
        let report = serde_json::json!({
            "id": t.id, "subdomain": t.subdomain, "schema": t.schema.as_str(),
            "memberships": imported.memberships, "skipped_memberships": imported.skipped_memberships,
            "control_fields_trusted": trusted, "control_fields": imported.control,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "imported tenant {} ({}) into schema {} with {} memberships ({} skipped: unknown users)",
        t.subdomain, t.id, t.schema, imported.memberships, imported.skipped_memberships
    );
    if trusted {
        println!("control fields taken from the file (--trust-control-fields):");
    } else {
        println!("control fields not taken from the file (--trust-control-fields would keep them):");
    }
    for field in &imported.control {
        if field.kept {
            println!("  kept     {}: {}", field.field, field.restored);
        } else {
            println!("  dropped  {}: {} (now {})", field.field, field.in_file, field.restored);
        }
    }
    if imported.tenant.domain.is_none()
        && imported.control.iter().any(|f| f.field == "domain" && !f.restored.is_null())
    {
        println!("  the custom domain is pending: the tenant proves it again with verifyDomain");
    }
    println!("  billing state is not in an export: the tenant has none until Stripe reports it");
    Ok(())
}

fn print_list(tenants: &[Tenant], billing: &HashMap<Uuid, BillingState>, json: bool) -> anyhow::Result<()> {
    let none = |t: &Tenant| BillingState::none(t.id);
    if json {
        let rows: Vec<_> = tenants
            .iter()
            .map(|t| {
                let b = billing.get(&t.id).cloned().unwrap_or_else(|| none(t));
                serde_json::json!({
                    "id": t.id, "name": t.name, "subdomain": t.subdomain, "domain": t.domain,
                    "plan": t.plan, "status": t.status.as_db(), "expires_at": t.expires_at,
                    "schema": t.schema.as_str(), "migration_version": t.migration_version,
                    "created_at": t.created_at, "deleted_at": t.deleted_at,
                    "billing": {
                        "status": b.status.as_str(), "current_period_end": b.current_period_end,
                        "cancel_at_period_end": b.cancel_at_period_end, "past_due_since": b.past_due_since,
                    },
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<10} {:<10} {:<10} {:<11} {:>7}  name",
        "subdomain", "status", "plan", "billing", "period end", "version"
    );
    for t in tenants {
        let b = billing.get(&t.id).cloned().unwrap_or_else(|| none(t));
        let mut period_end =
            b.current_period_end.map(|at| at.format("%Y-%m-%d").to_string()).unwrap_or_default();
        if b.cancel_at_period_end {
            period_end.push('*');
        }
        println!(
            "{:<24} {:<10} {:<10} {:<10} {:<11} {:>7}  {}",
            t.subdomain,
            t.status.as_db(),
            t.plan,
            b.status.as_str(),
            period_end,
            t.migration_version,
            t.name
        );
    }
    Ok(())
}
