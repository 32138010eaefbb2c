//! In-memory API request counts per tenant and UTC day, flushed in batches; the cluster totals a
//! flush (or another replica's notification) reports; and the quota decision combining the two.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use deadpool_postgres::Pool;
use uuid::Uuid;

use super::repo;
use crate::error::AppError;

/// Cluster-wide API request counts of one tenant, as of `day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub day: NaiveDate,
    pub today: i64,
    pub month: i64,
}

impl Totals {
    /// The totals as they stand on `today`: a new day starts at 0, a new month too.
    pub fn as_of(self, today: NaiveDate) -> Totals {
        let same_month = (self.day.year(), self.day.month()) == (today.year(), today.month());
        Totals {
            day: today,
            today: if self.day == today { self.today } else { 0 },
            month: if same_month { self.month } else { 0 },
        }
    }

    /// Keeps the newer knowledge: within a day, counters only grow.
    fn merge(&mut self, other: Totals) {
        if other.day > self.day {
            *self = other;
        } else if other.day == self.day {
            self.today = self.today.max(other.today);
            self.month = self.month.max(other.month);
        }
    }
}

/// Counts sent to the database together, under an id that makes a retry harmless.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: Uuid,
    /// `(tenant, day, requests)`, sorted.
    pub rows: Vec<(Uuid, NaiveDate, i64)>,
}

/// What one flush did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Counter rows written (at most one per tenant and day in the batch).
    pub rows: u64,
    /// Fresh cluster totals of every tenant in the batch.
    pub totals: Vec<(Uuid, Totals)>,
}

#[derive(Default)]
struct Inner {
    /// Counted, not yet sent.
    unflushed: HashMap<Uuid, Vec<(NaiveDate, i64)>>,
    /// Sent, outcome not yet known (or the attempt failed): retried as is, with the same id.
    pending: Option<Batch>,
    /// Cluster totals, from flushes and from other replicas' notifications.
    totals: HashMap<Uuid, Totals>,
}

pub struct Meter {
    inner: Mutex<Inner>,
    /// Single-flight loads of totals for tenants this process has not seen yet.
    cold: moka::future::Cache<Uuid, Totals>,
}

impl Default for Meter {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            cold: moka::future::Cache::builder().time_to_live(Duration::from_secs(1)).build(),
        }
    }
}

impl Meter {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Counting never panics while holding the lock; a poisoned lock still holds valid counts.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes sure the tenant's cluster totals are known (one query, shared by concurrent callers).
    pub async fn ensure_loaded(&self, pool: &Pool, tenant: Uuid, today: NaiveDate) -> Result<(), AppError> {
        if self.lock().totals.contains_key(&tenant) {
            return Ok(());
        }
        let loaded = self
            .cold
            .try_get_with(tenant, async {
                let client = pool.get().await?;
                let found = repo::totals(&client, &[tenant], today).await?;
                Ok::<_, AppError>(found[0].1)
            })
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("usage totals: {err:?}")))?;
        self.lock().totals.entry(tenant).and_modify(|t| t.merge(loaded)).or_insert(loaded);
        Ok(())
    }

    /// Counts one request unless the month's count has reached `limit`. Returns the month's count
    /// including this request, or `Err(count)` when refused (a refused request is not counted).
    pub fn count(&self, tenant: Uuid, today: NaiveDate, limit: Option<i64>) -> Result<i64, i64> {
        let mut inner = self.lock();
        let used = month_used(&inner, tenant, today);
        if limit.is_some_and(|limit| used >= limit) {
            return Err(used);
        }
        let days = inner.unflushed.entry(tenant).or_default();
        match days.iter_mut().find(|(day, _)| *day == today) {
            Some((_, n)) => *n += 1,
            None => days.push((today, 1)),
        }
        Ok(used + 1)
    }

    /// This month's count as this process sees it: cluster totals plus local unsent counts.
    pub fn month_used(&self, tenant: Uuid, today: NaiveDate) -> i64 {
        month_used(&self.lock(), tenant, today)
    }

    /// The cluster totals last seen for a tenant.
    pub fn totals(&self, tenant: Uuid, today: NaiveDate) -> Option<Totals> {
        self.lock().totals.get(&tenant).map(|t| t.as_of(today))
    }

    /// Takes in totals another replica published.
    pub fn learn(&self, totals: &[(Uuid, Totals)]) {
        let mut inner = self.lock();
        for &(tenant, t) in totals {
            inner.totals.entry(tenant).and_modify(|known| known.merge(t)).or_insert(t);
        }
    }

    /// Whether anything waits to be written.
    pub fn is_idle(&self) -> bool {
        let inner = self.lock();
        inner.pending.is_none() && inner.unflushed.is_empty()
    }

    /// Writes the counts with one upsert and reads back cluster totals. A failed attempt keeps
    /// its batch and id; the next call retries exactly that batch, and the database skips it if
    /// the failed attempt had in fact committed.
    pub async fn flush(&self, pool: &Pool, today: NaiveDate) -> Result<Flushed, AppError> {
        let batch = {
            let mut inner = self.lock();
            if inner.pending.is_none() {
                let mut rows: Vec<_> = inner
                    .unflushed
                    .drain()
                    .flat_map(|(tenant, days)| days.into_iter().map(move |(day, n)| (tenant, day, n)))
                    .collect();
                if rows.is_empty() {
                    return Ok(Flushed::default());
                }
                rows.sort_unstable();
                inner.pending = Some(Batch { id: Uuid::new_v4(), rows });
            }
            inner.pending.clone().expect("set above")
        };
        let client = pool.get().await?;
        let rows = repo::apply_batch(&client, &batch).await?;
        let mut tenants: Vec<Uuid> = batch.rows.iter().map(|(t, _, _)| *t).collect();
        tenants.dedup();
        let totals = repo::totals(&client, &tenants, today).await;
        let mut inner = self.lock();
        inner.pending = None;
        match totals {
            Ok(totals) => {
                for &(tenant, t) in &totals {
                    inner.totals.entry(tenant).and_modify(|known| known.merge(t)).or_insert(t);
                }
                Ok(Flushed { rows, totals })
            }
            Err(err) => {
                // The counts are stored; keep them in view until the next flush reads totals.
                for &(tenant, day, n) in &batch.rows {
                    if let Some(known) = inner.totals.get_mut(&tenant) {
                        *known = known.as_of(today);
                        known.month += n;
                        known.today += if day == today { n } else { 0 };
                    }
                }
                Err(err)
            }
        }
    }

    /// Forgets totals of tenants idle since before `today` (they reload on their next request).
    pub fn prune(&self, today: NaiveDate) {
        self.lock().totals.retain(|_, t| t.day >= today);
    }
}

fn month_used(inner: &Inner, tenant: Uuid, today: NaiveDate) -> i64 {
    let this_month = |day: &NaiveDate| (day.year(), day.month()) == (today.year(), today.month());
    let known = inner.totals.get(&tenant).map_or(0, |t| t.as_of(today).month);
    let unflushed: i64 = inner
        .unflushed
        .get(&tenant)
        .map_or(0, |days| days.iter().filter(|(d, _)| this_month(d)).map(|(_, n)| n).sum());
    let pending: i64 = inner.pending.as_ref().map_or(0, |batch| {
        batch.rows.iter().filter(|(t, d, _)| *t == tenant && this_month(d)).map(|(_, _, n)| n).sum()
    });
    known + unflushed + pending
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    #[test]
    fn the_quota_counts_totals_and_local_counts_and_refuses_at_the_limit() {
        let meter = Meter::default();
        let tenant = Uuid::new_v4();
        meter.learn(&[(tenant, Totals { day: day(2), today: 3, month: 7 })]);
        assert_eq!(meter.count(tenant, day(2), Some(9)), Ok(8));
        assert_eq!(meter.count(tenant, day(2), Some(9)), Ok(9));
        assert_eq!(meter.count(tenant, day(2), Some(9)), Err(9), "refused, and not counted");
        assert_eq!(meter.month_used(tenant, day(2)), 9);
        assert_eq!(meter.count(tenant, day(2), None), Ok(10), "unlimited never refuses");
    }

    #[test]
    fn a_new_month_starts_from_zero_and_old_news_never_lowers_a_total() {
        let t = Totals { day: day(30), today: 5, month: 90 };
        let december = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(t.as_of(december), Totals { day: december, today: 0, month: 0 });
        assert_eq!(t.as_of(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()).month, 90);
        let mut known = t;
        known.merge(Totals { day: day(30), today: 4, month: 80 });
        assert_eq!(known, t);
        known.merge(Totals { day: day(29), today: 100, month: 100 });
        assert_eq!(known, t);
    }
}
