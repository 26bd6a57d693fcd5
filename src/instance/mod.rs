//! Instances: their names, the registry that creates, starts, stops and
//! deletes them, and the supervisor that keeps each one's modem actor running.

pub mod registry;
pub mod retention;
pub mod supervisor;

pub use registry::Registry;
