//! switchboard: a multi-instance messaging bridge.
//!
//! Each named *instance* owns a modem actor (a GSM/LTE modem over serial or TCP,
//! or the built-in simulator). What the modem sees becomes *events*, which are
//! committed to a durable log and then fanned out over WebSocket and SSE to
//! every client allowed to see them.
//!
//! # Layout
//!
//! The modules follow the data flow, one stage per folder:
//!
//! - [`modem`]: drivers that speak to a modem (or stand in for one with the
//!   built-in virtual modem) and turn its traffic into domain events. This
//!   is where an event is born.
//! - [`instance`]: instance names, the registry of instances and the
//!   supervisor that keeps each instance's modem actor running.
//! - [`store`]: the durable event log (PostgreSQL or SQLite) and the batching
//!   writer that is the only way anything is appended. This is where an event
//!   is stored.
//! - [`hub`]: per-node fan-out of committed events into bounded
//!   per-connection queues. This is where an event is delivered.
//! - [`http`]: the admin REST API, the WebSocket and SSE endpoints.
//! - [`webhook`]: delivery of each instance's events to its webhook URL.
//! - [`event`]: the event model shared by all stages: kinds, topics, filters
//!   and the wire envelope.
//! - [`auth`]: the admin key, per-instance keys and what a credential may see.
//! - [`config`]: typed, layered settings.
//! - [`app`]: wiring it all together, startup and graceful shutdown.
//!
//! Outside the data flow:
//!
//! - [`tools`]: developer tools shipped in the binary, such as
//!   `switchboard modem-sim` (a simulated AT modem to run the real GSM
//!   driver against). Nothing in the server depends on them.

pub mod app;
pub mod auth;
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
