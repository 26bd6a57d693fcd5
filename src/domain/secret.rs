//! A webhook's signing secret: kept to compute each delivery's signature,
//! never shown back, never printed.

use std::fmt;

/// The shared secret a webhook's deliveries are signed with (HMAC-SHA256).
/// `Debug` does not show it, so it cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Fewest characters accepted: a guessable secret signs nothing.
    pub const MIN_LEN: usize = 16;
    /// Most characters accepted.
    pub const MAX_LEN: usize = 256;

    /// Checks a secret a client chose; the error says what is accepted.
    pub fn parse(raw: &str) -> Result<WebhookSecret, String> {
        let length = raw.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&length) {
            return Err(format!(
                "'secret' must have {} to {} characters (it has {length})",
                Self::MIN_LEN,
                Self::MAX_LEN
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err("'secret' must not contain control characters".into());
        }
        Ok(WebhookSecret(raw.to_owned()))
    }

    /// A secret as the store kept it (it was checked when it was set).
    pub fn stored(raw: String) -> WebhookSecret {
        WebhookSecret(raw)
    }

    /// The secret itself, for signing and storing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_checked_and_never_printed() {
        let secret = WebhookSecret::parse("a-receiver-secret-1234").expect("valid");
        assert!(!format!("{secret:?}").contains("receiver"));
        assert!(WebhookSecret::parse("short")
            .expect_err("short")
            .contains("16 to 256"));
        assert!(WebhookSecret::parse("line\nbreak-in-a-secret").is_err());
    }
}
