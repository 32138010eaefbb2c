//! Access tokens: short-lived HS256 JWTs naming the user.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;

/// How long an access token is valid.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iat: i64,
    exp: i64,
}

/// Signs and checks access tokens with the configured secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn issue(&self, user_id: Uuid) -> Result<String, AppError> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(ACCESS_TOKEN_TTL.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims { sub: user_id, iat: now, exp: now + ttl };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(AppError::internal)
    }

    /// The user a token names, if it is authentic and unexpired.
    pub fn verify(&self, token: &str) -> Result<Uuid, TokenRejected> {
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims.sub),
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

    #[test]
    fn expired_tokens_say_so() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let claims = Claims { sub: Uuid::new_v4(), iat: 0, exp: 60 };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert_eq!(keys.verify(&token), Err(TokenRejected::Expired));
    }
}
