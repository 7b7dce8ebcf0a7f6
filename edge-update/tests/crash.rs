//! Power cuts at every instant of an install: the slot, the boot state copies and the journal sit behind devices
//! and a journal store that count every write and sync; at operation N the power goes, every unsynced write is
//! lost, and the node comes back on what was durable. For every N: the booted slot was never written, the target
//! is bootable only if it was verified whole, the journal claims only chunks that are really on the slot, the
//! bootloader still boots a slot, and the install run again completes.

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bootctl::blockdev::BlockDevice;
use bootctl::grubstate::GrubStore;
use bootctl::rules::{BootState, Slot};
use common::{bundle, changed, key, payload, Spec};
use image_layout::format::chunk_hash;
use image_layout::keys::Keyring;
use image_layout::reader::{BundleAt, Policy};
use updater::config::Config;
use updater::device::{SlotDevice, SlotReader};
use updater::fetch::FileFetch;
use updater::install::{install, Options};
use updater::journal::{FileJournal, Journal, JournalStore, Phase};
use updater::phase::Event;
use updater::run::Node;
use updater::slots::SlotPath;

/// The power supply: counts operations and fails the N-th and every one after it.
struct Power {
    ops: AtomicU64,
    cut_at: u64,
    cut: AtomicBool,
}

impl Power {
    fn new(cut_at: u64) -> Arc<Power> {
        Arc::new(Power { ops: AtomicU64::new(0), cut_at, cut: AtomicBool::new(false) })
    }
    fn tick(&self) -> io::Result<()> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        if n >= self.cut_at {
            self.cut.store(true, Ordering::SeqCst);
        }
        if self.cut.load(Ordering::SeqCst) {
            return Err(io::Error::other("power cut"));
        }
        Ok(())
    }
}

/// A device whose writes reach `durable` only at a sync; a power cut loses the rest.
struct CrashingDevice {
    durable: Arc<Mutex<Vec<u8>>>,
    unsynced: Vec<(u64, Vec<u8>)>,
    power: Arc<Power>,
}

impl CrashingDevice {
    fn new(durable: Arc<Mutex<Vec<u8>>>, power: Arc<Power>) -> CrashingDevice {
        CrashingDevice { durable, unsynced: Vec::new(), power }
    }
}

impl BlockDevice for CrashingDevice {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.power.cut.load(Ordering::SeqCst) {
            return Err(io::Error::other("power cut"));
        }
        let d = self.durable.lock().expect("lock");
        let end = offset as usize + buf.len();
        if end > d.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&d[offset as usize..end]);
        // Reads see this run's own unsynced writes, as the page cache shows them.
        for (o, w) in &self.unsynced {
            let (ws, we) = (*o as usize, *o as usize + w.len());
            let (s, e) = (ws.max(offset as usize), we.min(end));
            if s < e {
                buf[s - offset as usize..e - offset as usize].copy_from_slice(&w[s - ws..e - ws]);
            }
        }
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.power.tick()?;
        if offset as usize + buf.len() > self.durable.lock().expect("lock").len() {
            return Err(io::Error::other("write past the end"));
        }
        self.unsynced.push((offset, buf.to_vec()));
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.power.tick()?;
        let mut d = self.durable.lock().expect("lock");
        for (o, w) in self.unsynced.drain(..) {
            d[o as usize..o as usize + w.len()].copy_from_slice(&w);
        }
        Ok(())
    }
}

impl SlotDevice for CrashingDevice {
    fn size(&mut self) -> io::Result<u64> {
        Ok(self.durable.lock().expect("lock").len() as u64)
    }
    fn drop_cache(&mut self) -> io::Result<()> {
        // What was not synced is gone from "the device"; a read-back must not see it.
        self.unsynced.clear();
        Ok(())
    }
    fn reader(&self) -> io::Result<Box<dyn SlotReader>> {
        Ok(Box::new(DurableReader { durable: Arc::clone(&self.durable), power: Arc::clone(&self.power) }))
    }
}

/// Reads what a [`CrashingDevice`] made durable, as a read past the page cache does.
struct DurableReader {
    durable: Arc<Mutex<Vec<u8>>>,
    power: Arc<Power>,
}

impl SlotReader for DurableReader {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.power.cut.load(Ordering::SeqCst) {
            return Err(io::Error::other("power cut"));
        }
        let d = self.durable.lock().expect("lock");
        let range = offset as usize..offset as usize + buf.len();
        buf.copy_from_slice(d.get(range).ok_or(io::ErrorKind::UnexpectedEof)?);
        Ok(())
    }
    fn drop_cache(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// The journal file, saved only while the power is on (a save is atomic: all or nothing).
struct CrashingJournal {
    inner: FileJournal,
    path: PathBuf,
    power: Arc<Power>,
}

impl JournalStore for CrashingJournal {
    fn load(&mut self) -> updater::Result<Journal> {
        self.inner.load()
    }
    fn save(&mut self, journal: &Journal) -> updater::Result<()> {
        self.power.tick().map_err(|e| updater::Error::WriteJournal {
            path: self.path.clone(),
            source: image_layout::Error::WriteFile { path: self.path.clone(), source: e },
        })?;
        self.inner.save(journal)
    }
}

/// What survives a power cut.
struct Disk {
    slot_a: Arc<Mutex<Vec<u8>>>,
    slot_b: Arc<Mutex<Vec<u8>>>,
    state: [Arc<Mutex<Vec<u8>>>; 2],
    dir: tempfile::TempDir,
}

impl Disk {
    fn new(image_a: &[u8], slot_len: usize) -> Disk {
        let copies = bootctl::grubstate::provision(&BootState::provisioned(Slot::A));
        let mut a = image_a.to_vec();
        a.resize(slot_len, 0);
        Disk {
            slot_a: Arc::new(Mutex::new(a)),
            slot_b: Arc::new(Mutex::new(vec![0xee; slot_len])),
            state: copies.map(|c| Arc::new(Mutex::new(c))),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn config(&self) -> Config {
        let d = self.dir.path();
        let text = format!(
            "compatible = \"{}\"\ndata_dir = \"{}\"\nreboot = \"none\"\n",
            common::COMPATIBLE,
            d.join("data").display()
        );
        let c = Config::parse(&text, Path::new("crash.toml")).expect("config");
        std::fs::create_dir_all(&c.data_dir).expect("mkdir");
        c
    }

    fn store(&self, power: &Arc<Power>) -> GrubStore<CrashingDevice> {
        let dev = |i: usize| {
            (CrashingDevice::new(Arc::clone(&self.state[i]), Arc::clone(power)), PathBuf::from(format!("state{i}.env")))
        };
        GrubStore::new([dev(0), dev(1)])
    }

    fn node<'c>(&self, config: &'c Config, booted: Slot, power: &Arc<Power>) -> Node<'c> {
        let path = config.journal_path();
        let journal = CrashingJournal { inner: FileJournal::new(path.clone()), path, power: Arc::clone(power) };
        Node::with_parts(config, booted, Box::new(self.store(power)), Box::new(journal)).expect("node")
    }

    fn boot_state(&self) -> BootState {
        self.store(&Power::new(u64::MAX)).read().expect("a whole copy survives every cut").state
    }

    /// The bootloader at power-on: picks a slot by the rules and saves the state it boots with.
    fn power_on(&self) -> Slot {
        let (boot, next) = self.boot_state().boot();
        self.store(&Power::new(u64::MAX)).write(&next).expect("write");
        boot.slot()
    }
}

fn target_b() -> SlotPath {
    SlotPath { slot: Slot::B, path: PathBuf::from("slot-b"), rdev: None }
}

fn options() -> Options {
    let mut o = Options::at(time::OffsetDateTime::now_utc());
    o.threads = 2;
    o.sync_every_bytes = 48 << 10;
    o
}

/// Runs an install of `bundle_path` on `disk`, with the power cut at operation `cut_at`; a delta install reads the
/// booted slot A.
fn run_install(
    disk: &Disk,
    config: &Config,
    bundle_path: &Path,
    cut_at: u64,
    delta: bool,
) -> (updater::Result<updater::install::Report>, u64) {
    run_install_with(disk, config, bundle_path, cut_at, delta, true)
}

/// As [`run_install`], holding the target once verified when `flip` is false (`install --no-flip`).
fn run_install_with(
    disk: &Disk,
    config: &Config,
    bundle_path: &Path,
    cut_at: u64,
    delta: bool,
    flip: bool,
) -> (updater::Result<updater::install::Report>, u64) {
    let power = Power::new(cut_at);
    let keyring = Keyring::from_keys(vec![key().public()]);
    let mut node = disk.node(config, Slot::A, &power);
    let mut dev = CrashingDevice::new(Arc::clone(&disk.slot_b), Arc::clone(&power));
    let mut old = CrashingDevice::new(Arc::clone(&disk.slot_a), Arc::clone(&power));
    let old = delta.then_some(&mut old as &mut dyn SlotDevice);
    let mut fetch = FileFetch::new(bundle_path.to_owned());
    let mut opts = options();
    opts.delta = delta;
    opts.flip = flip;
    let r = install(&mut node, &keyring, &mut fetch, &target_b(), &mut dev, old, &opts, &mut |_| {});
    (r, power.ops.load(Ordering::SeqCst))
}

/// The chunk hashes of the bundle's payload, to judge what is on the slot.
fn chunk_hashes(bundle_path: &Path) -> (u32, Vec<[u8; 32]>) {
    let b = BundleAt::open(
        std::fs::File::open(bundle_path).expect("open"),
        &Keyring::from_keys(vec![key().public()]),
        &Policy::ignoring_expiry(),
    )
    .expect("bundle");
    let idx = b.chunk_index(0).expect("index");
    (b.verified().manifest.payloads[0].chunk_size, idx.entries.iter().map(|e| e.raw_hash).collect())
}

fn chunk_on_slot(slot: &[u8], chunk_size: u32, image_len: usize, c: usize) -> [u8; 32] {
    let start = c * chunk_size as usize;
    chunk_hash(&slot[start..(start + chunk_size as usize).min(image_len)])
}

#[test]
fn a_power_cut_at_every_write_and_sync_of_a_full_install() {
    let image_a = payload(300 << 10, 1);
    let image_b = payload(300 << 10, 2);
    power_cuts(&image_a, &image_b, false);
}

#[test]
fn a_power_cut_at_every_write_and_sync_of_a_delta_install() {
    let image_a = payload(300 << 10, 1);
    let image_b = changed(&image_a);
    power_cuts(&image_a, &image_b, true);
}

/// What must hold of the durable state after any cut.
struct Expect<'a> {
    image_a: &'a [u8],
    image_b: &'a [u8],
    chunk_size: u32,
    hashes: Vec<[u8; 32]>,
}

impl Expect<'_> {
    fn check(&self, disk: &Disk, config: &Config, ctx: &str) {
        assert_eq!(&disk.slot_a.lock().expect("lock")[..self.image_a.len()], self.image_a, "{ctx}: slot A written");
        let journal = FileJournal::new(config.journal_path()).load().expect("the journal reads back whole");
        let slot_b = disk.slot_b.lock().expect("lock").clone();
        let on_slot = |c: usize| chunk_on_slot(&slot_b, self.chunk_size, self.image_b.len(), c);
        let verified_whole = self.hashes.iter().enumerate().all(|(c, h)| on_slot(c) == *h);
        if let Some(u) = &journal.update {
            for r in &u.chunks_done {
                for c in r[0]..r[1] {
                    assert_eq!(on_slot(c as usize), self.hashes[c as usize], "{ctx}: the journal claims chunk {c}");
                }
            }
            if !u.phase.is_installing() {
                assert!(verified_whole, "{ctx}: phase {:?} with a slot that is not whole", u.phase);
            }
        }
        let state = disk.boot_state();
        if state.qualifies(Slot::B) {
            assert!(verified_whole, "{ctx}: slot B bootable but not whole");
            let p = journal.phase();
            assert!(p == Some(Phase::Verified) || p == Some(Phase::Flipped), "{ctx}: {journal:?}");
        }
    }
}

/// The node comes back after a cut: the bootloader picks a slot and `boot` reconciles. True when that finished the
/// update (the flip was done and the target booted and committed).
fn come_back(disk: &Disk, config: &Config, ctx: &str) -> bool {
    let booted = disk.power_on();
    let power = Power::new(u64::MAX);
    let mut node = disk.node(config, booted, &power);
    let state = node.boot_state().expect("state");
    node.handle(Event::Booted { booted, state }).expect("boot");
    if booted == Slot::B {
        assert_eq!(node.journal().phase(), Some(Phase::Committed), "{ctx}");
    }
    booted == Slot::B
}

fn power_cuts(image_a: &[u8], image_b: &[u8], delta: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle_path = dir.path().join("v2.bundle");
    bundle(&bundle_path, image_b, &Spec { chunk_size: 16 << 10, ..Spec::new("2", 2) });
    let (chunk_size, hashes) = chunk_hashes(&bundle_path);
    let expect = Expect { image_a, image_b, chunk_size, hashes };
    let slot_len = 512 << 10;

    // A run without a cut counts the operations.
    let disk = Disk::new(image_a, slot_len);
    let config = disk.config();
    let (r, total) = run_install(&disk, &config, &bundle_path, u64::MAX, delta);
    let report = r.expect("an install without a cut");
    assert!(total > 20, "{total} operations");
    assert_eq!(report.reused_bytes > 0, delta, "{report:?}");

    let mut n_cuts = 0;
    for cut_at in 0..total {
        let disk = Disk::new(image_a, slot_len);
        let config = disk.config();
        let (r, _) = run_install(&disk, &config, &bundle_path, cut_at, delta);
        assert!(r.is_err(), "cut at {cut_at} of {total} went unnoticed");
        let ctx = format!("cut at operation {cut_at} of {total}");
        expect.check(&disk, &config, &ctx);
        n_cuts += 1;
        if come_back(&disk, &config, &ctx) {
            continue;
        }
        // The retried install is cut too, at another point, and the node comes back again.
        let second = (cut_at * 7 + 3) % total;
        let (r, _) = run_install(&disk, &config, &bundle_path, second, delta);
        let ctx = format!("{ctx}, then at operation {second} of the retried install");
        expect.check(&disk, &config, &ctx);
        if r.is_err() {
            n_cuts += 1;
        }
        if come_back(&disk, &config, &ctx) {
            continue;
        }
        let (r, _) = run_install(&disk, &config, &bundle_path, u64::MAX, delta);
        r.unwrap_or_else(|e| panic!("{ctx}: the retried install failed: {e}"));
        assert_eq!(&disk.slot_b.lock().expect("lock")[..image_b.len()], image_b, "{ctx}");
        assert_eq!(disk.power_on(), Slot::B, "{ctx}");
    }
    let kind = if delta { "delta" } else { "full" };
    eprintln!("{n_cuts} power cuts in a {kind} install ({total} operations, each cut once, then the retry cut again)");
}

impl Disk {
    /// A copy of everything durable, with its own data directory.
    fn copy(&self) -> Disk {
        let dup = |m: &Arc<Mutex<Vec<u8>>>| Arc::new(Mutex::new(m.lock().expect("lock").clone()));
        let d = Disk {
            slot_a: dup(&self.slot_a),
            slot_b: dup(&self.slot_b),
            state: [dup(&self.state[0]), dup(&self.state[1])],
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir_all(d.dir.path().join("data")).expect("mkdir");
        for name in ["journal.json", "slot-B.held"] {
            let from = self.dir.path().join("data").join(name);
            if from.exists() {
                std::fs::copy(&from, d.dir.path().join("data").join(name)).expect("copy");
            }
        }
        d
    }

    fn config_with(&self, health: &str) -> Config {
        let d = self.dir.path();
        let text = format!(
            "compatible = \"{}\"\ndata_dir = \"{}\"\nreboot = \"none\"\n[health]\ndeadline_secs = 30\n{health}",
            common::COMPATIBLE,
            d.join("data").display()
        );
        Config::parse(&text, Path::new("crash.toml")).expect("config")
    }
}

/// Runs `boot` on `disk` as the bootloader picks, with the power cut at operation `cut_at`.
fn run_boot(disk: &Disk, config: &Config, cut_at: u64) -> (updater::Result<()>, u64, Slot) {
    let booted = disk.power_on();
    let power = Power::new(cut_at);
    let mut node = disk.node(config, booted, &power);
    let r = node.boot_state().and_then(|state| node.handle(Event::Booted { booted, state })).map(|_| ());
    (r, power.ops.load(Ordering::SeqCst), booted)
}

#[test]
fn a_power_cut_at_every_write_of_a_commit_and_of_a_rollback() {
    let Case { image_a, image_b: _, dir: _dir, bundle_path } = Case::new(200 << 10);
    let flipped = Disk::new(&image_a, 256 << 10);
    let (r, _) = run_install(&flipped, &flipped.config(), &bundle_path, u64::MAX, false);
    r.expect("install");
    let mut n_points = 0;
    for (failing, health) in [(false, ""), (true, "[[health.commands]]\nargv = [\"false\"]\nattempts = 1\n")] {
        let disk = flipped.copy();
        let (r, total, booted) = run_boot(&disk, &disk.config_with(health), u64::MAX);
        r.expect("boot without a cut");
        assert_eq!(booted, Slot::B);
        for cut_at in 0..total {
            let disk = flipped.copy();
            let config = disk.config_with(health);
            let ctx = format!("checks {}, cut at operation {cut_at} of {total}", if failing { "fail" } else { "pass" });
            let (r, _, _) = run_boot(&disk, &config, cut_at);
            assert!(r.is_err(), "{ctx}: the cut went unnoticed");
            // Boot again until the update settles; the bootloader always has a slot to boot.
            let mut last = Slot::B;
            for _ in 0..6 {
                let (r, _, booted) = run_boot(&disk, &config, u64::MAX);
                r.unwrap_or_else(|e| panic!("{ctx}: boot after the cut: {e}"));
                last = booted;
                let phase = FileJournal::new(config.journal_path()).load().expect("journal").phase();
                if phase.is_some_and(|p| p.is_final()) {
                    break;
                }
            }
            let journal = FileJournal::new(config.journal_path()).load().expect("journal");
            let state = disk.boot_state();
            if failing {
                assert_eq!(journal.phase(), Some(Phase::RolledBack), "{ctx}");
                assert_eq!(last, Slot::A, "{ctx}");
                assert!(!state.qualifies(Slot::B) && state.slot(Slot::A).good, "{ctx}: {state:?}");
            } else {
                assert_eq!(journal.phase(), Some(Phase::Committed), "{ctx}");
                assert!(state.slot(Slot::B).good && state.slot(Slot::A).good, "{ctx}: {state:?}");
            }
            assert_eq!(&disk.slot_a.lock().expect("lock")[..image_a.len()], &image_a[..], "{ctx}");
            n_points += 1;
        }
    }
    eprintln!("power cut at each of {n_points} operations of boot (commit and rollback)");
}

/// A device that loses one byte of what it is given to keep (a bad write the drive does not report).
struct LossyDevice {
    inner: CrashingDevice,
    at: u64,
    done: bool,
}

impl BlockDevice for LossyDevice {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        let at = self.at;
        let covers = self.inner.unsynced.iter().any(|(o, w)| (*o..*o + w.len() as u64).contains(&at));
        self.inner.sync()?;
        if covers && !self.done {
            self.inner.durable.lock().expect("lock")[at as usize] ^= 0xff;
            self.done = true;
        }
        Ok(())
    }
}

impl SlotDevice for LossyDevice {
    fn size(&mut self) -> io::Result<u64> {
        self.inner.size()
    }
    fn drop_cache(&mut self) -> io::Result<()> {
        self.inner.drop_cache()
    }
    fn reader(&self) -> io::Result<Box<dyn SlotReader>> {
        self.inner.reader()
    }
}

#[test]
fn a_chunk_the_device_lost_is_caught_by_the_read_back_and_rewritten() {
    let Case { image_a, image_b, dir: _dir, bundle_path } = Case::new(200 << 10);
    let disk = Disk::new(&image_a, 256 << 10);
    let config = disk.config();
    let power = Power::new(u64::MAX);
    let keyring = Keyring::from_keys(vec![key().public()]);
    let mut node = disk.node(&config, Slot::A, &power);
    let lost_at = 5 * (16 << 10) + 77;
    let mut dev = LossyDevice {
        inner: CrashingDevice::new(Arc::clone(&disk.slot_b), Arc::clone(&power)),
        at: lost_at,
        done: false,
    };
    let mut fetch = FileFetch::new(bundle_path.clone());
    let r = install(&mut node, &keyring, &mut fetch, &target_b(), &mut dev, None, &options(), &mut |_| {});
    assert!(matches!(r, Err(updater::Error::ReadBack { chunk_idx: 5, .. })), "{r:?}");
    assert!(!disk.boot_state().qualifies(Slot::B), "a slot that reads back wrong is never made bootable");
    let u = node.journal().update.clone().expect("update");
    assert_eq!((u.phase, u.chunks_done.clone()), (Phase::Downloading, vec![[0, 5], [6, u.n_chunks]]));
    drop(node);
    // Run again: the lost chunk is written again, read back, and the slot flipped.
    let (r, _) = run_install(&disk, &config, &bundle_path, u64::MAX, false);
    assert_eq!(r.expect("the retried install").resumed_chunks, u.n_chunks - 1);
    assert_eq!(&disk.slot_b.lock().expect("lock")[..image_b.len()], &image_b[..]);
    assert_eq!(disk.power_on(), Slot::B);
}

/// A test's two images (A running, B to install) of `len` bytes each, and B's bundle (16 KiB chunks) in `dir`.
struct Case {
    image_a: Vec<u8>,
    image_b: Vec<u8>,
    dir: tempfile::TempDir,
    bundle_path: PathBuf,
}

impl Case {
    fn new(len: usize) -> Case {
        let (image_a, image_b) = (payload(len, 1), payload(len, 2));
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle_path = dir.path().join("v2.bundle");
        bundle(&bundle_path, &image_b, &Spec { chunk_size: 16 << 10, ..Spec::new("2", 2) });
        Case { image_a, image_b, dir, bundle_path }
    }
}

/// Flips the held slot B on `disk` (`edge-update flip`), with the power cut at operation `cut_at`.
fn run_flip(disk: &Disk, config: &Config, cut_at: u64) -> (updater::Result<updater::run::Outcome>, u64) {
    let power = Power::new(cut_at);
    let mut node = disk.node(config, Slot::A, &power);
    let mut dev = CrashingDevice::new(Arc::clone(&disk.slot_b), Arc::clone(&power));
    let r = updater::held::flip(&mut node, &target_b(), &mut dev, false, &mut |_| {});
    (r, power.ops.load(Ordering::SeqCst))
}

fn held(config: &Config) -> bool {
    let j = FileJournal::new(config.journal_path()).load().expect("journal");
    j.update.is_some_and(|u| u.phase == Phase::Verified && u.held)
}

/// `install --no-flip` cut at every write and sync: the target is never made bootable, the node always comes back
/// on slot A, and the install run again holds it. Then the flip of a held slot cut at every operation: the node
/// comes back on A with the hold kept, or on B on trial and commits; never on anything half flipped.
#[test]
fn a_power_cut_at_every_write_of_a_held_install_and_of_its_flip() {
    let Case { image_a, image_b, dir: _dir, bundle_path } = Case::new(200 << 10);
    let (chunk_size, hashes) = chunk_hashes(&bundle_path);
    let expect = Expect { image_a: &image_a, image_b: &image_b, chunk_size, hashes };
    let slot_len = 256 << 10;

    let base = Disk::new(&image_a, slot_len);
    let config = base.config();
    let (r, total) = run_install_with(&base, &config, &bundle_path, u64::MAX, false, false);
    let report = r.expect("a held install without a cut");
    assert!(!report.flipped && !report.outcome.reboot, "{report:?}");
    assert!(held(&config));
    assert!(!base.boot_state().qualifies(Slot::B), "a held slot is not bootable");
    assert_eq!(base.power_on(), Slot::A);

    for cut_at in 0..total {
        let disk = Disk::new(&image_a, slot_len);
        let config = disk.config();
        let (r, _) = run_install_with(&disk, &config, &bundle_path, cut_at, false, false);
        let ctx = format!("held install cut at operation {cut_at} of {total}");
        assert!(r.is_err(), "{ctx}: the cut went unnoticed");
        expect.check(&disk, &config, &ctx);
        assert!(!disk.boot_state().qualifies(Slot::B), "{ctx}: a held install made slot B bootable");
        assert!(!come_back(&disk, &config, &ctx), "{ctx}: the node came back on slot B");
        let (r, _) = run_install_with(&disk, &config, &bundle_path, u64::MAX, false, false);
        r.unwrap_or_else(|e| panic!("{ctx}: the held install run again failed: {e}"));
        assert!(held(&config), "{ctx}");
        assert_eq!(disk.power_on(), Slot::A, "{ctx}");
    }

    let disk = base.copy();
    let (r, flip_total) = run_flip(&disk, &disk.config(), u64::MAX);
    r.expect("a flip without a cut");
    assert_eq!(disk.power_on(), Slot::B);
    for cut_at in 0..flip_total {
        let disk = base.copy();
        let config = disk.config();
        let ctx = format!("flip cut at operation {cut_at} of {flip_total}");
        let (r, _) = run_flip(&disk, &config, cut_at);
        assert!(r.is_err(), "{ctx}: the cut went unnoticed");
        expect.check(&disk, &config, &ctx);
        if come_back(&disk, &config, &ctx) {
            continue;
        }
        assert!(held(&config), "{ctx}: back on slot A without the hold");
        let (r, _) = run_flip(&disk, &config, u64::MAX);
        r.unwrap_or_else(|e| panic!("{ctx}: the flip run again failed: {e}"));
        assert!(come_back(&disk, &config, &ctx), "{ctx}: the flip run again did not boot slot B");
    }
    eprintln!("power cuts at each of {total} operations of a held install and {flip_total} of its flip");
}

/// A held slot that changed after it was verified is not flipped: the chunk that reads back wrong is forgotten,
/// the install run again fetches that chunk alone, and the flip then goes through.
#[test]
fn a_held_slot_that_changed_since_it_was_verified_is_not_flipped() {
    let Case { image_a, image_b, dir: _dir, bundle_path } = Case::new(200 << 10);
    let disk = Disk::new(&image_a, 256 << 10);
    let config = disk.config();
    let (r, _) = run_install_with(&disk, &config, &bundle_path, u64::MAX, false, false);
    let n_chunks = r.expect("held install").n_chunks;
    let state = disk.boot_state();

    // A stray write after the verification.
    disk.slot_b.lock().expect("lock")[3 * (16 << 10) + 9] ^= 0x40;
    let (r, _) = run_flip(&disk, &config, u64::MAX);
    assert!(matches!(r, Err(updater::Error::ReadBack { chunk_idx: 3, .. })), "{r:?}");
    assert_eq!(disk.boot_state(), state, "nothing flipped");
    let u = FileJournal::new(config.journal_path()).load().expect("journal").update.expect("update");
    assert_eq!((u.phase, u.held, u.chunks_done.clone()), (Phase::Downloading, false, vec![[0, 3], [4, n_chunks]]));
    let (r, _) = run_flip(&disk, &config, u64::MAX);
    assert!(matches!(r, Err(updater::Error::NotHeld { phase: Phase::Downloading })), "{r:?}");

    let (r, _) = run_install_with(&disk, &config, &bundle_path, u64::MAX, false, false);
    assert_eq!(r.expect("held again").resumed_chunks, n_chunks - 1);
    let (r, _) = run_flip(&disk, &config, u64::MAX);
    r.expect("flip");
    assert_eq!(&disk.slot_b.lock().expect("lock")[..image_b.len()], &image_b[..]);
    assert_eq!(disk.power_on(), Slot::B);
}

/// A hold whose hashes file is gone or damaged is refused by the flip with nothing made bootable and the hold ended
/// (back to `downloading`, chunks kept), and an install of the same bundle holds it again, writing nothing.
#[test]
fn a_hold_without_its_hashes_is_refused_and_an_install_holds_it_again() {
    let Case { image_a, image_b: _, dir: _dir, bundle_path } = Case::new(100 << 10);
    let disk = Disk::new(&image_a, 128 << 10);
    let config = disk.config();
    run_install_with(&disk, &config, &bundle_path, u64::MAX, false, false).0.expect("held install");
    let state = disk.boot_state();
    let path = config.held_path(Slot::B);
    let good = std::fs::read(&path).expect("hashes");
    let mut damaged = good.clone();
    damaged[70] ^= 1;
    for bytes in [None, Some(damaged), Some(good[..good.len() - 32].to_vec())] {
        match &bytes {
            None => std::fs::remove_file(&path).expect("rm"),
            Some(b) => std::fs::write(&path, b).expect("write"),
        }
        let (r, _) = run_flip(&disk, &config, u64::MAX);
        assert!(matches!(r, Err(updater::Error::HeldHashes { .. })), "{r:?}");
        let journal = FileJournal::new(config.journal_path()).load().expect("journal");
        let u = journal.update.expect("the update is kept");
        assert_eq!((u.phase, u.held), (Phase::Downloading, false));
        assert_eq!(u.n_done(), u.n_chunks, "no chunk is forgotten");
        assert_eq!(disk.boot_state(), state, "nothing is made bootable");
        let (r, _) = run_flip(&disk, &config, u64::MAX);
        assert!(matches!(r, Err(updater::Error::NotHeld { .. })), "the hold is ended: {r:?}");
        // Held again, writing nothing, before the next damage.
        let (r, _) = run_install_with(&disk, &config, &bundle_path, u64::MAX, false, false);
        let report = r.expect("held again");
        assert_eq!((report.resumed_chunks, report.flipped), (report.n_chunks, false));
        assert_eq!(std::fs::read(&path).expect("a fresh hashes file"), good);
    }
    // The slot is whole: the install reads it back and holds it again, writing nothing.
    let (r, _) = run_install_with(&disk, &config, &bundle_path, u64::MAX, false, false);
    let report = r.expect("held again");
    assert_eq!((report.resumed_chunks, report.flipped), (report.n_chunks, false));
    run_flip(&disk, &config, u64::MAX).0.expect("flip");
    assert_eq!(disk.power_on(), Slot::B);
}
