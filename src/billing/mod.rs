//! Stripe billing: checkout, the customer portal, signed webhooks applied in Stripe's order, and
//! dunning (past due → suspended after a grace period → restored by a payment).

pub mod apply;
pub mod events;
pub mod model;
pub mod origins;
pub mod policy;
pub mod prices;
pub mod provider;
pub mod repo;
pub mod signature;

use std::time::Duration as StdDuration;

use deadpool_postgres::Pool;
use moka::future::Cache;
use uuid::Uuid;

use self::origins::AllowedOrigins;
use self::provider::CheckoutRequest;
use self::signature::WebhookSecrets;
use crate::config::{AppEnv, Config, ExposeSecret};
use crate::db::rows::Columns;
use crate::error::AppError;
use crate::plans::{self, PlanCatalog, TenantChange};
use crate::tenancy::model::TenantStatus;

/// The longest grace period accepted (one year).
const MAX_GRACE_SECS: u64 = 366 * 24 * 3600;

/// Billing settings and the Stripe client, shared by every request.
#[derive(Clone)]
pub struct Billing {
    /// `None` without `STRIPE_SECRET_KEY`: checkout and portal answer `BILLING_UNAVAILABLE`.
    client: Option<stripe::Client>,
    pub secrets: WebhookSecrets,
    origins: AllowedOrigins,
    /// How long a past-due tenant keeps access; also the slack past a paid period's end.
    pub grace: chrono::Duration,
    pub check_interval: StdDuration,
    /// Price id by lookup key, so a checkout costs one Stripe call, not two.
    prices: Cache<String, String>,
}

impl Billing {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let client = match &config.stripe_secret_key {
            Some(key) if !key.expose_secret().trim().is_empty() => Some(
                stripe::ClientBuilder::new(key.expose_secret().trim())
                    // The client appends `v1/…` to the base: it must end with a slash.
                    .url(format!("{}/", config.stripe_api_base.trim_end_matches('/')))
                    .timeout(StdDuration::from_secs(20))
                    .build()
                    .map_err(|err| anyhow::anyhow!("STRIPE_SECRET_KEY / STRIPE_API_BASE: {err}"))?,
            ),
            _ => None,
        };
        let secrets =
            WebhookSecrets::parse(config.stripe_webhook_secret.as_ref().map(ExposeSecret::expose_secret));
        if config.app_env == AppEnv::Production && client.is_some() && secrets.is_empty() {
            anyhow::bail!(
                "STRIPE_WEBHOOK_SECRET is not set; with STRIPE_SECRET_KEY set in production, Stripe's \
                 events would be refused and paid plans never applied"
            );
        }
        if config.billing_grace_secs > MAX_GRACE_SECS {
            anyhow::bail!("BILLING_GRACE_SECS must be at most {MAX_GRACE_SECS} (one year)");
        }
        let origins = match &config.billing_allowed_origins {
            Some(list) => AllowedOrigins::parse(list)?,
            None => AllowedOrigins::parse(&config.public_url)
                .map_err(|err| anyhow::anyhow!("PUBLIC_URL as the billing origin: {err}"))?,
        };
        Ok(Self {
            client,
            secrets,
            origins,
            grace: chrono::Duration::seconds(i64::try_from(config.billing_grace_secs)?),
            check_interval: StdDuration::from_secs(config.billing_check_interval_secs.max(1)),
            prices: Cache::builder().max_capacity(1_000).time_to_live(StdDuration::from_secs(600)).build(),
        })
    }

    /// The Stripe client, or `BILLING_UNAVAILABLE` saying how to configure it.
    pub fn client(&self) -> Result<&stripe::Client, AppError> {
        self.client.as_ref().ok_or_else(|| {
            AppError::BillingUnavailable(
                "billing is not configured on this server (STRIPE_SECRET_KEY is not set)".into(),
            )
        })
    }
}

/// A Stripe-hosted page to send the user to.
/// The handles billing operations use, lent by the caller (`AppState::payments`).
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub pool: &'a deadpool_postgres::Pool,
    pub plans: &'a PlanCatalog,
    pub billing: &'a Billing,
}

#[derive(Debug, Clone)]
pub struct HostedSession {
    pub id: String,
    pub url: String,
}

/// Starts a subscription checkout for `plan_id` (its Stripe price by lookup key).
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id, plan = plan_id))]
pub async fn start_checkout(
    state: Handles<'_>,
    tenant_id: Uuid,
    plan_id: &str,
    success_url: &str,
    cancel_url: &str,
) -> Result<HostedSession, AppError> {
    let billing = &state.billing;
    let success_url = billing.origins.check("successUrl", success_url)?;
    let cancel_url = billing.origins.check("cancelUrl", cancel_url)?;
    let plan = state.plans.get(plan_id).ok_or_else(|| {
        let known: Vec<_> = state.plans.all().map(|p| p.id.as_str()).collect();
        AppError::validation("plan", format!("unknown plan; choose one of {}", known.join(", ")))
    })?;
    let Some(lookup_key) = plan.stripe_price.clone() else {
        return Err(AppError::validation("plan", "this plan is not sold through checkout"));
    };
    let client = billing.client()?;
    let customer = customer_for(state, tenant_id).await?;
    let price = billing
        .prices
        .try_get_with(lookup_key.clone(), async {
            provider::find_price(client, &lookup_key).await?.ok_or_else(|| {
                AppError::BillingUnavailable(format!(
                    "the payment provider has no active price {lookup_key:?}; run `tenantry billing sync-prices`"
                ))
            })
        })
        .await
        .map_err(|err| match std::sync::Arc::try_unwrap(err) {
            Ok(err) => err,
            Err(shared) => AppError::BillingUnavailable(shared.message()),
        })?;
    let request = CheckoutRequest {
        customer: &customer,
        price: &price,
        tenant_id,
        plan_id: &plan.id,
        success_url: success_url.as_str(),
        cancel_url: cancel_url.as_str(),
    };
    let (id, url) = provider::create_checkout(client, request).await?;
    tracing::info!(stripe.checkout_session = id, "checkout started");
    Ok(HostedSession { id, url })
}

/// Opens the Stripe customer portal, where the customer manages payment and cancels.
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id))]
pub async fn open_portal(
    state: Handles<'_>,
    tenant_id: Uuid,
    return_url: &str,
) -> Result<HostedSession, AppError> {
    let return_url = state.billing.origins.check("returnUrl", return_url)?;
    let client = state.billing.client()?;
    let customer = customer_for(state, tenant_id).await?;
    let (id, url) = provider::create_portal(client, &customer, return_url.as_str()).await?;
    Ok(HostedSession { id, url })
}

/// The tenant's Stripe customer, created once: concurrent callers queue on the tenant row and
/// find the customer the first one stored.
async fn customer_for(state: Handles<'_>, tenant_id: Uuid) -> Result<String, AppError> {
    let client = state.billing.client()?;
    let mut db = state.pool.get().await?;
    if let Some(customer) = repo::customer_of(&db, tenant_id, false).await? {
        return Ok(customer);
    }
    let tx = db.transaction().await?;
    if let Some(customer) = repo::customer_of(&tx, tenant_id, true).await? {
        return Ok(customer);
    }
    let row = tx.query_one("select name from control.tenants where id = $1", &[&tenant_id]).await?;
    let name: String = Columns::of(&row, "billing::customer_for").try_get("name")?;
    let customer = provider::create_customer(client, tenant_id, &name).await?;
    repo::set_customer(&tx, tenant_id, &customer).await?;
    tx.commit().await?;
    tracing::info!("Stripe customer created");
    Ok(customer)
}

/// Suspends tenants whose payment has been overdue for longer than the grace period; returns
/// how many. Run by the recurring job `billing.suspend_overdue` (once per
/// `BILLING_CHECK_INTERVAL_SECS` across the cluster).
pub async fn suspend_overdue(
    pool: &Pool,
    catalog: &PlanCatalog,
    grace: chrono::Duration,
) -> Result<usize, AppError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let due = repo::mark_overdue(&tx, chrono::Utc::now() - grace).await?;
    let suspend = TenantChange { status: Some(TenantStatus::Suspended), ..TenantChange::default() };
    for tenant_id in &due {
        plans::apply_change(&tx, catalog, *tenant_id, &suspend).await?;
        tracing::info!(tenant.id = %tenant_id, "tenant suspended: payment overdue past the grace period");
    }
    tx.commit().await?;
    Ok(due.len())
}
