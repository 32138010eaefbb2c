//! Per-second rate limits: one token bucket per tenant (governor's GCRA), sized by the plan.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

/// Token buckets keyed by tenant, one keyed limiter per distinct plan rate (plans are few).
/// Memory: one small state per tenant that sent a request, dropped by `prune` once refilled.
#[derive(Default)]
pub struct RateLimits {
    by_rate: Mutex<HashMap<u32, Arc<DefaultKeyedRateLimiter<Uuid>>>>,
}

impl RateLimits {
    /// Takes a token from the tenant's bucket: `per_second` tokens a second, bursts of
    /// `per_second`. `Err(wait)` when empty.
    pub fn check(&self, tenant: Uuid, per_second: u32) -> Result<(), Duration> {
        let Some(rate) = NonZeroU32::new(per_second) else {
            // A plan allowing 0 requests a second allows none.
            return Err(Duration::from_secs(60));
        };
        let limiter = {
            let mut by_rate = self.by_rate.lock().unwrap_or_else(|p| p.into_inner());
            by_rate
                .entry(per_second)
                .or_insert_with(|| Arc::new(RateLimiter::keyed(Quota::per_second(rate))))
                .clone()
        };
        limiter
            .check_key(&tenant)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets buckets that have refilled (they behave exactly like new ones).
    pub fn prune(&self) {
        let by_rate = self.by_rate.lock().unwrap_or_else(|p| p.into_inner());
        for limiter in by_rate.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_of_its_rate_then_refuses_with_a_wait() {
        let limits = RateLimits::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..5 {
            assert!(limits.check(a, 5).is_ok());
        }
        let wait = limits.check(a, 5).unwrap_err();
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        assert!(limits.check(b, 5).is_ok(), "tenants have their own buckets");
        assert!(limits.check(a, 0).is_err());
    }
}
