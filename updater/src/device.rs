//! The target slot as the install sees it: `bootctl`'s `BlockDevice` seam (read, write, sync at byte offsets), plus
//! its size and a way to make reads come from the device rather than the page cache. A regular file and a real
//! block device go through the same [`SlotFile`]; tests put a device that loses unsynced writes behind the trait.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub use bootctl::blockdev::BlockDevice;

use crate::sys;

/// A slot device.
pub trait SlotDevice: BlockDevice + Send {
    /// Its size in bytes.
    fn size(&mut self) -> io::Result<u64>;
    /// Drops what the page cache holds of it, so that the next reads come from the device itself.
    fn drop_cache(&mut self) -> io::Result<()>;
    /// A second handle that reads what is durable on the device, for checking synced chunks on another thread
    /// while later ones are written.
    fn reader(&self) -> io::Result<Box<dyn SlotReader>>;
}

/// Reads back what a [`SlotDevice`] made durable.
pub trait SlotReader: Send {
    /// Fills `buf` from `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Drops the page cache's copy of `len` bytes at `offset` (synced, so clean), so reads come from the device.
    fn drop_cache(&mut self, offset: u64, len: u64) -> io::Result<()>;
}

/// A slot on a block device or in a regular file.
#[derive(Debug)]
pub struct SlotFile {
    file: File,
}

impl SlotFile {
    /// Opens an existing device or file for reading and writing (never creating or truncating it).
    pub fn open(path: &Path) -> io::Result<SlotFile> {
        Ok(SlotFile { file: OpenOptions::new().read(true).write(true).open(path)? })
    }

    /// Opens a device or file for reading only (the booted slot, for delta reuse).
    pub fn open_read_only(path: &Path) -> io::Result<SlotFile> {
        Ok(SlotFile { file: File::open(path)? })
    }
}

impl BlockDevice for SlotFile {
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

impl SlotDevice for SlotFile {
    fn size(&mut self) -> io::Result<u64> {
        // Seeking to the end works for block devices too, whose metadata says 0.
        self.file.seek(SeekFrom::End(0))
    }
    fn drop_cache(&mut self) -> io::Result<()> {
        sys::drop_page_cache(&self.file, 0, 0)
    }
    fn reader(&self) -> io::Result<Box<dyn SlotReader>> {
        Ok(Box::new(SlotFile { file: self.file.try_clone()? }))
    }
}

impl SlotReader for SlotFile {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn drop_cache(&mut self, offset: u64, len: u64) -> io::Result<()> {
        sys::drop_page_cache(&self.file, offset, len)
    }
}

impl image_layout::reader::ReadAt for SlotFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }
}
