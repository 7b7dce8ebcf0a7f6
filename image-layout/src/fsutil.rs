//! The one write-temp, fsync, rename, fsync-directory sequence, so that an output file is either whole or absent.

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
