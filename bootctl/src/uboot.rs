//! The U-Boot environment: the block U-Boot's `env save` writes and `fw_printenv`/`fw_setenv` (libubootenv) and
//! `mkenvimage` read and write, byte for byte, and the `/etc/fw_env.config` file that says where it lives.
//!
//! Byte layout of one copy of `size` bytes (U-Boot's `include/env_internal.h`, `env_t`):
//!
//! - bytes 0..4: the CRC-32 (zlib's, the IEEE polynomial) of everything after the header, padding included,
//!   little-endian as on every ARM and x86 board (`mkenvimage -b` makes big-endian ones, which are not supported);
//! - a redundant copy only: byte 4, the flags, outside the CRC;
//! - then the data: `name=value\0` for each variable, one more `\0`, and padding to the end.
//!
//! U-Boot's export (`hexport_r`) writes variables sorted by name with `strcmp` and pads with `0x00`; libubootenv
//! keeps its list sorted the same way and pads with whatever its heap buffer held; `mkenvimage` keeps its input's
//! order and pads with `0xff` unless given `-p`. The CRC covers the padding, so any padding reads back; [`Env`] keeps
//! variables sorted by name, so what it encodes is what U-Boot and `fw_setenv` would write for the same variables.
//!
//! A redundant environment has two copies (two places in one file or device, or two devices). The copy with a
//! good CRC wins; when both are good, the flags byte decides ([`FlagScheme`]). Every save writes the copy that did
//! not win, with the next flags value, so a power cut during a save leaves the winning copy untouched: a torn copy
//! fails its CRC and the other one is read. This module's writer does the same and syncs before returning.
//!
//! It is a module of its own because it is a format with its own error type; the crate-level error can wrap
//! [`Error`] and add which environment it concerns.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::blockdev::{read_small, refused_kind, Accept, ReadSmall};
pub use crate::blockdev::{Access, BlockDevice, FileDevice};

/// The largest `fw_env.config` read: two lines of a few dozen bytes each, with room for comments.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Where `fw_printenv` and `fw_setenv` look for the config by default.
pub const FW_ENV_CONFIG: &str = "/etc/fw_env.config";
/// Bytes of the CRC at the start of every copy.
pub const CRC_LEN: usize = 4;
/// The flags value of the copy that is current, in the boolean scheme (U-Boot's `ENV_REDUND_ACTIVE`).
pub const FLAG_ACTIVE: u8 = 1;
/// The flags value of the copy that was replaced, in the boolean scheme (U-Boot's `ENV_REDUND_OBSOLETE`).
pub const FLAG_OBSOLETE: u8 = 0;
/// The padding U-Boot's `env save` writes after the data.
pub const PAD_UBOOT: u8 = 0x00;
/// The padding `mkenvimage` writes after the data unless given `-p`.
pub const PAD_MKENVIMAGE: u8 = 0xff;

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

/// The variables of an environment, sorted by name as U-Boot and libubootenv store them.
///
/// Values are kept as raw as the Linux tools keep them. U-Boot itself escapes `\` as `\\` when it saves and
/// unescapes when it loads, and it drops a variable whose value is empty; neither matters for names and values
/// without a backslash that are not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// An empty environment.
    pub fn new() -> Env {
        Env::default()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        check_name(name)?;
        if value.contains('\0') {
            return Err(Error::InvalidValue { name: name.to_owned() });
        }
        self.vars.insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    /// Removes `name`.
    pub fn unset(&mut self, name: &str) {
        self.vars.remove(name);
    }

    /// The variables, sorted by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Bytes the data takes: every `name=value\0` and the final `\0`.
    pub fn data_len(&self) -> usize {
        self.vars.iter().map(|(n, v)| n.len() + v.len() + 2).sum::<usize>() + 1
    }
}

/// Refuses names U-Boot's import (`himport_r`) would not read back as themselves: it skips leading blanks, takes a
/// `#` line for a comment and ends a name at `=`.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['=', '\0']) || name.starts_with([' ', '\t', '#']) {
        return Err(Error::InvalidName { name: name.to_owned() });
    }
    Ok(())
}

/// The header in front of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A single environment: the CRC only.
    Single,
    /// One copy of a redundant environment: the CRC and the flags byte.
    Redundant {
        /// The flags byte.
        flags: u8,
    },
}

impl Header {
    /// Bytes in front of the data.
    pub fn header_len(self) -> usize {
        match self {
            Header::Single => CRC_LEN,
            Header::Redundant { .. } => CRC_LEN + 1,
        }
    }
}

/// Encodes `env` in a block of `size` bytes with `header`, filling the rest with `pad`.
pub fn encode(env: &Env, size: usize, header: Header, pad: u8) -> Result<Vec<u8>> {
    let start = header.header_len();
    let available = size.saturating_sub(start);
    let needed = env.data_len();
    if needed > available {
        return Err(Error::TooLarge { needed, available });
    }
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(&[0; CRC_LEN]);
    if let Header::Redundant { flags } = header {
        b.push(flags);
    }
    for (n, v) in &env.vars {
        b.extend_from_slice(n.as_bytes());
        b.push(b'=');
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b.push(0);
    b.resize(size, pad);
    let crc = crc32fast::hash(&b[start..]);
    b[..CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(b)
}

/// Encodes a single environment of `size` bytes as U-Boot's `env save` writes it (zero padding).
pub fn encode_single(env: &Env, size: usize) -> Result<Vec<u8>> {
    encode(env, size, Header::Single, PAD_UBOOT)
}

/// Encodes one copy of a redundant environment of `size` bytes with `flags` (zero padding).
pub fn encode_redundant(env: &Env, size: usize, flags: u8) -> Result<Vec<u8>> {
    encode(env, size, Header::Redundant { flags }, PAD_UBOOT)
}

/// The CRC stored in a block and the one its data has, for a block of at least `start` bytes.
fn crcs(block: &[u8], start: usize) -> (u32, u32) {
    let mut stored = [0; CRC_LEN];
    stored.copy_from_slice(&block[..CRC_LEN]);
    (u32::from_le_bytes(stored), crc32fast::hash(&block[start..]))
}

fn check_len(size: usize, header: Header) -> Result<()> {
    let min = header.header_len() + 1;
    if size < min {
        return Err(Error::BlockTooSmall { size, min });
    }
    Ok(())
}

/// Decodes a single environment block.
pub fn decode_single(block: &[u8]) -> Result<Env> {
    check_len(block.len(), Header::Single)?;
    let (stored, computed) = crcs(block, CRC_LEN);
    if stored != computed {
        return Err(Error::BadCrc { stored, computed });
    }
    decode_data(block, CRC_LEN)
}

/// The flags of one redundant copy if its CRC is good.
fn valid_flags(block: &[u8]) -> Option<u8> {
    let (stored, computed) = crcs(block, CRC_LEN + 1);
    (stored == computed).then_some(block[CRC_LEN])
}

/// Decodes a redundant environment from its two copies as U-Boot does: the copy [`select`] picks is read, whatever
/// the other holds.
pub fn decode_redundant(primary: &[u8], redundant: &[u8], scheme: FlagScheme) -> Result<(Env, CopyChoice)> {
    if primary.len() != redundant.len() {
        return Err(Error::SizeMismatch { primary: primary.len(), redundant: redundant.len() });
    }
    check_len(primary.len(), Header::Redundant { flags: 0 })?;
    decode_copies([Some(primary), Some(redundant)], scheme)
}

/// Decodes a redundant environment from the copies that are there (each at least a header and a NUL long): a
/// missing copy counts as one with a bad CRC.
fn decode_copies(blocks: [Option<&[u8]>; 2], scheme: FlagScheme) -> Result<(Env, CopyChoice)> {
    let flags = blocks.map(|b| b.and_then(valid_flags));
    let (current, current_flags) = select(flags[0], flags[1], scheme).ok_or(Error::NoValidCopy)?;
    let other = match flags[current.other().index()] {
        Some(flags) => OtherCopy::Valid { flags },
        None => OtherCopy::BadCrc,
    };
    let block = blocks[current.index()].expect("a copy with valid flags is there");
    let env = decode_data(block, CRC_LEN + 1)?;
    Ok((env, CopyChoice { current, flags: current_flags, other }))
}

/// Decodes the data of a block from byte `start` on; offsets in errors count from the start of the block.
///
/// Stricter than U-Boot's import, which skips what it cannot use: an entry without `=`, a duplicate name, a name
/// U-Boot would rewrite or bytes that are not UTF-8 mean the block was not written by U-Boot or its tools, and
/// reading it as if it were could hide damage.
fn decode_data(block: &[u8], start: usize) -> Result<Env> {
    let mut env = Env::new();
    let mut p = start;
    loop {
        let Some(len) = block[p..].iter().position(|&c| c == 0) else { return Err(Error::Unterminated { offset: p }) };
        if len == 0 {
            return Ok(env);
        }
        let entry = &block[p..p + len];
        let Some(eq) = entry.iter().position(|&c| c == b'=') else { return Err(Error::NoEquals { offset: p }) };
        let (Ok(name), Ok(value)) = (std::str::from_utf8(&entry[..eq]), std::str::from_utf8(&entry[eq + 1..])) else {
            return Err(Error::NotUtf8 { offset: p });
        };
        check_name(name)?;
        if env.vars.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(Error::DuplicateName { name: name.to_owned() });
        }
        p += len + 1;
    }
}

/// One of the two copies of a redundant environment, in `fw_env.config` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyId {
    /// The first line of `fw_env.config` (U-Boot's `CONFIG_ENV_OFFSET`).
    Primary,
    /// The second line (U-Boot's `CONFIG_ENV_OFFSET_REDUND`).
    Redundant,
}

impl CopyId {
    /// The other copy.
    pub fn other(self) -> CopyId {
        match self {
            CopyId::Primary => CopyId::Redundant,
            CopyId::Redundant => CopyId::Primary,
        }
    }

    /// 0 for the primary copy, 1 for the redundant one.
    pub fn index(self) -> usize {
        match self {
            CopyId::Primary => 0,
            CopyId::Redundant => 1,
        }
    }
}

/// How the flags byte orders two copies whose CRCs are both good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagScheme {
    /// A counter, one more at every save (wrapping 255 to 0); the higher wins. U-Boot uses it for every medium but
    /// parallel NOR flash (`env/common.c`, `env_check_redund`), and `fw_env`/libubootenv use it for files and block
    /// devices: this is the scheme of an environment on eMMC or SD.
    Incremental,
    /// [`FLAG_ACTIVE`] on the copy just written, [`FLAG_OBSOLETE`] written afterwards over the flags of the copy it
    /// replaces, as NOR flash can clear bits without an erase (`env/flash.c`; `fw_env` on NOR MTD devices).
    Boolean,
}

impl FlagScheme {
    /// Which copy is current when both CRCs are good, exactly as U-Boot decides (`env_check_redund` and
    /// `env_flash_init`, and `fw_env.c`'s `fw_env_open`).
    ///
    /// Incremental: 255 then 0 is a wrap, so the copy with 0 wins; otherwise the higher wins, and a tie goes to the
    /// primary copy. Boolean: active beats obsolete; a tie goes to the primary copy; otherwise a copy with `0xff`
    /// (never programmed) wins, and any other pair goes to the primary copy. libubootenv 0.3.2 agrees except on
    /// pairs U-Boot never writes (both `0xff`, or two values that are neither 0, 1 nor `0xff`).
    pub fn current(self, primary: u8, redundant: u8) -> CopyId {
        match self {
            FlagScheme::Incremental => match (primary, redundant) {
                (255, 0) => CopyId::Redundant,
                (0, 255) => CopyId::Primary,
                (p, r) if r > p => CopyId::Redundant,
                _ => CopyId::Primary,
            },
            FlagScheme::Boolean => match (primary, redundant) {
                (FLAG_ACTIVE, FLAG_OBSOLETE) => CopyId::Primary,
                (FLAG_OBSOLETE, FLAG_ACTIVE) => CopyId::Redundant,
                (p, r) if p == r => CopyId::Primary,
                (0xff, _) => CopyId::Primary,
                (_, 0xff) => CopyId::Redundant,
                _ => CopyId::Primary,
            },
        }
    }

    /// The flags of the copy written to replace a current copy with flags `current`.
    pub fn next(self, current: u8) -> u8 {
        match self {
            FlagScheme::Incremental => current.wrapping_add(1),
            FlagScheme::Boolean => FLAG_ACTIVE,
        }
    }
}

/// Picks the current copy from the flags of the copies whose CRC is good (`None` for a bad one), and returns it
/// with its flags; `None` when neither copy is good.
pub fn select(primary: Option<u8>, redundant: Option<u8>, scheme: FlagScheme) -> Option<(CopyId, u8)> {
    match (primary, redundant) {
        (Some(p), Some(r)) => match scheme.current(p, r) {
            CopyId::Primary => Some((CopyId::Primary, p)),
            CopyId::Redundant => Some((CopyId::Redundant, r)),
        },
        (Some(p), None) => Some((CopyId::Primary, p)),
        (None, Some(r)) => Some((CopyId::Redundant, r)),
        (None, None) => None,
    }
}

/// Which copy of a redundant environment was read, and the state of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyChoice {
    /// The copy read.
    pub current: CopyId,
    /// Its flags.
    pub flags: u8,
    /// The other copy.
    pub other: OtherCopy,
}

/// The copy that was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherCopy {
    /// Its CRC is good; it holds the environment before the last save (or the same one, with equal flags).
    Valid {
        /// Its flags.
        flags: u8,
    },
    /// Its CRC is bad: a save into it was cut short, or it was never written.
    BadCrc,
}

/// Where one copy lives: a device, its path (for messages) and the byte offset of the copy.
#[derive(Debug)]
pub struct CopyAt<D> {
    /// The device.
    pub device: D,
    /// Its path.
    pub path: PathBuf,
    /// Where the copy starts.
    pub offset: u64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The copy written (always the primary for a single environment).
    pub copy: CopyId,
    /// The flags it was given; `None` for a single environment.
    pub flags: Option<u8>,
}

/// A U-Boot environment on its device or devices: one copy, or two with a flag scheme.
#[derive(Debug)]
pub struct EnvStore<D> {
    copies: Vec<CopyAt<D>>,
    size: usize,
    scheme: FlagScheme,
}

impl<D: BlockDevice> EnvStore<D> {
    /// A single environment of `size` bytes.
    pub fn single(copy: CopyAt<D>, size: usize) -> EnvStore<D> {
        EnvStore { copies: vec![copy], size, scheme: FlagScheme::Incremental }
    }

    /// A redundant environment of two copies of `size` bytes each.
    pub fn redundant(primary: CopyAt<D>, redundant: CopyAt<D>, size: usize, scheme: FlagScheme) -> EnvStore<D> {
        EnvStore { copies: vec![primary, redundant], size, scheme }
    }

    /// Whether there are two copies.
    pub fn is_redundant(&self) -> bool {
        self.copies.len() == 2
    }

    /// The size of each copy.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The flag scheme (meaningful for a redundant environment).
    pub fn scheme(&self) -> FlagScheme {
        self.scheme
    }

    fn read_copy(&mut self, idx: usize) -> Result<Vec<u8>> {
        let c = &mut self.copies[idx];
        let mut buf = vec![0; self.size];
        c.device.read_at(c.offset, &mut buf).map_err(|source| Error::ReadDevice {
            path: c.path.clone(),
            offset: c.offset,
            source,
        })?;
        Ok(buf)
    }

    /// One copy of a redundant environment; `None` when its file or device ends before the copy does, which makes
    /// it as bad as a copy with a bad CRC: the other copy decides, and the next write goes to this one (and makes
    /// a file long enough to hold it).
    fn read_redundant_copy(&mut self, idx: usize) -> Result<Option<Vec<u8>>> {
        match self.read_copy(idx) {
            Ok(b) => Ok(Some(b)),
            Err(Error::ReadDevice { source, .. }) if source.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where copy `idx` is: its device or file, and its offset.
    pub fn copy_at(&self, idx: usize) -> (&Path, u64) {
        let c = &self.copies[idx];
        (&c.path, c.offset)
    }

    /// Whether the file or device holds copy `idx`: `Some(true)` whole, `Some(false)` cut short by its end,
    /// `None` when it ends before the copy starts.
    pub fn copy_extent(&mut self, idx: usize) -> Result<Option<bool>> {
        let size = self.size as u64;
        let c = &mut self.copies[idx];
        let mut probe = |offset: u64| match c.device.read_at(offset, &mut [0u8]) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(source) => Err(Error::ReadDevice { path: c.path.clone(), offset: c.offset, source }),
        };
        if !probe(c.offset)? {
            return Ok(None);
        }
        Ok(Some(probe(c.offset + size.saturating_sub(1))?))
    }

    fn write_copy(&mut self, idx: usize, at: u64, bytes: &[u8]) -> Result<()> {
        let c = &mut self.copies[idx];
        let offset = c.offset + at;
        c.device.write_at(offset, bytes).map_err(|source| Error::WriteDevice {
            path: c.path.clone(),
            offset,
            source,
        })?;
        c.device.sync().map_err(|source| Error::SyncDevice { path: c.path.clone(), source })
    }

    /// Reads the environment; for a redundant one, also which copy was read and the state of the other.
    pub fn read(&mut self) -> Result<(Env, Option<CopyChoice>)> {
        if !self.is_redundant() {
            let first = self.read_copy(0)?;
            return Ok((decode_single(&first)?, None));
        }
        let first = self.read_redundant_copy(0)?;
        let second = self.read_redundant_copy(1)?;
        check_len(self.size, Header::Redundant { flags: 0 })?;
        let (env, choice) = decode_copies([first.as_deref(), second.as_deref()], self.scheme)?;
        Ok((env, Some(choice)))
    }

    /// Writes `env` as U-Boot's `env save` and `fw_setenv` do, and syncs it.
    ///
    /// A redundant environment gets the copy that is not current, with the next flags, so the current copy is
    /// never touched before the new one is whole; with the boolean scheme the replaced copy's flags are then set
    /// obsolete. When neither copy is good, the primary copy is written with [`FLAG_ACTIVE`].
    pub fn write(&mut self, env: &Env) -> Result<Written> {
        if !self.is_redundant() {
            let bytes = encode_single(env, self.size)?;
            // Durability: a single copy has no fallback. A cut before the sync completes can leave a torn block
            // that fails its CRC, and U-Boot then boots with its built-in default environment; the boot state
            // belongs in a redundant environment.
            self.write_copy(0, 0, &bytes)?;
            return Ok(Written { copy: CopyId::Primary, flags: None });
        }
        // Encoded first, so that an environment too large is refused before any I/O; the flags are not covered
        // by the CRC and are set once the current copy is known.
        let mut bytes = encode_redundant(env, self.size, 0)?;
        let first = self.read_redundant_copy(0)?;
        let second = self.read_redundant_copy(1)?;
        let current =
            select(first.as_deref().and_then(valid_flags), second.as_deref().and_then(valid_flags), self.scheme);
        let (target, flags) = match current {
            Some((copy, flags)) => (copy.other(), self.scheme.next(flags)),
            None => (CopyId::Primary, FLAG_ACTIVE),
        };
        bytes[CRC_LEN] = flags;
        // Durability: a cut before this write is synced leaves the target torn (bad CRC) or whole; the current copy
        // is untouched either way, so a reader gets the old environment or, once the target is whole, the new one.
        self.write_copy(target.index(), 0, &bytes)?;
        if let (FlagScheme::Boolean, Some((old, _))) = (self.scheme, current) {
            // Durability: both copies are whole and active here; U-Boot breaks the tie for the primary copy, so a
            // cut before this line reads the old environment if the new one went to the redundant copy.
            self.write_copy(old.index(), CRC_LEN as u64, &[FLAG_OBSOLETE])?;
        }
        Ok(Written { copy: target, flags: Some(flags) })
    }
}

impl EnvStore<FileDevice> {
    /// Opens the environment `config` describes, with the incremental flag scheme `fw_env` and libubootenv use for
    /// files and block devices. An offset below zero counts from the end of the device, as libubootenv does.
    pub fn open(config: &Config, access: Access) -> Result<EnvStore<FileDevice>> {
        let open = |line: &ConfigLine| -> Result<CopyAt<FileDevice>> {
            let path = line.device.clone();
            let s = path.to_string_lossy();
            if s.starts_with("/dev/mtd") || s.starts_with("/dev/ubi") {
                return Err(Error::UnsupportedDevice { path });
            }
            // Checked before the open: opening a FIFO blocks until a writer comes, and a character device has no
            // end to count an offset from.
            let kind = refused_kind(&path, Accept::FileOrBlockDevice)
                .map_err(|source| Error::OpenDevice { path: path.clone(), source })?;
            if let Some(found) = kind {
                return Err(Error::DeviceType { path, found });
            }
            let mut device =
                FileDevice::open(&path, access).map_err(|source| Error::OpenDevice { path: path.clone(), source })?;
            let offset = match u64::try_from(line.offset) {
                Ok(offset) => offset,
                Err(_) => {
                    let device_size =
                        device.size().map_err(|source| Error::DeviceSize { path: path.clone(), source })?;
                    device_size.checked_sub(line.offset.unsigned_abs()).ok_or_else(|| Error::OffsetOutOfRange {
                        path: path.clone(),
                        offset: line.offset,
                        device_size,
                    })?
                }
            };
            Ok(CopyAt { device, path, offset })
        };
        let primary = open(&config.primary)?;
        Ok(match &config.redundant {
            None => EnvStore::single(primary, config.primary.env_size),
            Some(r) => EnvStore::redundant(primary, open(r)?, config.primary.env_size, FlagScheme::Incremental),
        })
    }
}

/// One line of `fw_env.config`: where one copy lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLine {
    /// The device or file.
    pub device: PathBuf,
    /// The byte offset of the copy; below zero, counted back from the end of the device.
    pub offset: i64,
    /// The size of the copy in bytes.
    pub env_size: usize,
    /// The erase sector size (flash only; files and block devices ignore it).
    pub sector_size: Option<u64>,
    /// The number of sectors the copy may span (flash only).
    pub n_sectors: Option<u64>,
}

/// `/etc/fw_env.config`: one line for a single environment, two for a redundant one.
///
/// Numbers are read as the tools read them (`sscanf("%ms %lli %lx %lx %lx")` in `fw_env.c` and libubootenv): the
/// offset as C's `strtoll` with base 0 (`0x` hex, a leading `0` octal, else decimal, a `-` counting from the end),
/// and the sizes and sector count always in hex, with or without `0x`, so `8192` means 0x8192. A line whose first
/// character is `#` is a comment, as is anything from a word starting with `#`. A sixth field (libubootenv 0.3.3's
/// MTD-lock switch) is accepted and ignored. Unlike the tools, which skip a line with fewer than three fields and
/// ignore lines after the second, this parser refuses both, naming the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The first line.
    pub primary: ConfigLine,
    /// The second line, for a redundant environment.
    pub redundant: Option<ConfigLine>,
}

impl Config {
    /// Reads and parses the config file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = read_small(path, MAX_CONFIG_BYTES).map_err(|e| match e {
            ReadSmall::Io(source) => Error::ReadConfig { path: path.to_owned(), source },
            ReadSmall::Type(found) => Error::ConfigType { path: path.to_owned(), found },
            ReadSmall::TooLarge(size_bytes) => {
                Error::ConfigTooLarge { path: path.to_owned(), size_bytes, max_bytes: MAX_CONFIG_BYTES }
            }
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&c| c == b'\n').count() + 1;
            Error::ParseConfig { path: path.to_owned(), line, detail: "not UTF-8 text".to_owned() }
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut lines: Vec<ConfigLine> = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let err = |detail: String| Error::ParseConfig { path: path.to_owned(), line, detail };
            if raw.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = raw.split_whitespace().take_while(|w| !w.starts_with('#')).collect();
            if fields.is_empty() {
                continue;
            }
            if !(3..=6).contains(&fields.len()) {
                return Err(err(format!(
                    "{} fields, expected DEVICE OFFSET ENV_SIZE [SECTOR_SIZE [N_SECTORS]]",
                    fields.len()
                )));
            }
            let offset = parse_c_int(fields[1]).ok_or_else(|| {
                err(format!("offset {:?} is not a number (0x.. hex, 0.. octal, or decimal)", fields[1]))
            })?;
            let hex = |what: &str, i: usize| -> Result<Option<u64>> {
                fields
                    .get(i)
                    .map(|f| parse_c_hex(f).ok_or_else(|| err(format!("{what} {f:?} is not a hex number"))))
                    .transpose()
            };
            let env_size = hex("env size", 2)?.and_then(|s| usize::try_from(s).ok()).unwrap_or(0);
            if env_size == 0 {
                return Err(err(format!("env size {:?} out of range 1..", fields[2])));
            }
            let sector_size = hex("sector size", 3)?;
            let n_sectors = hex("sector count", 4)?;
            if let Some(f) = fields.get(5) {
                if f.parse::<i32>().is_err() {
                    return Err(err(format!("MTD-lock switch {f:?} is not a decimal number")));
                }
            }
            if lines.len() == 2 {
                return Err(err("a third environment copy; U-Boot keeps at most two".to_owned()));
            }
            if let Some(first) = lines.first().filter(|first| first.env_size != env_size) {
                let detail = format!("env size {env_size:#x} differs from the first copy's {:#x}", first.env_size);
                return Err(err(detail));
            }
            lines.push(ConfigLine { device: PathBuf::from(fields[0]), offset, env_size, sector_size, n_sectors });
        }
        let mut it = lines.into_iter();
        let primary = it.next().ok_or_else(|| Error::ParseConfig {
            path: path.to_owned(),
            line: text.lines().count(),
            detail: "no environment line, expected DEVICE OFFSET ENV_SIZE [SECTOR_SIZE [N_SECTORS]]".to_owned(),
        })?;
        Ok(Config { primary, redundant: it.next() })
    }

    /// The size of each copy.
    pub fn env_size(&self) -> usize {
        self.primary.env_size
    }
}

/// Writes the config in the form the tools read: hex sizes, the offset in hex (signed).
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in std::iter::once(&self.primary).chain(&self.redundant) {
            let sign = if l.offset < 0 { "-" } else { "" };
            write!(f, "{} {sign}{:#x} {:#x}", l.device.display(), l.offset.unsigned_abs(), l.env_size)?;
            if let Some(s) = l.sector_size {
                write!(f, " {s:#x}")?;
                if let Some(n) = l.n_sectors {
                    write!(f, " {n:#x}")?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// A whole word as C's `strtoll(s, _, 0)` reads it: a sign, then `0x` hex, `0` octal or decimal.
fn parse_c_int(word: &str) -> Option<i64> {
    let (negative, rest) = match word.as_bytes().first() {
        Some(b'-') => (true, &word[1..]),
        Some(b'+') => (false, &word[1..]),
        _ => (false, word),
    };
    let (radix, digits) = match rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None if rest.len() > 1 && rest.starts_with('0') => (8, &rest[1..]),
        None => (10, rest),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from(u64::from_str_radix(digits, radix).ok()?);
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// A whole word as C's `strtoul(s, _, 16)` reads it: hex digits with or without `0x` (no sign).
fn parse_c_hex(word: &str) -> Option<u64> {
    let digits = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")).unwrap_or(word);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    fn env(vars: &[(&str, &str)]) -> Env {
        let mut e = Env::new();
        for (n, v) in vars {
            e.set(n, v).expect("valid variable");
        }
        e
    }

    #[test]
    fn round_trips() {
        let check = |vars: &[(&str, &str)], size: usize| {
            let e = env(vars);
            for pad in [PAD_UBOOT, PAD_MKENVIMAGE] {
                let b = encode(&e, size, Header::Single, pad).expect("fits");
                assert_eq!(b.len(), size);
                assert_eq!(decode_single(&b).expect("decodes"), e, "{vars:?} pad {pad:#x}");
                let r = encode(&e, size, Header::Redundant { flags: 7 }, pad).expect("fits");
                let (back, choice) = decode_redundant(&r, &r, FlagScheme::Incremental).expect("decodes");
                assert_eq!(back, e);
                let expected = CopyChoice { current: CopyId::Primary, flags: 7, other: OtherCopy::Valid { flags: 7 } };
                assert_eq!(choice, expected);
            }
        };
        check(&[], 6);
        check(&[], 0x2000);
        check(&[("a", "1")], 64);
        check(&[("bootcmd", "run a; run b"), ("empty", ""), ("x", "=y=")], 256);
        check(&[("path", "C:\\dir\\"), ("two", "line\nbreak"), ("utf8", "grüße")], 256);
        check(&[(".flags", "a:sa"), ("a", "1")], 256);
    }

    #[test]
    fn layout_is_u_boots() {
        // Sorted by name (bytewise, as strcmp), NUL after each entry, one more NUL, zeros to the end.
        let e = env(&[("b", "2"), ("a", "1"), ("B", "x y")]);
        let b = encode_single(&e, 32).expect("fits");
        let data = b"B=x y\0a=1\0b=2\0\0";
        assert_eq!(&b[4..4 + data.len()], data);
        assert!(b[4 + data.len()..].iter().all(|&c| c == 0));
        assert_eq!(b[..4], crc32fast::hash(&b[4..]).to_le_bytes());
        let r = encode(&e, 32, Header::Redundant { flags: 0x2a }, 0xff).expect("fits");
        assert_eq!(r[4], 0x2a);
        assert_eq!(&r[5..5 + data.len()], data);
        assert!(r[5 + data.len()..].iter().all(|&c| c == 0xff));
        assert_eq!(r[..4], crc32fast::hash(&r[5..]).to_le_bytes());
    }

    #[test]
    fn too_large_is_refused_exactly_at_the_limit() {
        // "a=1\0" and the final NUL: 5 bytes of data.
        let e = env(&[("a", "1")]);
        let check = |size: usize, header: Header, fits: bool| {
            let r = encode(&e, size, header, 0);
            if fits {
                assert!(r.is_ok(), "{size} {header:?}: {r:?}");
            } else {
                assert!(matches!(r, Err(Error::TooLarge { needed: 5, .. })), "{size} {header:?}: {r:?}");
            }
        };
        check(9, Header::Single, true);
        check(8, Header::Single, false);
        check(10, Header::Redundant { flags: 1 }, true);
        check(9, Header::Redundant { flags: 1 }, false);
        check(2, Header::Single, false);
        assert!(matches!(encode(&Env::new(), 4, Header::Single, 0), Err(Error::TooLarge { needed: 1, available: 0 })));
    }

    #[test]
    fn bad_single_blocks_are_refused() {
        let good = encode_single(&env(&[("a", "1"), ("b", "2")]), 64).expect("fits");
        // Rebuilds the CRC over `data` so that only the data is wrong.
        let with_data = |data: &[u8]| {
            let mut b = vec![0; 4];
            b.extend_from_slice(data);
            b.resize(64, 0);
            let crc = crc32fast::hash(&b[4..]);
            b[..4].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let check = |b: &[u8], expected: fn(&Error) -> bool| {
            let r = decode_single(b);
            assert!(r.as_ref().is_err_and(expected), "{r:?}");
        };
        let mut flipped = good.clone();
        flipped[9] ^= 0x01;
        check(&flipped, |e| matches!(e, Error::BadCrc { .. }));
        let mut bad_crc = good.clone();
        bad_crc[0] ^= 0x80;
        check(&bad_crc, |e| matches!(e, Error::BadCrc { .. }));
        check(&good[..32], |e| matches!(e, Error::BadCrc { .. }));
        check(&good[..4], |e| matches!(e, Error::BlockTooSmall { size: 4, min: 5 }));
        check(&[], |e| matches!(e, Error::BlockTooSmall { size: 0, min: 5 }));
        let mut full = vec![0; 4];
        full.extend_from_slice(b"a=1\0b=2");
        let crc = crc32fast::hash(&full[4..]);
        full[..4].copy_from_slice(&crc.to_le_bytes());
        check(&full, |e| matches!(e, Error::Unterminated { offset: 8 }));
        let mut no_end = vec![0; 4];
        no_end.extend_from_slice(b"a=1\0");
        let crc = crc32fast::hash(&no_end[4..]);
        no_end[..4].copy_from_slice(&crc.to_le_bytes());
        check(&no_end, |e| matches!(e, Error::Unterminated { offset: 8 }));
        check(&with_data(b"a=1\0noequals\0\0"), |e| matches!(e, Error::NoEquals { offset: 8 }));
        check(&with_data(b"=1\0\0"), |e| matches!(e, Error::InvalidName { name } if name.is_empty()));
        check(&with_data(b" a=1\0\0"), |e| matches!(e, Error::InvalidName { name } if name == " a"));
        check(&with_data(b"#a=1\0\0"), |e| matches!(e, Error::InvalidName { name } if name == "#a"));
        check(&with_data(b"a=1\0a=2\0\0"), |e| matches!(e, Error::DuplicateName { name } if name == "a"));
        check(&with_data(b"a=1\0b=\xff\0\0"), |e| matches!(e, Error::NotUtf8 { offset: 8 }));
    }

    #[test]
    fn names_and_values_are_checked() {
        let check = |name: &str, value: &str, expected: fn(&Result<()>) -> bool| {
            let r = Env::new().set(name, value);
            assert!(expected(&r), "{name:?}={value:?}: {r:?}");
        };
        check("a", "", |r| r.is_ok());
        check("a.b-c_d", "x=y", |r| r.is_ok());
        check("", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("a=b", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check(" a", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("\ta", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("#a", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("a\0", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("a", "1\0x", |r| matches!(r, Err(Error::InvalidValue { .. })));
    }

    #[test]
    fn the_current_copy_is_the_one_u_boot_picks() {
        use CopyId::{Primary as P, Redundant as R};
        use FlagScheme::{Boolean, Incremental};
        let check = |primary: Option<u8>, redundant: Option<u8>, scheme, expected: Option<CopyId>| {
            let got = select(primary, redundant, scheme);
            assert_eq!(got.map(|(c, _)| c), expected, "{primary:?} {redundant:?} {scheme:?}");
            if let Some((c, flags)) = got {
                assert_eq!(Some(flags), [primary, redundant][c.index()]);
            }
        };
        check(None, None, Incremental, None);
        check(Some(9), None, Incremental, Some(P));
        check(None, Some(9), Incremental, Some(R));
        check(Some(1), Some(2), Incremental, Some(R));
        check(Some(2), Some(1), Incremental, Some(P));
        check(Some(5), Some(5), Incremental, Some(P));
        check(Some(255), Some(0), Incremental, Some(R));
        check(Some(0), Some(255), Incremental, Some(P));
        check(Some(254), Some(255), Incremental, Some(R));
        check(Some(0), Some(1), Incremental, Some(R));
        // Only 255 then 0 is a wrap: 254 and 0 is an ordinary comparison.
        check(Some(254), Some(0), Incremental, Some(P));
        check(Some(0), Some(254), Incremental, Some(R));
        check(None, None, Boolean, None);
        check(Some(0), None, Boolean, Some(P));
        check(Some(1), Some(0), Boolean, Some(P));
        check(Some(0), Some(1), Boolean, Some(R));
        check(Some(1), Some(1), Boolean, Some(P));
        check(Some(0), Some(0), Boolean, Some(P));
        check(Some(0xff), Some(0xff), Boolean, Some(P));
        check(Some(0xff), Some(1), Boolean, Some(P));
        check(Some(1), Some(0xff), Boolean, Some(R));
        check(Some(0), Some(0xff), Boolean, Some(R));
        check(Some(2), Some(3), Boolean, Some(P));
        assert_eq!(Incremental.next(255), 0);
        assert_eq!(Incremental.next(6), 7);
        assert_eq!(Boolean.next(0), FLAG_ACTIVE);
    }

    #[test]
    fn redundant_decode_reports_the_copies() {
        let old = env(&[("v", "old")]);
        let new = env(&[("v", "new")]);
        let a = encode_redundant(&old, 64, 3).expect("fits");
        let b = encode_redundant(&new, 64, 4).expect("fits");
        let mut torn = b.clone();
        torn[20] ^= 0xff;
        let check = |p: &[u8], r: &[u8], expected: Option<(&Env, CopyChoice)>| {
            let got = decode_redundant(p, r, FlagScheme::Incremental);
            match expected {
                Some((e, c)) => {
                    let (env, choice) = got.expect("decodes");
                    assert_eq!((&env, choice), (e, c));
                }
                None => assert!(matches!(got, Err(Error::NoValidCopy)), "{got:?}"),
            }
        };
        let c = |current, flags, other| CopyChoice { current, flags, other };
        check(&a, &b, Some((&new, c(CopyId::Redundant, 4, OtherCopy::Valid { flags: 3 }))));
        check(&b, &a, Some((&new, c(CopyId::Primary, 4, OtherCopy::Valid { flags: 3 }))));
        check(&a, &torn, Some((&old, c(CopyId::Primary, 3, OtherCopy::BadCrc))));
        check(&torn, &a, Some((&old, c(CopyId::Redundant, 3, OtherCopy::BadCrc))));
        check(&torn, &torn, None);
        assert!(matches!(
            decode_redundant(&a, &b[..32], FlagScheme::Incremental),
            Err(Error::SizeMismatch { primary: 64, redundant: 32 })
        ));
        assert!(matches!(
            decode_redundant(&a[..5], &b[..5], FlagScheme::Incremental),
            Err(Error::BlockTooSmall { size: 5, min: 6 })
        ));
        // The current copy is read even when its data is malformed: U-Boot would not fall back either.
        let mut bad = vec![0; 5];
        bad[4] = 9;
        bad.extend_from_slice(b"nope\0\0");
        bad.resize(64, 0);
        let crc = crc32fast::hash(&bad[5..]);
        bad[..4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode_redundant(&a, &bad, FlagScheme::Incremental), Err(Error::NoEquals { offset: 5 })));
    }

    #[test]
    fn config_lines_are_read_as_the_tools_read_them() {
        let path = Path::new("fw_env.config");
        let line = |device: &str, offset: i64, env_size: usize, sector_size: Option<u64>, n_sectors: Option<u64>| {
            ConfigLine { device: PathBuf::from(device), offset, env_size, sector_size, n_sectors }
        };
        let check = |text: &str, primary: ConfigLine, redundant: Option<ConfigLine>| {
            let c = Config::parse(text, path).expect("parses");
            assert_eq!(c, Config { primary, redundant }, "{text:?}");
            assert_eq!(Config::parse(&c.to_string(), path).expect("its own output parses"), c);
        };
        check("/dev/mmcblk0 0x3f8000 0x4000\n", line("/dev/mmcblk0", 0x3f_8000, 0x4000, None, None), None);
        // Sizes are always hex; the offset is C's base 0: hex, octal or decimal.
        check("/a 4096 2000", line("/a", 4096, 0x2000, None, None), None);
        check("/a 0400 2000 0X200 4", line("/a", 256, 0x2000, Some(0x200), Some(4)), None);
        check("/a -0x4000 0x2000", line("/a", -0x4000, 0x2000, None, None), None);
        check("/a 0 0x2000 0x200 1 0", line("/a", 0, 0x2000, Some(0x200), Some(1)), None);
        check(
            "# comment\n\n  # indented\n/a\t0x0 0x2000 # trailing\n/b 0x2000 0x2000\n",
            line("/a", 0, 0x2000, None, None),
            Some(line("/b", 0x2000, 0x2000, None, None)),
        );
        let check_err = |text: &str, at: usize| {
            let r = Config::parse(text, path);
            assert!(matches!(r, Err(Error::ParseConfig { line, .. }) if line == at), "{text:?}: {r:?}");
        };
        check_err("", 0);
        check_err("# only a comment\n", 1);
        check_err("/a 0", 1);
        check_err("\n/a 0 0x100 1 1 1 1", 2);
        check_err("/a 09 0x100", 1);
        check_err("/a 0x 0x100", 1);
        check_err("/a 12k 0x100", 1);
        check_err("/a 0 0x100g", 1);
        check_err("/a 0 -0x100", 1);
        check_err("/a 0 0", 1);
        check_err("/a 0 0x100 0x", 1);
        check_err("/a 0 0x100 0x200 1 x", 1);
        check_err("/a 0 0x100\n/b 0 0x200\n", 2);
        check_err("/a 0 0x100\n/b 0 0x100\n/c 0 0x100\n", 3);
        check_err("/a 99999999999999999999 0x100", 1);
    }

    /// Memory shared by the copies' devices, with a power cut after a budget of bytes written.
    #[derive(Clone)]
    struct Mem {
        bytes: Rc<RefCell<Vec<u8>>>,
        budget: Rc<Cell<Option<usize>>>,
        n_syncs: Rc<Cell<usize>>,
    }

    impl Mem {
        fn new(bytes: Vec<u8>) -> Mem {
            Mem { bytes: Rc::new(RefCell::new(bytes)), budget: Rc::default(), n_syncs: Rc::default() }
        }
    }

    impl BlockDevice for Mem {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let o = usize::try_from(offset).expect("small offset");
            let b = self.bytes.borrow();
            buf.copy_from_slice(b.get(o..o + buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?);
            Ok(())
        }

        fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
            let o = usize::try_from(offset).expect("small offset");
            let n = self.budget.get().map_or(buf.len(), |left| left.min(buf.len()));
            self.budget.set(self.budget.get().map(|left| left - n));
            self.bytes.borrow_mut()[o..o + n].copy_from_slice(&buf[..n]);
            if n < buf.len() {
                return Err(io::Error::other("power cut"));
            }
            Ok(())
        }

        fn sync(&mut self) -> io::Result<()> {
            self.n_syncs.set(self.n_syncs.get() + 1);
            Ok(())
        }
    }

    fn store(mem: &Mem, size: usize, scheme: FlagScheme) -> EnvStore<Mem> {
        let at = |offset: usize| CopyAt { device: mem.clone(), path: PathBuf::from("mem"), offset: offset as u64 };
        EnvStore::redundant(at(0), at(size), size, scheme)
    }

    #[test]
    fn the_writer_alternates_copies_and_bumps_the_flags() {
        let size = 256;
        let check = |scheme: FlagScheme, start: [Option<u8>; 2], expected: &[(CopyId, u8, OtherCopy)]| {
            let mut bytes = Vec::new();
            for flags in start {
                match flags {
                    Some(f) => bytes.extend(encode_redundant(&env(&[("gen", "start")]), size, f).expect("fits")),
                    None => bytes.extend(vec![0xff; size]),
                }
            }
            let mem = Mem::new(bytes);
            let mut s = store(&mem, size, scheme);
            for (i, &(copy, flags, other)) in expected.iter().enumerate() {
                let e = env(&[("gen", &i.to_string())]);
                let syncs = mem.n_syncs.get();
                assert_eq!(s.write(&e).expect("writes"), Written { copy, flags: Some(flags) }, "{scheme:?} write {i}");
                assert!(mem.n_syncs.get() > syncs, "every write is synced");
                let (back, choice) = s.read().expect("reads");
                assert_eq!(back, e);
                assert_eq!(choice, Some(CopyChoice { current: copy, flags, other }), "{scheme:?} write {i}");
            }
        };
        use CopyId::{Primary as P, Redundant as R};
        use FlagScheme::{Boolean, Incremental};
        use OtherCopy::{BadCrc, Valid};
        let v = |flags| Valid { flags };
        check(Incremental, [None, None], &[(P, 1, BadCrc), (R, 2, v(1)), (P, 3, v(2))]);
        check(Incremental, [Some(1), Some(1)], &[(R, 2, v(1)), (P, 3, v(2))]);
        check(Incremental, [Some(254), None], &[(R, 255, v(254)), (P, 0, v(255)), (R, 1, v(0))]);
        check(Incremental, [Some(3), Some(255)], &[(P, 0, v(255)), (R, 1, v(0))]);
        // The boolean scheme marks the replaced copy obsolete after the new one is whole.
        check(Boolean, [Some(1), Some(1)], &[(R, 1, v(0)), (P, 1, v(0)), (R, 1, v(0))]);
        check(Boolean, [None, Some(1)], &[(P, 1, v(0))]);
    }

    #[test]
    fn a_single_environment_is_written_in_place() {
        let mem = Mem::new(vec![0; 128]);
        let mut s = EnvStore::single(CopyAt { device: mem.clone(), path: PathBuf::from("mem"), offset: 64 }, 64);
        assert!(matches!(s.read(), Err(Error::BadCrc { .. })));
        let e = env(&[("a", "1")]);
        assert_eq!(s.write(&e).expect("writes"), Written { copy: CopyId::Primary, flags: None });
        assert_eq!(s.read().expect("reads"), (e.clone(), None));
        assert_eq!(mem.bytes.borrow()[64..], encode_single(&e, 64).expect("fits")[..]);
        assert!(mem.bytes.borrow()[..64].iter().all(|&c| c == 0));
        let big = env(&[("a", &"x".repeat(64))]);
        assert!(matches!(s.write(&big), Err(Error::TooLarge { .. })));
        let mut short = EnvStore::single(CopyAt { device: mem, path: PathBuf::from("mem"), offset: 100 }, 64);
        assert!(matches!(short.read(), Err(Error::ReadDevice { offset: 100, .. })));
    }

    /// An environment whose data spans most of a 0x2000-byte copy, different in every variable for each `generation`.
    fn big_env(generation: usize) -> Env {
        let mut e = Env::new();
        for i in 0..60 {
            e.set(&format!("var{i:02}"), &format!("{generation}-{}", "v".repeat(90 + generation)))
                .expect("valid variable");
        }
        e
    }

    /// A power cut partway through a redundant save, from a range of starting flags and with both schemes: a read
    /// afterwards gives the old environment or the new one, never an error or a mix, and the next save works. The
    /// cut falls after every byte of the first 64 (the header and the first entries), after every byte of the last
    /// dozen before each 512-byte sector boundary and at the boundary itself, after every 7th byte elsewhere, and,
    /// in the boolean scheme, before the old copy's flags are set obsolete.
    #[test]
    fn a_torn_write_leaves_the_old_or_the_new_environment() {
        let size = 0x2000;
        let check = |scheme: FlagScheme, flags: [u8; 2]| {
            let mut start = encode_redundant(&big_env(0), size, flags[0]).expect("fits");
            start.extend(encode_redundant(&big_env(1), size, flags[1]).expect("fits"));
            let (old, _) = decode_redundant(&start[..size], &start[size..], scheme).expect("start is whole");
            let new = big_env(2);
            let mut cut = 0;
            loop {
                let mem = Mem::new(start.clone());
                mem.budget.set(Some(cut));
                let r = store(&mem, size, scheme).write(&new);
                let bytes = mem.bytes.borrow().clone();
                let (got, _) = decode_redundant(&bytes[..size], &bytes[size..], scheme)
                    .unwrap_or_else(|e| panic!("{scheme:?} {flags:?}: cut after {cut} bytes: {e}"));
                assert!(got == old || got == new, "{scheme:?} {flags:?}: cut after {cut} bytes reads a mix");
                if r.is_ok() {
                    assert_eq!(got, new, "{scheme:?} {flags:?}: a finished save reads the new environment");
                    break;
                }
                assert!(matches!(r, Err(Error::WriteDevice { .. })));
                // After the power comes back, the next save lands whole.
                mem.budget.set(None);
                let later = big_env(3);
                let mut s = store(&mem, size, scheme);
                s.write(&later).expect("writes");
                assert_eq!(s.read().expect("reads").0, later);
                cut += if cut < 64 || cut % 512 >= 500 { 1 } else { 7 };
            }
            assert!(cut >= size, "the save was cut at every point");
        };
        check(FlagScheme::Incremental, [1, 2]);
        check(FlagScheme::Incremental, [2, 1]);
        check(FlagScheme::Incremental, [254, 255]);
        check(FlagScheme::Incremental, [255, 0]);
        check(FlagScheme::Incremental, [0, 255]);
        check(FlagScheme::Boolean, [1, 0]);
        check(FlagScheme::Boolean, [0, 1]);
        check(FlagScheme::Boolean, [1, 1]);
    }

    /// A disk may write the sectors of one request in any order: every subset of the new copy's 512-byte sectors
    /// reaching the medium still reads as the old or the new environment.
    #[test]
    fn any_subset_of_written_sectors_reads_old_or_new() {
        let size = 0x1000;
        let n_sectors = size / 512;
        let small = |generation: usize| {
            let mut e = Env::new();
            for i in 0..30 {
                e.set(&format!("v{i}"), &format!("{generation}{}", "x".repeat(100))).expect("valid");
            }
            e
        };
        for (cur, prev) in [(5u8, 4u8), (0, 255), (255, 254)] {
            let current = encode_redundant(&small(1), size, cur).expect("fits");
            let replaced = encode_redundant(&small(0), size, prev).expect("fits");
            let new = encode_redundant(&small(2), size, FlagScheme::Incremental.next(cur)).expect("fits");
            for mask in 0u32..1 << n_sectors {
                let mut target = replaced.clone();
                for s in (0..n_sectors).filter(|s| mask & 1 << s != 0) {
                    target[s * 512..(s + 1) * 512].copy_from_slice(&new[s * 512..(s + 1) * 512]);
                }
                for (p, r) in [(&current, &target), (&target, &current)] {
                    let (got, _) = decode_redundant(p, r, FlagScheme::Incremental).expect("one copy is whole");
                    // Sectors past the data hold the same padding in both, so a mix equal to the new copy can
                    // happen before every sector is written; any other mix must fail its CRC.
                    let expected = if target == new { small(2) } else { small(1) };
                    assert!(got == expected, "flags {cur}/{prev}, sectors {mask:#b}");
                }
            }
        }
    }

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
    }

    /// The environment of the golden vectors: what a board's U-Boot environment might hold.
    fn vector_env(bootcount: &str) -> Env {
        env(&[
            ("arch", "arm"),
            ("baudrate", "115200"),
            ("board", "edge"),
            ("bootargs", "console=ttyS0,115200 rootwait"),
            ("bootcmd", "run edge_boot"),
            ("bootcount", bootcount),
            ("bootdelay", "0"),
            ("edge_boot", "load mmc 0:1 ${loadaddr} boot.scr; source ${loadaddr}"),
            ("fdtfile", "edge/board.dtb"),
            ("loadaddr", "0x82000000"),
        ])
    }

    /// Golden vectors: `uboot-env.txt` (the variables, as `fw_printenv` prints them), `uboot-single.bin` (a single
    /// environment of 0x2000 bytes) and `uboot-redundant.bin` (both copies of a redundant one, 0x2000 bytes each:
    /// the primary with flags 1 holds bootcount=1, the redundant with flags 2 the variables of `uboot-env.txt`).
    /// `UPDATE_GOLDEN=1` rewrites them; the interop test checks them against `fw_printenv` and `mkenvimage`.
    #[test]
    fn golden_vectors() {
        let size = 0x2000;
        let e = vector_env("2");
        let text: String = e.vars().map(|(n, v)| format!("{n}={v}\n")).collect();
        let single = encode_single(&e, size).expect("fits");
        let mut redundant = encode_redundant(&vector_env("1"), size, 1).expect("fits");
        redundant.extend(encode_redundant(&e, size, 2).expect("fits"));
        let files =
            [("uboot-env.txt", text.as_bytes()), ("uboot-single.bin", &single), ("uboot-redundant.bin", &redundant)];
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            for (name, bytes) in files {
                std::fs::write(vectors().join(name), bytes).expect("write vector");
            }
            return;
        }
        for (name, bytes) in files {
            let committed = std::fs::read(vectors().join(name)).expect("tests/vectors/uboot-* are committed");
            assert!(
                committed == bytes,
                "tests/vectors/{name} differs from the rebuilt one (UPDATE_GOLDEN=1 to rewrite)"
            );
        }
        assert_eq!(decode_single(&single).expect("decodes"), e);
        let (back, choice) =
            decode_redundant(&redundant[..size], &redundant[size..], FlagScheme::Incremental).expect("decodes");
        assert_eq!(back, e);
        assert_eq!(choice, CopyChoice { current: CopyId::Redundant, flags: 2, other: OtherCopy::Valid { flags: 1 } });
    }

    /// A redundant environment whose file ends before its second copy (cut off, or never written) is read from the
    /// first copy, reports the second as missing, and the next write, which goes to the second, makes the file
    /// long enough to hold it.
    #[test]
    fn issue_14_a_copy_past_the_end_of_its_file_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("env.bin");
        let e = env(&[("edge_active", "A")]);
        std::fs::write(&file, encode_redundant(&e, 64, 1).expect("fits")).expect("copy 0 only");
        let line =
            |offset: i64| ConfigLine { device: file.clone(), offset, env_size: 64, sector_size: None, n_sectors: None };
        let config = Config { primary: line(0), redundant: Some(line(64)) };
        let mut store = EnvStore::open(&config, Access::ReadWrite).expect("open");
        let (read, choice) = store.read().expect("copy 0 is whole");
        assert_eq!(read, e);
        assert_eq!(choice.map(|c| (c.current, c.other)), Some((CopyId::Primary, OtherCopy::BadCrc)));
        assert_eq!((store.copy_extent(0).expect("probe"), store.copy_extent(1).expect("probe")), (Some(true), None));
        let next = env(&[("edge_active", "B")]);
        assert_eq!(store.write(&next).expect("write").copy, CopyId::Redundant);
        assert_eq!(std::fs::metadata(&file).expect("stat").len(), 128);
        assert_eq!(store.read().expect("read").0, next);
        // A file that ends inside the second copy: that copy is cut short, and the first is still read.
        std::fs::OpenOptions::new().write(true).open(&file).expect("open").set_len(100).expect("cut");
        let mut store = EnvStore::open(&config, Access::ReadOnly).expect("open");
        assert_eq!(store.copy_extent(1).expect("probe"), Some(false));
        assert_eq!(store.read().expect("copy 0 is whole").0, e);
    }

    /// The environment's device and `fw_env.config` are checked before they are opened: a FIFO or a character
    /// device is refused, naming it, instead of blocking the open or reading without end.
    #[test]
    fn issue_14_devices_and_configs_that_are_not_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        for (device, found) in [(Path::new("/dev/null"), "character device"), (&*fifo, "FIFO")] {
            let line = |offset: i64| ConfigLine {
                device: device.to_owned(),
                offset,
                env_size: 64,
                sector_size: None,
                n_sectors: None,
            };
            let config = Config { primary: line(0), redundant: Some(line(64)) };
            let r = EnvStore::open(&config, Access::ReadOnly);
            assert!(matches!(&r, Err(Error::DeviceType { found: f, .. }) if *f == found), "{device:?}: {r:?}");
            let r = Config::load(device);
            assert!(matches!(&r, Err(Error::ConfigType { found: f, .. }) if *f == found), "{device:?}: {r:?}");
        }
        let big = dir.path().join("fw_env.config");
        std::fs::File::create(&big).expect("create").set_len(1 << 20).expect("grow");
        assert!(matches!(Config::load(&big), Err(Error::ConfigTooLarge { size_bytes: 1_048_576, .. })));
    }
}
