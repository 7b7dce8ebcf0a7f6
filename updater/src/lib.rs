//! The update daemon and CLI (`edge-update`): fetch, verify, write the inactive slot, flip, health-check, commit.
//!
//! This crate is a placeholder until its issue lands; it will drive `image-layout`'s reader and delta planner
//! and `bootctl`'s slot state.
#![warn(missing_docs)]
