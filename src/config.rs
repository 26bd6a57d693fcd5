//! Typed, layered settings.
//!
//! Layers, later ones winning: the defaults compiled in from
//! `config/default.toml`, an optional file given with `--config`, environment
//! variables `SWITCHBOARD__SECTION__KEY`, and `DATABASE_URL`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::DriverConfig;

/// The defaults, compiled in so the binary runs from any working directory.
const DEFAULTS: &str = include_str!("../config/default.toml");

/// Everything the server can be told.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Home of the embedded database and the generated admin key.
    pub data_dir: PathBuf,
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub database: DatabaseSettings,
    pub limits: Limits,
    pub modem: ModemSettings,
    pub retention: RetentionSettings,
    pub log: LogSettings,
    pub webhooks: WebhookSettings,
    pub cluster: ClusterSettings,
    /// Instances created (or left as they are) at every start.
    #[serde(default)]
    pub instances: Vec<InstanceSeed>,
}

/// Several nodes on one PostgreSQL (`src/cluster/`). Ignored on the
/// embedded SQLite database, which is single-node.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterSettings {
    /// This node's name, unique in the cluster; empty: the hostname.
    #[serde(default)]
    pub node_id: String,
    /// How others reach this node, shown in `/cluster/nodes`; may be empty.
    #[serde(default)]
    pub advertise_url: String,
    /// How long a lease (and a heartbeat) lasts without a renew.
    pub lease_ttl_secs: u64,
    /// How often leases and the heartbeat are renewed: less than half the
    /// TTL, so one late renew does not lose them.
    pub renew_secs: u64,
    /// How often each node reads the log for events other nodes committed,
    /// when no notification woke it sooner.
    pub poll_ms: u64,
    /// Whether drivers' writes are checked against their lease's fencing
    /// token. Only for tests that show what goes wrong without it: never
    /// turn it off in a deployment.
    pub fencing: bool,
}

impl ClusterSettings {
    /// Checks the timings fit together.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.lease_ttl_secs == 0 || self.renew_secs == 0 || self.poll_ms == 0 {
            anyhow::bail!(
                "cluster.lease_ttl_secs, cluster.renew_secs and cluster.poll_ms must be positive"
            );
        }
        if self.renew_secs * 2 >= self.lease_ttl_secs {
            anyhow::bail!(
                "cluster.renew_secs ({}) must be less than half of cluster.lease_ttl_secs ({})",
                self.renew_secs,
                self.lease_ttl_secs
            );
        }
        if !self.node_id.is_empty() && crate::domain::InstanceName::parse(&self.node_id).is_err() {
            anyhow::bail!(
                "cluster.node_id '{}' must be 1 to 64 letters, digits, '_' or '-', starting \
                 with a letter or digit",
                self.node_id
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub address: String,
    /// 0 picks a free port (tests use this and ask the app which it got).
    pub port: u16,
    pub websocket_enabled: bool,
    pub sse_enabled: bool,
    /// False lets credential-less clients act as the admin (local demos only).
    pub require_authentication: bool,
    /// Browser Origins allowed to open a WebSocket; empty allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub ping_interval_secs: u64,
    pub client_timeout_secs: u64,
    pub sse_retry_ms: u64,
    pub sse_heartbeat_secs: u64,
    /// The wire shape of streams whose path and query choose none (see
    /// `http::ws`, "Compatibility profiles").
    #[serde(default)]
    pub stream_profile: crate::domain::StreamProfile,
    /// HTTPS/WSS when set.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for the
    /// failed-authentication limit); from anyone else the header is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<Network>,
    /// Whether `/metrics` needs the admin key (Prometheus: `authorization`
    /// with a bearer credential).
    #[serde(default)]
    pub metrics_require_key: bool,
}

/// PEM files for TLS.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// The admin key; `None` (or empty) means generate and store one.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub api_key: Option<SecretString>,
    /// Signs tokens; `None` (or empty) means generate and store one.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub jwt_secret: Option<SecretString>,
    pub token_max_ttl_secs: u64,
    pub token_default_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// A `postgres://` URL, or `None` (or empty) for the embedded SQLite file.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub url: Option<SecretString>,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    pub max_connections: usize,
    pub max_message_size: usize,
    pub connection_queue_bytes: usize,
    pub max_text_length: usize,
    pub max_body_bytes: usize,
    pub max_connections_per_credential: usize,
    /// Open streams of one instance, whoever opened them: its key, every
    /// token that names it.
    pub max_connections_per_instance: usize,
    /// Members one broadcast group may hold in total.
    pub max_group_members: usize,
    /// Broadcast groups one instance may have.
    pub max_groups_per_instance: usize,
    /// Messages one `sendText` may create (one per recipient).
    pub max_messages_per_send: usize,
    /// Pools the server may hold (`pool/create`).
    pub max_pools: usize,
    pub client_messages_per_sec: u32,
    pub client_message_burst: u32,
    pub failed_auth_per_minute: u32,
    /// Most instances one stream's filter may name (its list, or the
    /// exceptions of an "every instance" filter).
    pub max_filter_instances: usize,
}

/// Default retention for instances that set none; 0 means no limit.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    pub max_age_secs: u64,
    pub max_events: u64,
    pub interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModemSettings {
    pub restart_backoff_initial_ms: u64,
    pub restart_backoff_max_ms: u64,
    /// The length of a throttle's "minute" (`perMinute`): 60000, except
    /// where a test shortens it so a limit shows in seconds.
    #[serde(default = "default_throttle_minute_ms")]
    pub throttle_minute_ms: u64,
}

fn default_throttle_minute_ms() -> u64 {
    60_000
}

/// Where webhooks may deliver.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// Networks webhooks may reach although they are not public (loopback,
    /// private, link-local, unique local, this host's own addresses), for
    /// receivers on a private network. Empty: public addresses only.
    #[serde(default)]
    pub allowed_networks: Vec<Network>,
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare
/// address means that address alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub ipnet::IpNet);

impl Network {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Network, String> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(|net| Network(net.trunc()))
            .map_err(|_| format!("'{s}' is not an IP network (like 10.0.0.0/8) or address"))
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Network, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// An instance named in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct InstanceSeed {
    pub name: String,
    pub driver: DriverConfig,
}

impl Settings {
    /// Loads the layered settings; `file` is the optional `--config` file.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("the configuration file {} does not exist", file.display());
            }
            builder = builder.add_source(config::File::from(file).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SWITCHBOARD")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("http.allowed_origins")
                .with_list_parse_key("http.trusted_proxies")
                .with_list_parse_key("webhooks.allowed_networks"),
        );
        if let Ok(url) = std::env::var("DATABASE_URL") {
            builder = builder
                .set_override("database.url", url)
                .context("while applying DATABASE_URL")?;
        }
        let settings: Settings = builder
            .build()
            .context("while reading the configuration")?
            .try_deserialize()
            .context("the configuration is not valid")?;
        settings.cluster.check()?;
        Ok(settings)
    }

    /// The defaults alone, ignoring files and the environment; tests start here.
    pub fn defaults() -> anyhow::Result<Settings> {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()?
            .try_deserialize()
            .context("the compiled-in defaults are not valid")
    }
}

/// Treats an empty string as "not set", so `api_key = ""` and an empty
/// environment variable both mean "use the default behaviour".
fn empty_as_none<'de, D>(deserializer: D) -> Result<Option<SecretString>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value: Option<String> = Option::deserialize(deserializer)?;
    Ok(value
        .filter(|v| !v.trim().is_empty())
        .map(SecretString::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_defaults_parse() {
        let settings = Settings::defaults().expect("defaults parse");
        assert_eq!(settings.http.port, 8080);
        assert!(settings.database.url.is_none());
        assert!(settings.auth.api_key.is_none());
        assert!(settings.instances.is_empty());
    }

    #[test]
    fn a_config_file_overrides_the_defaults_and_declares_instances() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("custom.toml");
        std::fs::write(
            &path,
            r#"
            [http]
            port = 9123
            [[instances]]
            name = "alpha"
            driver = { kind = "simulator", rate = 2.5 }
            "#,
        )
        .expect("write config");
        let settings = Settings::load(Some(&path)).expect("load");
        assert_eq!(settings.http.port, 9123);
        assert_eq!(settings.instances.len(), 1);
        assert_eq!(settings.instances[0].name, "alpha");
    }

    #[test]
    fn cluster_timings_must_leave_room_for_a_late_renew() {
        let mut cluster = Settings::defaults().expect("defaults").cluster;
        cluster.check().expect("the defaults fit");
        cluster.renew_secs = 8;
        let err = cluster.check().expect_err("renew above half the TTL");
        assert!(err.to_string().contains("less than half"), "{err}");
        cluster.renew_secs = 5;
        cluster.node_id = "no spaces".into();
        assert!(cluster.check().is_err());
    }

    #[test]
    fn a_missing_config_file_is_an_error_that_names_it() {
        let err = Settings::load(Some(Path::new("/nonexistent/switchboard.toml")))
            .expect_err("must fail");
        assert!(err.to_string().contains("/nonexistent/switchboard.toml"));
    }
}
