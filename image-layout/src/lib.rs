//! The signed, chunked, streamable bundle that carries a stack image to a node: the format library that the
//! `edge-image` tool, the updater and the fleet endpoint share.
//!
//! A bundle is one file, readable front to back: a header, a signed JSON manifest, the signatures, then per payload
//! a chunk index and independent zstd chunks (what a full install reads), and at the end a delta section of block
//! fingerprints and small frames that only delta installs fetch. The byte layout is docs/bundle-format.md.
//!
//! It holds no CLI, no disk image and no progress bar (those are the `edge-image` crate's), so what links it (the
//! updater on every node) carries none of their dependencies.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod delta;
pub mod error;
pub mod format;
pub mod fsutil;
pub mod keys;
pub mod manifest;
pub mod reader;
pub mod writer;

pub use error::{Error, Result};
