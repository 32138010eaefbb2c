//! A tenant's billing state as stored in `control.billing`.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::rows::Columns;
use crate::error::AppError;

/// Stripe's subscription status, or `NONE` before the first subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum BillingStatus {
    None,
    Active,
    Trialing,
    PastDue,
    Unpaid,
    Canceled,
    Incomplete,
    IncompleteExpired,
    Paused,
}

const ALL: [(BillingStatus, &str); 9] = [
    (BillingStatus::None, "none"),
    (BillingStatus::Active, "active"),
    (BillingStatus::Trialing, "trialing"),
    (BillingStatus::PastDue, "past_due"),
    (BillingStatus::Unpaid, "unpaid"),
    (BillingStatus::Canceled, "canceled"),
    (BillingStatus::Incomplete, "incomplete"),
    (BillingStatus::IncompleteExpired, "incomplete_expired"),
    (BillingStatus::Paused, "paused"),
];

impl BillingStatus {
    /// The stored name, which is also Stripe's.
    pub fn as_str(self) -> &'static str {
        ALL.iter().find(|(status, _)| *status == self).map_or("none", |(_, name)| name)
    }

    /// Stripe's name for a subscription status; `None` for a status this server does not know.
    pub fn from_stripe(raw: &str) -> Option<Self> {
        ALL.iter().find(|(_, name)| *name == raw).map(|(status, _)| *status).filter(|s| *s != Self::None)
    }

    /// Whether the subscription still pays for a plan (possibly in dunning).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Active | Self::Trialing | Self::PastDue | Self::Unpaid)
    }

    /// A payment failed and has not been made up yet.
    pub fn is_overdue(self) -> bool {
        matches!(self, Self::PastDue | Self::Unpaid)
    }
}

/// `control.billing` for one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingState {
    pub tenant_id: Uuid,
    pub subscription_id: Option<String>,
    pub status: BillingStatus,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub past_due_since: Option<DateTime<Utc>>,
    pub suspended_by_billing: bool,
    pub last_event_at: Option<DateTime<Utc>>,
}

impl BillingState {
    /// The state of a tenant that never subscribed.
    pub fn none(tenant_id: Uuid) -> Self {
        Self {
            tenant_id,
            subscription_id: None,
            status: BillingStatus::None,
            current_period_end: None,
            cancel_at_period_end: false,
            past_due_since: None,
            suspended_by_billing: false,
            last_event_at: None,
        }
    }

    pub fn from_row(row: &Row) -> Result<Self, AppError> {
        let c = Columns::of(row, "BillingState::from_row");
        let raw: &str = c.try_get("status")?;
        // Fail closed: a status written by a newer version is an error, not a guess.
        let status =
            ALL.iter().find(|(_, name)| *name == raw).map(|(status, _)| *status).ok_or_else(|| {
                AppError::internal(anyhow::anyhow!("unknown billing status {raw:?} in control.billing"))
            })?;
        Ok(Self {
            tenant_id: c.try_get("tenant_id")?,
            subscription_id: c.try_get("subscription_id")?,
            status,
            current_period_end: c.try_get("current_period_end")?,
            cancel_at_period_end: c.try_get("cancel_at_period_end")?,
            past_due_since: c.try_get("past_due_since")?,
            suspended_by_billing: c.try_get("suspended_by_billing")?,
            last_event_at: c.try_get("last_event_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_statuses_round_trip_and_unknown_ones_are_refused() {
        for (status, name) in ALL.iter().skip(1) {
            assert_eq!(BillingStatus::from_stripe(name), Some(*status));
            assert_eq!(status.as_str(), *name);
        }
        assert_eq!(BillingStatus::from_stripe("none"), None);
        assert_eq!(BillingStatus::from_stripe("on_hold"), None);
    }
}
