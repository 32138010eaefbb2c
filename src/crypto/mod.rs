//! Encryption of stored secrets: AES-256-GCM, a random 96-bit nonce per message, and the id of
//! the key in every ciphertext, so keys rotate (`MASTER_ENCRYPTION_KEY` encrypts; it and every
//! key in `OLD_ENCRYPTION_KEYS` decrypt; `tenantry keys rotate` re-encrypts under the current one).
//!
//! Ciphertext layout: `version (1) | key id (4) | nonce (12) | AES-GCM ciphertext and tag`.
//! Callers bind each ciphertext to where it is stored with associated data (`aad`), so a value
//! copied into another row or tenant does not decrypt.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// The first bytes of the key's SHA-256 (domain-separated): names a key without revealing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    fn of(key: &[u8; 32]) -> Self {
        let digest = Sha256::new_with_prefix(b"tenantry encryption key id\0").chain_update(key).finalize();
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self(id)
    }

    /// Hex, as stored next to ciphertexts (so rotation can find the ones under old keys).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why a ciphertext did not decrypt. Never says anything about the plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecryptError {
    #[error("the ciphertext is truncated or not in a known format")]
    Malformed,
    #[error(
        "the ciphertext was made with key {0}, which is neither MASTER_ENCRYPTION_KEY nor in OLD_ENCRYPTION_KEYS"
    )]
    UnknownKey(String),
    #[error("the ciphertext failed authentication (tampered, or stored under other associated data)")]
    Tampered,
}

struct Key {
    id: KeyId,
    cipher: Aes256Gcm,
}

/// The current key and the old keys still accepted for reading. Cheap to clone.
#[derive(Clone)]
pub struct Keyring(Arc<Keys>);

struct Keys {
    current: Key,
    old: Vec<Key>,
}

impl Keyring {
    /// `current` encrypts; `old` keys only decrypt. Every key is 32 bytes.
    pub fn new(current: [u8; 32], old: &[[u8; 32]]) -> anyhow::Result<Self> {
        let make = |bytes: &[u8; 32]| Key { id: KeyId::of(bytes), cipher: Aes256Gcm::new(bytes.into()) };
        let current = make(&current);
        let mut old_keys: Vec<Key> = Vec::new();
        for bytes in old {
            let key = make(bytes);
            if key.id == current.id || old_keys.iter().any(|k| k.id == key.id) {
                continue; // listed twice (or still the current key): harmless
            }
            old_keys.push(key);
        }
        Ok(Self(Arc::new(Keys { current, old: old_keys })))
    }

    /// Parses base64 keys as configured (`MASTER_ENCRYPTION_KEY`, `OLD_ENCRYPTION_KEYS`).
    pub fn from_base64(current: &str, old: &[&str]) -> anyhow::Result<Self> {
        let current = decode_key(current).context("MASTER_ENCRYPTION_KEY")?;
        let old = old
            .iter()
            .filter(|k| !k.trim().is_empty())
            .enumerate()
            .map(|(i, k)| decode_key(k).with_context(|| format!("OLD_ENCRYPTION_KEYS entry {}", i + 1)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Self::new(current, &old)
    }

    pub fn current_id(&self) -> KeyId {
        self.0.current.id
    }

    /// Encrypts under the current key with a fresh random nonce.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let key = &self.0.current;
        let sealed = key
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
            .expect("AES-GCM encrypts any message below 64 GiB");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&key.id.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts with whichever configured key made the ciphertext.
    pub fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let (id, nonce, sealed) = split(ciphertext)?;
        let keys = &self.0;
        let key = std::iter::once(&keys.current)
            .chain(&keys.old)
            .find(|k| k.id == id)
            .ok_or_else(|| DecryptError::UnknownKey(id.hex()))?;
        key.cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad })
            .map_err(|_| DecryptError::Tampered)
    }

    /// The key a ciphertext was made with.
    pub fn key_id_of(ciphertext: &[u8]) -> Result<KeyId, DecryptError> {
        split(ciphertext).map(|(id, _, _)| id)
    }
}

fn split(ciphertext: &[u8]) -> Result<(KeyId, [u8; NONCE_LEN], &[u8]), DecryptError> {
    if ciphertext.len() < HEADER_LEN + 16 || ciphertext[0] != VERSION {
        return Err(DecryptError::Malformed);
    }
    let mut id = [0; KEY_ID_LEN];
    id.copy_from_slice(&ciphertext[1..1 + KEY_ID_LEN]);
    let mut nonce = [0; NONCE_LEN];
    nonce.copy_from_slice(&ciphertext[1 + KEY_ID_LEN..HEADER_LEN]);
    Ok((KeyId(id), nonce, &ciphertext[HEADER_LEN..]))
}

fn decode_key(encoded: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = B64.decode(encoded.trim()).context("not valid base64")?;
    let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!("must be 32 bytes (base64 of 32 random bytes: `openssl rand -base64 32`), got {}", bytes.len());
    };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn ring(current: u8, old: &[u8]) -> Keyring {
        Keyring::new([current; 32], &old.iter().map(|b| [*b; 32]).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_value_round_trips_under_its_associated_data_only() {
        let keys = ring(1, &[]);
        let sealed = keys.encrypt(b"whsec_123", b"tenant-a/stripe");
        assert_eq!(keys.decrypt(&sealed, b"tenant-a/stripe").unwrap(), b"whsec_123");
        assert_eq!(keys.decrypt(&sealed, b"tenant-b/stripe"), Err(DecryptError::Tampered));
    }

    #[test]
    fn nonces_never_repeat_over_100_000_encryptions() {
        let keys = ring(1, &[]);
        let nonces: HashSet<[u8; NONCE_LEN]> =
            (0..100_000).map(|_| split(&keys.encrypt(b"x", b"")).unwrap().1).collect();
        assert_eq!(nonces.len(), 100_000);
    }

    #[test]
    fn a_tampered_ciphertext_is_an_error() {
        let keys = ring(1, &[]);
        let sealed = keys.encrypt(b"secret value", b"aad");
        for at in [HEADER_LEN - 1, HEADER_LEN, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x01;
            assert_eq!(keys.decrypt(&tampered, b"aad"), Err(DecryptError::Tampered), "byte {at}");
        }
        assert_eq!(keys.decrypt(&sealed[..HEADER_LEN + 3], b"aad"), Err(DecryptError::Malformed));
        let mut other_version = sealed.clone();
        other_version[0] = 9;
        assert_eq!(keys.decrypt(&other_version, b"aad"), Err(DecryptError::Malformed));
    }

    #[test]
    fn a_value_under_an_old_key_reads_while_that_key_is_listed() {
        let sealed = ring(1, &[]).encrypt(b"old secret", b"");
        let rotated = ring(2, &[1]);
        assert_eq!(rotated.decrypt(&sealed, b"").unwrap(), b"old secret");
        assert_ne!(
            Keyring::key_id_of(&rotated.encrypt(b"new", b"")).unwrap(),
            Keyring::key_id_of(&sealed).unwrap()
        );
        let forgotten = ring(2, &[]);
        assert!(matches!(forgotten.decrypt(&sealed, b""), Err(DecryptError::UnknownKey(_))));
    }

    #[test]
    fn configured_keys_must_be_32_bytes_of_base64() {
        assert!(Keyring::from_base64(&B64.encode([7u8; 32]), &[B64.encode([8u8; 32]).as_str()]).is_ok());
        let short = Keyring::from_base64(&B64.encode([7u8; 16]), &[]).err().unwrap();
        assert!(format!("{short:#}").contains("32 bytes"), "{short:#}");
        assert!(Keyring::from_base64("not base64!", &[]).is_err());
    }
}
