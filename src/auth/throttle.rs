//! Sign-in throttling: at most 10 attempts per email per minute, per process (governor, GCRA).

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;

#[derive(Clone)]
pub struct SignInThrottle(Arc<DefaultKeyedRateLimiter<String>>);

impl SignInThrottle {
    pub fn per_minute(attempts: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(attempts.max(1)).expect("at least one"));
        Self(Arc::new(RateLimiter::keyed(quota)))
    }

    /// Counts an attempt for `email`; `RATE_LIMITED` with the wait when over the quota.
    pub fn attempt(&self, email: &str) -> Result<(), AppError> {
        self.0.check_key(&email.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::RateLimited { retry_after_secs: wait.as_secs().max(1) }
        })
    }

    /// Forgets emails whose quota has fully recovered (bounded memory).
    pub fn prune(&self) {
        self.0.retain_recent();
    }
}
