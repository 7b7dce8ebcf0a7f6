//! The node's PID 1 (`edge-init`): mounts, services, reaping, signals, watchdog, ordered shutdown.
//!
//! This crate is a placeholder until its issue lands; it links none of the update code.
#![warn(missing_docs)]
