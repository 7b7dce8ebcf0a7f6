//! A U-Boot environment on its device or devices: reading the current copy and saving into the other one, with a
//! sync, as U-Boot's `env save` and `fw_setenv` do. It is apart from the codec because it owns the I/O and the
//! order of writes that makes a save survive a power cut.

use std::io;
use std::path::{Path, PathBuf};

use super::codec::{check_len, decode_copies, decode_single, encode_redundant, encode_single, valid_flags};
use super::codec::{Env, Header, CRC_LEN};
use super::config::{Config, ConfigLine};
use super::copies::{select, CopyChoice, CopyId, FlagScheme, FLAG_ACTIVE, FLAG_OBSOLETE};
use super::error::{Error, Result};
use crate::blockdev::{refused_kind, Accept, Access, BlockDevice, FileDevice};

/// Where one copy lives: a device, its path (for messages) and the byte offset of the copy.
#[derive(Debug)]
pub struct CopyAt<D> {
    /// The device.
    pub device: D,
    /// Its path.
    pub path: PathBuf,
    /// Where the copy starts.
    pub offset: u64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The copy written (always the primary for a single environment).
    pub copy: CopyId,
    /// The flags it was given; `None` for a single environment.
    pub flags: Option<u8>,
}

/// A U-Boot environment on its device or devices: one copy, or two with a flag scheme.
#[derive(Debug)]
pub struct EnvStore<D> {
    copies: Vec<CopyAt<D>>,
    size: usize,
    scheme: FlagScheme,
}

impl<D: BlockDevice> EnvStore<D> {
    /// A single environment of `size` bytes.
    pub fn single(copy: CopyAt<D>, size: usize) -> EnvStore<D> {
        EnvStore { copies: vec![copy], size, scheme: FlagScheme::Incremental }
    }

    /// A redundant environment of two copies of `size` bytes each.
    pub fn redundant(primary: CopyAt<D>, redundant: CopyAt<D>, size: usize, scheme: FlagScheme) -> EnvStore<D> {
        EnvStore { copies: vec![primary, redundant], size, scheme }
    }

    /// Whether there are two copies.
    pub fn is_redundant(&self) -> bool {
        self.copies.len() == 2
    }

    /// The size of each copy.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The flag scheme (meaningful for a redundant environment).
    pub fn scheme(&self) -> FlagScheme {
        self.scheme
    }

    fn read_copy(&mut self, idx: usize) -> Result<Vec<u8>> {
        let c = &mut self.copies[idx];
        let mut buf = vec![0; self.size];
        c.device.read_at(c.offset, &mut buf).map_err(|source| Error::ReadDevice {
            path: c.path.clone(),
            offset: c.offset,
            source,
        })?;
        Ok(buf)
    }

    /// One copy of a redundant environment; `None` when its file or device ends before the copy does, which makes
    /// it as bad as a copy with a bad CRC: the other copy decides, and the next write goes to this one (and makes
    /// a file long enough to hold it).
    fn read_redundant_copy(&mut self, idx: usize) -> Result<Option<Vec<u8>>> {
        match self.read_copy(idx) {
            Ok(b) => Ok(Some(b)),
            Err(Error::ReadDevice { source, .. }) if source.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where copy `idx` is: its device or file, and its offset.
    pub fn copy_at(&self, idx: usize) -> (&Path, u64) {
        let c = &self.copies[idx];
        (&c.path, c.offset)
    }

    /// Whether the file or device holds copy `idx`: `Some(true)` whole, `Some(false)` cut short by its end,
    /// `None` when it ends before the copy starts.
    pub fn copy_extent(&mut self, idx: usize) -> Result<Option<bool>> {
        let size = self.size as u64;
        let c = &mut self.copies[idx];
        let mut probe = |offset: u64| match c.device.read_at(offset, &mut [0u8]) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(source) => Err(Error::ReadDevice { path: c.path.clone(), offset: c.offset, source }),
        };
        if !probe(c.offset)? {
            return Ok(None);
        }
        Ok(Some(probe(c.offset + size.saturating_sub(1))?))
    }

    fn write_copy(&mut self, idx: usize, at: u64, bytes: &[u8]) -> Result<()> {
        let c = &mut self.copies[idx];
        let offset = c.offset + at;
        c.device.write_at(offset, bytes).map_err(|source| Error::WriteDevice {
            path: c.path.clone(),
            offset,
            source,
        })?;
        c.device.sync().map_err(|source| Error::SyncDevice { path: c.path.clone(), source })
    }

    /// Reads the environment; for a redundant one, also which copy was read and the state of the other.
    pub fn read(&mut self) -> Result<(Env, Option<CopyChoice>)> {
        if !self.is_redundant() {
            let first = self.read_copy(0)?;
            return Ok((decode_single(&first)?, None));
        }
        let first = self.read_redundant_copy(0)?;
        let second = self.read_redundant_copy(1)?;
        check_len(self.size, Header::Redundant { flags: 0 })?;
        let (env, choice) = decode_copies([first.as_deref(), second.as_deref()], self.scheme)?;
        Ok((env, Some(choice)))
    }

    /// Writes `env` as U-Boot's `env save` and `fw_setenv` do, and syncs it.
    ///
    /// A redundant environment gets the copy that is not current, with the next flags, so the current copy is
    /// never touched before the new one is whole; with the boolean scheme the replaced copy's flags are then set
    /// obsolete. When neither copy is good, the primary copy is written with [`FLAG_ACTIVE`].
    pub fn write(&mut self, env: &Env) -> Result<Written> {
        if !self.is_redundant() {
            let bytes = encode_single(env, self.size)?;
            // Durability: a single copy has no fallback. A cut before the sync completes can leave a torn block
            // that fails its CRC, and U-Boot then boots with its built-in default environment; the boot state
            // belongs in a redundant environment.
            self.write_copy(0, 0, &bytes)?;
            return Ok(Written { copy: CopyId::Primary, flags: None });
        }
        // Encoded first, so that an environment too large is refused before any I/O; the flags are not covered
        // by the CRC and are set once the current copy is known.
        let mut bytes = encode_redundant(env, self.size, 0)?;
        let first = self.read_redundant_copy(0)?;
        let second = self.read_redundant_copy(1)?;
        let current =
            select(first.as_deref().and_then(valid_flags), second.as_deref().and_then(valid_flags), self.scheme);
        let (target, flags) = match current {
            Some((copy, flags)) => (copy.other(), self.scheme.next(flags)),
            None => (CopyId::Primary, FLAG_ACTIVE),
        };
        bytes[CRC_LEN] = flags;
        // Durability: a cut before this write is synced leaves the target torn (bad CRC) or whole; the current copy
        // is untouched either way, so a reader gets the old environment or, once the target is whole, the new one.
        self.write_copy(target.index(), 0, &bytes)?;
        if let (FlagScheme::Boolean, Some((old, _))) = (self.scheme, current) {
            // Durability: both copies are whole and active here; U-Boot breaks the tie for the primary copy, so a
            // cut before this line reads the old environment if the new one went to the redundant copy.
            self.write_copy(old.index(), CRC_LEN as u64, &[FLAG_OBSOLETE])?;
        }
        Ok(Written { copy: target, flags: Some(flags) })
    }
}

impl EnvStore<FileDevice> {
    /// Opens the environment `config` describes, with the incremental flag scheme `fw_env` and libubootenv use for
    /// files and block devices. An offset below zero counts from the end of the device, as libubootenv does.
    pub fn open(config: &Config, access: Access) -> Result<EnvStore<FileDevice>> {
        let open = |line: &ConfigLine| -> Result<CopyAt<FileDevice>> {
            let path = line.device.clone();
            let s = path.to_string_lossy();
            if s.starts_with("/dev/mtd") || s.starts_with("/dev/ubi") {
                return Err(Error::UnsupportedDevice { path });
            }
            // Checked before the open: opening a FIFO blocks until a writer comes, and a character device has no
            // end to count an offset from.
            let kind = refused_kind(&path, Accept::FileOrBlockDevice)
                .map_err(|source| Error::OpenDevice { path: path.clone(), source })?;
            if let Some(found) = kind {
                return Err(Error::DeviceType { path, found });
            }
            let mut device =
                FileDevice::open(&path, access).map_err(|source| Error::OpenDevice { path: path.clone(), source })?;
            let offset = match u64::try_from(line.offset) {
                Ok(offset) => offset,
                Err(_) => {
                    let device_size =
                        device.size().map_err(|source| Error::DeviceSize { path: path.clone(), source })?;
                    device_size.checked_sub(line.offset.unsigned_abs()).ok_or_else(|| Error::OffsetOutOfRange {
                        path: path.clone(),
                        offset: line.offset,
                        device_size,
                    })?
                }
            };
            Ok(CopyAt { device, path, offset })
        };
        let primary = open(&config.primary)?;
        Ok(match &config.redundant {
            None => EnvStore::single(primary, config.primary.env_size),
            Some(r) => EnvStore::redundant(primary, open(r)?, config.primary.env_size, FlagScheme::Incremental),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uboot::test_env::env;
    use crate::uboot::{decode_redundant, OtherCopy};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// Memory shared by the copies' devices, with a power cut after a budget of bytes written.
    #[derive(Clone)]
    struct Mem {
        bytes: Rc<RefCell<Vec<u8>>>,
        budget: Rc<Cell<Option<usize>>>,
        n_syncs: Rc<Cell<usize>>,
    }

    impl Mem {
        fn new(bytes: Vec<u8>) -> Mem {
            Mem { bytes: Rc::new(RefCell::new(bytes)), budget: Rc::default(), n_syncs: Rc::default() }
        }
    }

    impl BlockDevice for Mem {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let o = usize::try_from(offset).expect("small offset");
            let b = self.bytes.borrow();
            buf.copy_from_slice(b.get(o..o + buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?);
            Ok(())
        }

        fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
            let o = usize::try_from(offset).expect("small offset");
            let n = self.budget.get().map_or(buf.len(), |left| left.min(buf.len()));
            self.budget.set(self.budget.get().map(|left| left - n));
            self.bytes.borrow_mut()[o..o + n].copy_from_slice(&buf[..n]);
            if n < buf.len() {
                return Err(io::Error::other("power cut"));
            }
            Ok(())
        }

        fn sync(&mut self) -> io::Result<()> {
            self.n_syncs.set(self.n_syncs.get() + 1);
            Ok(())
        }
    }

    fn store(mem: &Mem, size: usize, scheme: FlagScheme) -> EnvStore<Mem> {
        let at = |offset: usize| CopyAt { device: mem.clone(), path: PathBuf::from("mem"), offset: offset as u64 };
        EnvStore::redundant(at(0), at(size), size, scheme)
    }

    #[test]
    fn the_writer_alternates_copies_and_bumps_the_flags() {
        let size = 256;
        let check = |scheme: FlagScheme, start: [Option<u8>; 2], expected: &[(CopyId, u8, OtherCopy)]| {
            let mut bytes = Vec::new();
            for flags in start {
                match flags {
                    Some(f) => bytes.extend(encode_redundant(&env(&[("gen", "start")]), size, f).expect("fits")),
                    None => bytes.extend(vec![0xff; size]),
                }
            }
            let mem = Mem::new(bytes);
            let mut s = store(&mem, size, scheme);
            for (i, &(copy, flags, other)) in expected.iter().enumerate() {
                let e = env(&[("gen", &i.to_string())]);
                let syncs = mem.n_syncs.get();
                assert_eq!(s.write(&e).expect("writes"), Written { copy, flags: Some(flags) }, "{scheme:?} write {i}");
                assert!(mem.n_syncs.get() > syncs, "every write is synced");
                let (back, choice) = s.read().expect("reads");
                assert_eq!(back, e);
                assert_eq!(choice, Some(CopyChoice { current: copy, flags, other }), "{scheme:?} write {i}");
            }
        };
        use CopyId::{Primary as P, Redundant as R};
        use FlagScheme::{Boolean, Incremental};
        use OtherCopy::{BadCrc, Valid};
        let v = |flags| Valid { flags };
        check(Incremental, [None, None], &[(P, 1, BadCrc), (R, 2, v(1)), (P, 3, v(2))]);
        check(Incremental, [Some(1), Some(1)], &[(R, 2, v(1)), (P, 3, v(2))]);
        check(Incremental, [Some(254), None], &[(R, 255, v(254)), (P, 0, v(255)), (R, 1, v(0))]);
        check(Incremental, [Some(3), Some(255)], &[(P, 0, v(255)), (R, 1, v(0))]);
        // The boolean scheme marks the replaced copy obsolete after the new one is whole.
        check(Boolean, [Some(1), Some(1)], &[(R, 1, v(0)), (P, 1, v(0)), (R, 1, v(0))]);
        check(Boolean, [None, Some(1)], &[(P, 1, v(0))]);
    }

    #[test]
    fn a_single_environment_is_written_in_place() {
        let mem = Mem::new(vec![0; 128]);
        let mut s = EnvStore::single(CopyAt { device: mem.clone(), path: PathBuf::from("mem"), offset: 64 }, 64);
        assert!(matches!(s.read(), Err(Error::BadCrc { .. })));
        let e = env(&[("a", "1")]);
        assert_eq!(s.write(&e).expect("writes"), Written { copy: CopyId::Primary, flags: None });
        assert_eq!(s.read().expect("reads"), (e.clone(), None));
        assert_eq!(mem.bytes.borrow()[64..], encode_single(&e, 64).expect("fits")[..]);
        assert!(mem.bytes.borrow()[..64].iter().all(|&c| c == 0));
        let big = env(&[("a", &"x".repeat(64))]);
        assert!(matches!(s.write(&big), Err(Error::TooLarge { .. })));
        let mut short = EnvStore::single(CopyAt { device: mem, path: PathBuf::from("mem"), offset: 100 }, 64);
        assert!(matches!(short.read(), Err(Error::ReadDevice { offset: 100, .. })));
    }

    /// An environment whose data spans most of a 0x2000-byte copy, different in every variable for each `generation`.
    fn big_env(generation: usize) -> Env {
        let mut e = Env::new();
        for i in 0..60 {
            e.set(&format!("var{i:02}"), &format!("{generation}-{}", "v".repeat(90 + generation)))
                .expect("valid variable");
        }
        e
    }

    /// A power cut partway through a redundant save, from a range of starting flags and with both schemes: a read
    /// afterwards gives the old environment or the new one, never an error or a mix, and the next save works. The
    /// cut falls after every byte of the first 64 (the header and the first entries), after every byte of the last
    /// dozen before each 512-byte sector boundary and at the boundary itself, after every 7th byte elsewhere, and,
    /// in the boolean scheme, before the old copy's flags are set obsolete.
    #[test]
    fn a_torn_write_leaves_the_old_or_the_new_environment() {
        let size = 0x2000;
        let check = |scheme: FlagScheme, flags: [u8; 2]| {
            let mut start = encode_redundant(&big_env(0), size, flags[0]).expect("fits");
            start.extend(encode_redundant(&big_env(1), size, flags[1]).expect("fits"));
            let (old, _) = decode_redundant(&start[..size], &start[size..], scheme).expect("start is whole");
            let new = big_env(2);
            let mut cut = 0;
            loop {
                let mem = Mem::new(start.clone());
                mem.budget.set(Some(cut));
                let r = store(&mem, size, scheme).write(&new);
                let bytes = mem.bytes.borrow().clone();
                let (got, _) = decode_redundant(&bytes[..size], &bytes[size..], scheme)
                    .unwrap_or_else(|e| panic!("{scheme:?} {flags:?}: cut after {cut} bytes: {e}"));
                assert!(got == old || got == new, "{scheme:?} {flags:?}: cut after {cut} bytes reads a mix");
                if r.is_ok() {
                    assert_eq!(got, new, "{scheme:?} {flags:?}: a finished save reads the new environment");
                    break;
                }
                assert!(matches!(r, Err(Error::WriteDevice { .. })));
                // After the power comes back, the next save lands whole.
                mem.budget.set(None);
                let later = big_env(3);
                let mut s = store(&mem, size, scheme);
                s.write(&later).expect("writes");
                assert_eq!(s.read().expect("reads").0, later);
                cut += if cut < 64 || cut % 512 >= 500 { 1 } else { 7 };
            }
            assert!(cut >= size, "the save was cut at every point");
        };
        check(FlagScheme::Incremental, [1, 2]);
        check(FlagScheme::Incremental, [2, 1]);
        check(FlagScheme::Incremental, [254, 255]);
        check(FlagScheme::Incremental, [255, 0]);
        check(FlagScheme::Incremental, [0, 255]);
        check(FlagScheme::Boolean, [1, 0]);
        check(FlagScheme::Boolean, [0, 1]);
        check(FlagScheme::Boolean, [1, 1]);
    }

    /// A redundant environment whose file ends before its second copy (cut off, or never written) is read from the
    /// first copy, reports the second as missing, and the next write, which goes to the second, makes the file
    /// long enough to hold it.
    #[test]
    fn issue_14_a_copy_past_the_end_of_its_file_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("env.bin");
        let e = env(&[("edge_active", "A")]);
        std::fs::write(&file, encode_redundant(&e, 64, 1).expect("fits")).expect("copy 0 only");
        let line =
            |offset: i64| ConfigLine { device: file.clone(), offset, env_size: 64, sector_size: None, n_sectors: None };
        let config = Config { primary: line(0), redundant: Some(line(64)) };
        let mut store = EnvStore::open(&config, Access::ReadWrite).expect("open");
        let (read, choice) = store.read().expect("copy 0 is whole");
        assert_eq!(read, e);
        assert_eq!(choice.map(|c| (c.current, c.other)), Some((CopyId::Primary, OtherCopy::BadCrc)));
        assert_eq!((store.copy_extent(0).expect("probe"), store.copy_extent(1).expect("probe")), (Some(true), None));
        let next = env(&[("edge_active", "B")]);
        assert_eq!(store.write(&next).expect("write").copy, CopyId::Redundant);
        assert_eq!(std::fs::metadata(&file).expect("stat").len(), 128);
        assert_eq!(store.read().expect("read").0, next);
        // A file that ends inside the second copy: that copy is cut short, and the first is still read.
        std::fs::OpenOptions::new().write(true).open(&file).expect("open").set_len(100).expect("cut");
        let mut store = EnvStore::open(&config, Access::ReadOnly).expect("open");
        assert_eq!(store.copy_extent(1).expect("probe"), Some(false));
        assert_eq!(store.read().expect("copy 0 is whole").0, e);
    }

    /// The environment's device and `fw_env.config` are checked before they are opened: a FIFO or a character
    /// device is refused, naming it, instead of blocking the open or reading without end.
    #[test]
    fn issue_14_devices_and_configs_that_are_not_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        for (device, found) in [(Path::new("/dev/null"), "character device"), (&*fifo, "FIFO")] {
            let line = |offset: i64| ConfigLine {
                device: device.to_owned(),
                offset,
                env_size: 64,
                sector_size: None,
                n_sectors: None,
            };
            let config = Config { primary: line(0), redundant: Some(line(64)) };
            let r = EnvStore::open(&config, Access::ReadOnly);
            assert!(matches!(&r, Err(Error::DeviceType { found: f, .. }) if *f == found), "{device:?}: {r:?}");
            let r = Config::load(device);
            assert!(matches!(&r, Err(Error::ConfigType { found: f, .. }) if *f == found), "{device:?}: {r:?}");
        }
        let big = dir.path().join("fw_env.config");
        std::fs::File::create(&big).expect("create").set_len(1 << 20).expect("grow");
        assert!(matches!(Config::load(&big), Err(Error::ConfigTooLarge { size_bytes: 1_048_576, .. })));
    }
}
