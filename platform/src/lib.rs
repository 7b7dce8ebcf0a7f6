//! What every program on the node knows about the machine it runs on: the mount table (`mountinfo`), the GUID
//! partition table (`gpt`), finding a partition by `PARTLABEL=`, `PARTUUID=` or path (`partition`), and the
//! protocol of `edge-init`'s control socket with its one client (`ctl`).
//!
//! It is a crate of its own because `edge-init`, the updater and the fleet agent all need this knowledge, and
//! `edge-init` must not link update code: this crate holds none, and stays small enough for PID 1 (no serde_json,
//! no network). `edge-image` uses its GPT encoder to build disks, so every GPT in the workspace has one layout.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod ctl;
pub mod error;
pub mod gpt;
pub mod mountinfo;
pub mod partition;

pub use error::{Error, Result};
