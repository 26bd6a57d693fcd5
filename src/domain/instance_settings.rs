//! What an instance does on its own (Evolution's `settings/set`): reject
//! calls and answer the caller by SMS, how it reads the numbers it is
//! given. Stored as one JSON document per instance, so a setting added
//! later (every field has a default) needs no migration and older rows
//! read as "off".

use serde::{Deserialize, Serialize};

use super::{
    number::{NumberRules, Region},
    throttle::Throttle,
};

/// Per-instance behaviour, as `settings/find` shows it and the store keeps it.
///
/// Evolution's other switches are left out on purpose: `groupsIgnore` (an
/// SMS never comes from a group chat; groups here are send lists),
/// `alwaysOnline` (SMS has no presence), `readMessages` and `readStatus`
/// (SMS has no read receipts) and `syncFullHistory` (the network keeps no
/// history to sync).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceSettings {
    /// Hang up every incoming call right after its `offer` event.
    pub reject_call: bool,
    /// A text sent to each caller whose call was rejected (by `rejectCall`
    /// or `call/reject`), through the outbox like any other; `None` (or
    /// empty): none.
    pub msg_call: Option<String>,
    /// The country national numbers (without `+`) are read in.
    pub default_region: Option<Region>,
    /// Whether 3 to 8 digits without `+` may be sent to as a short code.
    pub allow_short_codes: bool,
    /// How fast the instance may send (none: as fast as the modem takes).
    #[serde(skip_serializing_if = "Throttle::is_empty")]
    pub throttle: Throttle,
}

/// The longest `msgCall`, in characters: a text of a few SMS parts.
pub const MAX_MSG_CALL: usize = 480;

impl InstanceSettings {
    /// How the instance reads numbers.
    pub fn number_rules(&self) -> NumberRules {
        NumberRules {
            default_region: self.default_region,
            allow_short_codes: self.allow_short_codes,
        }
    }

    /// The text for a rejected caller, if there is one.
    pub fn call_reply(&self) -> Option<&str> {
        self.msg_call.as_deref().filter(|t| !t.trim().is_empty())
    }

    /// Checks the settings; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        self.throttle.check()?;
        if let Some(text) = &self.msg_call {
            let length = text.chars().count();
            if length > MAX_MSG_CALL {
                return Err(format!(
                    "'msgCall' is {length} characters; the limit is {MAX_MSG_CALL}"
                ));
            }
            if text.contains('\0') {
                return Err("'msgCall' must not contain the character U+0000".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_document_missing_fields_reads_as_off() {
        let settings: InstanceSettings = serde_json::from_str("{}").expect("json");
        assert_eq!(settings, InstanceSettings::default());
        let settings: InstanceSettings =
            serde_json::from_str(r#"{"rejectCall": true, "defaultRegion": "GB", "future": 1}"#)
                .expect("json");
        assert!(settings.reject_call);
        assert_eq!(
            settings.default_region.map(|r| r.to_string()),
            Some("GB".into())
        );
    }

    #[test]
    fn an_empty_msg_call_sends_nothing_and_a_long_one_is_refused() {
        let mut settings = InstanceSettings {
            msg_call: Some("  ".into()),
            ..InstanceSettings::default()
        };
        assert_eq!(settings.call_reply(), None);
        settings.msg_call = Some("x".repeat(MAX_MSG_CALL + 1));
        assert!(settings.check().expect_err("too long").contains("msgCall"));
    }
}
