//! SQL for `control.billing`, `control.stripe_events` and tenants' Stripe customers.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::model::BillingState;
use crate::db::rows::Columns;
use crate::error::AppError;

const STATE_COLUMNS: &str = "tenant_id, subscription_id, status, current_period_end, cancel_at_period_end, \
     past_due_since, suspended_by_billing, last_event_at";

/// Records an event id; `false` when it was recorded before (a duplicate delivery). A concurrent
/// delivery of the same id waits here until the first one commits or rolls back.
pub async fn record_event(
    db: &impl GenericClient,
    id: &str,
    kind: &str,
    created: DateTime<Utc>,
) -> Result<bool, AppError> {
    let inserted = db
        .execute(
            "insert into control.stripe_events (id, type, created, outcome) values ($1, $2, $3, 'received')
             on conflict (id) do nothing",
            &[&id, &kind, &created],
        )
        .await?;
    Ok(inserted == 1)
}

pub async fn set_event_outcome(db: &impl GenericClient, id: &str, outcome: &str) -> Result<(), AppError> {
    db.execute("update control.stripe_events set outcome = $2 where id = $1", &[&id, &outcome]).await?;
    Ok(())
}

/// The tenant's billing state, locked until the transaction ends (created if missing).
pub async fn lock_state(db: &impl GenericClient, tenant_id: Uuid) -> Result<BillingState, AppError> {
    db.execute(
        "insert into control.billing (tenant_id) values ($1) on conflict (tenant_id) do nothing",
        &[&tenant_id],
    )
    .await?;
    let sql = format!("select {STATE_COLUMNS} from control.billing where tenant_id = $1 for update");
    BillingState::from_row(&db.query_one(&sql, &[&tenant_id]).await?)
}

pub async fn save_state(db: &impl GenericClient, state: &BillingState) -> Result<(), AppError> {
    db.execute(
        "update control.billing set subscription_id = $2, status = $3, current_period_end = $4,
             cancel_at_period_end = $5, past_due_since = $6, suspended_by_billing = $7,
             last_event_at = $8, updated_at = now()
         where tenant_id = $1",
        &[
            &state.tenant_id,
            &state.subscription_id,
            &state.status.as_str(),
            &state.current_period_end,
            &state.cancel_at_period_end,
            &state.past_due_since,
            &state.suspended_by_billing,
            &state.last_event_at,
        ],
    )
    .await?;
    Ok(())
}

/// The tenant's billing state (`NONE` if it never subscribed).
pub async fn find_state(db: &impl GenericClient, tenant_id: Uuid) -> Result<BillingState, AppError> {
    let sql = format!("select {STATE_COLUMNS} from control.billing where tenant_id = $1");
    match db.query_opt(&sql, &[&tenant_id]).await? {
        Some(row) => BillingState::from_row(&row),
        None => Ok(BillingState::none(tenant_id)),
    }
}

pub async fn list_states(db: &impl GenericClient) -> Result<Vec<BillingState>, AppError> {
    let sql = format!("select {STATE_COLUMNS} from control.billing");
    db.query(&sql, &[]).await?.iter().map(BillingState::from_row).collect()
}

/// A live (not deleted) tenant with this id, if any.
pub async fn live_tenant(db: &impl GenericClient, id: Uuid) -> Result<Option<Uuid>, AppError> {
    let row =
        db.query_opt("select id from control.tenants where id = $1 and deleted_at is null", &[&id]).await?;
    Ok(row.map(|r| Columns::of(&r, "billing::repo::live_tenant").try_get("id")).transpose()?)
}

/// The live tenant whose Stripe customer this is.
pub async fn tenant_by_customer(db: &impl GenericClient, customer: &str) -> Result<Option<Uuid>, AppError> {
    let row = db
        .query_opt(
            "select id from control.tenants where stripe_customer_id = $1 and deleted_at is null",
            &[&customer],
        )
        .await?;
    Ok(row.map(|r| Columns::of(&r, "billing::repo::tenant_by_customer").try_get("id")).transpose()?)
}

/// The tenant's Stripe customer id; with `lock`, the tenant row stays locked until the
/// transaction ends, so concurrent checkouts create one customer.
pub async fn customer_of(
    db: &impl GenericClient,
    tenant_id: Uuid,
    lock: bool,
) -> Result<Option<String>, AppError> {
    let sql = if lock {
        "select stripe_customer_id from control.tenants where id = $1 for update"
    } else {
        "select stripe_customer_id from control.tenants where id = $1"
    };
    let row = db.query_opt(sql, &[&tenant_id]).await?.ok_or(AppError::NotFound("tenant"))?;
    Ok(Columns::of(&row, "billing::repo::customer_of").try_get("stripe_customer_id")?)
}

/// Sets the tenant's Stripe customer unless it has one.
pub async fn set_customer(db: &impl GenericClient, tenant_id: Uuid, customer: &str) -> Result<(), AppError> {
    db.execute(
        "update control.tenants set stripe_customer_id = $2, updated_at = now()
         where id = $1 and stripe_customer_id is null",
        &[&tenant_id, &customer],
    )
    .await?;
    Ok(())
}

/// Marks tenants past due since before `cutoff` (and still active) as suspended by billing;
/// returns their ids. The caller suspends them in the same transaction.
pub async fn mark_overdue(db: &impl GenericClient, cutoff: DateTime<Utc>) -> Result<Vec<Uuid>, AppError> {
    let rows = db
        .query(
            "update control.billing b set suspended_by_billing = true, updated_at = now()
             from control.tenants t
             where t.id = b.tenant_id and t.status = 'active' and t.deleted_at is null
               and b.status in ('past_due', 'unpaid') and b.past_due_since <= $1
               and not b.suspended_by_billing
             returning b.tenant_id",
            &[&cutoff],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Columns::of(r, "billing::repo::mark_overdue").try_get("tenant_id"))
        .collect::<Result<_, _>>()?)
}
