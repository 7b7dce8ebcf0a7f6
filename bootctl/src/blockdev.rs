//! The seam where storage fails: a device read and written at byte offsets, with a file or block device behind it
//! in production and, in tests, devices that lose unsynced writes or tear a write at a chosen byte.
//!
//! Also the type and size checks made before a path is opened or read whole (boot state copies, config files, the
//! kernel command line), so that a FIFO or a device named in their place cannot hang a verb or fill its memory.

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
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

/// What a file type is, in the words error messages use.
pub fn kind_name(t: FileType) -> &'static str {
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// The kinds of file a path may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// A regular file only (a GRUB state copy, which GRUB reads through a filesystem; a config file).
    RegularFile,
    /// A regular file or a block device (a U-Boot environment, in a file or a raw partition).
    FileOrBlockDevice,
}

impl Accept {
    fn allows(self, t: FileType) -> bool {
        t.is_file() || (self == Accept::FileOrBlockDevice && t.is_block_device())
    }

    /// What is accepted, for messages.
    pub fn expected(self) -> &'static str {
        match self {
            Accept::RegularFile => "a regular file",
            Accept::FileOrBlockDevice => "a regular file or a block device",
        }
    }
}

/// Checks the type of `path`, following symbolic links, before it is opened: `Ok(None)` when `accept` allows it,
/// `Ok(Some(what it is))` when not. Opening a FIFO for reading blocks until a writer comes, and this crate makes no
/// system calls of its own to open one non-blocking, so the check comes first; a path swapped for a FIFO between
/// the check and the open can still block, but these paths are in the node's own directories.
pub fn refused_kind(path: &Path, accept: Accept) -> io::Result<Option<&'static str>> {
    let t = std::fs::metadata(path)?.file_type();
    Ok((!accept.allows(t)).then(|| kind_name(t)))
}

/// Why a small file could not be read whole.
#[derive(Debug)]
pub enum ReadSmall {
    /// Finding, opening or reading it failed.
    Io(io::Error),
    /// It is not a regular file; what it is.
    Type(&'static str),
    /// It is larger than the bound: its size, or the bytes read past the bound when it grew.
    TooLarge(u64),
}

/// Reads a small text file whole (a config file, the kernel command line): a regular file (or a symbolic link to
/// one) of at most `max_bytes` bytes. The type is checked before the open and again on the open file, and at most
/// `max_bytes + 1` bytes are read, so files the kernel makes up (`/proc/cmdline`, whose size says 0) are read too.
pub fn read_small(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadSmall> {
    if let Some(found) = refused_kind(path, Accept::RegularFile).map_err(ReadSmall::Io)? {
        return Err(ReadSmall::Type(found));
    }
    let file = File::open(path).map_err(ReadSmall::Io)?;
    let meta = file.metadata().map_err(ReadSmall::Io)?;
    if !meta.is_file() {
        return Err(ReadSmall::Type(kind_name(meta.file_type())));
    }
    if meta.len() > max_bytes {
        return Err(ReadSmall::TooLarge(meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes).map_err(ReadSmall::Io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadSmall::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_14_small_files_are_typed_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "0123456789").expect("write");
        assert_eq!(read_small(&file, 10).expect("at the bound"), b"0123456789");
        assert!(matches!(read_small(&file, 9), Err(ReadSmall::TooLarge(10))));
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        for (path, found) in [(Path::new("/dev/null"), "character device"), (&*fifo, "FIFO"), (dir.path(), "directory")]
        {
            let r = read_small(path, 100);
            assert!(matches!(r, Err(ReadSmall::Type(f)) if f == found), "{path:?}: {r:?}");
        }
        // A file whose size says 0 is read up to the bound all the same.
        assert!(!read_small(Path::new("/proc/self/cmdline"), 1 << 16).expect("procfs").is_empty());
        let r = read_small(&dir.path().join("missing"), 100);
        assert!(matches!(r, Err(ReadSmall::Io(e)) if e.kind() == io::ErrorKind::NotFound));
        assert_eq!(refused_kind(&fifo, Accept::FileOrBlockDevice).expect("stat"), Some("FIFO"));
        assert_eq!(refused_kind(&file, Accept::RegularFile).expect("stat"), None);
    }
}
