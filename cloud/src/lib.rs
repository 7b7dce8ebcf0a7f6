//! The fleet endpoint (`edge-cloud`): the node API (enrollment, desired state, inventory, reports, diagnostics),
//! the admin API, the bundle store, and the admin client, over one storage trait with SQLite and PostgreSQL behind
//! it (docs/cloud.md, docs/fleet-protocol.md).
//!
//! It links only `fleet-wire` (the protocol both sides share) and `image-layout` (to verify bundles) of ours.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod clock;
pub mod error;
pub mod forward;
#[cfg(feature = "harness")]
pub mod harness;
pub mod metrics;
pub mod remote_write;
pub mod rollout;
pub mod server;
pub mod store;
pub mod web;

pub use error::{Error, Refusal, Result};
