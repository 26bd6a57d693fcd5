//! Made-up inbound traffic for the virtual modem (`rate` > 0): every kind
//! of event, reproducible from the seed.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{
    domain::{InstanceName, SimulatorConfig},
    event::{
        data::{
            CallData, CallStatus, ConnectionData, ConnectionInfo, ConnectionState, Direction,
            GroupAction, GroupData, GroupMetadata, LocationData, MessageData, Payload,
            PresenceData, StatusData,
        },
        NewEvent,
    },
};

/// Made-up inbound traffic, reproducible from the seed.
pub(super) struct Traffic {
    rng: ChaCha8Rng,
    rate: f64,
    /// Fractional events carried over between ticks, so low rates still fire.
    owed: f64,
    number: String,
    contacts: Vec<String>,
    position: (f64, f64),
}

/// Most events one tick emits, so a long stall does not produce a burst.
const MAX_PER_TICK: usize = 20_000;

const WORDS: &[&str] = &[
    "hello", "meeting", "at", "noon", "please", "call", "me", "back", "thanks", "the", "order",
    "shipped", "see", "you", "soon", "ok", "running", "late", "where", "are",
];

impl Traffic {
    pub(super) fn new(config: &SimulatorConfig, instance: &InstanceName, number: &str) -> Traffic {
        // Mixing the instance name in lets instances with the same seed differ.
        let salt = instance
            .as_str()
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ salt);
        let contacts = (0..32)
            .map(|_| format!("+1555{:07}", rng.random_range(0..10_000_000)))
            .collect();
        Traffic {
            rng,
            rate: config.rate,
            owed: 0.0,
            number: number.to_owned(),
            contacts,
            position: (52.52, 13.405),
        }
    }

    pub(super) fn generate(&mut self, elapsed: Duration, instance: &InstanceName) -> Vec<NewEvent> {
        self.owed += self.rate * elapsed.as_secs_f64();
        let due = (self.owed.floor() as usize).min(MAX_PER_TICK);
        self.owed -= due as f64;
        self.owed = self.owed.min(MAX_PER_TICK as f64);
        (0..due).map(|_| self.one(instance)).collect()
    }

    fn contact(&mut self) -> String {
        let i = self.rng.random_range(0..self.contacts.len());
        self.contacts[i].clone()
    }

    fn id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    fn one(&mut self, instance: &InstanceName) -> NewEvent {
        let now = chrono::Utc::now().timestamp();
        match self.rng.random_range(0..100u32) {
            0..=39 => {
                let words = self.rng.random_range(2..12);
                let content = (0..words)
                    .map(|_| WORDS[self.rng.random_range(0..WORDS.len())])
                    .collect::<Vec<_>>()
                    .join(" ");
                MessageData {
                    id: self.id(),
                    direction: Direction::Incoming,
                    from: self.contact(),
                    to: self.number.clone(),
                    kind: "text".into(),
                    content,
                    timestamp: now,
                    parts: 1,
                }
                .into_event(instance)
            }
            40..=54 => {
                let presence =
                    ["available", "unavailable", "composing"][self.rng.random_range(0..3)];
                PresenceData {
                    id: self.contact(),
                    presence: presence.into(),
                    last_seen: now,
                    typing: presence == "composing",
                }
                .into_event(instance)
            }
            55..=64 => StatusData {
                from: self.contact(),
                status: ["Busy", "At work", "On holiday", "Available"][self.rng.random_range(0..4)]
                    .into(),
            }
            .into_event(instance),
            65..=74 => CallData {
                id: self.id(),
                from: self.contact(),
                status: [CallStatus::Offer, CallStatus::End][self.rng.random_range(0..2)],
                is_video: false,
                timestamp: now,
            }
            .into_event(instance),
            75..=79 => {
                let action = [
                    GroupAction::Update,
                    GroupAction::ParticipantAdd,
                    GroupAction::ParticipantRemove,
                ][self.rng.random_range(0..3)];
                let participants = vec![self.contact(), self.contact()];
                GroupData {
                    id: format!("sim-{}@g.us", self.rng.random_range(0..8)),
                    action,
                    metadata: GroupMetadata {
                        name: "Simulated group".into(),
                        participants,
                        owner: self.number.clone(),
                    },
                }
                .into_event(instance)
            }
            80..=94 => {
                self.position.0 += self.rng.random_range(-0.001..0.001);
                self.position.1 += self.rng.random_range(-0.001..0.001);
                LocationData {
                    latitude: self.position.0,
                    longitude: self.position.1,
                    altitude: Some(self.rng.random_range(30.0..60.0)),
                    speed: Some(self.rng.random_range(0.0..50.0)),
                    course: Some(self.rng.random_range(0.0..360.0)),
                    satellites: Some(self.rng.random_range(4..14)),
                    timestamp: now,
                }
                .into_event(instance)
            }
            _ => ConnectionData::new(
                ConnectionState::Connected,
                None,
                ConnectionInfo {
                    me: None,
                    operator: Some("Simulated Network".into()),
                    signal: Some(self.rng.random_range(-110..-50)),
                    registration: Some("home".into()),
                },
            )
            .into_event(instance),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn contents(events: &[NewEvent]) -> Vec<(u8, String)> {
        events
            .iter()
            .map(|e| (e.topic as u8, e.data.get().to_owned()))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let name = InstanceName::parse("sim").expect("valid");
        let config = SimulatorConfig {
            rate: 1000.0,
            seed: 42,
            ..SimulatorConfig::default()
        };
        let mut a = Traffic::new(&config, &name, "+1");
        let mut b = Traffic::new(&config, &name, "+1");
        let ea = a.generate(Duration::from_millis(100), &name);
        let eb = b.generate(Duration::from_millis(100), &name);
        assert_eq!(ea.len(), 100);
        // Timestamps come from the clock; everything else from the seed.
        let strip = |v: Vec<(u8, String)>| -> Vec<(u8, String)> {
            v.into_iter()
                .map(|(t, d)| {
                    let mut json: serde_json::Value = serde_json::from_str(&d).expect("json");
                    if let Some(obj) = json.as_object_mut() {
                        obj.remove("timestamp");
                        obj.remove("lastSeen");
                    }
                    (t, json.to_string())
                })
                .collect()
        };
        assert_eq!(strip(contents(&ea)), strip(contents(&eb)));

        let other = SimulatorConfig { seed: 43, ..config };
        let ec = Traffic::new(&other, &name, "+1").generate(Duration::from_millis(100), &name);
        assert_ne!(strip(contents(&ea)), strip(contents(&ec)));
    }

    #[test]
    fn random_traffic_covers_every_inbound_kind() {
        let name = InstanceName::parse("sim").expect("valid");
        let config = SimulatorConfig {
            rate: 10_000.0,
            ..SimulatorConfig::default()
        };
        let events = Traffic::new(&config, &name, "+1").generate(Duration::from_secs(1), &name);
        let kinds: HashSet<&str> = events.iter().map(|e| e.topic.kind().as_str()).collect();
        for kind in [
            "message",
            "presence",
            "call",
            "group",
            "status",
            "location",
            "connection",
        ] {
            assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
        }
    }

    #[test]
    fn low_rates_carry_fractions_over() {
        let name = InstanceName::parse("sim").expect("valid");
        let config = SimulatorConfig {
            rate: 5.0,
            ..SimulatorConfig::default()
        };
        let mut traffic = Traffic::new(&config, &name, "+1");
        let total: usize = (0..100)
            .map(|_| traffic.generate(Duration::from_millis(10), &name).len())
            .sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn bad_settings_are_refused_with_the_field_named() {
        let bad = SimulatorConfig {
            rate: -1.0,
            ..SimulatorConfig::default()
        };
        assert!(bad.validate().expect_err("negative rate").contains("rate"));
        let bad = SimulatorConfig {
            number: Some("abc".into()),
            ..SimulatorConfig::default()
        };
        assert!(bad.validate().expect_err("bad number").contains("number"));
        assert!(SimulatorConfig::default().validate().is_ok());
    }
}
