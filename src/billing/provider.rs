//! Calls to Stripe through async-stripe, and Stripe failures as clear client errors.

use std::collections::HashMap;

use stripe::{IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::customer::CreateCustomer;
use stripe_product::price::ListPrice;
use uuid::Uuid;

use crate::error::AppError;

/// What a failed Stripe call means to the caller: never an `INTERNAL` 500.
pub fn stripe_error(err: StripeError) -> AppError {
    let message = match &err {
        StripeError::Stripe(api, status) => {
            tracing::warn!(stripe.status = status, stripe.code = ?api.code, "Stripe refused a request");
            let detail = api.message.as_deref().unwrap_or("no detail given");
            format!("the payment provider refused the request: {detail}")
        }
        StripeError::Timeout | StripeError::ClientError(_) => {
            tracing::warn!(error = %err, "Stripe unreachable");
            "the payment provider could not be reached; try again in a minute".to_owned()
        }
        StripeError::JSONDeserialize(_) | StripeError::ConfigError(_) => {
            tracing::error!(error = %err, "unexpected answer from Stripe");
            "the payment provider gave an answer this server does not understand; try again later".to_owned()
        }
    };
    AppError::BillingUnavailable(message)
}

/// Creates the tenant's Stripe customer. The idempotency key is derived from the tenant, so a
/// retry after a lost answer (or a racing replica) gets the same customer back.
pub async fn create_customer(
    client: &stripe::Client,
    tenant_id: Uuid,
    name: &str,
) -> Result<String, AppError> {
    let key = IdempotencyKey::new(format!("tenantry-customer-{tenant_id}")).map_err(AppError::internal)?;
    let metadata = HashMap::from([("tenant_id".to_owned(), tenant_id.to_string())]);
    let customer = CreateCustomer::new()
        .name(name)
        .metadata(metadata)
        .customize()
        .request_strategy(RequestStrategy::Idempotent(key))
        .send(client)
        .await
        .map_err(stripe_error)?;
    Ok(customer.id.to_string())
}

/// The id of the active price with `lookup_key`, if Stripe has one.
pub async fn find_price(client: &stripe::Client, lookup_key: &str) -> Result<Option<String>, AppError> {
    let prices = ListPrice::new()
        .lookup_keys(vec![lookup_key.to_owned()])
        .active(true)
        .limit(1)
        .send(client)
        .await
        .map_err(stripe_error)?;
    Ok(prices.data.into_iter().next().map(|price| price.id.to_string()))
}

/// A checkout session in subscription mode; returns its id and URL.
pub struct CheckoutRequest<'a> {
    pub customer: &'a str,
    pub price: &'a str,
    pub tenant_id: Uuid,
    pub plan_id: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

pub async fn create_checkout(
    client: &stripe::Client,
    req: CheckoutRequest<'_>,
) -> Result<(String, String), AppError> {
    let metadata = HashMap::from([
        ("tenant_id".to_owned(), req.tenant_id.to_string()),
        ("plan_id".to_owned(), req.plan_id.to_owned()),
    ]);
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price = Some(req.price.to_owned());
    item.quantity = Some(1);
    let mut subscription = CreateCheckoutSessionSubscriptionData::new();
    subscription.metadata = Some(metadata.clone());
    let session = CreateCheckoutSession::new()
        .mode(stripe_checkout::CheckoutSessionMode::Subscription)
        .customer(req.customer)
        .client_reference_id(req.tenant_id.to_string())
        .line_items(vec![item])
        .subscription_data(subscription)
        .metadata(metadata)
        .success_url(req.success_url)
        .cancel_url(req.cancel_url)
        .send(client)
        .await
        .map_err(stripe_error)?;
    let url = session.url.ok_or_else(|| {
        AppError::BillingUnavailable("the payment provider returned a checkout session without a URL".into())
    })?;
    Ok((session.id.to_string(), url))
}

/// A customer-portal session; returns its id and URL.
pub async fn create_portal(
    client: &stripe::Client,
    customer: &str,
    return_url: &str,
) -> Result<(String, String), AppError> {
    let session = CreateBillingPortalSession::new()
        .customer(customer)
        .return_url(return_url)
        .send(client)
        .await
        .map_err(stripe_error)?;
    Ok((session.id.to_string(), session.url))
}
