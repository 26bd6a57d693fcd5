//! The command line: options shared by every scenario, and one subcommand
//! per scenario. Scenario sizes are `Option`s so `--smoke` can pick small
//! defaults while an explicit value still wins.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::frame::NumericUnit;

#[derive(Parser, Debug)]
#[command(
    name = "switchboard-bench",
    version,
    about = "Load tool for switchboard and any WebSocket server that sends one JSON text frame per event",
    after_help = "Pin the server and the tool to different cores on a small machine, e.g.\n  \
                  switchboard-bench fanout --cpu 1 --server-pid $(pgrep -n switchboard) --key $KEY\n\
                  or let the tool start the server pinned:\n  \
                  switchboard-bench idle --cpu 1 --spawn 'target/release/switchboard run' --server-cpu 0 --key $KEY"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// WebSocket URL of the server (ws:// only). Switchboard scenarios add
    /// `apikey`, `instances` and `since` to its query.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_BENCH_URL",
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    pub url: String,
    /// Where subscribers and catch-up clients connect (ws://), when not
    /// `--url`: another node of a cluster, to measure delivery across
    /// nodes. Instances are still created and driven through `--url`.
    #[arg(long, global = true, env = "SWITCHBOARD_BENCH_SUBSCRIBE_URL")]
    pub subscribe_url: Option<String>,
    /// Cluster nodes the created instances are pinned to (`"node"` on
    /// `instance/create`), round robin over the list in creation order.
    /// Empty: the server places them.
    #[arg(
        long,
        global = true,
        value_name = "NAME[,NAME...]",
        value_delimiter = ','
    )]
    pub pin_node: Vec<String>,
    /// The other nodes of a cluster (ws:// URLs, like `--url`): their
    /// `/metrics` counters are added to `--url`'s, so events committed by
    /// every node count.
    #[arg(
        long,
        global = true,
        value_name = "URL[,URL...]",
        value_delimiter = ','
    )]
    pub peer_url: Vec<String>,
    /// switchboard's admin key: sent as `apikey` to the REST API and the
    /// WebSocket (the `connect` scenario sends it only when given).
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_BENCH_KEY",
        hide_env_values = true
    )]
    pub key: Option<String>,
    /// Few seconds, small numbers: a correctness run for CI. Exits non-zero
    /// when no events arrived or any error occurred.
    #[arg(long, global = true)]
    pub smoke: bool,
    /// Also write the report as JSON to this file (`-` for stdout, which
    /// then carries only the JSON).
    #[arg(long, global = true, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Pin the tool to this CPU.
    #[arg(long, global = true, value_name = "N")]
    pub cpu: Option<usize>,
    /// Async runtime threads of the tool (1: a single-threaded runtime,
    /// best when the tool is pinned to one core).
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,

    /// The server's pid, to sample its CPU time and RSS (and raise its
    /// open-files limit when it is too low for the scenario). Several,
    /// comma-separated (a cluster's nodes): their CPU time and RSS are
    /// added up, and each one's is kept in the JSON.
    #[arg(
        long,
        global = true,
        value_name = "PID[,PID...]",
        value_delimiter = ',',
        conflicts_with = "spawn"
    )]
    pub server_pid: Vec<i32>,
    /// Start the server with this command line (program and arguments,
    /// split on whitespace; configure it through the environment), sample
    /// it, and stop it at the end.
    #[arg(long, global = true, value_name = "COMMAND")]
    pub spawn: Option<String>,
    /// Pin the spawned server to this CPU (like `taskset -c N`).
    #[arg(long, global = true, value_name = "N", requires = "spawn")]
    pub server_cpu: Option<usize>,

    /// Number of 127.0.0.x source addresses to spread connections over
    /// (default: one per 20,000 connections on a loopback URL).
    #[arg(long, global = true, value_name = "N")]
    pub source_addrs: Option<u8>,
    /// Connection handshakes in flight at once.
    #[arg(long, global = true, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// New connections per second (default: as fast as the concurrency allows).
    #[arg(long, global = true, value_name = "PER_SEC")]
    pub connect_rate: Option<f64>,
    /// Seconds one connect plus handshake may take.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Extra request header for the WebSocket handshake, `Name: value`
    /// (repeatable).
    #[arg(long = "header", global = true, value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Top-level JSON key holding the event's creation time: RFC 3339 text
    /// or a number since the epoch.
    #[arg(long, global = true, default_value = "timestamp")]
    pub timestamp_field: String,
    /// Unit of a numeric timestamp.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub timestamp_unit: NumericUnit,
    /// A top-level key that marks a frame as a control message, not an
    /// event (switchboard: `type`). Empty: every text frame is an event.
    #[arg(long, global = true, default_value = "type")]
    pub control_field: String,

    /// Seed of the simulator instances (the same seed, the same events).
    #[arg(long, global = true, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Generic: hold C connections to --url (any server) and measure what
    /// arrives. Drives no publisher: something else must make events.
    Connect(ConnectArgs),
    /// 1,000 subscribers; the publish rate rises in steps until p99 exceeds
    /// the limit; the highest sustained deliveries/s.
    Fanout(FanoutArgs),
    /// 10,000 subscribers at 100 events/s: latency and server CPU per delivery.
    Subscribers(SubscribersArgs),
    /// Hold N idle connections: server RSS per connection, time to connect all.
    Idle(IdleArgs),
    /// Events committed per second with no subscribers, and the writer's batch sizes.
    Ingest(IngestArgs),
    /// One client resuming N events behind with `?since=`: events/s replayed.
    Catchup(CatchupArgs),
    /// X subscribers of which some stop reading: the others' p99 before and after.
    Slow(SlowArgs),
    /// N HTTP clients sending texts back to back: sendText accepted/s and
    /// the latency of the 201, against 1 and against 10 instances.
    Accept(AcceptArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Connections.
    #[arg(short = 'c', long)]
    pub connections: Option<usize>,
    /// Seconds to measure after the warm-up.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds between connecting and measuring.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// switchboard only: also run a simulator instance publishing this many
    /// events/s during the run (needs --key), so the URL has traffic.
    #[arg(long, value_name = "PER_SEC")]
    pub publish_rate: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Publish rates to try, events/s in total, comma-separated, ascending.
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Simulator instances sharing each rate.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Seconds measured at each rate (after the warm-up).
    #[arg(long)]
    pub step: Option<f64>,
    #[arg(long)]
    pub warmup: Option<f64>,
    /// A step is sustained while p99 stays at or under this (ms)...
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,
    /// ...and at least this share of the committed events × subscribers arrives.
    #[arg(long, default_value_t = 0.95)]
    pub min_delivered: f64,
    /// Run every rate even after a step is not sustained (the whole curve;
    /// useful on a machine with other load, where one noisy step would end
    /// the run).
    #[arg(long)]
    pub keep_going: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SubscribersArgs {
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Published events/s in total.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    #[arg(long)]
    pub duration: Option<f64>,
    #[arg(long)]
    pub warmup: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[arg(short = 'c', long)]
    pub connections: Option<usize>,
    /// Seconds to hold them before measuring RSS.
    #[arg(long)]
    pub hold: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    #[arg(long)]
    pub instances: Option<usize>,
    /// Events/s asked of each instance (set high: the simulator waits for
    /// its commits, so the server's pace decides what gets through).
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long)]
    pub duration: Option<f64>,
    #[arg(long)]
    pub warmup: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct CatchupArgs {
    /// How many events behind the client resumes.
    #[arg(long)]
    pub events: Option<u64>,
    /// Instances that fill the log first (when it holds too few events).
    #[arg(long)]
    pub prefill_instances: Option<usize>,
    /// Events/s asked of each prefill instance.
    #[arg(long)]
    pub prefill_rate: Option<f64>,
    /// Seconds without a new event before the replay counts as stuck.
    #[arg(long, default_value_t = 10.0)]
    pub stall_timeout: f64,
    /// Read buffer of the resuming connection, bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub read_buffer: usize,
}

#[derive(Args, Debug, Clone)]
pub struct SlowArgs {
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Published events/s in total.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Percentage of the subscribers that stop reading.
    #[arg(long, default_value_t = 10.0)]
    pub stalled_percent: f64,
    /// After the stall, wait up to this many seconds for the server to cut
    /// every stalled client off (lagging) before measuring the readers again.
    #[arg(long)]
    pub fill: Option<f64>,
    /// SO_RCVBUF of the stalled clients in bytes (0: kernel default); a small
    /// window makes the server's queues for them fill sooner.
    #[arg(long, default_value_t = 4096)]
    pub stall_rcvbuf: u32,
    /// Seconds measured in each half (before and after the stall).
    #[arg(long)]
    pub duration: Option<f64>,
    #[arg(long)]
    pub warmup: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct AcceptArgs {
    /// Concurrent HTTP clients, one request in flight each.
    #[arg(short = 'c', long)]
    pub clients: Option<usize>,
    /// Simulator instances the texts are spread over, one measured step
    /// per count, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub instances: Option<Vec<usize>>,
    /// Seconds measured at each step (after the warm-up).
    #[arg(long)]
    pub duration: Option<f64>,
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Stop the instances' drivers first (`instance/logout`): texts are
    /// only queued, never sent, so the window measures the accept alone.
    #[arg(long)]
    pub stopped: bool,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn cluster_options_default_to_one_server() {
        let cli = Cli::try_parse_from(["switchboard-bench", "fanout"]).unwrap();
        assert_eq!(cli.common.subscribe_url, None);
        assert!(cli.common.pin_node.is_empty());
        assert!(cli.common.peer_url.is_empty());
        assert!(cli.common.server_pid.is_empty());
    }

    #[test]
    fn cluster_options_take_lists() {
        let cli = Cli::try_parse_from([
            "switchboard-bench",
            "--url",
            "ws://127.0.0.1:1/ws",
            "--subscribe-url",
            "ws://127.0.0.1:2/ws",
            "--pin-node",
            "node-a,node-b",
            "--peer-url",
            "ws://127.0.0.1:2/ws,ws://127.0.0.1:3/ws",
            "--server-pid",
            "10,11",
            "ingest",
        ])
        .unwrap();
        assert_eq!(
            cli.common.subscribe_url.as_deref(),
            Some("ws://127.0.0.1:2/ws")
        );
        assert_eq!(cli.common.pin_node, ["node-a", "node-b"]);
        assert_eq!(cli.common.peer_url.len(), 2);
        assert_eq!(cli.common.server_pid, [10, 11]);
        let spawn_and_pid = Cli::try_parse_from([
            "switchboard-bench",
            "--spawn",
            "switchboard run",
            "--server-pid",
            "10",
            "idle",
        ]);
        assert!(spawn_and_pid.is_err());
    }
}
