//! switchboard-bench: the load tool of switchboard (issue 5).
//!
//! It opens many WebSocket connections to any server that sends one JSON
//! text frame per event, measures what arrives (events/s, end-to-end latency
//! from each event's own timestamp, connect rate, errors) and samples the
//! server's CPU time and memory from `/proc`. Against switchboard it also
//! drives the publish rate through simulator instances and reads the
//! server's metrics, so each scenario of the issue is one command.
//!
//! # Layout
//!
//! - [`cli`]: the command line (shared options, one subcommand per scenario).
//! - [`client`]: the generic client core: connecting C connections (source
//!   address spread, concurrency, rate) and the per-connection read loop.
//! - [`frame`]: reading the timestamp, id and control marker out of a frame
//!   without building a JSON tree.
//! - [`stats`]: counters, close codes and HDR latency histograms.
//! - [`addr`]: which 127.0.0.x source address each connection binds.
//! - [`system`]: open-files limits, CPU pinning, `/proc` sampling, the
//!   machine description, a spawned server.
//! - [`switchboard`]: switchboard's admin API and `/metrics`.
//! - [`scenario`]: the scenarios, one file each, and the shared measuring window.
//! - [`report`]: the results table, printed as Markdown or written as JSON.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod addr;
pub mod cli;
pub mod client;
pub mod frame;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod switchboard;
pub mod system;
