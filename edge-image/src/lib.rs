//! The `edge-image` tool's library: the CLI's subcommands and their JSON reports, and the flashable disk image.
//!
//! The bundle format itself (manifest, keys, reader, writer, delta planning, atomic files) is the `image-layout`
//! crate, which the updater links too; this crate holds what only the tool needs, with its dependencies (clap, the
//! progress bar, the FAT writer), so that none of them reaches a node's updater.
//!
//! `disk` builds a flashable disk image from bundles and boot files made elsewhere (GRUB, its script and the boot
//! state that `edge-bootctl` writes, or for a U-Boot board the script's source and the boot state), with the GPT
//! encoder of the `platform` crate; it copies them (compiling a U-Boot script into `boot.scr`) and knows no slot
//! rules; docs/disk-image.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod disk;
pub mod error;
pub mod size;
pub mod wire;

pub use error::{Error, Result};
