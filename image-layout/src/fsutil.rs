//! The one write-temp, fsync, rename, fsync-directory sequence, so that an output file is either whole or absent;
//! and this crate's errors for opening a file whose size and type the tool does not control (a key, a keyring entry, a
//! payload), checked by `filecheck`, so that a FIFO, a device or a huge file named in its place is refused.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file being written next to its final path; [`AtomicFile::commit`] makes it appear whole, and dropping it
/// without a commit removes it.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// Creates `.NAME.tmp.PID` in the destination's directory.
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let dir = parent_dir(dest);
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let file = File::create(&tmp).map_err(|source| Error::WriteFile { path: tmp.clone(), source })?;
        Ok(AtomicFile { file: Some(file), tmp, dest: dest.to_owned() })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is present until commit")
    }

    /// The temporary path (for error messages).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Renames over the destination without syncing: the file appears whole or not at all to every reader, but a
    /// power cut soon after may lose it (what `zstd -d`, `cp` and `tar` give). For outputs that are not state.
    pub fn commit_unsynced(mut self) -> Result<()> {
        let file = self.file.take().expect("the file is present until commit");
        drop(file);
        fs::rename(&self.tmp, &self.dest).map_err(|source| Error::WriteFile { path: self.dest.clone(), source })
    }

    /// fsync, rename over the destination, fsync the directory.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("the file is present until commit");
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::WriteFile { path, source }
        };
        file.sync_all().map_err(werr(&self.tmp))?;
        drop(file);
        // Durability: a cut before the rename leaves the old destination (or none) and a stray temp file; a cut
        // after it leaves the new file, whole, because its data was synced above.
        fs::rename(&self.tmp, &self.dest).map_err(werr(&self.dest))?;
        sync_dir(parent_dir(&self.dest)).map_err(werr(&self.dest))?;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// fsync(2) on a directory, so that a rename in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub use filecheck::kind_name;

/// Maps a refusal of `filecheck` to this crate's error, naming `path` and what was `expected` of it.
fn file_error<'a>(
    path: &'a Path,
    max_bytes: u64,
    expected: &'static str,
) -> impl FnOnce(filecheck::ReadSmall) -> Error + 'a {
    move |e| match e {
        filecheck::ReadSmall::Io(source) => Error::ReadFile { path: path.to_owned(), source },
        filecheck::ReadSmall::Type(found) => Error::FileType { path: path.to_owned(), found, expected },
        filecheck::ReadSmall::TooLarge(size_bytes) => {
            Error::FileTooLarge { path: path.to_owned(), size_bytes, max_bytes }
        }
    }
}

/// Reads a small file whole: a regular file (or a symbolic link to one) of at most `max_bytes` bytes
/// (`filecheck::read_small`: the type checked before and after the open, at most `max_bytes + 1` bytes read).
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    filecheck::read_small(path, max_bytes).map_err(file_error(
        path,
        max_bytes,
        filecheck::Accept::RegularFile.expected(),
    ))
}

/// Opens an image to be read whole (a payload, a running slot's image): a regular file or a block device, with its
/// size (`filecheck::open_sized`); readers take no more than that size. A character device (`/dev/zero`), a FIFO, a
/// socket or a directory is refused: none has a size to stop at.
pub fn open_image(path: &Path) -> Result<(File, u64)> {
    filecheck::open_sized(path).map_err(file_error(path, u64::MAX, filecheck::Accept::FileOrBlockDevice.expected()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_14_small_files_are_bounded_and_typed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        fs::write(&file, b"0123456789").expect("write");
        assert_eq!(read_bounded(&file, 10).expect("at the bound"), b"0123456789");
        assert!(matches!(read_bounded(&file, 9), Err(Error::FileTooLarge { size_bytes: 10, max_bytes: 9, .. })));
        let refused = |path: &Path, found: &str| {
            let r = read_bounded(path, 100);
            assert!(matches!(&r, Err(Error::FileType { found: f, .. }) if *f == found), "{path:?}: {r:?}");
        };
        refused(dir.path(), "directory");
        refused(Path::new("/dev/null"), "character device");
        // A symbolic link is followed, and what it points to is checked.
        let link = dir.path().join("zero.pub");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        refused(&link, "character device");
        // A FIFO is refused before it is opened, so nothing waits for a writer.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo (coreutils)");
        assert!(made.success());
        refused(&fifo, "FIFO");
        let r = read_bounded(&dir.path().join("missing"), 100);
        assert!(matches!(r, Err(Error::ReadFile { .. })), "{r:?}");
    }

    #[test]
    fn issue_14_images_have_a_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("img");
        fs::write(&file, vec![7u8; 5000]).expect("write");
        let (_, size) = open_image(&file).expect("a regular file");
        assert_eq!(size, 5000);
        for (path, found) in [(Path::new("/dev/zero"), "character device"), (dir.path(), "directory")] {
            let r = open_image(path);
            assert!(matches!(&r, Err(Error::FileType { found: f, .. }) if *f == found), "{path:?}: {r:?}");
        }
    }
}
