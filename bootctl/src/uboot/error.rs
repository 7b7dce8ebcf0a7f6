//! What can go wrong reading, writing or configuring a U-Boot environment: one error type for the codec, the store
//! and the `fw_env.config` parser, kept apart so each of those modules holds only its own logic.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading, writing or configuring a U-Boot environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening the device or file that holds a copy failed.
    #[error("cannot open U-Boot environment device {path}")]
    OpenDevice {
        /// The device or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading a copy failed (a device shorter than the copy is such a failure).
    #[error("cannot read U-Boot environment copy from {path} at byte {offset}")]
    ReadDevice {
        /// The device or file.
        path: PathBuf,
        /// Where the copy starts.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing a copy, or the flags byte of one, failed.
    #[error("cannot write U-Boot environment copy to {path} at byte {offset}")]
    WriteDevice {
        /// The device or file.
        path: PathBuf,
        /// Where the write starts.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Syncing a written copy to stable storage failed.
    #[error("cannot sync U-Boot environment device {path}")]
    SyncDevice {
        /// The device or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Finding the size of a device failed (needed for an offset counted from its end).
    #[error("cannot find the size of U-Boot environment device {path}")]
    DeviceSize {
        /// The device or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An offset counted from the end of the device points before its start.
    #[error("U-Boot environment offset {offset} is outside {path}, which has {device_size} bytes")]
    OffsetOutOfRange {
        /// The device or file.
        path: PathBuf,
        /// The offset from the config.
        offset: i64,
        /// The device's size.
        device_size: u64,
    },
    /// The device is not a file or device that can hold an environment (a FIFO, a character device, a directory).
    #[error("U-Boot environment device {path} is a {found}, expected a regular file or a block device")]
    DeviceType {
        /// The device.
        path: PathBuf,
        /// What it is.
        found: &'static str,
    },
    /// The device is raw flash (MTD) or a UBI volume, which need erase cycles this module does not do.
    #[error("U-Boot environment device {path} is MTD or UBI; only files and block devices are supported")]
    UnsupportedDevice {
        /// The device.
        path: PathBuf,
    },
    /// Reading `fw_env.config` failed.
    #[error("cannot read {path}")]
    ReadConfig {
        /// The config file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `fw_env.config` is not a regular file.
    #[error("{path} is a {found}, expected a regular file")]
    ConfigType {
        /// The config file.
        path: PathBuf,
        /// What it is.
        found: &'static str,
    },
    /// `fw_env.config` is larger than any the tools write.
    #[error("{path} is {size_bytes} bytes, expected at most {max_bytes}")]
    ConfigTooLarge {
        /// The config file.
        path: PathBuf,
        /// Its size, or the bytes read past the bound when it grew.
        size_bytes: u64,
        /// The bound.
        max_bytes: u64,
    },
    /// A line of `fw_env.config` is not what the tools accept.
    #[error("{path}, line {line}: {detail}")]
    ParseConfig {
        /// The config file.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// What was wrong and what was expected.
        detail: String,
    },
    /// A block is too short to hold a header and the end of the data.
    #[error("U-Boot environment block is {size} bytes, expected at least {min}")]
    BlockTooSmall {
        /// The block's size.
        size: usize,
        /// The least size for its layout.
        min: usize,
    },
    /// The two copies of a redundant environment differ in size.
    #[error("U-Boot environment copies differ in size: {primary} and {redundant} bytes")]
    SizeMismatch {
        /// The primary copy's size.
        primary: usize,
        /// The redundant copy's size.
        redundant: usize,
    },
    /// The variables do not fit in the block.
    #[error("U-Boot environment variables need {needed} bytes, the block has room for {available}")]
    TooLarge {
        /// Bytes the data needs, its final NUL included.
        needed: usize,
        /// Bytes of the block after its header.
        available: usize,
    },
    /// A single-copy block's CRC does not match its data.
    #[error("U-Boot environment CRC is {stored:#010x}, the data's is {computed:#010x}")]
    BadCrc {
        /// The CRC stored in the block.
        stored: u32,
        /// The CRC of the data.
        computed: u32,
    },
    /// Neither copy of a redundant environment has a matching CRC.
    #[error("neither copy of the redundant U-Boot environment has a good CRC")]
    NoValidCopy,
    /// The data runs to the end of the block without the empty entry that ends it.
    #[error("U-Boot environment entry at byte {offset} runs to the end of the block (expected a final NUL)")]
    Unterminated {
        /// Where the unterminated entry starts.
        offset: usize,
    },
    /// An entry has no `=`.
    #[error("U-Boot environment entry at byte {offset} has no '='")]
    NoEquals {
        /// Where the entry starts.
        offset: usize,
    },
    /// An entry is not UTF-8.
    #[error("U-Boot environment entry at byte {offset} is not UTF-8")]
    NotUtf8 {
        /// Where the entry starts.
        offset: usize,
    },
    /// A name U-Boot would not read back as itself: empty, with `=` or NUL, or starting with a blank or `#`.
    #[error("invalid U-Boot environment variable name {name:?}")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// A value with a NUL, which would end it early.
    #[error("U-Boot environment variable {name} has a NUL in its value")]
    InvalidValue {
        /// The variable's name.
        name: String,
    },
    /// A block names a variable twice.
    #[error("U-Boot environment names variable {name} twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
}

/// This module's result type.
pub type Result<T> = std::result::Result<T, Error>;
