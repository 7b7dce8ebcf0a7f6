//! Slot state (booted, active, good, tries) and the bootloader backends that keep it.
//!
//! This crate is a placeholder until its issue lands: the slot rules, the GRUB and U-Boot backends and the
//! generated bootloader scripts will live here, with no dependency on the bundle format.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
