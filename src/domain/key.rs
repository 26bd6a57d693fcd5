//! API keys: 256 random bits shown once, kept only as SHA-256 digests.
//!
//! A fast hash is enough because the keys are random (there is nothing to
//! brute-force); digests are compared in constant time by whoever checks
//! them.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A SHA-256 digest of a key.
pub type KeyDigest = [u8; 32];

pub fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// A fresh key: 256 random bits as 64 hex characters.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Reads a digest stored as hex.
pub fn parse_digest(hex_digest: &str) -> Option<KeyDigest> {
    hex::decode(hex_digest).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_64_hex_characters_and_its_digest_reads_back_from_hex() {
        let key = generate_key();
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(key, generate_key());
        let stored = hex::encode(digest(&key));
        assert_eq!(parse_digest(&stored), Some(digest(&key)));
        assert_eq!(parse_digest("not hex"), None);
    }
}
