//! The target slot as the install sees it: `bootctl`'s `BlockDevice` seam (read, write, sync at byte offsets), plus
//! its size and a way to make reads come from the device rather than the page cache. A regular file and a real
//! block device go through the same [`SlotFile`]; tests put a device that loses unsynced writes behind the trait.

use std::io;

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

/// A slot on a block device or in a regular file: `bootctl`'s file device, the same one the boot state copies use.
pub use bootctl::blockdev::{Access, FileDevice as SlotFile};

impl SlotDevice for SlotFile {
    fn size(&mut self) -> io::Result<u64> {
        SlotFile::size(self)
    }
    fn drop_cache(&mut self) -> io::Result<()> {
        sys::drop_page_cache(self.file(), 0, 0)
    }
    fn reader(&self) -> io::Result<Box<dyn SlotReader>> {
        Ok(Box::new(SlotFile::from_file(self.file().try_clone()?)))
    }
}

impl SlotReader for SlotFile {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        BlockDevice::read_at(self, offset, buf)
    }
    fn drop_cache(&mut self, offset: u64, len: u64) -> io::Result<()> {
        sys::drop_page_cache(self.file(), offset, len)
    }
}
