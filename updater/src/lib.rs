//! The updater library: fetch a signed bundle, verify it, stream it into the inactive slot, flip the bootloader,
//! and after the reboot commit the slot by health checks or fall back.
//! The `edge-update` command (the `edge-update` crate) and the node agent (`edge-agent`) drive it; it has no CLI
//! parser and no progress bar of its own, so what links it carries neither.
//!
//! It drives `image-layout`'s verified reader and delta planner and `bootctl`'s slot rules and backends; it never
//! opens the booted slot for writing.
#![warn(missing_docs)]

pub mod config;
pub mod delta;
pub mod device;
pub mod error;
pub mod fetch;
pub mod health;
pub mod held;
pub mod http;
pub mod install;
pub mod journal;
pub mod phase;
pub mod run;
pub mod slot_index;
pub mod slots;
pub mod status;
mod sys;
pub mod wire;

pub use error::{Error, Result};
