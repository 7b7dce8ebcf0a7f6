//! The one way to read a file whose type and size a tool does not control (a key, a config file, a boot state
//! copy, a payload, the kernel command line): its type is checked before it is opened and again on the open file,
//! and what is read is bounded, so that a FIFO, a device or a huge file named in its place is refused before it can
//! hang the tool or fill its memory.
//!
//! It is a crate of its own because the format library (`image-layout`) and the boot state library (`bootctl`)
//! both need it and depend on neither each other nor anything above them. Errors carry no path: each caller wraps
//! them in its own error, which names the file and what it was for.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::{self, File, FileType};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

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
    /// A regular file only (a config file, a key, a GRUB state copy, which GRUB reads through a filesystem).
    RegularFile,
    /// A regular file or a block device (a payload, a slot, a U-Boot environment in a file or a raw partition).
    FileOrBlockDevice,
}

impl Accept {
    /// Whether a file of type `t` is accepted.
    pub fn allows(self, t: FileType) -> bool {
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

/// Why a file could not be opened or read.
#[derive(Debug)]
pub enum ReadSmall {
    /// Finding, opening or reading it failed.
    Io(io::Error),
    /// It is not of an accepted type; what it is.
    Type(&'static str),
    /// It is larger than the bound: its size, or the bytes read past the bound when it grew.
    TooLarge(u64),
}

/// Checks the type of `path`, following symbolic links, before it is opened: `Ok(None)` when `accept` allows it,
/// `Ok(Some(what it is))` when not. Opening a FIFO for reading blocks until a writer comes, and this crate makes no
/// system calls of its own to open one non-blocking, so the check comes first; a path swapped for a FIFO between
/// the check and the open can still block, but the paths read this way are the operator's or the node's own.
pub fn refused_kind(path: &Path, accept: Accept) -> io::Result<Option<&'static str>> {
    let t = fs::metadata(path)?.file_type();
    Ok((!accept.allows(t)).then(|| kind_name(t)))
}

/// Opens `path` after checking its type, and checks the type again on the open file.
fn open_checked(path: &Path, accept: Accept) -> Result<(File, fs::Metadata), ReadSmall> {
    if let Some(found) = refused_kind(path, accept).map_err(ReadSmall::Io)? {
        return Err(ReadSmall::Type(found));
    }
    let file = File::open(path).map_err(ReadSmall::Io)?;
    let meta = file.metadata().map_err(ReadSmall::Io)?;
    if !accept.allows(meta.file_type()) {
        return Err(ReadSmall::Type(kind_name(meta.file_type())));
    }
    Ok((file, meta))
}

/// Reads a small file whole (a config file, a key, the kernel command line): a regular file (or a symbolic link to
/// one) of at most `max_bytes` bytes. At most `max_bytes + 1` bytes are read, so a file that grows after the check
/// is refused all the same, memory never holds more than the bound, and files the kernel makes up
/// (`/proc/cmdline`, whose size says 0) are read too.
pub fn read_small(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadSmall> {
    let (file, meta) = open_checked(path, Accept::RegularFile)?;
    if meta.len() > max_bytes {
        return Err(ReadSmall::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes).map_err(ReadSmall::Io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadSmall::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Opens a file to be read whole (a payload, a slot's image): a regular file or a block device, whose size is known
/// before reading (a block device's by seeking to its end, since its metadata says 0). Returns the file, at its
/// start, and the size; readers take no more than that size, so a file that grows while it is read does not make
/// the read endless. A character device (`/dev/zero`), a FIFO, a socket or a directory is refused: none has a size
/// to stop at.
pub fn open_sized(path: &Path) -> Result<(File, u64), ReadSmall> {
    let (mut file, meta) = open_checked(path, Accept::FileOrBlockDevice)?;
    let size_bytes = if meta.file_type().is_block_device() {
        let end = file.seek(SeekFrom::End(0)).map_err(ReadSmall::Io)?;
        file.seek(SeekFrom::Start(0)).map_err(ReadSmall::Io)?;
        end
    } else {
        meta.len()
    };
    Ok((file, size_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_14_small_files_are_typed_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        fs::write(&file, "0123456789").expect("write");
        assert_eq!(read_small(&file, 10).expect("at the bound"), b"0123456789");
        assert!(matches!(read_small(&file, 9), Err(ReadSmall::TooLarge(10))));
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        let cases = [
            (Path::new("/dev/null"), "character device"),
            (&*fifo, "FIFO"),
            (dir.path(), "directory"),
            (&*link, "character device"),
        ];
        for (path, found) in cases {
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

    #[test]
    fn issue_14_images_have_a_size_and_a_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("img");
        fs::write(&file, vec![7u8; 5000]).expect("write");
        let (_, size) = open_sized(&file).expect("a regular file");
        assert_eq!(size, 5000);
        for (path, found) in [(Path::new("/dev/zero"), "character device"), (dir.path(), "directory")] {
            let r = open_sized(path);
            assert!(matches!(&r, Err(ReadSmall::Type(f)) if *f == found), "{path:?}: {r:?}");
        }
    }
}
