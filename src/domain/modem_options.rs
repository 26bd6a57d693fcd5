//! Settings of a real modem instance: how to reach it (`serial` or `tcp`)
//! and how to drive it (the [`ModemOptions`] both share).
//!
//! The transport keys and the modem options sit side by side in one JSON
//! object (`{"kind": "serial", "port": ..., "delivery_reports": true}`).
//! serde's `flatten` cannot be combined with `deny_unknown_fields`, so the
//! transport configs deserialize by hand: they take their own keys out and
//! hand the rest to `ModemOptions`, which refuses anything it does not know.

use std::time::Duration;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::number::PhoneNumber;

/// How to drive a modem, whichever way it is reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModemOptions {
    /// The modem's own number; when absent, what the SIM reports
    /// (`AT+CNUM`), else the instance name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Ask the network for a status report for every part sent.
    pub delivery_reports: bool,
    /// How long the service centre keeps trying to deliver, in minutes;
    /// absent: the service centre's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity_minutes: Option<u32>,
    /// Longest wait for the answer to one AT command.
    #[schema(minimum = 10, maximum = 604_800_000)]
    pub command_timeout_ms: u64,
    /// Longest wait for the network to accept one SMS part (`AT+CMGS`).
    #[schema(minimum = 10, maximum = 604_800_000)]
    pub send_timeout_ms: u64,
    /// Tries per SMS part before the message is `failed`.
    #[schema(minimum = 1, maximum = 10)]
    pub send_attempts: u32,
    /// Pause before the second try; it doubles for each further one.
    #[schema(minimum = 10, maximum = 604_800_000)]
    pub send_retry_ms: u64,
    /// How often signal, registration and operator are polled.
    #[schema(minimum = 10, maximum = 604_800_000)]
    pub status_poll_ms: u64,
    /// How often modem storage is listed (`AT+CMGL=4`) for messages whose
    /// notice was missed or that could not be committed yet.
    #[schema(minimum = 10, maximum = 604_800_000)]
    pub storage_poll_ms: u64,
    /// An inbound multipart message still missing parts this long after its
    /// first part is delivered with the parts that arrived.
    #[schema(minimum = 10, maximum = 604_800_000)]
    pub multipart_timeout_ms: u64,
    /// Hang up every incoming call right after reporting it.
    pub auto_reject_calls: bool,
    /// GNSS positions; absent: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gnss: Option<GnssOptions>,
}

impl Default for ModemOptions {
    fn default() -> Self {
        ModemOptions {
            number: None,
            delivery_reports: true,
            validity_minutes: None,
            command_timeout_ms: 5_000,
            send_timeout_ms: 60_000,
            send_attempts: 3,
            send_retry_ms: 5_000,
            status_poll_ms: 30_000,
            storage_poll_ms: 60_000,
            multipart_timeout_ms: 3_600_000,
            auto_reject_calls: false,
            gnss: None,
        }
    }
}

/// Which GNSS commands the modem speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GnssVendor {
    /// `AT+CGPS=1`, `AT+CGPSINFO`.
    Simcom,
    /// `AT+QGPS=1`, `AT+QGPSLOC=2`.
    Quectel,
}

/// GNSS positions read from the modem, each fix a `location` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GnssOptions {
    pub vendor: GnssVendor,
    /// Seconds between position reads (each fix is a `location` event).
    #[serde(default = "default_gnss_interval")]
    #[schema(minimum = 1, maximum = 86_400)]
    pub interval_secs: u64,
}

fn default_gnss_interval() -> u64 {
    30
}

/// The OpenAPI schema of a real modem's settings: its transport keys beside
/// the [`ModemOptions`] keys in one closed object, as the hand-written
/// `Deserialize` impls below read them (serde's `flatten` would describe
/// them as two objects that each refuse the other's keys).
pub fn transport_schema(transport: serde_json::Value, required: &[&str]) -> serde_json::Value {
    use utoipa::PartialSchema;
    let mut schema = serde_json::to_value(ModemOptions::schema()).unwrap_or_default();
    if let (Some(properties), Some(extra)) = (
        schema.get_mut("properties").and_then(Value::as_object_mut),
        transport.as_object(),
    ) {
        for (key, value) in extra {
            properties.insert(key.clone(), value.clone());
        }
    }
    schema["required"] = serde_json::json!(required);
    schema["additionalProperties"] = Value::Bool(false);
    schema
}

impl SerialConfig {
    /// The keys of a `serial` driver, without `kind`.
    pub fn schema_json() -> serde_json::Value {
        transport_schema(
            serde_json::json!({
                "port": {"type": "string", "pattern": "\\S",
                         "description": "The serial device, for example /dev/ttyUSB2."},
                "baud": {"type": "integer", "minimum": 300, "maximum": 4_000_000,
                         "default": DEFAULT_BAUD},
                "flow_control": {"$ref": "#/components/schemas/FlowControl"},
            }),
            &["port"],
        )
    }
}

impl TcpConfig {
    /// The keys of a `tcp` driver, without `kind`.
    pub fn schema_json() -> serde_json::Value {
        transport_schema(
            serde_json::json!({
                "address": {"type": "string", "pattern": "^.+:[0-9]+$",
                            "description": "`host:port` of a serial-to-TCP bridge (port 1 to 65535)."},
            }),
            &["address"],
        )
    }
}

/// Bounds that keep a typo from making a modem unusable (the OpenAPI schema
/// states the same ones on each field).
const MIN_MS: u64 = 10;
const MAX_MS: u64 = 7 * 24 * 3_600_000;

impl ModemOptions {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(number) = &self.number {
            PhoneNumber::parse(number).map_err(|e| format!("driver.number: {e}"))?;
        }
        for (field, value) in [
            ("command_timeout_ms", self.command_timeout_ms),
            ("send_timeout_ms", self.send_timeout_ms),
            ("send_retry_ms", self.send_retry_ms),
            ("status_poll_ms", self.status_poll_ms),
            ("storage_poll_ms", self.storage_poll_ms),
            ("multipart_timeout_ms", self.multipart_timeout_ms),
        ] {
            if !(MIN_MS..=MAX_MS).contains(&value) {
                return Err(format!(
                    "driver.{field} must be between {MIN_MS} and {MAX_MS}"
                ));
            }
        }
        if !(1..=10).contains(&self.send_attempts) {
            return Err("driver.send_attempts must be between 1 and 10".into());
        }
        if let Some(gnss) = &self.gnss {
            if !(1..=86_400).contains(&gnss.interval_secs) {
                return Err("driver.gnss.interval_secs must be between 1 and 86400".into());
            }
        }
        Ok(())
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

/// Serial flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    #[default]
    None,
    /// RTS/CTS, what most USB modems want at high rates.
    Hardware,
    /// XON/XOFF.
    Software,
}

/// A modem on a serial port (a USB modem's `/dev/ttyUSB2`, `/dev/ttyACM0`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SerialConfig {
    pub port: String,
    pub baud: u32,
    pub flow_control: FlowControl,
    #[serde(flatten)]
    pub modem: ModemOptions,
}

/// A modem behind a serial-to-TCP bridge (ser2net, a modem bank).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpConfig {
    /// `host:port`.
    pub address: String,
    #[serde(flatten)]
    pub modem: ModemOptions,
}

const DEFAULT_BAUD: u32 = 115_200;

impl SerialConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.port.trim().is_empty() {
            return Err("driver.port is required (for example /dev/ttyUSB2)".into());
        }
        if !(300..=4_000_000).contains(&self.baud) {
            return Err("driver.baud must be between 300 and 4000000".into());
        }
        self.modem.validate()
    }
}

impl TcpConfig {
    pub fn validate(&self) -> Result<(), String> {
        let valid = self.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err("driver.address must be host:port (for example 10.0.0.5:7001)".into());
        }
        self.modem.validate()
    }
}

/// Takes `key` out of `map` and deserializes it.
fn take<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    map: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, E> {
    map.remove(key)
        .map(|v| serde_json::from_value(v).map_err(|e| E::custom(format!("{key}: {e}"))))
        .transpose()
}

fn options<E: serde::de::Error>(map: Map<String, Value>) -> Result<ModemOptions, E> {
    serde_json::from_value(Value::Object(map)).map_err(E::custom)
}

impl<'de> Deserialize<'de> for SerialConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::deserialize(deserializer)?;
        let port = take(&mut map, "port")?.ok_or_else(|| D::Error::missing_field("port"))?;
        let baud = take(&mut map, "baud")?.unwrap_or(DEFAULT_BAUD);
        let flow_control = take(&mut map, "flow_control")?.unwrap_or_default();
        Ok(SerialConfig {
            port,
            baud,
            flow_control,
            modem: options(map)?,
        })
    }
}

impl<'de> Deserialize<'de> for TcpConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::deserialize(deserializer)?;
        let address =
            take(&mut map, "address")?.ok_or_else(|| D::Error::missing_field("address"))?;
        Ok(TcpConfig {
            address,
            modem: options(map)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DriverConfig;

    #[test]
    fn a_serial_driver_reads_its_keys_and_the_modem_options_side_by_side() {
        let driver: DriverConfig = serde_json::from_value(serde_json::json!({
            "kind": "serial", "port": "/dev/ttyUSB2", "flow_control": "hardware",
            "delivery_reports": false, "gnss": { "vendor": "quectel", "interval_secs": 5 }
        }))
        .expect("valid");
        let DriverConfig::Serial(serial) = &driver else {
            panic!("{driver:?}")
        };
        assert_eq!(serial.baud, 115_200);
        assert_eq!(serial.flow_control, FlowControl::Hardware);
        assert!(!serial.modem.delivery_reports);
        assert_eq!(
            serial.modem.gnss.as_ref().map(|g| g.vendor),
            Some(GnssVendor::Quectel)
        );
        assert!(driver.validate().is_ok());
        // It writes back the same shape.
        let json = serde_json::to_value(&driver).expect("serialize");
        assert_eq!(json["port"], "/dev/ttyUSB2");
        assert_eq!(json["delivery_reports"], false);
        assert_eq!(
            serde_json::from_value::<DriverConfig>(json).expect("reads back"),
            driver
        );
    }

    #[test]
    fn the_schema_states_the_bounds_validate_checks() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(ModemOptions::schema()).expect("a schema");
        for field in [
            "command_timeout_ms",
            "send_timeout_ms",
            "send_retry_ms",
            "status_poll_ms",
            "storage_poll_ms",
            "multipart_timeout_ms",
        ] {
            let property = &schema["properties"][field];
            assert_eq!(property["minimum"], serde_json::json!(MIN_MS), "{field}");
            assert_eq!(property["maximum"], serde_json::json!(MAX_MS), "{field}");
        }
        let simulator =
            serde_json::to_value(crate::domain::SimulatorConfig::schema()).expect("a schema");
        assert_eq!(
            simulator["properties"]["sent_delay_ms"]["maximum"],
            serde_json::json!(crate::domain::driver::MAX_DELAY_MS)
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_field_named() {
        let err = serde_json::from_value::<DriverConfig>(serde_json::json!({
            "kind": "tcp", "address": "10.0.0.5:7001", "delivery_report": true
        }))
        .expect_err("typo");
        assert!(err.to_string().contains("delivery_report"), "{err}");
        let bad: DriverConfig = serde_json::from_value(serde_json::json!({
            "kind": "tcp", "address": "nowhere"
        }))
        .expect("parses");
        assert!(bad.validate().expect_err("no port").contains("address"));
        let bad: DriverConfig = serde_json::from_value(serde_json::json!({
            "kind": "serial", "port": "/dev/ttyUSB0", "status_poll_ms": 0
        }))
        .expect("parses");
        assert!(bad.validate().expect_err("zero").contains("status_poll_ms"));
        assert!(
            serde_json::from_value::<DriverConfig>(serde_json::json!({ "kind": "serial" }))
                .is_err()
        );
    }
}
