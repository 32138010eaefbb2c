//! Cluster-wide throttles as sliding windows: `control.throttle_log` keeps, per bucket and key,
//! the times of the hits admitted within the last window, updated by one atomic upsert, so every
//! replica sees one log and **no span of one window's length admits more than the limit** (fixed
//! windows let twice the limit through across a boundary). Sign-ins per address and per client
//! IP per minute; sign-ups and mailed links per address and per client IP per hour. A key's log
//! holds at most its limit of timestamps; refused attempts are not logged.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::secret::hash_secret;
use crate::db::rows::Columns;
use crate::error::AppError;

/// What is counted, each with its own limit per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `signIn` attempts for one address (known or not), per minute.
    SignInAddress,
    /// `signIn` attempts from one client IP, per minute.
    SignInIp,
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
            Self::SignInAddress => "sign_in_address",
            Self::SignInIp => "sign_in_ip",
            Self::SignUpAddress => "sign_up_address",
            Self::SignUpIp => "sign_up_ip",
            Self::MailAddress => "mail_address",
            Self::ResetIp => "reset_ip",
        }
    }

    /// The length of this bucket's windows, in seconds.
    fn window_secs(self) -> f64 {
        match self {
            Self::SignInAddress | Self::SignInIp => 60.0,
            Self::SignUpAddress | Self::SignUpIp | Self::MailAddress | Self::ResetIp => 3600.0,
        }
    }
}

/// The limits of the cluster-wide throttles per window (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Throttles {
    pub sign_ins_per_address: u32,
    pub sign_ins_per_ip: u32,
    pub sign_ups_per_address: u32,
    pub sign_ups_per_ip: u32,
    pub mails_per_address: u32,
    pub resets_per_ip: u32,
}

impl Throttles {
    fn of(&self, bucket: Bucket) -> u32 {
        match bucket {
            Bucket::SignInAddress => self.sign_ins_per_address,
            Bucket::SignInIp => self.sign_ins_per_ip,
            Bucket::SignUpAddress => self.sign_ups_per_address,
            Bucket::SignUpIp => self.sign_ups_per_ip,
            Bucket::MailAddress => self.mails_per_address,
            Bucket::ResetIp => self.resets_per_ip,
        }
    }

    /// Admits one hit on each `(bucket, key)` in order, now, stopping at the first that would
    /// exceed its limit within the last window: `RATE_LIMITED` with the seconds until its oldest
    /// logged hit leaves the window. Keys are stored hashed.
    pub async fn hit(&self, db: &impl GenericClient, keys: &[(Bucket, &str)]) -> Result<(), AppError> {
        self.hit_at(db, keys, Utc::now()).await
    }

    /// [`Self::hit`] at time `at` (the application's clock, so a test can place hits on either
    /// side of a minute boundary; replicas' clocks agree to well under a second).
    pub async fn hit_at(
        &self,
        db: &impl GenericClient,
        keys: &[(Bucket, &str)],
        at: DateTime<Utc>,
    ) -> Result<(), AppError> {
        for (bucket, key) in keys {
            let limit = i64::from(self.of(*bucket));
            if limit == 0 {
                let window = bucket.window_secs() as u64;
                return Err(AppError::RateLimited { retry_after_secs: window });
            }
            // The new log: the hits still inside the window, plus this one if that stays within
            // the limit. `excluded.hits[1]` is `at`; the row lock orders concurrent hits.
            let row = db
                .query_one(
                    "insert into control.throttle_log as l (bucket, key_hash, hits, expires_at)
                     select $1, $2, array[$3::timestamptz], $3::timestamptz + make_interval(secs => $4::float8)
                     on conflict (bucket, key_hash) do update set
                         hits = (select case when count(*) < $5::bigint
                                             then coalesce(array_agg(h order by h), '{}') || excluded.hits[1]
                                             else array_agg(h order by h) end
                                 from unnest(l.hits) as h
                                 where h > excluded.hits[1] - make_interval(secs => $4::float8)),
                         expires_at = greatest(l.expires_at, excluded.expires_at)
                     returning $3::timestamptz = any(hits) as admitted,
                               ceil(extract(epoch from (select min(h) from unnest(hits) as h)
                                   + make_interval(secs => $4::float8) - $3::timestamptz))::bigint as wait_secs",
                    &[&bucket.name(), &hash_secret(key), &at, &bucket.window_secs(), &limit],
                )
                .await?;
            let c = Columns::of(&row, "auth::throttle::hit");
            if !c.try_get::<bool>("admitted")? {
                let wait: Option<i64> = c.try_get("wait_secs")?;
                let wait = wait.and_then(|w| u64::try_from(w).ok()).unwrap_or(1).max(1);
                return Err(AppError::RateLimited { retry_after_secs: wait });
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

/// Drops logs whose every hit has left its window.
pub async fn prune_windows(db: &impl GenericClient) -> Result<u64, AppError> {
    Ok(db.execute("delete from control.throttle_log where expires_at < now()", &[]).await?)
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
