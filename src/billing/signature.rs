//! `Stripe-Signature` verification: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`,
//! checked against every configured secret (rotation) and every `v1` entry, within a tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How old a signature may be, as Stripe's own libraries default to.
pub const TOLERANCE_SECS: i64 = 300;

/// Webhook signing secrets: one normally, several while rotating. Never logged.
#[derive(Clone, Default)]
pub struct WebhookSecrets(Vec<Vec<u8>>);

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} configured)", self.0.len())
    }
}

/// Why a delivery was refused; each maps to HTTP 400 with no effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `Stripe-Signature` header, or one without `t=` or `v1=`.
    Malformed,
    /// The timestamp is older than the tolerance (a replay, or a badly delayed delivery).
    Stale,
    /// No `v1` matches any secret.
    Mismatch,
}

impl SignatureError {
    pub fn message(self) -> &'static str {
        match self {
            Self::Malformed => "missing or malformed Stripe-Signature header",
            Self::Stale => "the Stripe-Signature timestamp is outside the tolerance",
            Self::Mismatch => "no signature matches the configured webhook secret",
        }
    }
}

impl WebhookSecrets {
    /// Parses `STRIPE_WEBHOOK_SECRET`: comma-separated, blanks ignored.
    pub fn parse(raw: Option<&str>) -> Self {
        let secrets = raw
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        Self(secrets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Verifies `header` for `body` at time `now` (unix seconds).
    pub fn verify(&self, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", value)) if timestamp.is_none() => timestamp = value.parse::<i64>().ok(),
                Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
                _ => {}
            }
        }
        let Some(timestamp) = timestamp else { return Err(SignatureError::Malformed) };
        if signatures.is_empty() {
            return Err(SignatureError::Malformed);
        }
        // Like Stripe's libraries: only age is limited (a future timestamp still needs the secret).
        if now - timestamp > TOLERANCE_SECS {
            return Err(SignatureError::Stale);
        }
        for secret in &self.0 {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            // `verify_slice` compares in constant time.
            if signatures.iter().any(|sig| mac.clone().verify_slice(sig).is_ok()) {
                return Ok(());
            }
        }
        Err(SignatureError::Mismatch)
    }
}

/// Signs `body` as Stripe does (for tests and benchmarks): the header value.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1"}"#;

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let secrets = WebhookSecrets::parse(Some("whsec_a"));
        assert_eq!(secrets.verify(&sign("whsec_a", 1000, BODY), BODY, 1010), Ok(()));
    }

    #[test]
    fn any_of_several_secrets_and_several_v1_entries_may_match() {
        let secrets = WebhookSecrets::parse(Some("whsec_old, whsec_new"));
        let header = sign("whsec_new", 1000, BODY);
        assert_eq!(secrets.verify(&header, BODY, 1000), Ok(()));
        let forged = sign("whsec_other", 1000, BODY);
        let v1 = header.split_once("v1=").unwrap().1;
        let both = format!("{forged},v1={v1},v0=ignored");
        assert_eq!(secrets.verify(&both, BODY, 1000), Ok(()));
    }

    #[test]
    fn a_changed_body_or_another_secret_is_a_mismatch() {
        let secrets = WebhookSecrets::parse(Some("whsec_a"));
        let header = sign("whsec_a", 1000, BODY);
        assert_eq!(secrets.verify(&header, br#"{"id":"evt_2"}"#, 1000), Err(SignatureError::Mismatch));
        assert_eq!(secrets.verify(&sign("whsec_b", 1000, BODY), BODY, 1000), Err(SignatureError::Mismatch));
    }

    #[test]
    fn an_old_timestamp_is_stale() {
        let secrets = WebhookSecrets::parse(Some("whsec_a"));
        let header = sign("whsec_a", 1000, BODY);
        assert_eq!(secrets.verify(&header, BODY, 1000 + TOLERANCE_SECS + 1), Err(SignatureError::Stale));
    }

    #[test]
    fn headers_without_a_timestamp_or_signature_are_malformed() {
        let secrets = WebhookSecrets::parse(Some("whsec_a"));
        for header in ["", "t=1000", "v1=abcd", "t=x,v1=abcd", "t=1000,v1=zz"] {
            assert_eq!(secrets.verify(header, BODY, 1000), Err(SignatureError::Malformed), "{header}");
        }
    }
}
