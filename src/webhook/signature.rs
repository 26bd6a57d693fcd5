//! Signed deliveries: every POST of a webhook with a secret carries
//!
//! ```text
//! X-Switchboard-Timestamp: <Unix seconds>
//! X-Switchboard-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
//! ```
//!
//! The timestamp is part of what is signed, so a receiver that refuses
//! timestamps older than its tolerance (the README suggests 5 minutes)
//! refuses a replayed request, and no one can move a captured body to a new
//! time. Each attempt is signed anew, so a retry carries a fresh timestamp.
//! `v1=` names the scheme, so another can be added beside it later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::WebhookSecret;

/// The header with the time of signing.
pub const TIMESTAMP_HEADER: &str = "X-Switchboard-Timestamp";
/// The header with the signature.
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";

/// The signature of `body` sent at `timestamp` (Unix seconds), as the
/// signature header carries it.
pub fn sign(secret: &WebhookSecret, timestamp: i64, body: &[u8]) -> String {
    // unwrap: HMAC accepts a key of any length.
    #[allow(clippy::unwrap_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).unwrap();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_timestamp_a_dot_and_the_body() {
        let secret = WebhookSecret::parse("whsec-0123456789abcdef").expect("valid");
        // Computed independently: Python's
        // hmac.new(b"whsec-0123456789abcdef", b"1700000000.{\"id\":1}", "sha256").hexdigest()
        assert_eq!(
            sign(&secret, 1_700_000_000, br#"{"id":1}"#),
            "v1=139d89016db745c75bf654476b1450b5650c0885f51ba9dae48257ca45752295"
        );
        // Another timestamp or body, another signature.
        assert_ne!(
            sign(&secret, 1_700_000_001, br#"{"id":1}"#),
            sign(&secret, 1_700_000_000, br#"{"id":1}"#)
        );
        assert_ne!(
            sign(&secret, 1_700_000_000, br#"{"id":2}"#),
            sign(&secret, 1_700_000_000, br#"{"id":1}"#)
        );
    }
}
