//! Access tokens: short-lived HS256 JWTs naming the user, for this issuer and audience only.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;

/// How long an access token is valid.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Clock skew tolerated on `exp` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// Tokens whose signature and claims were checked, remembered so a client's next requests skip
/// the decode (base64, JSON, HMAC: about 40,000 instructions, a sixth of a GraphQL read). Only
/// valid tokens are kept, each until its own expiry at the latest; bounded by count and idle time.
const VERIFIED_CAPACITY: u64 = 10_000;
const VERIFIED_IDLE: Duration = Duration::from_secs(5 * 60);
/// Longer strings are never remembered (and never valid tokens of ours anyway).
const VERIFIED_MAX_LEN: usize = 2048;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Signs and checks access tokens with the configured secret, issuer and audience.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: i64,
    /// token → (user, exp) for tokens that passed `verify`.
    verified: moka::sync::Cache<Box<str>, (Uuid, i64)>,
}

impl TokenKeys {
    /// Keys with the default issuer (the default PUBLIC_URL) and audience (`tenantry`), as a
    /// server started without JWT_ISSUER and JWT_AUDIENCE expects them.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_claims(secret, crate::config::DEFAULT_PUBLIC_URL, "tenantry", ACCESS_TOKEN_TTL)
    }

    /// Keys whose tokens name `issuer` and `audience` and live `ttl`; tokens that do not, or
    /// that claim a longer life, are refused.
    pub fn with_claims(secret: &[u8], issuer: &str, audience: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_idle(VERIFIED_IDLE)
                .build(),
        }
    }

    pub fn issue(&self, user_id: Uuid) -> Result<String, AppError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(AppError::internal)
    }

    /// The user a token names, if it is authentic, unexpired, meant for this server, and no
    /// longer-lived than the tokens this server issues (a leaked secret cannot mint forever-tokens).
    pub fn verify(&self, token: &str) -> Result<Uuid, TokenRejected> {
        self.verify_until(token).map(|(user, _)| user)
    }

    /// `verify`, with the token's `exp` (Unix seconds): a websocket ends when its token does.
    pub fn verify_until(&self, token: &str) -> Result<(Uuid, i64), TokenRejected> {
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
        let now = chrono::Utc::now().timestamp();
        if let Some((sub, exp)) = self.verified.get(token) {
            // The same test jsonwebtoken makes on `exp`.
            return if exp < now - leeway { Err(TokenRejected::Expired) } else { Ok((sub, exp)) };
        }
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => {
                let Claims { sub, iat, exp, .. } = data.claims;
                if exp.saturating_sub(iat) > self.ttl_secs.saturating_add(leeway) || iat > now + leeway {
                    return Err(TokenRejected::Invalid);
                }
                if token.len() <= VERIFIED_MAX_LEN {
                    self.verified.insert(token.into(), (sub, exp));
                }
                Ok((sub, exp))
            }
            Err(err) if matches!(err.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenRejected::Expired)
            }
            Err(_) => Err(TokenRejected::Invalid),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejected {
    Expired,
    Invalid,
}

impl From<TokenRejected> for AppError {
    fn from(reason: TokenRejected) -> Self {
        match reason {
            TokenRejected::Expired => {
                AppError::Unauthenticated("the access token has expired; sign in again")
            }
            TokenRejected::Invalid => AppError::Unauthenticated("the access token is not valid"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let user = Uuid::new_v4();
        let token = keys.issue(user).unwrap();
        assert_eq!(keys.verify(&token), Ok(user));
        let other = TokenKeys::new(b"another-secret-another-secret-xx");
        assert_eq!(other.verify(&token), Err(TokenRejected::Invalid));
        assert_eq!(keys.verify("not.a.token"), Err(TokenRejected::Invalid));
    }

    fn claims(iat: i64, exp: i64) -> Claims {
        Claims { sub: Uuid::new_v4(), iss: "https://api.test".into(), aud: "tenantry".into(), iat, exp }
    }

    fn keys() -> TokenKeys {
        TokenKeys::with_claims(
            b"0123456789abcdef0123456789abcdef",
            "https://api.test",
            "tenantry",
            ACCESS_TOKEN_TTL,
        )
    }

    fn sign(keys: &TokenKeys, claims: &impl Serialize) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &keys.encoding).unwrap()
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_changed_one_is_checked_again() {
        let keys = keys();
        let now = chrono::Utc::now().timestamp();
        // Valid for one more second within the leeway, then expired.
        let token = sign(&keys, &claims(now - 10, now - 4));
        assert!(keys.verify(&token).is_ok());
        assert_eq!(keys.verified.get(token.as_str()).map(|(_, exp)| exp), Some(now - 4));
        let mut tampered = token.clone();
        tampered.pop();
        assert_eq!(keys.verify(&tampered), Err(TokenRejected::Invalid));
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(keys.verify(&token), Err(TokenRejected::Expired));
    }

    #[test]
    fn expired_tokens_say_so() {
        let keys = keys();
        let token = sign(&keys, &claims(0, 60));
        assert_eq!(keys.verify(&token), Err(TokenRejected::Expired));
    }

    #[test]
    fn tokens_for_another_issuer_or_audience_are_refused() {
        let keys = keys();
        let now = chrono::Utc::now().timestamp();
        assert!(keys.verify(&sign(&keys, &claims(now, now + 60))).is_ok());
        let mut other = claims(now, now + 60);
        other.iss = "https://evil.test".into();
        assert_eq!(keys.verify(&sign(&keys, &other)), Err(TokenRejected::Invalid));
        let mut other = claims(now, now + 60);
        other.aud = "billing".into();
        assert_eq!(keys.verify(&sign(&keys, &other)), Err(TokenRejected::Invalid));
    }

    #[test]
    fn tokens_living_longer_than_the_ttl_or_without_iat_are_refused() {
        let keys = keys();
        let now = chrono::Utc::now().timestamp();
        let year = sign(&keys, &claims(now, now + 365 * 24 * 3600));
        assert_eq!(keys.verify(&year), Err(TokenRejected::Invalid));
        let no_iat = serde_json::json!({
            "sub": Uuid::new_v4(), "iss": "https://api.test", "aud": "tenantry", "exp": now + 60
        });
        assert_eq!(keys.verify(&sign(&keys, &no_iat)), Err(TokenRejected::Invalid));
        let from_the_future = sign(&keys, &claims(now + 600, now + 660));
        assert_eq!(keys.verify(&from_the_future), Err(TokenRejected::Invalid));
    }
}
