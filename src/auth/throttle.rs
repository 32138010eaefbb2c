//! Throttles. Sign-in: at most 10 attempts per email and `SIGN_INS_PER_IP_PER_MINUTE` per client
//! IP per minute, per process (governor, GCRA).
//! Sign-ups and mailed links: per address and per client IP per hour, cluster-wide, counted in
//! `control.throttle_hits` by one atomic upsert per key.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use deadpool_postgres::GenericClient;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::secret::hash_secret;
use crate::error::AppError;

/// Sign-in attempts per email and per client IP, per process.
#[derive(Clone)]
pub struct SignInThrottle {
    emails: Arc<DefaultKeyedRateLimiter<String>>,
    ips: Arc<DefaultKeyedRateLimiter<String>>,
}

fn keyed_per_minute(n: u32) -> Arc<DefaultKeyedRateLimiter<String>> {
    let quota = Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least one"));
    Arc::new(RateLimiter::keyed(quota))
}

impl SignInThrottle {
    pub fn per_minute(per_email: u32, per_ip: u32) -> Self {
        Self { emails: keyed_per_minute(per_email), ips: keyed_per_minute(per_ip) }
    }

    /// Counts an attempt from `ip` (see `ip_key`) for `email`; `RATE_LIMITED` with the wait
    /// when either is over its quota. The IP is checked first, so a flood from one client
    /// does not use up its victims' per-email attempts, nor the hashing pool others need.
    pub fn attempt(&self, ip: &str, email: &str) -> Result<(), AppError> {
        let refused = |not_until: governor::NotUntil<_>| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::RateLimited { retry_after_secs: wait.as_secs().max(1) }
        };
        self.ips.check_key(&ip.to_owned()).map_err(refused)?;
        self.emails.check_key(&email.to_owned()).map_err(refused)
    }

    /// Forgets keys whose quota has fully recovered (bounded memory).
    pub fn prune(&self) {
        self.emails.retain_recent();
        self.ips.retain_recent();
    }
}

/// The length of a cluster-wide throttle window.
const WINDOW_SECS: f64 = 3600.0;

/// What is counted, each with its own limit per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `signUp` attempts for one address (taken or not).
    SignUpAddress,
    /// `signUp` attempts from one client IP.
    SignUpIp,
    /// Password-reset and verification mails to one address.
    MailAddress,
    /// `requestPasswordReset` calls from one client IP.
    ResetIp,
}

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Self::SignUpAddress => "sign_up_address",
            Self::SignUpIp => "sign_up_ip",
            Self::MailAddress => "mail_address",
            Self::ResetIp => "reset_ip",
        }
    }
}

/// The per-hour limits of the cluster-wide throttles (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct HourlyLimits {
    pub sign_ups_per_address: u32,
    pub sign_ups_per_ip: u32,
    pub mails_per_address: u32,
    pub resets_per_ip: u32,
}

impl HourlyLimits {
    fn of(&self, bucket: Bucket) -> u32 {
        match bucket {
            Bucket::SignUpAddress => self.sign_ups_per_address,
            Bucket::SignUpIp => self.sign_ups_per_ip,
            Bucket::MailAddress => self.mails_per_address,
            Bucket::ResetIp => self.resets_per_ip,
        }
    }

    /// Counts one hit on each `(bucket, key)` in order, stopping at the first over its limit:
    /// `RATE_LIMITED` with the seconds until that window ends. Keys are stored hashed.
    pub async fn hit(&self, db: &impl GenericClient, keys: &[(Bucket, &str)]) -> Result<(), AppError> {
        for (bucket, key) in keys {
            let row = db
                .query_one(
                    "with w as (select to_timestamp(floor(extract(epoch from now())::float8 / $3::float8) * $3::float8) as start)
                     insert into control.throttle_hits (bucket, key_hash, window_start, expires_at, hits)
                     select $1, $2, w.start, w.start + make_interval(secs => $3::float8), 1 from w
                     on conflict (bucket, key_hash, window_start)
                     do update set hits = control.throttle_hits.hits + 1
                     returning hits, ceil(extract(epoch from expires_at - now()))::bigint",
                    &[&bucket.name(), &hash_secret(key), &WINDOW_SECS],
                )
                .await?;
            let hits: i32 = row.get(0);
            if u32::try_from(hits).unwrap_or(0) > self.of(*bucket) {
                let wait: i64 = row.get(1);
                return Err(AppError::RateLimited {
                    retry_after_secs: u64::try_from(wait).unwrap_or(1).max(1),
                });
            }
        }
        Ok(())
    }
}

/// The throttle key of a client: its IPv4 address, or its IPv6 /64 (one subscriber usually
/// holds a whole /64); `unknown` when the server does not know it (a router driven without a
/// socket, as in-process tests do).
pub fn ip_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V6(v6)) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
        Some(v4) => v4.to_string(),
        None => "unknown".to_owned(),
    }
}

/// Drops windows that have ended.
pub async fn prune_windows(db: &impl GenericClient) -> Result<u64, AppError> {
    Ok(db.execute("delete from control.throttle_hits where expires_at < now()", &[]).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_throttled_by_its_64_prefix() {
        let key = |s: &str| ip_key(Some(s.parse().unwrap()));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(ip_key(None), "unknown");
    }
}
