//! The usage feature's SQL: the flush upsert, cluster totals, the per-day breakdown, and the
//! storage gauge (the member gauge counts `members::repo::seats_taken`).

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::meter::{Batch, Totals};
use crate::db::rows::Columns;
use crate::db::{SchemaName, TenantTx};
use crate::error::AppError;

/// Adds a batch of request counts with one statement, at most once per batch id: a retry of a
/// batch that did commit writes nothing. Rows are sorted so concurrent replicas lock rows in the
/// same order (no deadlocks). Returns the rows written (0 for an already-applied batch).
pub async fn apply_batch(db: &impl GenericClient, batch: &Batch) -> Result<u64, AppError> {
    let (mut tenants, mut days, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for &(tenant, day, n) in &batch.rows {
        tenants.push(tenant);
        days.push(day);
        counts.push(n);
    }
    let written = db
        .execute(
            "with fresh as (
                 insert into control.usage_flushes (id) values ($1) on conflict (id) do nothing returning id
             )
             insert into control.usage_counters as c (tenant_id, metric, day, value)
             select u.tenant_id, 'api_requests', u.day, u.n
             from unnest($2::uuid[], $3::date[], $4::bigint[]) as u (tenant_id, day, n)
             where exists (select 1 from fresh)
               and exists (select 1 from control.tenants t where t.id = u.tenant_id)
             order by u.tenant_id, u.day
             on conflict (tenant_id, metric, day) do update set value = c.value + excluded.value",
            &[&batch.id, &tenants, &days, &counts],
        )
        .await?;
    Ok(written)
}

/// Cluster-wide API request totals of `tenants` for `today` and its month.
pub async fn totals(
    db: &impl GenericClient,
    tenants: &[Uuid],
    today: NaiveDate,
) -> Result<Vec<(Uuid, Totals)>, AppError> {
    let rows = db
        .query(
            "select tenant_id,
                    coalesce(sum(value) filter (where day = $2), 0)::bigint as today,
                    coalesce(sum(value), 0)::bigint as month
             from control.usage_counters
             where metric = 'api_requests' and tenant_id = any($1) and day >= $3 and day <= $2
             group by tenant_id",
            &[&tenants, &today, &super::month_start(today)],
        )
        .await?;
    let mut found: Vec<(Uuid, Totals)> = rows
        .iter()
        .map(|row| {
            let c = Columns::of(row, "usage::repo::totals");
            Ok((
                c.try_get("tenant_id")?,
                Totals { day: today, today: c.try_get("today")?, month: c.try_get("month")? },
            ))
        })
        .collect::<Result<_, AppError>>()?;
    // Tenants without rows this month have zero totals, which is also worth knowing.
    for &tenant in tenants {
        if !found.iter().any(|(t, _)| *t == tenant) {
            found.push((tenant, Totals { day: today, today: 0, month: 0 }));
        }
    }
    Ok(found)
}

/// API requests per day from `from` to `to` inclusive, days without requests omitted.
pub async fn daily(
    db: &impl GenericClient,
    tenant: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, i64)>, AppError> {
    let rows = db
        .query(
            "select day, value from control.usage_counters
             where tenant_id = $1 and metric = 'api_requests' and day >= $2 and day <= $3
             order by day",
            &[&tenant, &from, &to],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let c = Columns::of(row, "usage::repo::daily");
            Ok((c.try_get("day")?, c.try_get("value")?))
        })
        .collect()
}

/// Forgets applied-batch ids old enough that no retry can still carry them.
pub async fn prune_flushes(db: &impl GenericClient) -> Result<u64, AppError> {
    Ok(db
        .execute("delete from control.usage_flushes where applied_at < now() - interval '2 days'", &[])
        .await?)
}

/// Bytes of a tenant schema: every table and materialized view with its indexes and TOAST.
pub async fn schema_bytes(db: &impl GenericClient, schema: &SchemaName) -> Result<i64, AppError> {
    let row = db
        .query_one(
            "select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint as bytes
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relkind in ('r', 'm')",
            &[&schema.as_str()],
        )
        .await?;
    Ok(Columns::of(&row, "usage::repo::schema_bytes").try_get("bytes")?)
}

/// Bytes of the schema a tenant transaction is scoped to (its search_path).
pub async fn current_schema_bytes(tx: &mut TenantTx) -> Result<i64, AppError> {
    let row = tx
        .query_one(
            "select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint as bytes
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = current_schema() and c.relkind in ('r', 'm')",
            &[],
        )
        .await?;
    Ok(Columns::of(&row, "usage::repo::current_schema_bytes").try_get("bytes")?)
}
