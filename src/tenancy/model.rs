//! Tenant types: parsed input newtypes and the stored tenant.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::SchemaName;
use crate::db::rows::Columns;
use crate::error::AppError;

/// A tenant subdomain: `^[a-z0-9-]+$`, 3–50 characters, not starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subdomain(String);

/// Names that would collide with the product's own hosts.
const RESERVED: &[&str] = &["www", "api", "app", "admin", "mail", "status", "static", "playground"];

impl Subdomain {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let invalid = |message: &str| Err(AppError::validation("subdomain", message));
        if !(3..=50).contains(&raw.len()) {
            return invalid("must be 3 to 50 characters long");
        }
        if !raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return invalid("may contain only lowercase letters a-z, digits and '-'");
        }
        if raw.starts_with('-') || raw.ends_with('-') {
            return invalid("must not start or end with '-'");
        }
        if RESERVED.contains(&raw) {
            return invalid("is reserved; choose another");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A custom domain: a lowercase host name with at least two labels, outside `BASE_DOMAIN`,
/// that no browser reads as an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain(String);

impl Domain {
    /// Reads `raw` with the WHATWG host parser (the `url` crate), as browsers read a URL's host:
    /// there `127.1`, `0177.0.0.1`, `0x7f.1` and `1.1` are IPv4 addresses, and an
    /// internationalised name becomes its `xn--` form. Addresses, names ending in a number and
    /// single labels (`intranet`, `localhost`) are refused.
    pub fn parse(raw: &str, base_domain: &str) -> Result<Self, AppError> {
        let invalid = |message: String| Err(AppError::validation("domain", message));
        let not_a_name = || invalid("must be a host name such as app.example.com".into());
        let address = |ip: std::net::IpAddr| {
            invalid(format!("must be a host name, not an IP address (browsers read it as {ip})"))
        };
        let raw = raw.trim();
        if let Ok(ip) = raw.parse::<std::net::IpAddr>() {
            return address(ip);
        }
        let host = match url::Host::parse(raw) {
            Ok(url::Host::Domain(name)) => name,
            Ok(url::Host::Ipv4(ip)) => return address(ip.into()),
            Ok(url::Host::Ipv6(ip)) => return address(ip.into()),
            Err(_) => return not_a_name(),
        };
        let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return not_a_name();
        }
        if !host.contains('.') {
            return invalid(
                "must be a public domain name with at least two labels, such as app.example.com; a \
                 single label (like intranet or localhost) names no site on the internet"
                    .into(),
            );
        }
        if host == base_domain || host.ends_with(&format!(".{base_domain}")) {
            return invalid(
                "must not be under the service's own domain; tenants get subdomains of it already".into(),
            );
        }
        Ok(Self(host))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant's display name: 2–100 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let name = raw.trim();
        let chars = name.chars().count();
        if !(2..=100).contains(&chars) {
            return Err(AppError::validation("name", "must be 2 to 100 characters long"));
        }
        if name.chars().any(char::is_control) {
            return Err(AppError::validation("name", "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "TenantStatus")]
pub enum TenantStatus {
    Active,
    Suspended,
    Expired,
}

impl TenantStatus {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Expired => "expired",
        }
    }

    /// Reads a stored status. An unknown value is an error, never "active": the code fails closed.
    fn from_db(raw: &str) -> Result<Self, AppError> {
        match raw {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "expired" => Ok(Self::Expired),
            other => {
                Err(AppError::internal(anyhow::anyhow!("unknown tenant status {other:?} in the database")))
            }
        }
    }
}

/// The columns `Tenant::from_row` reads, for `select`/`returning` lists (never `*`).
pub const TENANT_COLUMNS: &str = "id, name, subdomain, domain, plan, status, expires_at, settings, owner_id, \
     schema_name, migration_version, created_at, deleted_at";

/// A tenant as stored in `control.tenants`.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub subdomain: String,
    pub domain: Option<String>,
    pub plan: String,
    pub status: TenantStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub settings: serde_json::Value,
    pub owner_id: Option<Uuid>,
    pub schema: SchemaName,
    pub migration_version: i32,
    pub created_at: DateTime<Utc>,
    /// Set when deleted: gone for requests, schema kept until purged.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Tenant {
    pub fn from_row(row: &Row) -> Result<Self, AppError> {
        let c = Columns::of(row, "Tenant::from_row");
        let schema: String = c.try_get("schema_name")?;
        Ok(Self {
            id: c.try_get("id")?,
            name: c.try_get("name")?,
            subdomain: c.try_get("subdomain")?,
            domain: c.try_get("domain")?,
            plan: c.try_get("plan")?,
            status: TenantStatus::from_db(c.try_get("status")?)?,
            expires_at: c.try_get("expires_at")?,
            settings: c.try_get("settings")?,
            owner_id: c.try_get("owner_id")?,
            schema: SchemaName::parse(&schema).map_err(AppError::internal)?,
            migration_version: c.try_get("migration_version")?,
            created_at: c.try_get("created_at")?,
            deleted_at: c.try_get("deleted_at")?,
        })
    }

    /// Whether requests may reach this tenant now.
    pub fn check_open(&self, now: DateTime<Utc>) -> Result<(), AppError> {
        match self.status {
            TenantStatus::Suspended => Err(AppError::TenantSuspended),
            TenantStatus::Expired => Err(AppError::SubscriptionExpired),
            TenantStatus::Active if self.expires_at.is_some_and(|at| at <= now) => {
                Err(AppError::SubscriptionExpired)
            }
            TenantStatus::Active => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_stored_status_is_an_error_not_active() {
        assert_eq!(TenantStatus::from_db("suspended").unwrap(), TenantStatus::Suspended);
        assert_eq!(TenantStatus::from_db("archived").unwrap_err().code(), "INTERNAL");
    }

    #[test]
    fn subdomains_follow_the_documented_rule() {
        for ok in ["acme", "a-1", "abc", &"x".repeat(50)] {
            assert!(Subdomain::parse(ok).is_ok(), "{ok} refused");
        }
        for bad in ["ab", "Acme", "acme_co", "acme.co", "-acme", "acme-", "www", "", &"x".repeat(51)] {
            assert!(Subdomain::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn custom_domains_are_host_names_outside_the_base_domain() {
        assert_eq!(Domain::parse("App.Acme.io.", "example.com").unwrap().as_str(), "app.acme.io");
        assert_eq!(Domain::parse("bücher.de", "example.com").unwrap().as_str(), "xn--bcher-kva.de");
        assert_eq!(Domain::parse("1x.example.org", "example.com").unwrap().as_str(), "1x.example.org");
        for bad in ["acme", "acme..io", "-a.io", "10.0.0.1", "x.example.com", "example.com", "a b.io"] {
            assert!(Domain::parse(bad, "example.com").is_err(), "{bad} accepted");
        }
        // IPv4 as browsers read it (WHATWG URL), IPv6, and names that end in a number.
        for (address, read_as) in [
            ("127.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("1.1", "1.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ] {
            let message = Domain::parse(address, "example.com").unwrap_err().message();
            assert!(
                message.contains("not an IP address") && message.contains(read_as),
                "{address}: {message}"
            );
        }
        for bad in ["shop.1", "shop.0x1", "localhost", "intranet", "intranet.", "%31.1"] {
            assert!(Domain::parse(bad, "example.com").is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn tenant_names_are_trimmed_and_bounded() {
        assert_eq!(TenantName::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert!(TenantName::parse("A").is_err());
        assert!(TenantName::parse(&"é".repeat(100)).is_ok());
        assert!(TenantName::parse(&"é".repeat(101)).is_err());
        assert!(TenantName::parse("Ac\u{0}me").is_err());
    }
}
