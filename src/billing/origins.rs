//! Redirect URLs given to checkout and the portal must point at an allowed origin: no open redirect.

use url::Url;

use crate::error::AppError;

/// Allowed origins (`scheme://host[:port]`), from `BILLING_ALLOWED_ORIGINS` or `PUBLIC_URL`.
#[derive(Debug, Clone)]
pub struct AllowedOrigins(Vec<url::Origin>);

impl AllowedOrigins {
    /// Parses a comma-separated list; each entry must be an http(s) URL (its path is ignored).
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let mut origins = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let url = Url::parse(entry)
                .map_err(|err| anyhow::anyhow!("BILLING_ALLOWED_ORIGINS: {entry:?} is not a URL: {err}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                anyhow::bail!("BILLING_ALLOWED_ORIGINS: {entry:?} must be an http or https origin");
            }
            origins.push(url.origin());
        }
        if origins.is_empty() {
            anyhow::bail!("BILLING_ALLOWED_ORIGINS names no origin");
        }
        Ok(Self(origins))
    }

    /// Parses a caller's redirect URL and accepts it only on an allowed origin.
    pub fn check(&self, field: &'static str, raw: &str) -> Result<Url, AppError> {
        let url = Url::parse(raw.trim())
            .map_err(|_| AppError::validation(field, "must be an absolute http(s) URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AppError::validation(field, "must be an absolute http(s) URL"));
        }
        if !self.0.contains(&url.origin()) {
            let allowed: Vec<_> = self.0.iter().map(|o| o.ascii_serialization()).collect();
            return Err(AppError::validation(
                field,
                format!("must point to one of the allowed origins: {}", allowed.join(", ")),
            ));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_on_an_allowed_origin_pass() {
        let origins = AllowedOrigins::parse("https://app.example.com, http://localhost:3000/").unwrap();
        assert!(origins.check("successUrl", "https://app.example.com/billing?ok=1").is_ok());
        assert!(origins.check("successUrl", "http://localhost:3000/x").is_ok());
    }

    #[test]
    fn other_origins_and_non_http_urls_are_refused() {
        let origins = AllowedOrigins::parse("https://app.example.com").unwrap();
        for bad in [
            "https://evil.example.com/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "https://app.example.com.evil.io/",
            "javascript:alert(1)",
            "/relative",
            "",
        ] {
            let err = origins.check("successUrl", bad).unwrap_err();
            assert_eq!(err.code(), "VALIDATION", "{bad}");
        }
    }

    #[test]
    fn a_bad_origin_list_is_a_configuration_error() {
        assert!(AllowedOrigins::parse("").is_err());
        assert!(AllowedOrigins::parse("ftp://x.io").is_err());
        assert!(AllowedOrigins::parse("not a url").is_err());
    }
}
