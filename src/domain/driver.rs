//! Which modem an instance drives, as given to `instance/create`: the
//! built-in virtual modem, or a real one on a serial port or behind a TCP
//! serial bridge. Plain data with its validation; the drivers that run it
//! live in `modem/`.

use serde::{Deserialize, Serialize};

use super::{
    instance::InstanceName,
    modem_options::{SerialConfig, TcpConfig},
    number::PhoneNumber,
};

/// Which modem an instance drives, as given to `instance/create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DriverConfig {
    /// A virtual modem: the demo driver and the load generator.
    Simulator(SimulatorConfig),
    /// A modem on a local serial port.
    Serial(SerialConfig),
    /// A modem behind a serial-to-TCP bridge.
    Tcp(TcpConfig),
}

impl DriverConfig {
    /// Checks values serde cannot (ranges, formats); the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            DriverConfig::Simulator(c) => c.validate(),
            DriverConfig::Serial(c) => c.validate(),
            DriverConfig::Tcp(c) => c.validate(),
        }
    }

    /// The instance's own number when it is known without asking the modem:
    /// configured, or (for the simulator) derived from the name.
    pub fn configured_number(&self, instance: &InstanceName) -> Option<String> {
        match self {
            DriverConfig::Simulator(c) => Some(c.number_for(instance)),
            DriverConfig::Serial(SerialConfig { modem, .. })
            | DriverConfig::Tcp(TcpConfig { modem, .. }) => modem
                .number
                .as_deref()
                .and_then(|n| PhoneNumber::parse(n).ok())
                .map(|n| n.to_string()),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            DriverConfig::Simulator(_) => "simulator",
            DriverConfig::Serial(_) => "serial",
            DriverConfig::Tcp(_) => "tcp",
        }
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig::Simulator(SimulatorConfig::default())
    }
}

/// The OpenAPI schema: one closed object per `kind`. It is written out
/// rather than derived because the real-modem kinds read their keys by hand
/// (see `modem_options`), and a derived tagged enum would wrap each variant
/// in an `allOf` that a closed object cannot satisfy.
impl utoipa::PartialSchema for DriverConfig {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let with_kind = |kind: &str, mut schema: serde_json::Value| {
            schema["properties"]["kind"] = serde_json::json!({ "type": "string", "enum": [kind] });
            let mut required = schema["required"].as_array().cloned().unwrap_or_default();
            required.insert(0, serde_json::json!("kind"));
            schema["required"] = serde_json::Value::Array(required);
            schema["additionalProperties"] = serde_json::Value::Bool(false);
            schema["title"] = serde_json::json!(kind);
            schema
        };
        let simulator = serde_json::to_value(SimulatorConfig::schema()).unwrap_or_default();
        let schema = serde_json::json!({
            "description": "Which modem an instance drives. Absent: a simulator with its defaults.",
            "oneOf": [
                with_kind("simulator", simulator),
                with_kind("serial", SerialConfig::schema_json()),
                with_kind("tcp", TcpConfig::schema_json()),
            ],
            "discriminator": { "propertyName": "kind" },
        });
        // unwrap: the value above is a well-formed schema object.
        #[allow(clippy::unwrap_used)]
        serde_json::from_value(schema).unwrap()
    }
}

impl utoipa::ToSchema for DriverConfig {}

/// How the virtual modem behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// The modem's own number; derived from the instance name when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Delay from accepting a message to the `sent` report.
    #[schema(maximum = 3_600_000)]
    pub sent_delay_ms: u64,
    /// Delay from `sent` to `delivered`.
    #[schema(maximum = 3_600_000)]
    pub delivered_delay_ms: u64,
    /// Delay from `delivered` to the recipient's echo reply.
    #[schema(maximum = 3_600_000)]
    pub reply_delay_ms: u64,
    /// Whether recipients answer with an echo.
    pub echo: bool,
    /// Random inbound events per second; 0 turns them off.
    #[schema(minimum = 0.0, maximum = 1_000_000.0)]
    pub rate: f64,
    /// Seed of the random traffic; the same seed gives the same events.
    pub seed: u64,
    /// Fault injection: the virtual modem drops out this long after each
    /// start, so supervision and recovery can be watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_after_ms: Option<u64>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            number: None,
            sent_delay_ms: 50,
            delivered_delay_ms: 150,
            reply_delay_ms: 200,
            echo: true,
            rate: 0.0,
            seed: 1,
            fail_after_ms: None,
        }
    }
}

/// Longest delay accepted, so a typo cannot park a message for weeks (the
/// OpenAPI schema states the same bounds on each field).
pub(crate) const MAX_DELAY_MS: u64 = 3_600_000;
/// Highest random event rate accepted.
const MAX_RATE: f64 = 1_000_000.0;

impl SimulatorConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(number) = &self.number {
            PhoneNumber::parse(number).map_err(|e| format!("driver.number: {e}"))?;
        }
        for (field, value) in [
            ("sent_delay_ms", self.sent_delay_ms),
            ("delivered_delay_ms", self.delivered_delay_ms),
            ("reply_delay_ms", self.reply_delay_ms),
        ] {
            if value > MAX_DELAY_MS {
                return Err(format!("driver.{field} must be at most {MAX_DELAY_MS}"));
            }
        }
        if !self.rate.is_finite() || self.rate < 0.0 || self.rate > MAX_RATE {
            return Err(format!("driver.rate must be between 0 and {MAX_RATE}"));
        }
        Ok(())
    }

    /// The number, or one derived from the instance name (stable across runs).
    pub fn number_for(&self, instance: &InstanceName) -> String {
        self.number.clone().unwrap_or_else(|| {
            let hash = instance
                .as_str()
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            format!("+1555{:07}", hash % 10_000_000)
        })
    }
}
