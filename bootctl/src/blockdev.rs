//! The seam where storage fails: a device read and written at byte offsets, with a file or block device behind it
//! in production and, in tests, devices that lose unsynced writes or tear a write at a chosen byte.
//!
//! Also the type and size checks made before a path is opened or read whole (boot state copies, config files, the
//! kernel command line), so that a FIFO or a device named in their place cannot hang a verb or fill its memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The seam where storage fails: a device read and written at byte offsets.
pub trait BlockDevice {
    /// Fills `buf` with the bytes at `offset`; a device that ends first is an error (`UnexpectedEof`).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes every write so far durable (fsync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the device to `len` bytes (a file made longer than its format allows); devices that cannot be cut
    /// refuse.
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// How a [`FileDevice`] is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// For reading only.
    ReadOnly,
    /// For reading and writing.
    ReadWrite,
}

/// A file or block device.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
}

impl FileDevice {
    /// Opens `path` (the caller adds the path to the error).
    pub fn open(path: &Path, access: Access) -> io::Result<FileDevice> {
        let file = OpenOptions::new().read(true).write(access == Access::ReadWrite).open(path)?;
        Ok(FileDevice { file })
    }

    /// A device over a file already open.
    pub fn from_file(file: File) -> FileDevice {
        FileDevice { file }
    }

    /// The open file (for system calls the trait does not cover, such as dropping its cached pages).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The size in bytes; seeking to the end works for block devices too, whose metadata says 0.
    pub fn size(&mut self) -> io::Result<u64> {
        self.file.seek(SeekFrom::End(0))
    }
}

impl BlockDevice for FileDevice {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

// The type and size checks before a path is opened or read whole live once, in `filecheck`; they are named here
// too because this is where the crate's readers have always found them.
pub use filecheck::{kind_name, read_small, refused_kind, Accept, ReadSmall};
