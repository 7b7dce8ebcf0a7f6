//! Slot state (booted, active, good, tries) and the bootloader backends that keep it.
//!
//! The slot rules live once, in `rules`; the GRUB environment block (`grubenv`) and the U-Boot environment
//! (`uboot`) are the on-disk formats the bootloaders read and write, each byte-compatible with the bootloader's own
//! tools. This crate depends on nothing above it: the updater drives it, `edge-init` does not link it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod blockdev;
pub mod booted;
pub mod config;
pub mod error;
pub mod grubcfg;
pub mod grubenv;
pub mod grubstate;
pub mod health;
pub mod rules;
pub mod uboot;
pub mod ubootscript;
pub mod wire;
