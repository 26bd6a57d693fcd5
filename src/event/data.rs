//! The `data` payload of each event kind. Field names follow Evolution API
//! (seed 001) where it has them, so its clients read ours unchanged.

use serde::{Deserialize, Serialize};

use super::{NewEvent, Topic};
use crate::domain::InstanceName;

/// A payload knows its topic, so an event can never be filed under the wrong one.
pub trait Payload: Serialize {
    fn topic(&self) -> Topic;

    fn into_event(self, instance: &InstanceName) -> NewEvent
    where
        Self: Sized,
    {
        NewEvent::new(instance.clone(), self.topic(), &self)
    }

    /// The event of a message sent to a pool: its data also says which
    /// (`"pool": "uk"`); without a pool, the plain event, so frames of
    /// messages sent to an instance do not change.
    fn into_pool_event(self, instance: &InstanceName, pool: Option<&InstanceName>) -> NewEvent
    where
        Self: Sized,
    {
        match pool {
            None => self.into_event(instance),
            Some(pool) => NewEvent::new(
                instance.clone(),
                self.topic(),
                &InPool {
                    data: &self,
                    pool: pool.as_str(),
                },
            ),
        }
    }
}

/// A payload and the pool its message was sent to, flattened into one
/// object (the `pool` key after the payload's own).
#[derive(Serialize)]
struct InPool<'a, P: Serialize> {
    #[serde(flatten)]
    data: &'a P,
    pool: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// `message`: a text sent or received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageData {
    pub id: String,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    /// Always `text` for SMS; kept because Evolution clients switch on it.
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// How many SMS parts carried it.
    pub parts: u32,
}

impl Payload for MessageData {
    fn topic(&self) -> Topic {
        match self.direction {
            Direction::Incoming => Topic::MessageIncoming,
            Direction::Outgoing => Topic::MessageOutgoing,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Delivered,
    Failed,
    Expired,
    /// Withdrawn before any part went out (`DELETE /message/{instance}/{id}`).
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Expired => "expired",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "queued" => DeliveryStatus::Queued,
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            "expired" => DeliveryStatus::Expired,
            "cancelled" => DeliveryStatus::Cancelled,
            _ => return None,
        })
    }
}

/// `delivery`: a status change of an outgoing message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryData {
    /// The message's id, as returned by `message/sendText`.
    pub id: String,
    pub status: DeliveryStatus,
    pub to: String,
    pub timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For multipart messages: how many parts have reached `status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts_done: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
}

impl Payload for DeliveryData {
    fn topic(&self) -> Topic {
        Topic::Delivery
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Connecting,
    Connected,
    Disconnected,
}

impl ConnectionState {
    /// The Evolution-style name used by `connectionState` and `fetchInstances`.
    pub fn evolution_name(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "open",
            ConnectionState::Disconnected => "close",
        }
    }
}

/// What is known about the modem's link to the network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// The instance's own number, as Evolution's `me.id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub me: Option<Me>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Signal strength in dBm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// `home`, `roaming`, `searching`, `denied`, `unknown`, `not_registered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Me {
    pub id: String,
    pub name: String,
}

/// `connection`: the modem actor's state changed, or its link did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionData {
    pub state: ConnectionState,
    /// The same state in Evolution's words (`connecting`, `open`, `close`).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub info: ConnectionInfo,
}

impl ConnectionData {
    pub fn new(state: ConnectionState, reason: Option<String>, info: ConnectionInfo) -> Self {
        ConnectionData {
            state,
            status: state.evolution_name().to_owned(),
            reason,
            info,
        }
    }
}

impl Payload for ConnectionData {
    fn topic(&self) -> Topic {
        Topic::Connection
    }
}

/// `presence`: someone's (or the instance's own) availability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceData {
    pub id: String,
    pub presence: String,
    pub last_seen: i64,
    pub typing: bool,
}

impl Payload for PresenceData {
    fn topic(&self) -> Topic {
        Topic::Presence
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAction {
    Create,
    Update,
    Delete,
    ParticipantAdd,
    ParticipantRemove,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMetadata {
    pub name: String,
    pub participants: Vec<String>,
    pub owner: String,
}

/// `group`: a broadcast group changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupData {
    pub id: String,
    pub action: GroupAction,
    pub metadata: GroupMetadata,
}

impl Payload for GroupData {
    fn topic(&self) -> Topic {
        match self.action {
            GroupAction::Create => Topic::GroupCreate,
            GroupAction::Update | GroupAction::Delete => Topic::GroupUpdate,
            GroupAction::ParticipantAdd | GroupAction::ParticipantRemove => {
                Topic::GroupParticipants
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    Offer,
    Accept,
    Reject,
    End,
}

/// `call`: a voice call rang, was answered, rejected or ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallData {
    pub id: String,
    pub from: String,
    pub status: CallStatus,
    pub is_video: bool,
    pub timestamp: i64,
}

impl Payload for CallData {
    fn topic(&self) -> Topic {
        Topic::Call
    }
}

/// `status`: a contact's status text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusData {
    pub from: String,
    pub status: String,
}

impl Payload for StatusData {
    fn topic(&self) -> Topic {
        Topic::Status
    }
}

/// `location`: a GNSS fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationData {
    pub latitude: f64,
    pub longitude: f64,
    pub altitude: Option<f64>,
    /// km/h.
    pub speed: Option<f64>,
    /// Degrees from true north.
    pub course: Option<f64>,
    pub satellites: Option<u32>,
    pub timestamp: i64,
}

impl Payload for LocationData {
    fn topic(&self) -> Topic {
        Topic::Location
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceAction {
    Created,
    Updated,
    Deleted,
}

/// `instance`: an instance was created, changed or deleted (admin scope only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceData {
    pub action: InstanceAction,
    pub instance: serde_json::Value,
}

impl Payload for InstanceData {
    fn topic(&self) -> Topic {
        Topic::Instance
    }
}

/// Where a USSD session stands after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UssdStatus {
    /// The network answered and the session is over (`+CUSD: 0`).
    Done,
    /// The network answered with a menu and waits for a reply (`+CUSD: 1`).
    Menu,
    /// The network ended the session (`+CUSD: 2`).
    Terminated,
    /// Another client of the modem answered (`+CUSD: 3`).
    OtherClient,
    /// The network does not support the request (`+CUSD: 4`).
    Unsupported,
    /// The network gave up waiting (`+CUSD: 5`).
    NetworkTimeout,
    /// The session was cancelled (`DELETE /ussd/{instance}`).
    Cancelled,
    /// No answer came in time; the session was closed.
    Timeout,
}

impl UssdStatus {
    /// The status a `+CUSD: <m>` reports.
    pub fn from_cusd(m: u8) -> Option<UssdStatus> {
        Some(match m {
            0 => UssdStatus::Done,
            1 => UssdStatus::Menu,
            2 => UssdStatus::Terminated,
            3 => UssdStatus::OtherClient,
            4 => UssdStatus::Unsupported,
            5 => UssdStatus::NetworkTimeout,
            _ => return None,
        })
    }

    /// Whether the network waits for a reply in this session.
    pub fn is_open(self) -> bool {
        self == UssdStatus::Menu
    }
}

/// `ussd`: what was sent to the network in a USSD session and what it
/// answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UssdData {
    /// The session: the same for a code and the replies that follow it.
    pub id: String,
    /// What was sent: the code (`*100#`) or a menu reply (`1`); absent
    /// for a cancellation, a timeout and what the network sent unasked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub status: UssdStatus,
    /// The network's text, decoded; absent when it sent none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Unix seconds.
    pub timestamp: i64,
}

impl Payload for UssdData {
    fn topic(&self) -> Topic {
        Topic::Ussd
    }
}
