//! `SchemaName`: the only identifier ever formatted into SQL, derived from a tenant's immutable id.

use std::fmt;

use uuid::Uuid;

/// A tenant schema name, `t_` and 32 lowercase hex digits (the tenant id), always emitted quoted.
/// Nothing else parses: not `control`, not `public`, not a name a file or a request made up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    /// The schema of a tenant: `t_<id as 32 hex digits>`.
    pub fn for_tenant(id: Uuid) -> Self {
        Self(format!("t_{}", id.simple()))
    }

    /// Accepts a stored tenant schema name, refusing any other shape.
    pub fn parse(raw: &str) -> Result<Self, InvalidSchemaName> {
        let hex = raw.strip_prefix("t_").unwrap_or_default();
        let ok = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok { Ok(Self(raw.to_owned())) } else { Err(InvalidSchemaName(raw.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier, safe to splice into DDL.
    pub fn quoted(&self) -> String {
        // The alphabet excludes '"', so wrapping is sufficient quoting.
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid tenant schema name {0:?}: a tenant schema is t_ followed by the tenant id as 32 lowercase hex digits"
)]
pub struct InvalidSchemaName(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_schemas_are_derived_from_the_id() {
        let id = Uuid::parse_str("0190f5b6-8f7e-7a3c-9a2b-1c2d3e4f5a6b").unwrap();
        let name = SchemaName::for_tenant(id);
        assert_eq!(name.as_str(), "t_0190f5b68f7e7a3c9a2b1c2d3e4f5a6b");
        assert!(SchemaName::parse(name.as_str()).is_ok());
        assert_eq!(name.quoted(), "\"t_0190f5b68f7e7a3c9a2b1c2d3e4f5a6b\"");
    }

    #[test]
    fn hostile_names_are_refused() {
        let upper = "t_0190F5B68F7E7A3C9A2B1C2D3E4F5A6B";
        let long = "t_0190f5b68f7e7a3c9a2b1c2d3e4f5a6b0";
        let not_hex = "t_0190f5b68f7e7a3c9a2b1c2d3e4f5a6g";
        for bad in [
            "",
            "control",
            "public",
            "t_",
            "t_1; drop schema control",
            "a\"b",
            "control.x",
            upper,
            long,
            not_hex,
        ] {
            assert!(SchemaName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
