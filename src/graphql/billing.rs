//! GraphQL: `startCheckout`, `openBillingPortal`, and `Tenant.billing`.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::billing::model::{BillingState, BillingStatus};
use crate::billing::{HostedSession, repo};
use crate::error::AppError;
use crate::members::Role;
use crate::request::context::RequestCtx;
use crate::request::guards::RoleGuard;

/// A Stripe Checkout page: send the user to `url`.
#[derive(SimpleObject)]
pub struct CheckoutSession {
    pub id: ID,
    pub url: String,
}

/// A Stripe customer-portal page: send the user to `url`.
#[derive(SimpleObject)]
pub struct BillingPortalSession {
    pub id: ID,
    pub url: String,
}

/// The tenant's subscription as Stripe last reported it.
pub struct BillingObject {
    state: BillingState,
    grace: chrono::Duration,
}

#[Object(name = "Billing")]
impl BillingObject {
    /// Stripe's subscription status; `NONE` before the first subscription.
    async fn status(&self) -> BillingStatus {
        self.state.status
    }
    /// When the paid period ends (renewal, or the end of a cancelled subscription).
    async fn current_period_end(&self) -> Option<DateTime<Utc>> {
        self.state.current_period_end
    }
    /// The subscription ends at the period end instead of renewing.
    async fn cancel_at_period_end(&self) -> bool {
        self.state.cancel_at_period_end
    }
    /// When the overdue payment first failed.
    async fn past_due_since(&self) -> Option<DateTime<Utc>> {
        self.state.past_due_since.filter(|_| self.state.status.is_overdue())
    }
    /// When the tenant will be suspended unless a payment arrives first.
    async fn suspends_at(&self) -> Option<DateTime<Utc>> {
        let overdue = self.state.status.is_overdue() && !self.state.suspended_by_billing;
        self.state.past_due_since.filter(|_| overdue).and_then(|since| since.checked_add_signed(self.grace))
    }
}

/// `Tenant.billing`: any member may read it.
pub async fn billing_of(rc: &RequestCtx, tenant_id: Uuid) -> Result<BillingObject, AppError> {
    let client = rc.state.pool.get().await?;
    let state = repo::find_state(&client, tenant_id).await?;
    Ok(BillingObject { state, grace: rc.state.billing.grace })
}

#[derive(Default)]
pub struct BillingMutation;

#[Object]
impl BillingMutation {
    /// Starts a Stripe Checkout for a paid plan; the plan changes when Stripe confirms payment.
    /// Redirect URLs must be on an allowed origin (BILLING_ALLOWED_ORIGINS). OWNER or ADMIN.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn start_checkout(
        &self,
        ctx: &Context<'_>,
        plan: String,
        success_url: String,
        cancel_url: String,
    ) -> async_graphql::Result<CheckoutSession> {
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        let session =
            crate::billing::start_checkout(rc.state.payments(), tenant_id, &plan, &success_url, &cancel_url)
                .await?;
        let HostedSession { id, url } = session;
        Ok(CheckoutSession { id: ID(id), url })
    }

    /// Opens the Stripe customer portal (payment methods, invoices, plan changes, cancellation).
    /// OWNER or ADMIN.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn open_billing_portal(
        &self,
        ctx: &Context<'_>,
        return_url: String,
    ) -> async_graphql::Result<BillingPortalSession> {
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        let HostedSession { id, url } =
            crate::billing::open_portal(rc.state.payments(), tenant_id, &return_url).await?;
        Ok(BillingPortalSession { id: ID(id), url })
    }
}
