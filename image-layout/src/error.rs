//! The crate's one error type, and the mapping from error classes to the exit codes `edge-image` and `edge-update`
//! document for a bundle's verdicts.
//!
//! Every I/O variant carries the path or section it concerns; there is deliberately no `From<io::Error>`, so each
//! call site says what it was doing.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building, reading, verifying or planning a bundle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file given on the command line or to the API failed.
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
    /// A file the tool reads is not of a type it can read: a FIFO, a device, a directory or a socket where a regular
    /// file (or, for an image, a block device) was expected.
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
    /// A key file would be overwritten.
    #[error("{path} already exists; refusing to overwrite a key")]
    KeyExists {
        /// The key file that exists.
        path: PathBuf,
    },
    /// A key file does not hold a key in the documented text form.
    #[error("{path} is not an edge-image {kind} key file")]
    ParseKey {
        /// The key file.
        path: PathBuf,
        /// `secret` or `public`.
        kind: &'static str,
    },
    /// The keyring directory holds no public key.
    #[error("keyring {path} holds no *.pub key")]
    EmptyKeyring {
        /// The keyring directory.
        path: PathBuf,
    },
    /// A command-line or API argument is out of its range.
    #[error("invalid {what}: {detail}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// What was wrong and what was expected.
        detail: String,
    },
    /// Reading the bundle itself failed below the format (an I/O error of the source).
    #[error("cannot read bundle at byte {offset}")]
    ReadBundle {
        /// Offset in the bundle.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The bundle ends before the section named.
    #[error("bundle truncated in {section} at byte {offset}")]
    Truncated {
        /// The section being read.
        section: String,
        /// The offset where the bytes ran out.
        offset: u64,
    },
    /// The first bytes are not the bundle magic.
    #[error("not an edge-image bundle (bad magic)")]
    BadMagic,
    /// The header names a format version this reader does not know.
    #[error("bundle format version {found} is not supported (this reader knows version {supported})")]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
        /// The version this reader implements.
        supported: u16,
    },
    /// A header field is out of its allowed range; checked before anything is allocated from it.
    #[error("bundle header {field} {value} out of range {range}")]
    HeaderField {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The allowed range.
        range: &'static str,
    },
    /// The manifest bytes are not valid manifest JSON.
    #[error("cannot parse manifest")]
    ParseManifest {
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest parsed but breaks a rule of the format.
    #[error("manifest {field}: {detail}")]
    ManifestField {
        /// The field, e.g. `payloads[0].chunk_size`.
        field: String,
        /// What was wrong and what was expected.
        detail: String,
    },
    /// No signature from a trusted key verified, or fewer than the threshold did.
    #[error("{valid} trusted signature(s) verified, {threshold} required")]
    NotEnoughSignatures {
        /// Distinct trusted keys whose signature verified.
        valid: usize,
        /// The threshold.
        threshold: usize,
    },
    /// A signature made by a trusted key id does not verify: the manifest or the signature was altered.
    #[error("signature by trusted key {key_id} does not verify")]
    BadSignature {
        /// The key id.
        key_id: String,
    },
    /// The manifest's expiry time has passed.
    #[error("manifest expired at {expires}")]
    Expired {
        /// The expiry time (RFC 3339).
        expires: String,
    },
    /// A section's blake3 hash does not match the one the manifest pins.
    #[error("payload {payload}: {section} blake3 mismatch")]
    SectionHash {
        /// The payload.
        payload: String,
        /// `chunk index` or `delta index`.
        section: &'static str,
    },
    /// A chunk index or delta index entry is inconsistent with its neighbours or its limits.
    #[error("payload {payload}, {section} entry {entry_idx}: {detail}")]
    IndexEntry {
        /// The payload.
        payload: String,
        /// `chunk index` or `delta index`.
        section: &'static str,
        /// The entry.
        entry_idx: u64,
        /// What was wrong.
        detail: String,
    },
    /// A chunk index entry starts before the end of the previous one.
    #[error("payload {payload}, chunk index entry {entry_idx}: offset {offset} overlaps the previous chunk (expected {expected})")]
    IndexOverlap {
        /// The payload.
        payload: String,
        /// The entry.
        entry_idx: u64,
        /// The offset it claims.
        offset: u64,
        /// The offset it must have.
        expected: u64,
    },
    /// A chunk index entry points outside its section, or the entries do not fill the section.
    #[error("payload {payload}, {section}: entries cover {covered} bytes, section has {size}")]
    IndexRange {
        /// The payload.
        payload: String,
        /// `chunk index` or `delta index`.
        section: &'static str,
        /// Bytes the entries cover.
        covered: u64,
        /// Bytes the section has.
        size: u64,
    },
    /// A chunk or frame does not decompress to its expected size.
    #[error("payload {payload}, {what} {idx}: cannot decompress")]
    Decompress {
        /// The payload.
        payload: String,
        /// `chunk` or `frame`.
        what: &'static str,
        /// Its index.
        idx: u64,
    },
    /// A chunk's content does not match its hash in the chunk index.
    #[error("payload {payload}, chunk {chunk_idx}: blake3 mismatch")]
    ChunkHash {
        /// The payload.
        payload: String,
        /// The chunk.
        chunk_idx: u64,
    },
    /// A block's fingerprint in the delta index does not match the block (the chunk itself is intact).
    #[error("payload {payload}, delta index: fingerprint of block {block_idx} does not match the block")]
    Fingerprint {
        /// The payload.
        payload: String,
        /// The block.
        block_idx: u64,
    },
    /// Bytes follow the last section.
    #[error("trailing data after the last section at byte {offset}")]
    TrailingData {
        /// Where the extra bytes start.
        offset: u64,
    },
    /// The named payload is not in the manifest.
    #[error("bundle has no payload {name}")]
    NoSuchPayload {
        /// The name asked for.
        name: String,
    },
    /// Compressing a chunk failed (an internal zstd failure).
    #[error("cannot compress payload {payload}, chunk {chunk_idx}")]
    Compress {
        /// The payload.
        payload: String,
        /// The chunk.
        chunk_idx: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Exit codes of `edge-image`, documented in `docs/cli.md`.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any other failure: I/O, key files, arguments.
    pub const FAILURE: i32 = 1;
    /// Command-line usage error (clap's own code).
    pub const USAGE: i32 = 2;
    /// The bundle is malformed: truncated, bad magic, unknown version, bad manifest or index, trailing data.
    pub const MALFORMED: i32 = 3;
    /// The signatures do not establish trust: a bad signature or fewer trusted ones than the threshold.
    pub const SIGNATURE: i32 = 4;
    /// A hash the manifest pins does not match: chunk index, delta index or a chunk.
    pub const HASH: i32 = 5;
    /// The manifest is signed and whole but has expired.
    pub const EXPIRED: i32 = 6;
}

impl Error {
    /// The exit code `edge-image` and `edge-update` return for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ReadFile { .. }
            | Error::WriteFile { .. }
            | Error::FileType { .. }
            | Error::FileTooLarge { .. }
            | Error::KeyExists { .. }
            | Error::ParseKey { .. }
            | Error::EmptyKeyring { .. }
            | Error::InvalidArgument { .. }
            | Error::ReadBundle { .. }
            | Error::NoSuchPayload { .. }
            | Error::Compress { .. } => exit::FAILURE,
            Error::Truncated { .. }
            | Error::BadMagic
            | Error::UnsupportedVersion { .. }
            | Error::HeaderField { .. }
            | Error::ParseManifest { .. }
            | Error::ManifestField { .. }
            | Error::IndexEntry { .. }
            | Error::IndexOverlap { .. }
            | Error::IndexRange { .. }
            | Error::Decompress { .. }
            | Error::TrailingData { .. } => exit::MALFORMED,
            Error::NotEnoughSignatures { .. } | Error::BadSignature { .. } => exit::SIGNATURE,
            Error::SectionHash { .. } | Error::ChunkHash { .. } | Error::Fingerprint { .. } => exit::HASH,
            Error::Expired { .. } => exit::EXPIRED,
        }
    }
}
