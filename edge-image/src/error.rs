//! `edge-image`'s error type: what the disk image and the CLI can fail at, and the library's verdict on a bundle,
//! which keeps its exit-code class (docs/cli.md, "Exit codes").
//!
//! Every I/O variant carries the path it concerns; there is deliberately no `From<io::Error>`, so each call site says
//! what it was doing.

use std::io;
use std::path::PathBuf;

pub use image_layout::error::exit;

/// Everything that can go wrong while running an `edge-image` command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What the format library reports about a bundle or a key: its format, signatures, hashes, expiry.
    /// (The library's file errors become this crate's own file variants, see the `From` below.)
    #[error(transparent)]
    Bundle(image_layout::Error),
    /// Reading a file given on the command line failed.
    #[error("cannot read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing or syncing an output file failed.
    #[error("cannot write {path}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file the tool reads is not of a type it can read (a FIFO, a device, a directory or a socket where a regular
    /// file was expected).
    #[error("{path} is a {found}, expected {expected}")]
    FileType {
        /// The file.
        path: PathBuf,
        /// What it is.
        found: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A file the tool reads whole is larger than any valid one.
    #[error("{path} is {size_bytes} bytes, expected at most {max_bytes}")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or the bytes read before the bound was passed, for a file that grew).
        size_bytes: u64,
        /// The bound.
        max_bytes: u64,
    },
    /// A command-line argument is out of its range.
    #[error("invalid {what}: {detail}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// What was wrong and what was expected.
        detail: String,
    },
    /// The disk layout file is not TOML of the documented shape (an unknown key, a missing one, a wrong type).
    #[error("cannot parse disk layout {path}")]
    ParseLayout {
        /// The layout file.
        path: PathBuf,
        /// The cause, with the line and the key (boxed: it is large, and every `Result` of the crate carries it).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value in the disk layout is out of its range.
    #[error("disk layout {path}: {key}: {detail}")]
    LayoutKey {
        /// The layout file.
        path: PathBuf,
        /// The key, e.g. `slots.size`.
        key: Box<str>,
        /// What was wrong and what was expected.
        detail: String,
    },
    /// The disk size in the layout cannot hold the partitions and both partition tables.
    #[error("disk layout {path}: size is {size_bytes} bytes, the partitions and both tables need {needed_bytes}")]
    LayoutTooSmall {
        /// The layout file.
        path: PathBuf,
        /// The size given.
        size_bytes: u64,
        /// The size needed.
        needed_bytes: u64,
    },
    /// Reading a slot's bundle failed: its signatures, its format, its hashes, or the payload it lacks.
    #[error("slot {slot} bundle {path}")]
    SlotBundle {
        /// `A` or `B`.
        slot: char,
        /// The bundle file.
        path: PathBuf,
        /// What the reader found.
        #[source]
        source: Box<image_layout::Error>,
    },
    /// A slot's bundle is for another board than the disk layout.
    #[error("slot {slot} bundle {path} is for compatible {found:?}, the disk layout is for {expected:?}")]
    BundleCompatible {
        /// `A` or `B`.
        slot: char,
        /// The bundle file.
        path: PathBuf,
        /// The bundle's `compatible`.
        found: Box<str>,
        /// The layout's `compatible`.
        expected: Box<str>,
    },
    /// A slot's bundle payload does not fit in the slot.
    #[error("slot {slot} bundle {path}: payload {payload} is {size_bytes} bytes, the slot holds {slot_bytes}")]
    PayloadTooLarge {
        /// `A` or `B`.
        slot: char,
        /// The bundle file.
        path: PathBuf,
        /// The payload.
        payload: Box<str>,
        /// Its size.
        size_bytes: u64,
        /// The slot's size.
        slot_bytes: u64,
    },
    /// Formatting a FAT partition (the ESP, or a U-Boot board's boot partition) or writing a file onto it failed.
    #[error("cannot write {file} on partition {partition} in {path}")]
    WriteFat {
        /// The partition's label: `edge-esp` or `edge-boot`.
        partition: &'static str,
        /// The path on the partition, or `(format)`, `(mount)`, `(unmount)`.
        file: String,
        /// The disk file being built.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A boot state copy named by the disk layout is not the size of a GRUB environment block.
    #[error("boot state copy {path} is {size_bytes} bytes, a GRUB environment block is 1024")]
    StateBlockSize {
        /// The file.
        path: PathBuf,
        /// Its size.
        size_bytes: u64,
    },
    /// A boot state copy named by the disk layout does not start as a GRUB environment block does.
    #[error(
        "boot state copy {path} does not start with \"# GRUB Environment Block\", as `edge-bootctl provision` writes"
    )]
    StateBlockHeader {
        /// The file.
        path: PathBuf,
    },
    /// The GRUB script named by the disk layout is empty.
    #[error("GRUB script {path} is empty, expected a grub.cfg such as bootctl/grub/grub.cfg")]
    GrubCfgEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The U-Boot script named by the disk layout is empty.
    #[error("U-Boot script {path} is empty, expected a boot.cmd such as bootctl/uboot/boot.cmd")]
    BootScriptEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The U-Boot script named by the disk layout is not text.
    #[error(
        "U-Boot script {path} is not text ({detail}), expected the script's source, such as bootctl/uboot/boot.cmd"
    )]
    BootScriptText {
        /// The file.
        path: PathBuf,
        /// Where it stops being text.
        detail: String,
    },
    /// The U-Boot boot state named by the disk layout is not two environment copies of whole blocks.
    #[error(
        "U-Boot boot state {path} is {size_bytes} bytes, expected two copies of the same whole number of 512-byte \
         blocks, 1024 bytes or more each"
    )]
    UbootStateSize {
        /// The file.
        path: PathBuf,
        /// Its size.
        size_bytes: u64,
    },
    /// The U-Boot boot state named by the disk layout does not fit in the state partition.
    #[error(
        "U-Boot boot state {path} is {size_bytes} bytes, the state partition (uboot.state_size) holds {state_bytes}"
    )]
    UbootStateTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or the bytes read before the bound was passed, for a file that grew).
        size_bytes: u64,
        /// The partition's size.
        state_bytes: u64,
    },
    /// Neither half of the U-Boot boot state is an environment copy with a good CRC.
    #[error(
        "U-Boot boot state {path} holds no whole U-Boot environment copy: the CRC-32 of neither {env_bytes}-byte half \
         matches, as it does in what `edge-bootctl provision` writes"
    )]
    UbootStateCrc {
        /// The file.
        path: PathBuf,
        /// The size of each half, the environment size it was read with.
        env_bytes: u64,
    },
    /// A host tool is not installed.
    #[error("{tool} not found on PATH, in /usr/sbin or in /sbin (install {package})")]
    ToolMissing {
        /// The tool.
        tool: &'static str,
        /// The package that has it.
        package: &'static str,
    },
    /// A host tool could not be started or waited for.
    #[error("cannot run {tool} on {path}")]
    RunTool {
        /// The tool.
        tool: &'static str,
        /// The file it works on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A host tool failed.
    #[error("{tool} on {path} failed: {detail}")]
    ToolFailed {
        /// The tool.
        tool: &'static str,
        /// The file it works on.
        path: PathBuf,
        /// Its exit status and what it printed on stderr, or what was wrong with its result.
        detail: String,
    },
    /// The data seed already holds a file the disk writes into the updater's directory (`data.updater_dir`).
    #[error("data seed entry {path:?} is written by the disk itself (data.updater_dir): remove it from the seed")]
    SeedTaken {
        /// The entry.
        path: PathBuf,
    },
    /// A name in the data seed cannot be passed to `debugfs` (it holds a newline).
    #[error("data seed entry {path:?} has a newline in its name")]
    SeedName {
        /// The entry.
        path: PathBuf,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// A file the tool was given is one class of error whichever layer read it: the library's file variants become the
/// same-named variants here, so a caller (and a test) matches one shape; everything else is the library's verdict.
impl From<image_layout::Error> for Error {
    fn from(e: image_layout::Error) -> Error {
        use image_layout::Error as L;
        match e {
            L::ReadFile { path, source } => Error::ReadFile { path, source },
            L::WriteFile { path, source } => Error::WriteFile { path, source },
            L::FileType { path, found, expected } => Error::FileType { path, found, expected },
            L::FileTooLarge { path, size_bytes, max_bytes } => Error::FileTooLarge { path, size_bytes, max_bytes },
            L::InvalidArgument { what, detail } => Error::InvalidArgument { what, detail },
            e => Error::Bundle(e),
        }
    }
}

impl Error {
    /// The exit code `edge-image` returns for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Bundle(e) => e.exit_code(),
            // The reader's verdict on a slot's bundle keeps its class: a bad signature is still exit 4.
            Error::SlotBundle { source, .. } => source.exit_code(),
            Error::ReadFile { .. }
            | Error::WriteFile { .. }
            | Error::FileType { .. }
            | Error::FileTooLarge { .. }
            | Error::InvalidArgument { .. }
            | Error::ParseLayout { .. }
            | Error::LayoutKey { .. }
            | Error::LayoutTooSmall { .. }
            | Error::BundleCompatible { .. }
            | Error::PayloadTooLarge { .. }
            | Error::WriteFat { .. }
            | Error::StateBlockSize { .. }
            | Error::StateBlockHeader { .. }
            | Error::GrubCfgEmpty { .. }
            | Error::BootScriptEmpty { .. }
            | Error::BootScriptText { .. }
            | Error::UbootStateSize { .. }
            | Error::UbootStateTooLarge { .. }
            | Error::UbootStateCrc { .. }
            | Error::ToolMissing { .. }
            | Error::RunTool { .. }
            | Error::ToolFailed { .. }
            | Error::SeedName { .. }
            | Error::SeedTaken { .. } => exit::FAILURE,
        }
    }
}
