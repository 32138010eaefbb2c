//! `tenantry billing …`: operator commands for Stripe billing.

use std::process::ExitCode;

use clap::Subcommand;

use crate::billing::Billing;
use crate::billing::prices::sync_prices;
use crate::config::Config;
use crate::error::AppError;
use crate::plans::PlanCatalog;

#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Create or find the Stripe product and price of every paid plan (idempotent, by lookup key).
    SyncPrices {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, cmd: BillingCommand) -> anyhow::Result<ExitCode> {
    let catalog = PlanCatalog::load(config.plans_file.as_deref())?;
    let billing = Billing::from_config(config)?;
    let client = billing.client().map_err(AppError::into_anyhow)?;
    match cmd {
        BillingCommand::SyncPrices { json } => {
            let report = sync_prices(client, &catalog).await.map_err(AppError::into_anyhow)?;
            if json {
                let rows: Vec<_> = report
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "plan": s.plan, "lookup_key": s.lookup_key, "price_id": s.price_id, "action": s.action,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for s in &report {
                    println!("{:<12} {:<24} {:<32} {}", s.plan, s.lookup_key, s.price_id, s.action);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
