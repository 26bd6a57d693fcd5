//! Integration tests: a real server on a random port, a real database
//! (PostgreSQL and SQLite, each test on both), real HTTP and WebSocket
//! clients. One binary, one file per feature.

mod helpers;
mod proxy;
mod readme;
mod resume;
mod retention;
mod streams;
mod tls;
mod webhooks;

mod auth;
mod backpressure;
mod bad_input;
mod browser;
mod crash;
mod docker;
mod durability;
mod filters;
mod instances;
mod modem;
mod openapi;
mod whole_loop;
