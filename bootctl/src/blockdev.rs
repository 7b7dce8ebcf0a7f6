//! The seam where storage fails: a device read and written at byte offsets, with a file or block device behind it
//! in production and, in tests, devices that lose unsynced writes or tear a write at a chosen byte.

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
}
