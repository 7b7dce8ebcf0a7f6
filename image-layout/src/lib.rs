//! The signed, chunked, streamable bundle that carries a stack image to a node, and the `edge-image` CLI's library.
//!
//! A bundle is one file, readable front to back: a header, a signed JSON manifest, the signatures, then per payload
//! a chunk index and independent zstd chunks (what a full install reads), and at the end a delta section of block
//! fingerprints and small frames that only delta installs fetch. The byte layout is docs/bundle-format.md.
//!
//! `disk` (with `gpt`) builds a flashable disk image from bundles and boot files made elsewhere (GRUB, its script and
//! the boot state that `edge-bootctl` writes); it copies them and knows no slot rules; docs/disk-image.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod delta;
pub mod disk;
pub mod error;
pub mod format;
pub mod fsutil;
pub mod gpt;
pub mod keys;
pub mod manifest;
pub mod reader;
pub mod wire;
pub mod writer;

pub use error::{Error, Result};
