//! The thin cloud endpoint (`edge-cloud`): registration, groups and desired versions, bundle hosting, telemetry.
//!
//! This crate is a placeholder until its issue lands; it will borrow only the manifest types from `image-layout`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
