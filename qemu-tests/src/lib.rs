//! The QEMU boot harness: builds disk images with `edge-image`, boots them under real firmware and GRUB.
//!
//! This crate is a placeholder until its issue lands.
#![warn(missing_docs)]
