//! The boot state in two GRUB environment blocks, safe against a torn write; docs/boot-state.md, "Two copies".
//!
//! Each copy is a whole 1024-byte GRUB block with a fixed layout: every variable has a fixed width, so GRUB's
//! `save_env`, which rewrites a block in place, never moves a byte, and any mix of an old and a new copy at sector
//! boundaries still parses. The first variable is `edge_begin=G` and the block's last line is `edge_end=G`, padded
//! by `edge_fill` so that it ends exactly at byte 1024: a copy is whole when both markers agree. `G` is a
//! generation counted modulo 3, which GRUB script can step with three `if`s although it cannot add: copy X is newer
//! than copy Y when `G(X) = G(Y) + 1 (mod 3)`. Every write goes to the copy that is not the newest whole one, with
//! the next generation, and is synced before anything else happens, so one whole copy always survives.

use std::path::{Path, PathBuf};

use crate::blockdev::{refused_kind, Accept, Access, BlockDevice, FileDevice};
use crate::error::{Error, Result};
use crate::grubenv::{GrubEnv, BLOCK_SIZE};
use crate::health::{Copies, CopyHealth};
use crate::rules::{BootState, Slot, SlotState};

/// Variables of a copy, in block order (the fill and the end marker follow).
const NAMES: [&str; 7] =
    ["edge_begin", "edge_active", "edge_last_good", "edge_a_good", "edge_a_tries", "edge_b_good", "edge_b_tries"];

/// A generation: 0, 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u8);

impl Generation {
    /// The generation of a freshly provisioned copy 0 (copy 1 gets the next).
    pub const FIRST: Generation = Generation(0);

    /// The next generation.
    pub fn next(self) -> Generation {
        Generation((self.0 + 1) % 3)
    }

    /// Whether `self` is the generation right after `other`.
    pub fn is_after(self, other: Generation) -> bool {
        self == other.next()
    }

    fn parse(s: &str) -> Option<Generation> {
        match s {
            "0" => Some(Generation(0)),
            "1" => Some(Generation(1)),
            "2" => Some(Generation(2)),
            _ => None,
        }
    }
}

fn bit(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

fn vars(state: &BootState, g: Generation) -> [(&'static str, String); 7] {
    let a = state.slot(Slot::A);
    let b = state.slot(Slot::B);
    [
        (NAMES[0], g.0.to_string()),
        (NAMES[1], state.active().to_string()),
        (NAMES[2], state.last_good().to_string()),
        (NAMES[3], bit(a.good).to_owned()),
        (NAMES[4], a.tries.to_string()),
        (NAMES[5], bit(b.good).to_owned()),
        (NAMES[6], b.tries.to_string()),
    ]
}

/// Encodes one copy: a whole GRUB block whose last line is the end marker.
pub fn encode_copy(state: &BootState, g: Generation) -> Vec<u8> {
    let mut env = GrubEnv::new();
    for (n, v) in vars(state, g) {
        env.set(n, &v).expect("the names are valid GRUB names");
    }
    let end_line = "edge_end=0\n".len();
    let fill_line = "edge_fill=\n".len();
    let fill = BLOCK_SIZE - env.encoded_len() - end_line - fill_line;
    env.set("edge_fill", &".".repeat(fill)).expect("valid name");
    env.set("edge_end", &g.0.to_string()).expect("valid name");
    let b = env.encode(BLOCK_SIZE).expect("the fixed layout fits the block exactly");
    debug_assert_eq!(b[BLOCK_SIZE - 1], b'\n');
    b
}

/// What one copy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// Whole: both markers agree and every variable is valid.
    Whole(BootState, Generation),
    /// Not whole: torn, damaged, blank or missing.
    Bad,
}

/// Decodes one copy; anything but a whole, valid copy of exactly [`BLOCK_SIZE`] bytes is [`Copy::Bad`].
pub fn decode_copy(b: &[u8]) -> Copy {
    // Every writer makes a copy exactly one block long; a longer one was not made by any of them.
    if b.len() != BLOCK_SIZE {
        return Copy::Bad;
    }
    let Ok(env) = GrubEnv::decode(b) else { return Copy::Bad };
    // As GRUB's load_env: a name that appears twice takes its last value.
    let get = |n: &str| env.vars().filter(|(name, _)| *name == n).last().map(|(_, v)| v);
    let (Some(begin), Some(end)) =
        (get("edge_begin").and_then(Generation::parse), get("edge_end").and_then(Generation::parse))
    else {
        return Copy::Bad;
    };
    if begin != end {
        return Copy::Bad;
    }
    let good = |n: &str| match get(n) {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    };
    let tries = |n: &str| get(n).filter(|v| v.len() == 1).and_then(|v| v.parse::<u8>().ok());
    // Upper case only, as the GRUB script's `regexp '^[AB]$'`.
    let slot = |n: &str| match get(n) {
        Some("A") => Some(Slot::A),
        Some("B") => Some(Slot::B),
        _ => None,
    };
    let parts = (
        good("edge_a_good"),
        tries("edge_a_tries"),
        good("edge_b_good"),
        tries("edge_b_tries"),
        slot("edge_active"),
        slot("edge_last_good"),
    );
    let (Some(ag), Some(at), Some(bg), Some(bt), Some(active), Some(last_good)) = parts else { return Copy::Bad };
    let a = SlotState { good: ag, tries: at };
    let b = SlotState { good: bg, tries: bt };
    Copy::Whole(BootState::from_parts(a, b, active, last_good), begin)
}

/// The copy to trust: the newest whole one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    /// Its state.
    pub state: BootState,
    /// Its generation.
    pub generation: Generation,
    /// Which copy (0 or 1).
    pub copy: usize,
    /// Whether the other copy is whole too (false: it is torn or damaged and the next write repairs it).
    pub other_whole: bool,
}

/// Picks the newest whole copy: the only whole one, or the one whose generation follows the other's (copy 0 on a
/// tie, which no writer produces). The GRUB script makes the same choice; `None` when neither copy is whole.
pub fn pick(copies: [Copy; 2]) -> Option<Picked> {
    match copies {
        [Copy::Whole(s0, g0), Copy::Whole(s1, g1)] => Some(if g1.is_after(g0) {
            Picked { state: s1, generation: g1, copy: 1, other_whole: true }
        } else {
            Picked { state: s0, generation: g0, copy: 0, other_whole: true }
        }),
        [Copy::Whole(s, g), Copy::Bad] => Some(Picked { state: s, generation: g, copy: 0, other_whole: false }),
        [Copy::Bad, Copy::Whole(s, g)] => Some(Picked { state: s, generation: g, copy: 1, other_whole: false }),
        [Copy::Bad, Copy::Bad] => None,
    }
}

/// The next write after `picked`: which copy to overwrite, and its bytes (the new state, the next generation).
pub fn next_write(picked: &Picked, state: &BootState) -> (usize, Vec<u8>) {
    (1 - picked.copy, encode_copy(state, picked.generation.next()))
}

/// Both copies of a freshly provisioned node (copy 1 is the newer; both hold `state`).
pub fn provision(state: &BootState) -> [Vec<u8>; 2] {
    [encode_copy(state, Generation::FIRST), encode_copy(state, Generation::FIRST.next())]
}

/// One copy's place: its device, when there is one, and its path.
struct Place<D> {
    device: Option<D>,
    path: PathBuf,
}

/// What reading one copy found.
#[derive(Debug, Clone, Copy)]
struct Found {
    copy: Copy,
    health: CopyHealth,
    /// The copy is longer than a block: a write to it must cut it to a block, or it stays damaged.
    too_long: bool,
}

impl Found {
    fn bad(health: CopyHealth, too_long: bool) -> Found {
        Found { copy: Copy::Bad, health, too_long }
    }
}

/// Makes the device of a missing copy at its path.
type Create<D> = fn(&Path) -> std::io::Result<D>;

/// The two copies on their devices (files on the ESP in production); a copy whose file is missing has no device
/// until a write creates it.
pub struct GrubStore<D: BlockDevice> {
    copies: [Place<D>; 2],
    create: Option<Create<D>>,
}

impl GrubStore<FileDevice> {
    /// Opens `state0.env` and `state1.env` in `dir`. A copy whose file does not exist is missing, which is not an
    /// error while the other copy is whole; with `Access::ReadWrite`, the next write creates it. A path that
    /// exists but is not a regular file (a FIFO, a device, a directory) is refused before it is opened: GRUB reads
    /// its copies through a filesystem, and opening a FIFO would block.
    pub fn open_dir(dir: &Path, access: Access) -> Result<GrubStore<FileDevice>> {
        let open = |i: usize| -> Result<Place<FileDevice>> {
            let path = dir.join(format!("state{i}.env"));
            Ok(Place { device: open_copy(&path, access)?, path })
        };
        let create = (access == Access::ReadWrite).then_some(create_copy as Create<FileDevice>);
        Ok(GrubStore { copies: [open(0)?, open(1)?], create })
    }
}

/// The device of one copy's file; `None` when the file does not exist.
fn open_copy(path: &Path, access: Access) -> Result<Option<FileDevice>> {
    let rerr = |source| Error::Read { path: path.to_owned(), source };
    match refused_kind(path, Accept::RegularFile) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(rerr(source)),
        Ok(Some(found)) => {
            return Err(Error::CopyType { path: path.to_owned(), found, expected: Accept::RegularFile.expected() })
        }
        Ok(None) => {}
    }
    match FileDevice::open(path, access) {
        Ok(d) => Ok(Some(d)),
        // Removed since it was looked at: as missing as if it had never been there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(match access {
            Access::ReadOnly => rerr(source),
            Access::ReadWrite => Error::Write { path: path.to_owned(), source },
        }),
    }
}

/// Creates a missing copy's file, empty (so not whole), and syncs its directory so that the file stays.
fn create_copy(path: &Path) -> std::io::Result<FileDevice> {
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Durability: a cut before this sync may lose the new file, which leaves the copy missing, as it was; the
    // other copy, newest and whole, is not touched by any of this.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(FileDevice::from_file(file))
}

impl<D: BlockDevice> GrubStore<D> {
    /// A store over two devices (named by `paths` in messages).
    pub fn new(copies: [(D, PathBuf); 2]) -> GrubStore<D> {
        GrubStore { copies: copies.map(|(d, path)| Place { device: Some(d), path }), create: None }
    }

    /// The devices, back (`None` for a copy that is missing).
    pub fn into_devices(self) -> [(Option<D>, PathBuf); 2] {
        self.copies.map(|p| (p.device, p.path))
    }

    fn read_copy(&mut self, i: usize) -> Result<Found> {
        let Place { device, path } = &mut self.copies[i];
        let Some(dev) = device else { return Ok(Found::bad(CopyHealth::Missing, false)) };
        let rerr = |source| Error::Read { path: path.clone(), source };
        let mut b = vec![0u8; BLOCK_SIZE];
        match dev.read_at(0, &mut b) {
            Ok(()) => {}
            // A copy shorter than a block (never written whole) is as bad as a torn one: the other copy decides.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(Found::bad(CopyHealth::Damaged, false))
            }
            // Any other error says nothing about the copy: treating it as bad would let the next write overwrite
            // what may be the newest state.
            Err(source) => return Err(rerr(source)),
        }
        // A copy is exactly one block; one with a byte after the block was not written by any writer of this
        // format, so it is damaged whatever its first block says.
        match dev.read_at(BLOCK_SIZE as u64, &mut [0u8]) {
            Ok(()) => return Ok(Found::bad(CopyHealth::Damaged, true)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(source) => return Err(rerr(source)),
        }
        Ok(match decode_copy(&b) {
            copy @ Copy::Whole(..) => Found { copy, health: CopyHealth::Whole, too_long: false },
            Copy::Bad => Found::bad(CopyHealth::Damaged, false),
        })
    }

    fn read_both(&mut self) -> Result<[Found; 2]> {
        Ok([self.read_copy(0)?, self.read_copy(1)?])
    }

    fn no_whole_copy(&self) -> Error {
        let p = &self.copies[0].path;
        Error::NoWholeCopy { location: p.parent().map_or_else(|| p.clone(), Path::to_path_buf) }
    }

    /// The newest whole copy.
    pub fn read(&mut self) -> Result<Picked> {
        let [a, b] = self.read_both()?;
        pick([a.copy, b.copy]).ok_or_else(|| self.no_whole_copy())
    }

    /// What each copy is, and which one [`GrubStore::read`] takes.
    pub fn copies(&mut self) -> Result<Copies> {
        let found = self.read_both()?;
        Ok(Copies {
            locations: [0, 1].map(|i| self.copies[i].path.display().to_string()),
            health: found.map(|f| f.health),
            current: pick([found[0].copy, found[1].copy]).map(|p| p.copy),
        })
    }

    /// Writes `state` into the copy that is not the newest whole one, with the next generation, and syncs it; a
    /// missing copy is created, and one longer than a block is cut to a block.
    pub fn write(&mut self, state: &BootState) -> Result<Picked> {
        let found = self.read_both()?;
        let current = pick([found[0].copy, found[1].copy]).ok_or_else(|| self.no_whole_copy())?;
        let (target, bytes) = next_write(&current, state);
        self.write_copy(target, &bytes, found[target].too_long)?;
        Ok(Picked { state: *state, generation: current.generation.next(), copy: target, other_whole: true })
    }

    /// Writes one copy whole: creates it when missing, writes the block, cuts what follows, syncs.
    fn write_copy(&mut self, i: usize, bytes: &[u8], too_long: bool) -> Result<()> {
        let create = self.create;
        let Place { device, path } = &mut self.copies[i];
        let werr = |source| Error::Write { path: path.clone(), source };
        if device.is_none() {
            let create = create.ok_or_else(|| werr(std::io::ErrorKind::NotFound.into()))?;
            *device = Some(create(path).map_err(werr)?);
        }
        let dev = device.as_mut().expect("the device is there or was just created");
        // Durability: this copy is not the newest whole one (or none is whole, when provisioning), so a cut
        // anywhere from here to the sync leaves the newest whole copy untouched; after the sync this copy is whole
        // and newest.
        dev.write_at(0, bytes).map_err(werr)?;
        if too_long {
            dev.set_len(BLOCK_SIZE as u64).map_err(werr)?;
        }
        dev.sync().map_err(werr)
    }

    /// Writes both copies of a fresh node, each synced, copy 0 first; missing copies are created.
    pub fn provision(&mut self, state: &BootState) -> Result<()> {
        for (i, bytes) in provision(state).iter().enumerate() {
            // Whatever the copies hold is overwritten, even what cannot be read (provision --force); only a byte
            // after the block matters, since it must be cut.
            let too_long =
                self.copies[i].device.as_mut().is_some_and(|d| d.read_at(BLOCK_SIZE as u64, &mut [0u8]).is_ok());
            self.write_copy(i, bytes, too_long)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sector size of the torn-write model: a power cut leaves every sector either old or new.
    const SECTOR: usize = 512;

    fn states() -> Vec<BootState> {
        let mut v = Vec::new();
        for ga in [false, true] {
            for gb in [false, true] {
                for (ta, tb) in [(0, 0), (3, 0), (0, 2), (9, 1)] {
                    for active in Slot::ALL {
                        for last_good in Slot::ALL {
                            let a = SlotState { good: ga, tries: ta };
                            let b = SlotState { good: gb, tries: tb };
                            v.push(BootState::from_parts(a, b, active, last_good));
                        }
                    }
                }
            }
        }
        v
    }

    /// A device in memory whose writes are torn: after `budget` more bytes, a write stops and fails, as if the
    /// power was cut. Sector-granular budgets model disks that write whole sectors.
    struct Tearing {
        data: Vec<u8>,
        budget: Option<usize>,
    }

    impl BlockDevice for Tearing {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            let o = offset as usize;
            let src = self.data.get(o..o + buf.len()).ok_or(std::io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
            let o = offset as usize;
            let n = self.budget.map_or(buf.len(), |b| b.min(buf.len()));
            if self.data.len() < o + buf.len() {
                self.data.resize(o + buf.len(), 0);
            }
            self.data[o..o + n].copy_from_slice(&buf[..n]);
            if let Some(b) = self.budget.as_mut() {
                *b -= n;
                if n < buf.len() {
                    return Err(std::io::Error::other("power cut"));
                }
            }
            Ok(())
        }
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn set_len(&mut self, len: u64) -> std::io::Result<()> {
            self.data.resize(len as usize, 0);
            Ok(())
        }
    }

    /// A device whose reads fail with an I/O error (EIO).
    struct Failing;

    impl BlockDevice for Failing {
        fn read_at(&mut self, _: u64, _: &mut [u8]) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(5))
        }
        fn write_at(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
            panic!("nothing may be written after a failed read")
        }
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An I/O error reading a copy is an error, not a torn copy: the write that follows is refused, so it cannot
    /// overwrite what may be the newest state.
    #[test]
    fn a_read_error_is_not_a_torn_copy() {
        enum Dev {
            Mem(Tearing),
            Eio(Failing),
        }
        impl BlockDevice for Dev {
            fn read_at(&mut self, o: u64, b: &mut [u8]) -> std::io::Result<()> {
                match self {
                    Dev::Mem(d) => d.read_at(o, b),
                    Dev::Eio(d) => d.read_at(o, b),
                }
            }
            fn write_at(&mut self, o: u64, b: &[u8]) -> std::io::Result<()> {
                match self {
                    Dev::Mem(d) => d.write_at(o, b),
                    Dev::Eio(d) => d.write_at(o, b),
                }
            }
            fn sync(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let s = BootState::provisioned(Slot::A);
        let mut st = GrubStore::new([
            (Dev::Eio(Failing), "state0.env".into()),
            (Dev::Mem(Tearing { data: encode_copy(&s, Generation::FIRST), budget: None }), "state1.env".into()),
        ]);
        assert!(matches!(st.read(), Err(Error::Read { .. })));
        assert!(matches!(st.write(&s.mark_bad(Slot::B)), Err(Error::Read { .. })));
        // A copy too short to hold a block is only a bad copy.
        let mut st = store(Vec::new(), encode_copy(&s, Generation::FIRST));
        assert_eq!(st.read().expect("copy 1 decides").copy, 1);
    }

    fn store(a: Vec<u8>, b: Vec<u8>) -> GrubStore<Tearing> {
        GrubStore::new([
            (Tearing { data: a, budget: None }, "state0.env".into()),
            (Tearing { data: b, budget: None }, "state1.env".into()),
        ])
    }

    /// A sequence of writes through the store, each cut at every sector: the next read is the state before or
    /// after that write, and the next write after the cut succeeds and repairs the torn copy.
    #[test]
    fn store_writes_survive_a_cut_at_every_sector() {
        let mut states = vec![BootState::provisioned(Slot::A)];
        let next = |s: &BootState| s.set_active(Slot::B, 3).unwrap_or(*s).boot().1.mark_good(Slot::B);
        for _ in 0..4 {
            let last = *states.last().expect("one state");
            states.push(next(&last));
        }
        let [c0, c1] = provision(&states[0]);
        let mut st = store(c0, c1);
        for w in states.windows(2) {
            let (before, after) = (w[0], w[1]);
            for k in 0..=BLOCK_SIZE / SECTOR {
                let [(Some(d0), _), (Some(d1), _)] = st.into_devices() else { panic!("both copies are there") };
                let mut trial = store(d0.data.clone(), d1.data.clone());
                for place in trial.copies.iter_mut() {
                    place.device.as_mut().expect("there").budget = Some(k * SECTOR);
                }
                let r = trial.write(&after);
                assert_eq!(r.is_ok(), k == BLOCK_SIZE / SECTOR, "cut after {k} sectors: {r:?}");
                for place in trial.copies.iter_mut() {
                    place.device.as_mut().expect("there").budget = None;
                }
                let read = trial.read().expect("a whole copy survives").state;
                assert_eq!(read, if k == BLOCK_SIZE / SECTOR { after } else { before }, "cut after {k} sectors");
                // The node boots, and the next write goes through.
                trial.write(&read).expect("the next write succeeds");
                assert_eq!(trial.read().expect("whole").state, read);
                st = store(d0.data.clone(), d1.data.clone());
            }
            st.write(&after).expect("uninterrupted write");
            assert_eq!(st.read().expect("whole").state, after);
        }
    }

    /// The whole state space (two slots × good × tries up to 3 × order × last good) × which copy is newest × the
    /// other copy older-whole, torn or blank × every event (boot, set-active, mark-good, mark-bad, a failed health
    /// check, a watchdog reset) × a power cut after every sector of the write the event causes: the next reader
    /// sees the state before or after the event, never a mix and never nothing.
    #[test]
    fn every_state_every_copy_layout_every_event_every_tear() {
        let mut n = 0u64;
        for (ga, gb, ta, tb, active, last_good) in itertools_like() {
            let a = SlotState { good: ga, tries: ta };
            let b = SlotState { good: gb, tries: tb };
            let before = BootState::from_parts(a, b, active, last_good);
            let mut events: Vec<BootState> = vec![before.boot().1];
            for s in Slot::ALL {
                events.extend(before.set_active(s, 3));
                events.push(before.mark_good(s));
                // mark-bad and a failed health check of the booted slot are the same write.
                events.push(before.mark_bad(s));
            }
            // A watchdog reset is a boot that wrote nothing before it: `before.boot()` again, covered above.
            for newest in [0usize, 1] {
                for g in [0, 1, 2].map(Generation) {
                    let older_gen = Generation((g.0 + 2) % 3);
                    let others =
                        [encode_copy(&before, older_gen), torn_mix(&before, older_gen, g), vec![0u8; BLOCK_SIZE]];
                    for other in &others {
                        let mut copies = [Vec::new(), Vec::new()];
                        copies[newest] = encode_copy(&before, g);
                        copies[1 - newest] = other.clone();
                        let picked = pick([decode_copy(&copies[0]), decode_copy(&copies[1])]).expect("newest is whole");
                        assert_eq!((picked.copy, picked.state), (newest, before));
                        for after in &events {
                            let (target, bytes) = next_write(&picked, after);
                            for k in 0..=BLOCK_SIZE / SECTOR {
                                let mut cut = copies.clone();
                                cut[target][..k * SECTOR].copy_from_slice(&bytes[..k * SECTOR]);
                                let read = pick([decode_copy(&cut[0]), decode_copy(&cut[1])]).expect("one copy whole");
                                let expected = if k == BLOCK_SIZE / SECTOR { *after } else { before };
                                assert_eq!(read.state, expected);
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        // 256 states × 2 newest copies × 3 generations × 3 other copies × their events × 3 tear points.
        assert_eq!(n, 82_944);
    }

    /// Every combination of the state's parts with tries up to 3.
    fn itertools_like() -> Vec<(bool, bool, u8, u8, Slot, Slot)> {
        let mut v = Vec::new();
        for ga in [false, true] {
            for gb in [false, true] {
                for ta in 0..=3 {
                    for tb in 0..=3 {
                        for active in Slot::ALL {
                            for last_good in Slot::ALL {
                                v.push((ga, gb, ta, tb, active, last_good));
                            }
                        }
                    }
                }
            }
        }
        v
    }

    /// A copy torn between generation `old` (first sector) and `new` (second): not whole.
    fn torn_mix(state: &BootState, old: Generation, new: Generation) -> Vec<u8> {
        let mut b = encode_copy(state, new);
        b[..SECTOR].copy_from_slice(&encode_copy(state, old)[..SECTOR]);
        assert_eq!(decode_copy(&b), Copy::Bad);
        b
    }

    #[test]
    fn copies_round_trip_with_a_fixed_layout() {
        let first = encode_copy(&states()[0], Generation(0));
        for s in states() {
            for g in [0, 1, 2].map(Generation) {
                let b = encode_copy(&s, g);
                assert_eq!(b.len(), BLOCK_SIZE);
                assert!(b.ends_with(format!("\nedge_end={}\n", g.0).as_bytes()));
                assert_eq!(decode_copy(&b), Copy::Whole(s, g));
                // Every copy has its bytes in the same places: only values differ, never positions.
                let differing: Vec<usize> = (0..BLOCK_SIZE).filter(|&i| b[i] != first[i]).collect();
                assert!(differing.iter().all(|&i| b[i].is_ascii_alphanumeric()), "{differing:?}");
            }
        }
    }

    #[test]
    fn a_name_set_twice_takes_its_last_value_as_grub_does() {
        let b = encode_copy(&BootState::provisioned(Slot::A), Generation(1));
        // A second edge_a_tries line in place of the fill's last 16 bytes; the block's last line stays the marker.
        let text = String::from_utf8_lossy(&b).replacen("...............\nedge_end", "\nedge_a_tries=7\nedge_end", 1);
        assert_eq!(text.len(), BLOCK_SIZE);
        match decode_copy(text.as_bytes()) {
            Copy::Whole(state, _) => assert_eq!(state.slot(Slot::A).tries, 7),
            Copy::Bad => panic!("a duplicate name does not make the copy bad"),
        }
    }

    #[test]
    fn generations_step_modulo_three() {
        assert!(Generation(1).is_after(Generation(0)));
        assert!(Generation(2).is_after(Generation(1)));
        assert!(Generation(0).is_after(Generation(2)));
        assert!(!Generation(0).is_after(Generation(1)));
        assert!(!Generation(1).is_after(Generation(1)));
    }

    #[test]
    fn damaged_copies_are_bad() {
        let good = encode_copy(&BootState::provisioned(Slot::A), Generation(1));
        let check = |b: &[u8]| assert_eq!(decode_copy(b), Copy::Bad, "{}", String::from_utf8_lossy(b));
        check(&[]);
        check(&good[..512]);
        check(&vec![0u8; BLOCK_SIZE]);
        check(&vec![0xffu8; BLOCK_SIZE]);
        check(&String::from_utf8_lossy(&good).replace("edge_end=1", "edge_end=2").into_bytes());
        check(&String::from_utf8_lossy(&good).replace("edge_a_tries=0", "edge_a_tries=x").into_bytes());
        check(&String::from_utf8_lossy(&good).replace("edge_active=A", "edge_active=C").into_bytes());
        // GRUB's script accepts upper-case slot letters only; so does the decoder.
        check(&String::from_utf8_lossy(&good).replace("edge_active=A", "edge_active=a").into_bytes());
    }

    /// A copy is exactly one block: a whole block followed by anything (here the fill GRUB writes) is damaged,
    /// never trusted, and the next write, which goes to it, cuts it back to one block.
    #[test]
    fn issue_14_a_copy_of_the_wrong_size_is_damaged() {
        let old = BootState::provisioned(Slot::A);
        let new = old.set_active(Slot::B, 3).expect("A is good");
        let mut long = encode_copy(&new, Generation(1));
        assert!(matches!(decode_copy(&long), Copy::Whole(..)));
        long.resize(2 * BLOCK_SIZE, b'#');
        assert_eq!(decode_copy(&long), Copy::Bad);
        // Copy 1 would be the newer one, but it is too long: copy 0 is read.
        let mut st = store(encode_copy(&old, Generation(0)), long);
        let picked = st.read().expect("copy 0 is whole");
        assert_eq!((picked.copy, picked.state), (0, old));
        let copies = st.copies().expect("copies");
        assert_eq!(copies.health, [CopyHealth::Whole, CopyHealth::Damaged]);
        assert_eq!(copies.current, Some(0));
        let next = old.mark_bad(Slot::B);
        assert_eq!(st.write(&next).expect("write").copy, 1);
        let [_, (Some(d1), _)] = st.into_devices() else { panic!("copy 1 is there") };
        assert_eq!(d1.data, encode_copy(&next, Generation(1)));
    }

    /// A missing copy is not an error while the other is whole: the state is read from the whole one, the copy is
    /// reported missing, and the next write (which goes to it) creates it.
    #[test]
    fn issue_14_a_missing_copy_is_created_by_the_next_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = BootState::provisioned(Slot::A);
        for missing in [0, 1] {
            let [c0, c1] = provision(&s);
            std::fs::write(dir.path().join("state0.env"), c0).expect("copy 0");
            std::fs::write(dir.path().join("state1.env"), c1).expect("copy 1");
            let gone = dir.path().join(format!("state{missing}.env"));
            std::fs::remove_file(&gone).expect("remove");
            let mut ro = GrubStore::open_dir(dir.path(), Access::ReadOnly).expect("open read-only");
            assert_eq!(ro.read().expect("the other copy is whole").copy, 1 - missing);
            let copies = ro.copies().expect("copies");
            assert_eq!(copies.health[missing], CopyHealth::Missing);
            assert_eq!(copies.health[1 - missing], CopyHealth::Whole);
            let mut rw = GrubStore::open_dir(dir.path(), Access::ReadWrite).expect("open");
            let next = s.set_active(Slot::B, 3).expect("A is good");
            assert_eq!(rw.write(&next).expect("write").copy, missing);
            assert_eq!(std::fs::read(&gone).expect("created").len(), BLOCK_SIZE);
            let mut again = GrubStore::open_dir(dir.path(), Access::ReadOnly).expect("open");
            assert_eq!(again.read().expect("read").state, next);
            assert!(again.copies().expect("copies").both_whole());
        }
        // Both missing: the state is lost, and provisioning creates both.
        std::fs::remove_file(dir.path().join("state0.env")).expect("remove");
        std::fs::remove_file(dir.path().join("state1.env")).expect("remove");
        let mut rw = GrubStore::open_dir(dir.path(), Access::ReadWrite).expect("open");
        assert!(matches!(rw.read(), Err(Error::NoWholeCopy { .. })));
        rw.provision(&s).expect("provision");
        assert_eq!(rw.read().expect("read").state, s);
    }

    /// A copy's path that is not a regular file is refused before it is opened, naming it: a FIFO would block the
    /// open, a device has no block GRUB could read.
    #[test]
    fn issue_14_a_copy_that_is_not_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let [c0, _] = provision(&BootState::provisioned(Slot::A));
        std::fs::write(dir.path().join("state0.env"), c0).expect("copy 0");
        let copy1 = dir.path().join("state1.env");
        let refused = |found: &str| {
            for access in [Access::ReadOnly, Access::ReadWrite] {
                let r = GrubStore::open_dir(dir.path(), access).map(|_| ());
                assert!(
                    matches!(&r, Err(Error::CopyType { path, found: f, .. }) if *path == copy1 && *f == found),
                    "{r:?}"
                );
            }
        };
        std::os::unix::fs::symlink("/dev/null", &copy1).expect("symlink");
        refused("character device");
        std::fs::remove_file(&copy1).expect("remove");
        assert!(std::process::Command::new("mkfifo").arg(&copy1).status().expect("mkfifo").success());
        refused("FIFO");
        std::fs::remove_file(&copy1).expect("remove");
        std::fs::create_dir(&copy1).expect("mkdir");
        refused("directory");
    }

    /// Every write, torn after every whole number of sectors, from every state and generation and with the other
    /// copy whole or bad: what the bootloader reads next is exactly the old or the new state, never a mix and never
    /// nothing, so the rules' model (a good slot stays reachable) holds across power cuts.
    #[test]
    fn torn_writes_leave_the_old_or_the_new_state() {
        for old in states() {
            for new in [old.mark_good(Slot::A), old.mark_bad(Slot::B), old.boot().1, BootState::provisioned(Slot::B)] {
                for g in [0, 1, 2].map(Generation) {
                    for other_whole in [true, false] {
                        let newest = encode_copy(&old, g);
                        // The older copy has the generation before the newest one's.
                        let before = Generation((g.0 + 2) % 3);
                        assert!(g.is_after(before));
                        let older = if other_whole { encode_copy(&old, before) } else { vec![0; 1024] };
                        // Copy 0 is the newest here; the write goes to copy 1.
                        let picked = pick([decode_copy(&newest), decode_copy(&older)]).expect("copy 0 is whole");
                        assert_eq!((picked.copy, picked.state), (0, old));
                        let (target, bytes) = next_write(&picked, &new);
                        assert_eq!(target, 1);
                        for k in 0..=BLOCK_SIZE / SECTOR {
                            let mut torn = older.clone();
                            torn[..k * SECTOR].copy_from_slice(&bytes[..k * SECTOR]);
                            let after = pick([decode_copy(&newest), decode_copy(&torn)]).expect("copy 0 survives");
                            let expected = if k == BLOCK_SIZE / SECTOR { new } else { old };
                            assert_eq!(after.state, expected, "torn after {k} sectors");
                        }
                    }
                }
            }
        }
    }
}
