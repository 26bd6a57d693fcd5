//! The scenarios, one file each, and what they share: the run context
//! ([`Ctx`]: options, the server's pid, the admin API) and the measurement
//! window ([`measure`]) that samples the client's counters, the server's
//! CPU and RSS and its metrics at the start and the end.

pub mod accept;
pub mod catchup;
pub mod connect;
pub mod fanout;
pub mod idle;
pub mod ingest;
pub mod slow;
pub mod subscribers;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use serde::Serialize;

use crate::{
    cli::Common,
    client::{with_query, ClientConfig},
    frame::FrameFormat,
    report::Report,
    stats::{ErrorCounts, Latency, Stats},
    switchboard::{Admin, Metrics},
    system::{self, Usage},
};

/// What every scenario runs with.
pub struct Ctx {
    pub common: Common,
    /// The server's pids, when known (given or spawned): one, or the
    /// nodes of a cluster.
    pub server_pids: Vec<i32>,
    /// The command line as typed, for the report.
    pub command: String,
    /// This process's open-files limit after raising it.
    pub open_files: u64,
}

/// Descriptors kept free for everything but connections (HTTP client,
/// /proc reads, the runtime).
const SPARE_FILES: u64 = 256;

/// How long the server may take to answer its health check.
const HEALTHY_WAIT: Duration = Duration::from_secs(30);

/// How long another node may take to learn of the instances a filter names.
const SUBSCRIBABLE_WAIT: Duration = Duration::from_secs(30);

impl Ctx {
    /// `small` in smoke mode, `full` otherwise, unless `given`.
    pub fn pick<T>(&self, given: Option<T>, small: T, full: T) -> T {
        given.unwrap_or(if self.common.smoke { small } else { full })
    }

    /// The admin API (switchboard scenarios need the admin key), with the
    /// nodes to pin instances to and the peers whose metrics add up.
    pub fn admin(&self) -> anyhow::Result<Admin> {
        let key = self.key()?;
        Admin::for_ws_url(&self.common.url, key)?
            .pinning(&self.common.pin_node)
            .with_peers(&self.common.peer_url)
    }

    /// The admin API once the server answers its health check.
    pub async fn healthy_admin(&self) -> anyhow::Result<Admin> {
        let admin = self.admin()?;
        admin.wait_healthy(HEALTHY_WAIT).await?;
        Ok(admin)
    }

    /// A scenario's report, with this run's mode and command line.
    pub fn report(&self, name: &str, what: &str) -> Report {
        Report::new(name, what, self.common.smoke, self.command.clone())
    }

    /// Where subscribers connect: `--subscribe-url`, else `--url`.
    pub fn subscribe_url(&self) -> &str {
        self.common
            .subscribe_url
            .as_deref()
            .unwrap_or(&self.common.url)
    }

    fn key(&self) -> anyhow::Result<&str> {
        self.common
            .key
            .as_deref()
            .context("this scenario drives switchboard: give its admin key with --key or SWITCHBOARD_BENCH_KEY")
    }

    /// The switchboard WebSocket URL with the admin key and `params`.
    pub fn switchboard_url(&self, params: &[(&str, &str)]) -> anyhow::Result<String> {
        let mut all = vec![("apikey", self.key()?)];
        all.extend_from_slice(params);
        Ok(with_query(self.subscribe_url(), &all))
    }

    /// With `--subscribe-url`, waits (up to 30 s) until a WebSocket with
    /// `url`'s filter is accepted there: another node of a cluster learns
    /// of an instance created through `--url` from the log a moment later,
    /// and until then completes the handshake but answers with an error
    /// frame and a close (1008 `NOT_FOUND`). Accepted means a ping sent
    /// right after the handshake gets its pong.
    pub async fn wait_subscribable(&self, url: &str) -> anyhow::Result<()> {
        if self.common.subscribe_url.is_none() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + SUBSCRIBABLE_WAIT;
        loop {
            let refusal = match probe(url).await {
                Ok(()) => return Ok(()),
                Err(refusal) => refusal,
            };
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "the subscribe URL still refused the filter after {SUBSCRIBABLE_WAIT:?}: {refusal:#}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client configuration with the shared connect and format options.
    pub fn client_config(&self, url: String, connections: usize) -> anyhow::Result<ClientConfig> {
        let common = &self.common;
        if connections as u64 + SPARE_FILES > self.open_files {
            anyhow::bail!(
                "{connections} connections need more open files than this process may have ({}): \
                 its hard limit could not be raised (raising it needs root with CAP_SYS_RESOURCE); \
                 run with at most {} connections",
                self.open_files,
                self.open_files.saturating_sub(SPARE_FILES)
            );
        }
        let mut config = ClientConfig::new(url, connections);
        config.source_addrs = common.source_addrs;
        config.connect_concurrency = common.connect_concurrency;
        config.connect_rate = common.connect_rate;
        config.connect_timeout = Duration::from_secs_f64(common.connect_timeout.max(0.1));
        config.headers = common
            .headers
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .with_context(|| format!("--header needs `Name: value`, got `{h}`"))
            })
            .collect::<anyhow::Result<_>>()?;
        config.format = FrameFormat {
            timestamp_field: common.timestamp_field.clone(),
            numeric_unit: common.timestamp_unit,
            control_field: common.control_field.clone(),
            id_field: String::new(),
        };
        config.progress = !common.smoke;
        Ok(config)
    }

    /// Fresh stats with one histogram shard per runtime thread.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::new(Stats::new(self.common.threads))
    }

    /// Makes sure the server may open `connections` more sockets: raises its
    /// open-files limit when its pid is known, warns otherwise.
    pub fn prepare_server_for(&self, connections: usize, report: &mut Report) {
        let wanted = connections as u64 + 4096;
        for &pid in &self.server_pids {
            match system::raise_nofile_of(pid, wanted) {
                Ok(limit) => report.setting("server open-files limit", limit),
                Err(err) => {
                    report.note(format!(
                        "could not raise the open-files limit of server pid {pid} to {wanted}: {err:#}; it may refuse connections beyond its limit"
                    ));
                    if let Ok(limit) = system::nofile_of(pid) {
                        report.setting("server open-files limit", limit);
                    }
                }
            }
        }
        if self.server_pids.is_empty() && connections > 10_000 {
            report.note(
                "the server's pid is unknown (no --server-pid/--spawn): make sure its open-files limit exceeds the connections",
            );
        }
    }

    /// A reading of the server processes added up (CPU time, RSS), when
    /// their pids are known and every one could be read.
    pub fn sample_server(&self) -> Option<system::ProcSample> {
        system::ProcSample::sum(&self.sample_each_server()?)
    }

    /// One reading per server process, in `--server-pid` order.
    fn sample_each_server(&self) -> Option<Vec<system::ProcSample>> {
        self.server_pids
            .iter()
            .map(|pid| system::sample(*pid).ok())
            .collect()
    }
}

/// One WebSocket to `url`: Ok when a ping is answered with a pong, an error
/// when the server sends an error frame or closes first (or nothing comes
/// within 5 s).
async fn probe(url: &str) -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        ws.send(Message::text(r#"{"type":"ping"}"#)).await?;
        while let Some(frame) = ws.next().await {
            match frame? {
                Message::Text(text) => {
                    let value: serde_json::Value =
                        serde_json::from_str(text.as_str()).unwrap_or_default();
                    match value["type"].as_str() {
                        Some("pong") => return Ok(()),
                        Some("error") => anyhow::bail!("refused: {text}"),
                        _ => {}
                    }
                }
                Message::Close(close) => anyhow::bail!("closed: {close:?}"),
                _ => {}
            }
        }
        anyhow::bail!("the connection ended without a pong")
    })
    .await;
    let _ = ws.close(None).await;
    answer.unwrap_or_else(|_| Err(anyhow::anyhow!("no pong within 5 s")))
}

/// What one measurement window saw.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub seconds: f64,
    /// Events received by the client.
    pub events: u64,
    pub events_per_sec: f64,
    pub bytes_per_event: f64,
    pub latency: Latency,
    /// Events whose timestamp could not be read (not in the latencies).
    pub untimed: u64,
    pub errors: ErrorCounts,
    /// The server process over the window, when its pid is known (the
    /// processes added up, when there are several).
    pub server: Option<Usage>,
    /// Each server process over the window, in `--server-pid` order, when
    /// there are several (the nodes of a cluster).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_each: Vec<Usage>,
    /// This tool over the window (to see whether the client was the limit).
    pub client: Option<Usage>,
    /// Cores busy with other processes on the machine during the window
    /// (machine busy time minus the server's and the tool's): above a few
    /// tenths, the numbers were measured on a shared, busy machine.
    pub others_cores: Option<f64>,
    /// Events the server committed in the window (switchboard only).
    pub committed: Option<u64>,
    pub committed_per_sec: Option<f64>,
    /// Log batches the server committed in the window (switchboard only).
    pub batches: Option<u64>,
    /// Frames the server handed to connections in the window (switchboard only).
    pub server_delivered: Option<u64>,
    /// Connections the server cut off as lagging in the window.
    pub lagging: Option<u64>,
    /// The server's metrics at the end of the window.
    #[serde(skip)]
    pub metrics_end: Option<Metrics>,
}

impl Window {
    /// Server CPU µs per event received by the client.
    pub fn server_us_per_event(&self) -> Option<f64> {
        self.server.and_then(|u| u.cpu_us_per(self.events))
    }

    /// `x.y µs` or `-`.
    pub fn server_us_per_event_text(&self) -> String {
        self.server_us_per_event()
            .map_or("-".into(), |v| format!("{v:.1} µs"))
    }

    /// Server cores busy, or `-`.
    pub fn server_cores_text(&self) -> String {
        self.server
            .map_or("-".into(), |u| format!("{:.2}", u.cores))
    }

    /// Client cores busy, or `-`.
    pub fn client_cores_text(&self) -> String {
        self.client
            .map_or("-".into(), |u| format!("{:.2}", u.cores))
    }
}

/// Measures for `duration`: counters, latencies (histograms reset at the
/// start), server and client CPU/RSS, and switchboard's metrics when an
/// admin API is given.
pub async fn measure(
    ctx: &Ctx,
    stats: &Stats,
    admin: Option<&Admin>,
    duration: Duration,
) -> anyhow::Result<Window> {
    let metrics_start = match admin {
        Some(admin) => Some(admin.metrics().await?),
        None => None,
    };
    let server_start = ctx.sample_each_server();
    let client_start = system::sample(0).ok();
    let machine_start = system::machine_busy_us();
    stats.take_latencies();
    let start = stats.snapshot();
    tokio::time::sleep(duration).await;
    let end = stats.snapshot();
    let latencies = stats.take_latencies();
    let server_end = ctx.sample_each_server();
    let client_end = system::sample(0).ok();
    let machine_end = system::machine_busy_us();
    let metrics_end = match admin {
        Some(admin) => Some(admin.metrics().await?),
        None => None,
    };
    let seconds = end.at.duration_since(start.at).as_secs_f64();
    let events = end.events - start.events;
    let both = |a: Option<Metrics>, b: Option<Metrics>, f: fn(&Metrics) -> u64| match (a, b) {
        (Some(a), Some(b)) => Some(f(&b).saturating_sub(f(&a))),
        _ => None,
    };
    let committed = both(metrics_start, metrics_end, |m| m.committed);
    let server_each: Vec<Usage> = server_start
        .zip(server_end)
        .map(|(a, b)| {
            a.iter()
                .zip(&b)
                .map(|(a, b)| Usage::between(a, b))
                .collect()
        })
        .unwrap_or_default();
    let server = Usage::sum(&server_each);
    let client = client_start
        .zip(client_end)
        .map(|(a, b)| Usage::between(&a, &b));
    let others_cores = machine_start.zip(machine_end).map(|(a, b)| {
        let ours = server.map_or(0, |u| u.cpu_us) + client.map_or(0, |u| u.cpu_us);
        b.saturating_sub(a).saturating_sub(ours) as f64 / 1e6 / seconds.max(1e-9)
    });
    Ok(Window {
        seconds,
        events,
        events_per_sec: events as f64 / seconds.max(1e-9),
        bytes_per_event: if events > 0 {
            (end.bytes - start.bytes) as f64 / events as f64
        } else {
            0.0
        },
        latency: Latency::from_histogram(&latencies),
        untimed: end.untimed - start.untimed,
        errors: end.errors_since(&start),
        server,
        server_each: if server_each.len() > 1 {
            server_each
        } else {
            Vec::new()
        },
        client,
        others_cores,
        committed,
        committed_per_sec: committed.map(|c| c as f64 / seconds.max(1e-9)),
        batches: both(metrics_start, metrics_end, |m| m.batches),
        server_delivered: both(metrics_start, metrics_end, |m| m.delivered_frames),
        lagging: both(metrics_start, metrics_end, |m| m.lagging_total),
        metrics_end,
    })
}

/// Cores of other load above which a window's numbers are flagged.
const BUSY_MACHINE: f64 = 0.2;

/// Notes the other load on the machine during the windows, when there was
/// enough to disturb the measurement.
pub fn note_other_load<'a>(report: &mut Report, windows: impl IntoIterator<Item = &'a Window>) {
    let worst = windows
        .into_iter()
        .filter_map(|w| w.others_cores)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    if let Some(worst) = worst {
        report.summary(
            "other load on the machine",
            format!("up to {worst:.2} cores"),
        );
        if worst > BUSY_MACHINE {
            report.note(format!(
                "other processes used up to {worst:.2} cores during the measurement: the server and the tool shared their cores, so these numbers understate both"
            ));
        }
    }
}

/// Seconds as a `Duration`, never negative.
pub fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

/// The smoke checks every delivering scenario shares: something arrived,
/// nothing failed, and the timestamps were readable.
pub fn check_delivery(report: &mut Report, window: &Window, connect_errors: u64) {
    report.check(window.events > 0, || "no events were delivered".into());
    report.check(window.errors.total() == 0, || {
        format!(
            "errors in the measured window: {}",
            window.errors.describe()
        )
    });
    report.check(connect_errors == 0, || {
        format!("{connect_errors} connections failed to open")
    });
    report.check(window.untimed == 0, || {
        format!("{} events had no readable timestamp", window.untimed)
    });
}
