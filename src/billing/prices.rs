//! `tenantry billing sync-prices`: makes Stripe sell the plan catalog. Idempotent: a plan's
//! product has a fixed id (`tenantry_<plan>`), its price is found by lookup key, and a price
//! that no longer matches the catalog is replaced by a new one that takes over the lookup key.

use std::collections::HashMap;

use stripe::StripeError;
use stripe_product::price::{CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, ListPrice};
use stripe_product::product::{CreateProduct, RetrieveProduct};
use stripe_types::Currency;

use super::provider::stripe_error;
use crate::error::AppError;
use crate::plans::{Plan, PlanCatalog};

/// What `sync_prices` did for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub plan: String,
    pub lookup_key: String,
    pub price_id: String,
    /// `unchanged`, `created` or `replaced`.
    pub action: &'static str,
}

/// Creates or finds the product and price of every plan that has a `stripe_price` lookup key.
pub async fn sync_prices(client: &stripe::Client, catalog: &PlanCatalog) -> Result<Vec<Synced>, AppError> {
    let mut report = Vec::new();
    for plan in catalog.all() {
        let Some(lookup_key) = plan.stripe_price.clone() else { continue };
        let existing = ListPrice::new()
            .lookup_keys(vec![lookup_key.clone()])
            .active(true)
            .limit(1)
            .send(client)
            .await
            .map_err(stripe_error)?
            .data
            .into_iter()
            .next();
        if let Some(price) = &existing {
            let same_interval =
                price.recurring.as_ref().is_some_and(|r| r.interval.as_str() == plan.interval);
            if price.unit_amount == Some(plan.price_cents)
                && price.currency.to_string() == plan.currency
                && same_interval
            {
                report.push(Synced {
                    plan: plan.id.clone(),
                    lookup_key,
                    price_id: price.id.to_string(),
                    action: "unchanged",
                });
                continue;
            }
        }
        let product = ensure_product(client, plan).await?;
        let price_id = create_price(client, plan, &product, &lookup_key).await?;
        let action = if existing.is_some() { "replaced" } else { "created" };
        report.push(Synced { plan: plan.id.clone(), lookup_key, price_id, action });
    }
    Ok(report)
}

/// The plan's product, `tenantry_<plan id>`, created if Stripe does not have it.
async fn ensure_product(client: &stripe::Client, plan: &Plan) -> Result<String, AppError> {
    let id = format!("tenantry_{}", plan.id);
    match RetrieveProduct::new(id.as_str()).send(client).await {
        Ok(product) => return Ok(product.id.to_string()),
        Err(StripeError::Stripe(_, 404)) => {}
        Err(err) => return Err(stripe_error(err)),
    }
    let metadata = HashMap::from([("plan_id".to_owned(), plan.id.clone())]);
    let product = CreateProduct::new(plan.name.as_str())
        .id(id.as_str())
        .metadata(metadata)
        .send(client)
        .await
        .map_err(stripe_error)?;
    Ok(product.id.to_string())
}

async fn create_price(
    client: &stripe::Client,
    plan: &Plan,
    product: &str,
    lookup_key: &str,
) -> Result<String, AppError> {
    let currency: Currency = plan.currency.parse().map_err(|_| {
        AppError::validation("currency", format!("{:?} is not a currency Stripe knows", plan.currency))
    })?;
    let interval = if plan.interval == "year" {
        CreatePriceRecurringInterval::Year
    } else {
        CreatePriceRecurringInterval::Month
    };
    let metadata = HashMap::from([("plan_id".to_owned(), plan.id.clone())]);
    let price = CreatePrice::new(currency)
        .product(product)
        .unit_amount(plan.price_cents)
        .recurring(CreatePriceRecurring::new(interval))
        .lookup_key(lookup_key)
        .transfer_lookup_key(true)
        .metadata(metadata)
        .send(client)
        .await
        .map_err(stripe_error)?;
    Ok(price.id.to_string())
}
