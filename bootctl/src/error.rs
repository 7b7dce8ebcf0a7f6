//! The crate's error type, and the mapping from error classes to `edge-bootctl`'s documented exit codes.
//!
//! Every I/O variant carries the path it concerns; there is no `From<io::Error>`.

use std::io;
use std::path::{Path, PathBuf};

use crate::blockdev::ReadSmall;

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
    /// The config file is not TOML of the documented shape: a syntax error, an unknown key, a value of the wrong
    /// type.
    #[error("{}{}: {}{detail}", path.display(), at.map_or(String::new(), |(l, c)| format!(":{l}:{c}")), key.as_deref().map_or(String::new(), |k| format!("key {k}: ")))]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The line and column (from 1) where the error is, when known.
        at: Option<(usize, usize)>,
        /// The key whose line it is, when there is one.
        key: Option<String>,
        /// What is wrong and what was expected.
        detail: String,
    },
    /// A file read whole (a config file, the kernel command line) is not a regular file.
    #[error("{path} is a {found}, expected a regular file")]
    FileType {
        /// The file.
        path: PathBuf,
        /// What it is.
        found: &'static str,
    },
    /// A file read whole is larger than any valid one.
    #[error("{path} is {size_bytes} bytes, expected at most {max_bytes}")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, or the bytes read past the bound when it grew.
        size_bytes: u64,
        /// The bound.
        max_bytes: u64,
    },
    /// A boot state copy's path is not a file of a kind that can hold one.
    #[error("boot state copy {path} is a {found}, expected {expected}")]
    CopyType {
        /// The path.
        path: PathBuf,
        /// What it is.
        found: &'static str,
        /// What it must be.
        expected: &'static str,
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

impl Error {
    /// The error of a small file read whole ([`crate::blockdev::read_small`]).
    pub fn small_file(path: &Path, e: ReadSmall, max_bytes: u64) -> Error {
        let path = path.to_owned();
        match e {
            ReadSmall::Io(source) => Error::Read { path, source },
            ReadSmall::Type(found) => Error::FileType { path, found },
            ReadSmall::TooLarge(size_bytes) => Error::FileTooLarge { path, size_bytes, max_bytes },
        }
    }

    /// The exit code `edge-bootctl` returns for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Read { .. } | Error::Write { .. } => exit::IO,
            Error::Config { .. } | Error::ParseConfig { .. } | Error::FileType { .. } | Error::FileTooLarge { .. } => {
                exit::CONFIG
            }
            Error::GrubSignature
            | Error::GrubSize { .. }
            | Error::GrubEntry { .. }
            | Error::GrubFull { .. }
            | Error::GrubName { .. }
            | Error::NoWholeCopy { .. }
            | Error::StateVariable { .. }
            | Error::CopyType { .. } => exit::STATE,
            Error::UBoot { source, .. } => uboot_exit_code(source),
            Error::NoFallback { .. } | Error::StateExists => exit::REFUSED,
            Error::NoBootedSlot { .. } | Error::BootedMismatch { .. } => exit::BOOTED,
        }
    }
}

/// The class of a U-Boot environment error: its device's I/O, its `fw_env.config`, or what the copies hold.
fn uboot_exit_code(e: &crate::uboot::Error) -> i32 {
    use crate::uboot::Error as U;
    match e {
        U::OpenDevice { .. }
        | U::ReadDevice { .. }
        | U::WriteDevice { .. }
        | U::SyncDevice { .. }
        | U::DeviceSize { .. }
        | U::ReadConfig { .. } => exit::IO,
        U::ParseConfig { .. }
        | U::ConfigType { .. }
        | U::ConfigTooLarge { .. }
        | U::UnsupportedDevice { .. }
        | U::OffsetOutOfRange { .. }
        | U::SizeMismatch { .. }
        | U::BlockTooSmall { .. } => exit::CONFIG,
        U::DeviceType { .. }
        | U::TooLarge { .. }
        | U::BadCrc { .. }
        | U::NoValidCopy
        | U::Unterminated { .. }
        | U::NoEquals { .. }
        | U::NotUtf8 { .. }
        | U::InvalidName { .. }
        | U::InvalidValue { .. }
        | U::DuplicateName { .. } => exit::STATE,
    }
}

/// Exit codes of `edge-bootctl`, documented in docs/boot-state.md ("Exit codes"), whose table [`exit::table`]
/// generates.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A file or device could not be read, written or synced (the message names it).
    pub const IO: i32 = 1;
    /// Command-line usage error (clap's own code).
    pub const USAGE: i32 = 2;
    /// The config is invalid: `bootctl.toml` or `fw_env.config` does not parse, holds a value out of range, or
    /// is not a regular file of a sane size (the same for the kernel command line file).
    pub const CONFIG: i32 = 3;
    /// The boot state is damaged or lost: no copy is whole, a value is out of range, or a copy's path is not a
    /// file or device that can hold one; `provision` recovers.
    pub const STATE: i32 = 4;
    /// The slot rules refuse the change (nothing would be left to fall back to), or `provision` would overwrite a
    /// whole state without `--force`; nothing was written.
    pub const REFUSED: i32 = 5;
    /// The booted slot is unknown: the kernel command line names none, or names one whose device is not the root.
    pub const BOOTED: i32 = 6;

    /// Every code and its meaning, in order.
    pub const ALL: [(i32, &str); 7] = [
        (OK, "success"),
        (IO, "a file or device could not be read, written or synced (the message names it)"),
        (USAGE, "command-line usage error, a bad slot letter included"),
        (
            CONFIG,
            "bad config: `bootctl.toml` or `fw_env.config` does not parse (the message names the file, the line and column, and the key), holds a value out of range, describes a layout the boot state cannot use, or is not a regular file of at most 64 KiB; likewise the kernel command line file",
        ),
        (
            STATE,
            "bad boot state: no copy is whole, a state value is out of range, or a copy's path is not what can hold one (a FIFO, a directory); `provision` recovers a lost state",
        ),
        (
            REFUSED,
            "refused by the rules: making the slot active would leave nothing to fall back to, or `provision` would overwrite a whole state without `--force`; nothing was written",
        ),
        (BOOTED, "the booted slot is unknown: the kernel command line names none, or its device is not the root"),
    ];

    /// The Markdown table of [`ALL`], for docs/boot-state.md.
    pub fn table() -> String {
        let mut out = String::from("| code | meaning |\n| --- | --- |\n");
        for (code, meaning) in ALL {
            out.push_str(&format!("| {code} | {meaning} |\n"));
        }
        out
    }
}
