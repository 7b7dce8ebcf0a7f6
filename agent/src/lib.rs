//! The node agent: enrolls the node with the fleet endpoint under its own ed25519 key, polls its desired state,
//! drives installs through the updater's library, and reports every transition of the updater's event log and its
//! own, in order, numbered once, across reboots and power cuts (docs/agent.md).
//!
//! It is a management plane's node side, not a control plane's: the node decides how and when, checks every
//! bundle itself, and keeps running when the endpoint is gone for days. Nothing links this crate; it links the
//! updater, `fleet-wire` and `platform`, and the updater knows nothing of it.
#![warn(missing_docs)]

pub mod agent;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod decide;
pub mod diagnostics;
pub mod error;
pub mod events;
pub mod identity;
pub mod install;
pub mod inventory;
pub mod paths;
pub mod spool;
pub mod state;
mod sys;
pub mod telemetry;

pub use error::{Error, Result};
