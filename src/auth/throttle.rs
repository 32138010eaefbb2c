//! Cluster-wide throttles, counted in `control.throttle_hits` by one atomic upsert per key and
//! fixed window, so every replica sees one count: sign-ins per address and per client IP per
//! minute; sign-ups and mailed links per address and per client IP per hour.

use std::net::IpAddr;

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
                     returning hits, ceil(extract(epoch from expires_at - now()))::bigint as wait_secs",
                    &[&bucket.name(), &hash_secret(key), &bucket.window_secs()],
                )
                .await?;
            let c = Columns::of(&row, "auth::throttle::hit");
            let hits: i32 = c.try_get("hits")?;
            if u32::try_from(hits).unwrap_or(0) > self.of(*bucket) {
                let wait: i64 = c.try_get("wait_secs")?;
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
