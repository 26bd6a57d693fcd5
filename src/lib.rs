//! switchboard: a multi-instance messaging bridge.
//!
//! Each named *instance* owns a modem actor (a GSM/LTE modem over serial or TCP,
//! or the built-in virtual modem). What the modem sees becomes *events*, which are
//! committed to a durable log and then fanned out over WebSocket and SSE to
//! every client allowed to see them.
//!
//! # Layout
//!
//! One stage of the data flow per folder, in the order imports may run
//! (each module uses only those above it; `tests/layout.rs` fails the build
//! on a backward import or a cycle):
//!
//! - [`domain`]: plain types every stage shares (instance names, phone
//!   numbers, driver configurations, topics, per-instance settings, keys);
//!   depends on nothing in the crate.
//! - [`config`]: typed, layered settings.
//! - [`event`]: the event model: payloads, the committed event and its wire
//!   envelope.
//! - [`store`]: the durable log and the tables beside it (PostgreSQL or
//!   SQLite), and the batching writer that is the only way anything is
//!   appended. **This is where an event is stored**; the writer hands
//!   committed events on through the [`store::Publish`] trait.
//! - [`hub`]: per-node fan-out of committed events into bounded
//!   per-connection queues, and the feeds that replay the log and then go
//!   live. **This is where an event is delivered** (with [`http`]'s
//!   WebSocket and SSE sessions and [`webhook`]).
//! - [`modem`]: drivers that speak to a modem (or stand in for one with the
//!   built-in virtual modem) and turn its traffic into events. **This is
//!   where an event from the outside is born.**
//! - [`webhook`]: delivery of each instance's events to its webhook URL.
//! - [`instance`]: the registry of instances, the supervisor that keeps each
//!   one's modem actor running, retention.
//! - [`cluster`]: several nodes on one PostgreSQL: heartbeats, leases with
//!   fencing tokens (one driver per instance), placement, and the log
//!   tailed into every node's hub.
//! - [`service`]: what the API does (send, groups, lifecycle, settings, reading
//!   the log). **This is where an event the API causes is born**: services
//!   build the jobs; handlers never touch the store.
//! - [`auth`]: the admin key, instance keys, scoped tokens and what a
//!   credential may see.
//! - [`http`]: the REST API, WebSocket and SSE endpoints: parse, authorize,
//!   call a service, map the answer ([`http::error`] is the one error type).
//! - [`app`]: wiring it all together, startup and graceful shutdown.
//!
//! Outside the data flow:
//!
//! - [`tools`]: developer tools shipped in the binary, such as
//!   `switchboard modem-sim` (a simulated AT modem to run the real GSM
//!   driver against). Nothing in the server depends on them.

pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod event;
pub mod http;
pub mod hub;
pub mod instance;
pub mod modem;
pub mod service;
pub mod store;
pub mod tools;
pub mod webhook;
