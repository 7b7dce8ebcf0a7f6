//! Disk images for a GRUB check: a FAT file system holding GRUB, the grub.cfg under test and any other files.
//!
//! Images are made with mtools, so no root, loop device or mount is needed, and files are read back the same way
//! after GRUB wrote them. Two layouts exist: [`Layout::Gpt`], the production shape (a GPT disk whose only partition is
//! the ESP, GRUB sees it as `hd0,gpt1`), and [`Layout::Superfloppy`] (FAT over the whole disk, GRUB sees `hd0`).
//! OVMF boots both and GRUB's `save_env` writes through both.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use platform::gpt::{self, Guid, Partition};

use crate::error::{Error, Result};
use crate::grub::{GRUB_CFG_PATH, GRUB_EFI_PATH};
use crate::tools::{mtools, run, Tools};
use crate::Harness;

/// First LBA of the ESP: 1 MiB, the usual alignment.
const ESP_FIRST_LBA: u64 = 2048;
/// The disk GUID of every harness image: fixed, so that the same inputs give the same image.
const DISK_GUID: Guid =
    Guid::from_fields(0x6564_6765, 0x7165, 0x4d75, [0x80, 0x00, 0x64, 0x69, 0x73, 0x6b, 0x00, 0x01]);
/// The unique GUID of every harness ESP.
const ESP_GUID: Guid = Guid::from_fields(0x6564_6765, 0x7165, 0x4d75, [0x80, 0x00, 0x65, 0x73, 0x70, 0x00, 0x00, 0x01]);

/// Writes a GPT whose only partition is the ESP, from [`ESP_FIRST_LBA`] to the last usable sector, onto `file`, a
/// disk of `total_sectors`; returns the ESP's entry.
fn write_gpt(file: &std::fs::File, path: &Path, total_sectors: u64) -> Result<Partition> {
    use std::os::unix::fs::FileExt;
    let esp = Partition {
        type_guid: gpt::ESP_TYPE,
        unique_guid: ESP_GUID,
        first_lba: ESP_FIRST_LBA,
        last_lba: gpt::last_usable_lba(total_sectors),
        name: "EFI System".to_owned(),
    };
    let table = gpt::encode(DISK_GUID, total_sectors, std::slice::from_ref(&esp))
        .expect("an image of at least MIN_SIZE_MIB holds the table and the ESP");
    for (bytes, lba) in [(&table.head, 0), (&table.tail, table.tail_lba)] {
        file.write_all_at(bytes, lba * gpt::SECTOR_BYTES)
            .map_err(|source| Error::WriteFile { path: path.to_owned(), source })?;
    }
    Ok(esp)
}

/// Smallest image size accepted, in MiB.
pub const MIN_SIZE_MIB: u32 = 8;
/// Largest image size accepted, in MiB.
pub const MAX_SIZE_MIB: u32 = 1024;

/// How the FAT file system sits on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A GPT disk with one EFI system partition from 1 MiB to the end, as the production disk has.
    Gpt,
    /// A FAT file system over the whole disk, with no partition table.
    Superfloppy,
}

/// What to put on a disk image: the grub.cfg under test and other files, built with [`GrubImage::build`].
#[derive(Debug, Clone)]
pub struct GrubImage {
    grub_cfg: String,
    files: Vec<(String, Vec<u8>)>,
    layout: Layout,
    size_mib: u32,
}

impl GrubImage {
    /// An image whose GRUB runs `grub_cfg`; a GPT layout of 32 MiB unless changed.
    pub fn new(grub_cfg: impl Into<String>) -> GrubImage {
        GrubImage { grub_cfg: grub_cfg.into(), files: Vec::new(), layout: Layout::Gpt, size_mib: 32 }
    }

    /// Adds a file at `name`, a `/`-separated path relative to the file system root such as `env/a.env`.
    ///
    /// Files are copied in the order they are added, each onto a fresh file system, so each is contiguous.
    pub fn file(mut self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> GrubImage {
        self.files.push((name.into(), bytes.into()));
        self
    }

    /// Chooses the layout.
    pub fn layout(mut self, layout: Layout) -> GrubImage {
        self.layout = layout;
        self
    }

    /// Chooses the disk size in MiB ([`MIN_SIZE_MIB`]..=[`MAX_SIZE_MIB`]).
    pub fn size_mib(mut self, size_mib: u32) -> GrubImage {
        self.size_mib = size_mib;
        self
    }

    /// Writes the disk image to `path` (replacing any file there) with the harness's GRUB binary.
    pub fn build(&self, harness: &Harness, path: &Path) -> Result<DiskImage> {
        if !(MIN_SIZE_MIB..=MAX_SIZE_MIB).contains(&self.size_mib) {
            return Err(Error::ImageSize { size_mib: self.size_mib });
        }
        let mut seen = vec![GRUB_EFI_PATH.to_owned(), GRUB_CFG_PATH.to_owned()];
        for (name, _) in &self.files {
            check_name(name)?;
            if seen.iter().any(|other| other.eq_ignore_ascii_case(name)) {
                return Err(Error::BadName {
                    name: name.clone(),
                    reason: "a name not already on the image (FAT names ignore case)",
                });
            }
            seen.push(name.clone());
        }

        let total_sectors = u64::from(self.size_mib) * 1024 * 1024 / gpt::SECTOR_BYTES;
        let file = std::fs::File::create(path).map_err(|source| Error::WriteFile { path: path.to_owned(), source })?;
        file.set_len(total_sectors * gpt::SECTOR_BYTES)
            .map_err(|source| Error::WriteFile { path: path.to_owned(), source })?;
        let (fs_offset, fs_sectors) = match self.layout {
            Layout::Gpt => {
                let esp = write_gpt(&file, path, total_sectors)?;
                (esp.first_lba * gpt::SECTOR_BYTES, esp.last_lba - esp.first_lba + 1)
            }
            Layout::Superfloppy => (0, total_sectors),
        };
        file.sync_all().map_err(|source| Error::WriteFile { path: path.to_owned(), source })?;
        drop(file);

        let image = DiskImage { path: path.to_owned(), fs_offset, layout: self.layout, tools: harness.tools_arc() };
        // A fixed volume serial number keeps images of the same inputs alike.
        run(mtools(&image.tools.mformat, &image.mtools_target())
            .args(["-T", &fs_sectors.to_string(), "-H", &(fs_offset / gpt::SECTOR_BYTES).to_string()])
            .args(["-v", "EDGE-ESP", "-N", "65646765", "::"]))?;
        image.copy_in(harness.efi_path(), GRUB_EFI_PATH)?;
        image.write_file(GRUB_CFG_PATH, self.grub_cfg.as_bytes())?;
        for (name, bytes) in &self.files {
            image.write_file(name, bytes)?;
        }
        Ok(image)
    }
}

/// Accepts `a/b.c`-style relative names: no empty, `.` or `..` component, no backslash, colon or leading slash.
fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.contains(['\\', ':', '\0'])
        || name.split('/').any(|component| component.is_empty() || component == "." || component == "..");
    if bad {
        return Err(Error::BadName { name: name.to_owned(), reason: "a relative path like env/a.env" });
    }
    Ok(())
}

/// A disk image on the host, built by [`GrubImage::build`]; its files can be read and changed between boots.
#[derive(Debug, Clone)]
pub struct DiskImage {
    path: PathBuf,
    fs_offset: u64,
    layout: Layout,
    tools: Arc<Tools>,
}

impl DiskImage {
    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout it was built with.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Byte offset of the FAT file system in the image.
    pub fn fs_offset(&self) -> u64 {
        self.fs_offset
    }

    /// The contents of the file at `name` (as in [`GrubImage::file`]).
    pub fn read_file(&self, name: &str) -> Result<Vec<u8>> {
        check_name(name)?;
        let output = run(mtools(&self.tools.mcopy, &self.mtools_target()).arg(format!("::/{name}")).arg("-"))?;
        Ok(output.stdout)
    }

    /// Creates or replaces the file at `name`, creating its directories; a replaced file may move on the disk.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        // The bytes go through a file beside the image, which mcopy then copies in.
        let dir = self.path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let scratch =
            tempfile::NamedTempFile::new_in(dir).map_err(|source| Error::WriteFile { path: dir.to_owned(), source })?;
        std::fs::write(scratch.path(), bytes)
            .map_err(|source| Error::WriteFile { path: scratch.path().to_owned(), source })?;
        self.copy_in(scratch.path(), name)
    }

    /// Copies the host file `from` to `name`, creating its directories and replacing any file there.
    pub fn copy_in(&self, from: &Path, name: &str) -> Result<()> {
        check_name(name)?;
        let mut dir = String::new();
        let components: Vec<&str> = name.split('/').collect();
        for component in &components[..components.len() - 1] {
            dir.push('/');
            dir.push_str(component);
            if !self.exists(&dir)? {
                run(mtools(&self.tools.mmd, &self.mtools_target()).arg(format!("::{dir}")))?;
            }
        }
        // `-D o`: overwrite on a name clash instead of prompting.
        run(mtools(&self.tools.mcopy, &self.mtools_target())
            .args(["-o", "-D", "o"])
            .arg(from)
            .arg(format!("::/{name}")))?;
        Ok(())
    }

    /// Deletes the file at `name`.
    pub fn delete_file(&self, name: &str) -> Result<()> {
        check_name(name)?;
        run(mtools(&self.tools.mdel, &self.mtools_target()).arg(format!("::/{name}")))?;
        Ok(())
    }

    /// The runs of clusters holding the file at `name`, as `(first, last)` pairs in file order: one run when the file
    /// is contiguous.
    pub fn clusters(&self, name: &str) -> Result<Vec<(u32, u32)>> {
        check_name(name)?;
        let output = run(mtools(&self.tools.mshowfat, &self.mtools_target()).arg(format!("::/{name}")))?;
        Ok(parse_cluster_runs(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Whether `dir` (absolute inside the file system, such as `/env`) exists: `mdir` fails on a missing path.
    fn exists(&self, dir: &str) -> Result<bool> {
        let mut cmd = mtools(&self.tools.mdir, &self.mtools_target());
        cmd.arg(format!("::{dir}"));
        let command = crate::tools::describe(&cmd);
        let status = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|source| Error::Spawn { command, source })?;
        Ok(status.success())
    }

    /// The `-i` argument of mtools: the image path, with `@@offset` when the file system starts inside it.
    fn mtools_target(&self) -> OsString {
        let mut target = self.path.clone().into_os_string();
        if self.fs_offset != 0 {
            target.push(format!("@@{}", self.fs_offset));
        }
        target
    }
}

/// Parses `mshowfat` output such as `::/env/a.env <3-4> <9-10>` into cluster runs.
fn parse_cluster_runs(text: &str) -> Vec<(u32, u32)> {
    text.split('<')
        .skip(1)
        .filter_map(|part| {
            let run = part.split('>').next()?;
            let (first, last) = run.split_once('-').unwrap_or((run, run));
            Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a.env", "env/a.env", "EFI/edge/state0.env"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "/a.env", "env//a.env", "env/", "../a", "a/./b", "a\\b", "c:a"] {
            assert!(matches!(check_name(bad), Err(Error::BadName { .. })), "{bad}");
        }
    }

    #[test]
    fn cluster_runs() {
        assert_eq!(parse_cluster_runs("::/env/a.env <3-4>\n"), vec![(3, 4)]);
        assert_eq!(parse_cluster_runs("::/x <3-3> <9-10>\n"), vec![(3, 3), (9, 10)]);
        assert_eq!(parse_cluster_runs("::/x <7>\n"), vec![(7, 7)]);
    }
}
