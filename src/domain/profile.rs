//! Stream profiles: the names of the wire shapes a stream client can ask
//! for, so clients written for the systems switchboard replaces (the seeds)
//! run unchanged. How each profile renders frames lives in
//! [`crate::event::profile`]; this is only the name, parsed once at the edge
//! (a query parameter, a path, the server's settings).

use std::fmt;

use serde::Deserialize;

/// A wire shape for WebSocket and SSE clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StreamProfile {
    /// The envelope of DESIGN.md; SSE events are typed by kind.
    #[default]
    Switchboard,
    /// Seed 000 (an SMS gateway): every frame also says `event_type`, in
    /// that gateway's words (`incoming`, `outgoing`, `modem_status_update`).
    SmsGateway,
    /// Seed 003 (a real-time feed API): every frame also says `type`.
    Feed,
    /// Seed 002 (a plain `EventSource`): SSE events carry no `event:` line,
    /// so `onmessage` sees every event; WebSocket frames as `switchboard`.
    Plain,
}

/// A profile name nobody defined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile '{0}'; known profiles: switchboard, sms-gateway, feed, plain")]
pub struct UnknownProfile(pub String);

impl StreamProfile {
    pub const ALL: [StreamProfile; 4] = [
        StreamProfile::Switchboard,
        StreamProfile::SmsGateway,
        StreamProfile::Feed,
        StreamProfile::Plain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamProfile::Switchboard => "switchboard",
            StreamProfile::SmsGateway => "sms-gateway",
            StreamProfile::Feed => "feed",
            StreamProfile::Plain => "plain",
        }
    }

    /// Parses a name as written in `?profile=` or the settings.
    pub fn parse(name: &str) -> Result<StreamProfile, UnknownProfile> {
        let name = name.trim();
        StreamProfile::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownProfile(super::truncate(name, 40)))
    }
}

impl fmt::Display for StreamProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_parses_from_its_own_name_and_nothing_else_does() {
        for profile in StreamProfile::ALL {
            assert_eq!(StreamProfile::parse(profile.as_str()), Ok(profile));
        }
        assert_eq!(
            StreamProfile::parse("SMS-Gateway"),
            Ok(StreamProfile::SmsGateway)
        );
        assert!(StreamProfile::parse("evolution").is_err());
        assert!(StreamProfile::parse("").is_err());
    }
}
