//! Integration tests: a real server on a random port, a real database
//! (PostgreSQL and SQLite, each test on both), real HTTP and WebSocket
//! clients. One binary, one file per feature.

mod helpers;
mod process;
mod proxy;
mod readme;
mod resume;
mod retention;
mod settings;
mod streams;
mod tenancy;
mod tls;
mod ussd;
mod webhooks;

mod auth;
mod backpressure;
mod bad_input;
mod browser;
mod cluster;
mod crash;
mod dashboard;
mod docker;
mod durability;
mod filter_bounds;
mod filters;
mod gateway;
mod history;
mod instances;
mod isolation;
mod modem;
mod openapi;
mod ping_flood;
mod pools;
mod pools_cluster;
mod rfc6455;
mod seeds;
mod whole_loop;
