//! Topics and event filters.
//!
//! A *topic* is the finest grain a client can filter on: an event kind, split
//! further where an alias of seed 000 or Evolution API names only part of a
//! kind (`incoming` is the incoming half of `message`, `GROUP_PARTICIPANTS_UPDATE`
//! the participant changes of `group`). Every event has exactly one topic, and
//! filters are sets of topics held as a bit mask, so matching is one AND.

use std::fmt;

/// The kinds of event; the `event` field of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Message,
    Delivery,
    Connection,
    Presence,
    Group,
    Call,
    Status,
    Location,
    /// Instance lifecycle (created, updated, deleted); admin scope only.
    Instance,
    /// A USSD exchange with the network (`*100#` and its answer).
    Ussd,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Delivery => "delivery",
            EventKind::Connection => "connection",
            EventKind::Presence => "presence",
            EventKind::Group => "group",
            EventKind::Call => "call",
            EventKind::Status => "status",
            EventKind::Location => "location",
            EventKind::Instance => "instance",
            EventKind::Ussd => "ussd",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The finest grain of filtering. The discriminant is stored in the log's
/// `topic` column, so existing values must never be renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Topic {
    MessageIncoming = 0,
    MessageOutgoing = 1,
    Delivery = 2,
    Connection = 3,
    Presence = 4,
    GroupCreate = 5,
    /// Group updates and deletions.
    GroupUpdate = 6,
    GroupParticipants = 7,
    Call = 8,
    Status = 9,
    Location = 10,
    Instance = 11,
    Ussd = 12,
}

impl Topic {
    pub const ALL: [Topic; 13] = [
        Topic::MessageIncoming,
        Topic::MessageOutgoing,
        Topic::Delivery,
        Topic::Connection,
        Topic::Presence,
        Topic::GroupCreate,
        Topic::GroupUpdate,
        Topic::GroupParticipants,
        Topic::Call,
        Topic::Status,
        Topic::Location,
        Topic::Instance,
        Topic::Ussd,
    ];

    pub fn kind(self) -> EventKind {
        match self {
            Topic::MessageIncoming | Topic::MessageOutgoing => EventKind::Message,
            Topic::Delivery => EventKind::Delivery,
            Topic::Connection => EventKind::Connection,
            Topic::Presence => EventKind::Presence,
            Topic::GroupCreate | Topic::GroupUpdate | Topic::GroupParticipants => EventKind::Group,
            Topic::Call => EventKind::Call,
            Topic::Status => EventKind::Status,
            Topic::Location => EventKind::Location,
            Topic::Instance => EventKind::Instance,
            Topic::Ussd => EventKind::Ussd,
        }
    }

    /// The value stored in the log.
    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i16) -> Option<Topic> {
        Topic::ALL.get(usize::try_from(code).ok()?).copied()
    }

    fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// A set of topics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TopicSet(u16);

/// An event name a filter did not recognize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event name '{0}'; known names: {known}", known = KNOWN_NAMES)]
pub struct UnknownEventName(pub String);

const KNOWN_NAMES: &str = "message, delivery, connection, presence, group, call, status, \
     location, instance, ussd, incoming, outgoing, modem_status_update, gnss_position_report, \
     MESSAGES_UPSERT, SEND_MESSAGE, MESSAGES_UPDATE, CONNECTION_UPDATE, PRESENCE_UPDATE, \
     GROUPS_UPSERT, GROUP_UPDATE, GROUP_PARTICIPANTS_UPDATE, CALL";

impl TopicSet {
    pub const EMPTY: TopicSet = TopicSet(0);

    /// Every topic a client can see through an instance's key: all but the
    /// admin-only `instance` lifecycle events.
    pub fn all_instance_topics() -> TopicSet {
        TopicSet::all().without(TopicSet::of(&[Topic::Instance]))
    }

    pub fn all() -> TopicSet {
        TopicSet::of(&Topic::ALL)
    }

    pub fn of(topics: &[Topic]) -> TopicSet {
        TopicSet(topics.iter().fold(0, |mask, t| mask | t.bit()))
    }

    /// The mask as stored in the database.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// Reads a stored mask, dropping bits no topic uses.
    pub fn from_bits(bits: u16) -> TopicSet {
        TopicSet(bits & TopicSet::all().0)
    }

    pub fn contains(self, topic: Topic) -> bool {
        self.0 & topic.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: TopicSet) -> TopicSet {
        TopicSet(self.0 | other.0)
    }

    pub fn intersect(self, other: TopicSet) -> TopicSet {
        TopicSet(self.0 & other.0)
    }

    pub fn without(self, other: TopicSet) -> TopicSet {
        TopicSet(self.0 & !other.0)
    }

    pub fn topics(self) -> impl Iterator<Item = Topic> {
        Topic::ALL.into_iter().filter(move |t| self.contains(*t))
    }

    /// Parses one event name: a canonical kind or one of the documented
    /// aliases. Case and `.` versus `_` do not matter (`messages.upsert`
    /// works like `MESSAGES_UPSERT`).
    pub fn parse_name(name: &str) -> Result<TopicSet, UnknownEventName> {
        use Topic::*;
        let normalized = name.trim().to_ascii_lowercase().replace('.', "_");
        let topics: &[Topic] = match normalized.as_str() {
            "message" | "messages" => &[MessageIncoming, MessageOutgoing],
            "incoming" | "messages_upsert" => &[MessageIncoming],
            "outgoing" | "send_message" => &[MessageOutgoing],
            "delivery" | "messages_update" => &[Delivery],
            "connection" | "modem_status_update" | "connection_update" => &[Connection],
            "presence" | "presence_update" => &[Presence],
            "group" | "groups" => &[GroupCreate, GroupUpdate, GroupParticipants],
            "groups_upsert" => &[GroupCreate],
            "group_update" => &[GroupUpdate],
            "group_participants_update" => &[GroupParticipants],
            "call" => &[Call],
            "status" => &[Status],
            "location" | "gnss_position_report" => &[Location],
            "instance" => &[Instance],
            "ussd" => &[Ussd],
            _ => return Err(UnknownEventName(name.trim().to_owned())),
        };
        Ok(TopicSet::of(topics))
    }

    /// Parses a list of event names; blank items are skipped.
    pub fn parse_list<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<TopicSet, UnknownEventName> {
        names
            .into_iter()
            .filter(|n| !n.trim().is_empty())
            .try_fold(TopicSet::EMPTY, |set, name| {
                Ok(set.union(TopicSet::parse_name(name)?))
            })
    }

    /// Parses a comma-separated list such as a `?events=` query value.
    pub fn parse_csv(csv: &str) -> Result<TopicSet, UnknownEventName> {
        TopicSet::parse_list(csv.split(','))
    }

    /// The shortest list of names that describes this set, canonical names
    /// where a whole kind is included, for acknowledgements and listings.
    pub fn names(self) -> Vec<&'static str> {
        use Topic::*;
        let groups: [(&'static str, TopicSet); 10] = [
            ("message", TopicSet::of(&[MessageIncoming, MessageOutgoing])),
            ("delivery", TopicSet::of(&[Delivery])),
            ("connection", TopicSet::of(&[Connection])),
            ("presence", TopicSet::of(&[Presence])),
            (
                "group",
                TopicSet::of(&[GroupCreate, GroupUpdate, GroupParticipants]),
            ),
            ("call", TopicSet::of(&[Call])),
            ("status", TopicSet::of(&[Status])),
            ("location", TopicSet::of(&[Location])),
            ("instance", TopicSet::of(&[Instance])),
            ("ussd", TopicSet::of(&[Ussd])),
        ];
        let mut names = Vec::new();
        for (name, whole) in groups {
            if self.intersect(whole) == whole {
                names.push(name);
                continue;
            }
            for topic in self.intersect(whole).topics() {
                names.push(match topic {
                    MessageIncoming => "incoming",
                    MessageOutgoing => "outgoing",
                    GroupCreate => "GROUPS_UPSERT",
                    GroupUpdate => "GROUP_UPDATE",
                    GroupParticipants => "GROUP_PARTICIPANTS_UPDATE",
                    other => other.kind().as_str(),
                });
            }
        }
        names
    }
}

impl fmt::Debug for TopicSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicSet{:?}", self.names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_and_aliases_map_to_topics() {
        let set = TopicSet::parse_csv("incoming,delivery").expect("valid");
        assert!(set.contains(Topic::MessageIncoming));
        assert!(!set.contains(Topic::MessageOutgoing));
        assert!(set.contains(Topic::Delivery));

        let evolution = TopicSet::parse_csv("MESSAGES_UPSERT,CONNECTION_UPDATE,CALL").expect("ok");
        assert_eq!(
            evolution,
            TopicSet::of(&[Topic::MessageIncoming, Topic::Connection, Topic::Call])
        );
        assert_eq!(
            TopicSet::parse_name("messages.upsert").expect("ok"),
            TopicSet::of(&[Topic::MessageIncoming])
        );
        assert_eq!(
            TopicSet::parse_name("gnss_position_report").expect("ok"),
            TopicSet::of(&[Topic::Location])
        );
        assert_eq!(
            TopicSet::parse_name("modem_status_update").expect("ok"),
            TopicSet::of(&[Topic::Connection])
        );
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let err = TopicSet::parse_csv("message,bogus").expect_err("must fail");
        assert_eq!(err.0, "bogus");
        assert!(err.to_string().contains("unknown event name 'bogus'"));
    }

    #[test]
    fn names_are_the_shortest_description() {
        let set = TopicSet::parse_csv("message,GROUP_UPDATE,delivery").expect("valid");
        assert_eq!(set.names(), vec!["message", "delivery", "GROUP_UPDATE"]);
        for topic in Topic::ALL {
            let one = TopicSet::of(&[topic]);
            assert_eq!(TopicSet::parse_list(one.names()).expect("round trip"), one);
        }
    }

    #[test]
    fn topic_codes_round_trip() {
        for topic in Topic::ALL {
            assert_eq!(Topic::from_code(topic.code()), Some(topic));
        }
        assert_eq!(Topic::from_code(99), None);
        assert_eq!(Topic::from_code(-1), None);
    }
}
