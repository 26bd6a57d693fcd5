//! Per-instance settings that several stages read: what an instance
//! streams to clients, and how long its events are kept.

use super::topic::TopicSet;

/// Per-instance WebSocket defaults (`websocket/set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebsocketSettings {
    /// False: the instance streams nothing to WebSocket and SSE clients.
    pub enabled: bool,
    /// The topics streamed to clients that did not choose their own; `None`
    /// means all of them.
    pub events: Option<TopicSet>,
}

impl Default for WebsocketSettings {
    fn default() -> Self {
        WebsocketSettings {
            enabled: true,
            events: None,
        }
    }
}

/// How long an instance's events are kept; `None` means the server default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub max_age_secs: Option<u64>,
    pub max_events: Option<u64>,
}
