//! The EFI system partition: a FAT filesystem formatted and filled in pure Rust (`fatfs`) through a window onto the
//! disk file, so that building a disk needs neither mtools, nor root, nor a mount.
//!
//! It is a module of its own because it is the one place that knows FAT: the window, the FAT variant for a size, the
//! fixed timestamps that keep the partition reproducible, and the order files are written in (the boot state first,
//! so that its two blocks are contiguous and GRUB's `save_env` can rewrite them in place). A U-Boot board's boot
//! partition is written by the same [`write`]. It also reads the GRUB boot files the layout names, and checks of
//! them only what GRUB itself requires of an environment block: their content and meaning are `edge-bootctl`'s,
//! which made them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the firmware looks for the boot loader on removable media and disks without boot entries.
pub const GRUB_EFI_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// Where the standalone GRUB looks for its configuration (beside itself).
pub const GRUB_CFG_PATH: &str = "EFI/BOOT/grub.cfg";
/// The directory of the boot state copies; the committed `bootctl/grub/grub.cfg` looks for them here.
pub const STATE_DIR: &str = "EFI/edge";
/// The names of the two boot state copies, in `STATE_DIR` on the ESP and in the layout's `esp.boot_state`.
pub const STATE_FILES: [&str; 2] = ["state0.env", "state1.env"];
/// The size of a GRUB environment block: GRUB's `load_env` and `save_env` read and rewrite exactly this many bytes.
pub const ENV_BLOCK_BYTES: u64 = 1024;
/// The first line of a GRUB environment block, which GRUB checks before it reads one.
pub const ENV_BLOCK_HEADER: &[u8] = b"# GRUB Environment Block\n";
/// The largest GRUB script read: `bootctl`'s is a few KiB; a megabyte is far more than any script needs, and keeps a
/// wrong file out of memory.
pub const MAX_GRUB_CFG_BYTES: u64 = 1 << 20;
/// The FAT volume label (11 bytes, space padded).
pub const VOLUME_LABEL: [u8; 11] = *b"EDGE-ESP   ";

/// What a file on the FAT partition is made from.
#[derive(Debug)]
pub enum Content {
    /// These bytes.
    Bytes(Vec<u8>),
    /// A copy of this file.
    Copy(Source),
}

/// A file to copy onto the FAT partition, opened and checked by [`open_source`].
#[derive(Debug)]
pub struct Source {
    /// Where it is (for messages).
    pub path: PathBuf,
    /// The open file, at its start.
    pub file: File,
    /// Its size when opened: no more is copied, even if it grows.
    pub size_bytes: u64,
}

/// Opens a file the layout names to be copied onto the FAT partition (the GRUB binary, an extra file): a regular file
/// (or a symbolic link to one) of at most `max_bytes`, the partition's size, since no larger file fits. A FIFO, a
/// device or a directory is refused before it is read, so that it can neither hang the build nor fill the partition
/// with its bytes.
pub fn open_source(path: &Path, max_bytes: u64) -> Result<Source> {
    // `open_image` checks the type before the open (a FIFO is never opened) and gives the size to stop at.
    let (file, size_bytes) = image_layout::fsutil::open_image(path)?;
    let file_type = file.metadata().map_err(|source| Error::ReadFile { path: path.to_owned(), source })?.file_type();
    if !file_type.is_file() {
        let found = image_layout::fsutil::kind_name(file_type);
        return Err(Error::FileType { path: path.to_owned(), found, expected: "a regular file" });
    }
    if size_bytes > max_bytes {
        return Err(Error::FileTooLarge { path: path.to_owned(), size_bytes, max_bytes });
    }
    Ok(Source { path: path.to_owned(), file, size_bytes })
}

/// One file to write: a `/`-separated path from the partition's root, and its content.
#[derive(Debug)]
pub struct EspFile {
    /// The path on the partition.
    pub name: String,
    /// Its content.
    pub content: Content,
}

/// Reads the two boot state copies from `dir` and checks that each is a GRUB environment block: a regular file
/// exactly [`ENV_BLOCK_BYTES`] long and starting with [`ENV_BLOCK_HEADER`]. The variables in them are not looked at.
pub fn read_boot_state(dir: &Path) -> Result<[Vec<u8>; 2]> {
    let read = |name: &str| -> Result<Vec<u8>> {
        let path = dir.join(name);
        // The type and the length are checked before reading, so that a FIFO is not waited on and a wrong file (a
        // disk image, say) is not read whole; a longer copy is the wrong size, whatever the bound's error says.
        let bytes = image_layout::fsutil::read_bounded(&path, ENV_BLOCK_BYTES).map_err(|e| match Error::from(e) {
            Error::FileTooLarge { path, size_bytes, .. } => Error::StateBlockSize { path, size_bytes },
            e => e,
        })?;
        if bytes.len() as u64 != ENV_BLOCK_BYTES {
            return Err(Error::StateBlockSize { path, size_bytes: bytes.len() as u64 });
        }
        if !bytes.starts_with(ENV_BLOCK_HEADER) {
            return Err(Error::StateBlockHeader { path });
        }
        Ok(bytes)
    };
    Ok([read(STATE_FILES[0])?, read(STATE_FILES[1])?])
}

/// Reads the GRUB script, a regular file of at most [`MAX_GRUB_CFG_BYTES`], refusing an empty one (GRUB would boot
/// to its prompt).
pub fn read_grub_cfg(path: &Path) -> Result<Vec<u8>> {
    let bytes = image_layout::fsutil::read_bounded(path, MAX_GRUB_CFG_BYTES)?;
    if bytes.is_empty() {
        return Err(Error::GrubCfgEmpty { path: path.to_owned() });
    }
    Ok(bytes)
}

/// The FAT variant of a partition of `len` bytes: FAT12 below 8 MiB, FAT16 from 8 MiB (the ESP's smallest size, so
/// the ESP is always FAT16). fatfs 0.3.6 writes a bad `..` entry in first-level directories on FAT32 and leaves its
/// free-cluster count unset, which fsck.fat reports, so FAT32 is never used: FAT16 holds up to 1 GiB
/// ([`crate::disk::layout::ESP_BYTES`]); below 8 MiB fatfs's FAT16 clusters would be too few, and its FAT12 ones fit.
pub fn fat_type_for(len: u64) -> fatfs::FatType {
    if len < 8 << 20 {
        fatfs::FatType::Fat12
    } else {
        fatfs::FatType::Fat16
    }
}

/// The name of a FAT variant, for the report.
pub fn fat_type_name(t: fatfs::FatType) -> &'static str {
    match t {
        fatfs::FatType::Fat12 => "fat12",
        fatfs::FatType::Fat16 => "fat16",
        fatfs::FatType::Fat32 => "fat32",
    }
}

/// Every timestamp on the FAT: 1980-01-01 00:00:00, the FAT epoch, so that the same inputs give the same bytes.
#[derive(Debug)]
struct FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date { year: 1980, month: 1, day: 1 }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime { date: self.get_current_date(), time: fatfs::Time { hour: 0, min: 0, sec: 0, millis: 0 } }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

/// A `Read + Write + Seek` view of `len` bytes of a file from `start`, with positioned I/O: what fatfs formats and
/// fills. Writes past the end fail rather than spill into the next partition.
struct Window<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.len.saturating_sub(self.pos) as usize);
        let n = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write past the end of the partition"));
        }
        let n = self.file.write_at(buf, self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        let pos =
            pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the partition"))?;
        self.pos = pos;
        Ok(pos)
    }
}

/// A FAT partition to format.
#[derive(Debug, Clone)]
pub struct Volume {
    /// The partition's name, for messages: `edge-esp` or `edge-boot`.
    pub partition: &'static str,
    /// Its first byte on the disk.
    pub start: u64,
    /// Its size, which decides the FAT variant ([`fat_type_for`]).
    pub len: u64,
    /// The FAT volume id.
    pub volume_id: u32,
    /// The FAT volume label (11 bytes, space padded).
    pub label: [u8; 11],
}

/// Formats the partition `v` of `disk` as FAT, writes `files` in order (creating their directories), and returns the
/// FAT variant. `disk_path` names the disk in errors. The partition must be zeros.
pub fn write(disk: &File, disk_path: &Path, v: &Volume, files: &[EspFile]) -> Result<fatfs::FatType> {
    let err = |file: &str| {
        let file = file.to_owned();
        move |source| Error::WriteFat { partition: v.partition, file, path: disk_path.to_owned(), source }
    };
    let mut window = Window { file: disk, start: v.start, len: v.len, pos: 0 };
    let options =
        fatfs::FormatVolumeOptions::new().fat_type(fat_type_for(v.len)).volume_id(v.volume_id).volume_label(v.label);
    fatfs::format_volume(&mut window, options).map_err(err("(format)"))?;
    window.pos = 0;
    let fs =
        fatfs::FileSystem::new(window, fatfs::FsOptions::new().time_provider(&FIXED_TIME)).map_err(err("(mount)"))?;
    let fat_type = fs.fat_type();
    for f in files {
        // fatfs makes one directory level per call; the names were checked when the layout was read.
        let (parents, base) = f.name.rsplit_once('/').unwrap_or(("", &f.name));
        let mut dir = fs.root_dir();
        for part in parents.split('/').filter(|p| !p.is_empty()) {
            dir = dir.create_dir(part).map_err(err(&f.name))?;
        }
        let mut out = dir.create_file(base).map_err(err(&f.name))?;
        match &f.content {
            Content::Bytes(b) => out.write_all(b).map_err(err(&f.name))?,
            Content::Copy(src) => {
                let rerr = |source| Error::ReadFile { path: src.path.clone(), source };
                let mut input = (&src.file).take(src.size_bytes);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = input.read(&mut buf).map_err(rerr)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n]).map_err(err(&f.name))?;
                }
            }
        }
        out.flush().map_err(err(&f.name))?;
    }
    fs.unmount().map_err(err("(unmount)"))?;
    Ok(fat_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `copy0` as `state0.env` and a good block as `state1.env`, then reads both back.
    fn check(copy0: &[u8], want: std::result::Result<(), &str>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut good = ENV_BLOCK_HEADER.to_vec();
        good.resize(ENV_BLOCK_BYTES as usize, b'#');
        std::fs::write(dir.path().join("state0.env"), copy0).expect("state0");
        std::fs::write(dir.path().join("state1.env"), &good).expect("state1");
        let got = read_boot_state(dir.path()).map(|[a, b]| assert_eq!((a.as_slice(), b), (copy0, good)));
        let got = got.map_err(|e| match e {
            Error::StateBlockSize { path, .. } if path.ends_with("state0.env") => "size",
            Error::StateBlockHeader { path } if path.ends_with("state0.env") => "header",
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(copy0));
    }

    fn block(header: &[u8], len: usize) -> Vec<u8> {
        let mut b = header.to_vec();
        b.resize(len, b'#');
        b
    }

    #[test]
    fn state_copies_must_be_grub_environment_blocks() {
        check(&block(ENV_BLOCK_HEADER, 1024), Ok(()));
        check(&block(b"# GRUB Environment Block\nedge_begin=0\n", 1024), Ok(()));
        check(&block(ENV_BLOCK_HEADER, 1023), Err("size"));
        check(&block(ENV_BLOCK_HEADER, 1025), Err("size"));
        check(&block(ENV_BLOCK_HEADER, 512), Err("size"));
        check(b"", Err("size"));
        check(&block(b"# GRUB Environment Block\r\n", 1024), Err("header"));
        check(&block(b"# grub environment block\n", 1024), Err("header"));
        check(&block(b"", 1024), Err("header"));
        check(&[0; 1024], Err("header"));
    }

    #[test]
    fn an_empty_grub_script_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("grub.cfg");
        std::fs::write(&path, "").expect("write");
        assert!(matches!(read_grub_cfg(&path), Err(Error::GrubCfgEmpty { .. })));
        std::fs::write(&path, "set timeout=0\n").expect("write");
        assert_eq!(read_grub_cfg(&path).expect("read"), b"set timeout=0\n");
    }
}
