//! Plain types every stage shares: instance names, phone numbers, driver
//! configurations, topics, per-instance settings, stream profile names.
//!
//! This module depends on nothing else in the crate, and everything may
//! depend on it; values are parsed here once, at the edge, and trusted
//! everywhere inside ("parse, don't validate").

pub mod driver;
pub mod instance;
pub mod instance_settings;
pub mod key;
pub mod modem_options;
pub mod number;
pub mod pool;
pub mod profile;
pub mod schedule;
pub mod secret;
pub mod settings;
pub mod text;
pub mod throttle;
pub mod topic;

pub use driver::{DriverConfig, SimulatorConfig};
pub use instance::{InstanceName, InstanceRef, InvalidInstanceName};
pub use instance_settings::InstanceSettings;
pub use modem_options::{
    FlowControl, GnssOptions, GnssVendor, ModemOptions, SerialConfig, TcpConfig,
};
pub use number::{InvalidNumber, NumberRules, PhoneNumber, Region};
pub use pool::{PoolRequest, PoolRule, PoolSpec, Strategy};
pub use profile::{StreamProfile, UnknownProfile};
pub use schedule::{rfc3339, Schedule, ScheduleRequest};
pub use secret::WebhookSecret;
pub use settings::{Retention, WebsocketSettings};
pub use text::truncate;
pub use throttle::{Throttle, Window, WindowKind};
pub use topic::{EventKind, Topic, TopicSet, UnknownEventName};
