//! Secrets: random bytes, new API and link tokens (256 random bits, URL-safe) and the SHA-256
//! they are stored and looked up by.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A new secret (API token or link token): 256 random bits, URL-safe. Returned with its hash.
pub fn new_secret(prefix: &str) -> (String, [u8; 32]) {
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let hash = sha256(secret.as_bytes());
    (secret, hash)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hashed() {
        let (a, hash_a) = new_secret("iat_");
        let (b, _) = new_secret("iat_");
        assert_ne!(a, b);
        assert!(a.starts_with("iat_") && a.len() >= 4 + 43, "256 bits of base64: {a}");
        assert_eq!(hash_a, sha256(a.as_bytes()));
    }
}
