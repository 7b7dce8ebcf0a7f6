//! The crate's one error type (STYLE.md, "Errors"): every I/O variant names the file, device or socket it concerns,
//! and there is no `From<io::Error>`.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mount table could not be read.
    #[error("cannot read the mount table {path}")]
    ReadMountinfo {
        /// The file, normally `/proc/self/mountinfo`.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A disk's partition table could not be read.
    #[error("cannot read the partition table of {path}")]
    ReadPartitionTable {
        /// The disk.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// More partitions than a GPT has entries.
    #[error("gpt: {n_partitions} partitions, expected at most {max}")]
    GptTooManyPartitions {
        /// How many were given.
        n_partitions: usize,
        /// How many entries a table has.
        max: usize,
    },
    /// A partition name longer than a GPT entry holds.
    #[error("gpt: partition name {name:?} is longer than {max_units} UTF-16 code units")]
    GptNameTooLong {
        /// The name.
        name: String,
        /// The longest a name may be.
        max_units: usize,
    },
    /// A disk too small to hold a GPT at both ends.
    #[error("gpt: a disk of {total_sectors} sectors has no room for a table")]
    GptDiskTooSmall {
        /// The disk's size in sectors.
        total_sectors: u64,
    },
    /// A partition outside the usable sectors, empty, or overlapping the one before (partitions must be in order).
    #[error(
        "gpt: partition {name} at sectors {first_lba}..={last_lba}, expected within {free_lba}..={last_usable_lba}"
    )]
    GptPlacement {
        /// The partition's name.
        name: String,
        /// Its first sector.
        first_lba: u64,
        /// Its last sector.
        last_lba: u64,
        /// The first sector it may use: after the table, or after the partition before it.
        free_lba: u64,
        /// The last sector any partition may use.
        last_usable_lba: u64,
    },
    /// A control request line that is not one of the protocol's.
    #[error("unknown request {line:?}")]
    ParseRequest {
        /// The line, trimmed.
        line: String,
    },
    /// `edge-init`'s control socket could not be reached, or the conversation broke off.
    #[error("cannot ask edge-init at {socket}")]
    AskInit {
        /// The control socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `edge-init` closed the connection without an answer.
    #[error("edge-init at {socket} closed the connection without an answer")]
    NoReply {
        /// The control socket.
        socket: PathBuf,
    },
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;
