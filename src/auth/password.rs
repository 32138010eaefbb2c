//! Passwords: the input rule, and argon2id hashing off the async runtime.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::hasher::Hasher;
use crate::error::AppError;

/// A password that satisfies the length rule. Its `Debug` never shows the secret.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let chars = raw.chars().count();
        if chars < 8 {
            return Err(AppError::validation("password", "must be at least 8 characters long"));
        }
        if chars > 1024 {
            return Err(AppError::validation("password", "must be at most 1024 characters long"));
        }
        if COMMON.contains(&raw.to_lowercase().as_str()) {
            return Err(AppError::validation(
                "password",
                "is one of the most common passwords; choose another",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Among the most used passwords of at least 8 characters (public breach lists), lowercase.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "passw0rd",
    "p@ssw0rd",
    "12345678",
    "123456789",
    "1234567890",
    "12345678910",
    "87654321",
    "11111111",
    "00000000",
    "88888888",
    "66666666",
    "12341234",
    "11223344",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "qwertyuiop",
    "qwerty123",
    "qwerty12",
    "qwertyui",
    "1qaz2wsx",
    "zaq12wsx",
    "asdfghjkl",
    "asdfasdf",
    "abcd1234",
    "abc12345",
    "iloveyou",
    "iloveyou1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "superman",
    "starwars",
    "welcome1",
    "welcome123",
    "letmein1",
    "trustno1",
    "whatever",
    "computer",
    "internet",
    "michelle",
    "jennifer",
    "corvette",
    "mercedes",
    "dragon12",
    "master12",
    "monkey12",
    "shadow12",
    "liverpool",
    "chelsea1",
    "samsung1",
    "qazwsxedc",
    "changeme",
    "administrator",
    "admin123",
    "admin1234",
    "secret123",
    "test1234",
    "testtest",
    "football1",
    "basketball",
    "charlie1",
    "1234qwer",
    "q1w2e3r4",
    "q1w2e3r4t5",
    "aa123456",
    "a1234567",
    "passport",
    "access14",
];

/// Hashes with argon2id (default parameters) into a PHC string, on the hashing pool.
pub async fn hash(hasher: &Hasher, password: Password) -> Result<String, AppError> {
    hasher
        .run(move || {
            Argon2::default()
                .hash_password(password.0.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|err| AppError::internal(anyhow::anyhow!("hashing a password: {err}")))
        })
        .await?
}

/// Checks `candidate` against a stored PHC hash, on the hashing pool. With no stored hash
/// (unknown user) it checks a dummy hash, so both failures cost the same time.
pub async fn verify(hasher: &Hasher, candidate: String, stored: Option<String>) -> Result<bool, AppError> {
    hasher
        .run(move || {
            let known = stored.is_some();
            let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
            let parsed = PasswordHash::new(&stored)
                .map_err(|err| AppError::internal(anyhow::anyhow!("stored hash unreadable: {err}")))?;
            let matches = Argon2::default().verify_password(candidate.as_bytes(), &parsed).is_ok();
            Ok(known && matches)
        })
        .await?
}

/// The argon2id hash (default parameters) of a random string nobody knows.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$SqzgLSjJ0FAbbTzHqYbr9wZR8MSoNYR4x1tQ+fsIpQk";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let pool = Hasher::start(1, 4, std::time::Duration::from_secs(30)).unwrap();
        let hash = hash(&pool, Password::parse("correct horse").unwrap()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify(&pool, "correct horse".into(), Some(hash.clone())).await.unwrap());
        assert!(!verify(&pool, "wrong horse!".into(), Some(hash)).await.unwrap());
        assert!(!verify(&pool, "anything at all".into(), None).await.unwrap());
    }

    #[test]
    fn short_and_common_passwords_are_refused_with_the_rule() {
        let err = Password::parse("short").unwrap_err();
        assert!(err.message().contains("at least 8"), "{}", err.message());
        let err = Password::parse("Password123").unwrap_err();
        assert!(err.message().contains("most common"), "{}", err.message());
        assert!(Password::parse("correct horse").is_ok());
    }
}
