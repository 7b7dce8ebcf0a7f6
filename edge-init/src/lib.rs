//! The node's PID 1 (`edge-init`): mounts, services, reaping, signals, watchdog, ordered shutdown.
//!
//! It links none of the update code and has no network code: a bug in the updater cannot take PID 1 down with it.
//! `pid1` is its one loop; `supervise` decides about services, `boot`, `modules` and `data` bring the node up,
//! `watchdog` keeps the hardware watchdog, `one` runs one command the way tini does in a container, and `check`
//! validates a services file for an image builder (ARCHITECTURE.md, docs/edge-init.md).
#![warn(missing_docs)]

pub mod args;
pub mod boot;
pub mod cgroup;
pub mod check;
pub mod cmdline;
pub mod control;
pub mod ctl;
pub mod data;
pub mod error;
pub mod log_sink;
pub mod modules;
pub mod one;
pub mod output;
pub mod paths;
pub mod pid1;
pub mod services;
pub mod shutdown;
pub mod spawn;
pub mod supervise;
pub mod sys;
pub mod unmount;
pub mod watchdog;

pub use error::{Error, Result};
