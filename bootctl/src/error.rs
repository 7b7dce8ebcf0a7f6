//! The crate's error type.
//!
//! Every I/O variant carries the path it concerns; there is no `From<io::Error>`.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading or writing slot state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an environment file failed.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing or syncing an environment file failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The block does not start with GRUB's signature line.
    #[error("not a GRUB environment block (no \"# GRUB Environment Block\" line)")]
    GrubSignature,
    /// The block's size is not the one expected.
    #[error("GRUB environment block is {size} bytes, expected {expected}")]
    GrubSize {
        /// Its size.
        size: usize,
        /// The size expected.
        expected: usize,
    },
    /// An entry is cut off (no `=`, or no final newline) before the end of the block.
    #[error("GRUB environment block entry at byte {offset} is broken")]
    GrubEntry {
        /// Where the entry starts.
        offset: usize,
    },
    /// The variables do not fit in the block.
    #[error("GRUB environment variables need {needed} bytes, the block has {size}")]
    GrubFull {
        /// Bytes needed.
        needed: usize,
        /// The block size.
        size: usize,
    },
    /// Making `slot` active would leave no good slot to fall back to.
    #[error("cannot make slot {slot} active: slot {other} is not good, so nothing would be left to fall back to")]
    NoFallback {
        /// The slot asked for.
        slot: crate::rules::Slot,
        /// The slot that is not good.
        other: crate::rules::Slot,
    },
    /// Neither copy of the boot state is whole.
    #[error("neither copy of the boot state in {location} is whole")]
    NoWholeCopy {
        /// Where the copies are (the state directory, or the device of the environment).
        location: PathBuf,
    },
    /// The U-Boot environment could not be read or written.
    #[error("U-Boot environment in {location}")]
    UBoot {
        /// The environment's device or file (or its `fw_env.config`).
        location: PathBuf,
        /// The cause.
        #[source]
        source: crate::uboot::Error,
    },
    /// A boot state variable is missing or has a value outside its range.
    #[error("boot state variable {name}: {}", value.as_deref().map_or("missing".to_owned(), |v| format!("{v:?} out of range")))]
    StateVariable {
        /// The variable.
        name: &'static str,
        /// Its value, when present.
        value: Option<String>,
    },
    /// The kernel command line names no slot.
    #[error("{path} has no edge.slot=A or edge.slot=B")]
    NoBootedSlot {
        /// The command line file.
        path: PathBuf,
    },
    /// The command line names a slot whose device is not the one mounted as root.
    #[error("the kernel command line says slot {slot}, but {device} is not the device mounted as root")]
    BootedMismatch {
        /// The slot named.
        slot: crate::rules::Slot,
        /// Its configured device.
        device: PathBuf,
    },
    /// The config file is malformed or out of range.
    #[error("{path}: {detail}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Provisioning would overwrite a whole boot state.
    #[error("the boot state is whole; provisioning would overwrite it (--force to do so)")]
    StateExists,
    /// A variable name GRUB could not read back.
    #[error("invalid GRUB environment variable name {name:?}")]
    GrubName {
        /// The name.
        name: String,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
