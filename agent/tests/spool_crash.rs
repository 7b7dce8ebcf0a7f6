//! The telemetry spool against power cuts (docs/telemetry.md, "What a power cut can do"): a directory in memory
//! that keeps, for every file, what is synced apart from what is only written, and a cut at every operation of a
//! workload (appends, syncs, batches sent and acknowledged, a full spool dropping segments) that keeps none, part
//! (torn), part with a damaged byte, or all of what was not synced, and may undo removals not yet made durable.
//! After each cut the spool is opened again (cleanly, or cut again while it recovers) and must hold every synced
//! record not yet acknowledged or counted as dropped, give no `seq` to two records, and at the end account for
//! every record: stored once by the endpoint, counted as dropped, or lost unsynced in the cut.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::rc::Rc;

use edge_agent::telemetry::spool::{Kind, Limits, Spool, SpoolFs, Stored};

#[derive(Debug, Clone, Default)]
struct MemFile {
    /// What survives a cut for sure.
    durable: Vec<u8>,
    /// What a reader sees now.
    current: Vec<u8>,
    /// The directory entry is synced.
    entry_durable: bool,
}

#[derive(Debug, Default)]
struct Disk {
    files: BTreeMap<String, MemFile>,
    /// Removed files whose removal a cut may undo (until the directory is next synced).
    removed: BTreeMap<String, MemFile>,
    ops: u64,
    crash_at: Option<u64>,
}

impl Disk {
    /// After a cut: each file keeps what was synced and, by `mode`, none (0), all (1), half (2) or half with its
    /// last byte damaged (3) of what was not; removals not made durable come back in the odd modes, and files whose
    /// entry was never synced vanish in mode 0.
    fn cut(&self, mode: u8) -> Disk {
        let mut files = BTreeMap::new();
        let mut keep = |name: &str, f: &MemFile| {
            if !f.entry_durable && mode == 0 {
                return;
            }
            let extra = &f.current[f.durable.len().min(f.current.len())..];
            let n = match mode {
                0 => 0,
                1 => extra.len(),
                _ => extra.len() / 2,
            };
            let mut bytes = f.durable.clone();
            bytes.extend_from_slice(&extra[..n]);
            if mode == 3 && n > 0 {
                let last = bytes.len() - 1;
                bytes[last] ^= 0x5a;
            }
            files.insert(name.to_owned(), MemFile { durable: bytes.clone(), current: bytes, entry_durable: true });
        };
        for (name, f) in &self.files {
            keep(name, f);
        }
        if mode % 2 == 1 {
            for (name, f) in &self.removed {
                if !self.files.contains_key(name) {
                    keep(name, &MemFile { current: f.durable.clone(), ..f.clone() });
                }
            }
        }
        Disk { files, ..Disk::default() }
    }
}

#[derive(Clone)]
struct MemFs(Rc<RefCell<Disk>>);

impl MemFs {
    fn new(disk: Disk) -> MemFs {
        MemFs(Rc::new(RefCell::new(disk)))
    }

    fn tick(&self) -> io::Result<()> {
        let mut d = self.0.borrow_mut();
        d.ops += 1;
        match d.crash_at {
            Some(n) if d.ops > n => Err(io::Error::other("power cut")),
            _ => Ok(()),
        }
    }

    fn dir_synced(&self) {
        let mut d = self.0.borrow_mut();
        d.removed.clear();
        for f in d.files.values_mut() {
            f.entry_durable = true;
        }
    }
}

impl SpoolFs for MemFs {
    fn list(&mut self) -> io::Result<Vec<String>> {
        self.tick()?;
        Ok(self.0.borrow().files.keys().cloned().collect())
    }

    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        self.tick()?;
        self.0.borrow().files.get(name).map(|f| f.current.clone()).ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn read_at(&mut self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let all = self.read(name)?;
        let from = (offset as usize).min(all.len());
        Ok(all[from..from.saturating_add(len).min(all.len())].to_vec())
    }

    fn create(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.tick() {
            // Cut in the middle: the file may exist with part of its bytes, its entry not synced.
            let f = MemFile { durable: Vec::new(), current: bytes[..bytes.len() / 2].to_vec(), entry_durable: false };
            self.0.borrow_mut().files.insert(name.to_owned(), f);
            return Err(e);
        }
        let f = MemFile { durable: bytes.to_vec(), current: bytes.to_vec(), entry_durable: true };
        self.0.borrow_mut().files.insert(name.to_owned(), f);
        self.dir_synced();
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.tick() {
            // Cut in the middle of the write: part of it reached the page cache.
            if let Some(f) = self.0.borrow_mut().files.get_mut(name) {
                f.current.extend_from_slice(&bytes[..bytes.len() / 3]);
            }
            return Err(e);
        }
        let mut d = self.0.borrow_mut();
        let f = d.files.get_mut(name).ok_or(io::ErrorKind::NotFound)?;
        f.current.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.tick()?;
        let mut d = self.0.borrow_mut();
        let f = d.files.get_mut(name).ok_or(io::ErrorKind::NotFound)?;
        f.durable = f.current.clone();
        Ok(())
    }

    fn replace(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.tick()?;
        let f = MemFile { durable: bytes.to_vec(), current: bytes.to_vec(), entry_durable: true };
        self.0.borrow_mut().files.insert(name.to_owned(), f);
        self.dir_synced();
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.tick()?;
        let mut d = self.0.borrow_mut();
        if let Some(f) = d.files.remove(name) {
            d.removed.insert(name.to_owned(), f);
        }
        Ok(())
    }
}

fn limits() -> Limits {
    Limits { max_bytes: 6 * 1024, segment_bytes: 1024, batch_records: 4 }
}

/// What the test knows: every record appended, which were synced, and the endpoint's store.
#[derive(Debug, Default, Clone)]
struct Model {
    /// Payload by `seq`, for records appended in the spool's current life and synced ones before it.
    by_seq: BTreeMap<u64, Vec<u8>>,
    /// The kind of each appended record, by payload.
    kinds: BTreeMap<Vec<u8>, Kind>,
    /// `seq`s known synced.
    synced: BTreeSet<u64>,
    /// The endpoint: payload by `seq`, each stored once.
    endpoint: BTreeMap<u64, Vec<u8>>,
    /// Records appended, over every life.
    n_appended: u64,
    /// Records appended but lost unsynced in a cut.
    n_lost_unsynced: u64,
    /// The next record's index.
    next_i: u64,
}

fn payload(i: u64) -> Vec<u8> {
    format!("record {i:06} {}", "x".repeat((i % 7) as usize * 9)).into_bytes()
}

fn kind_of(i: u64) -> Kind {
    if i.is_multiple_of(3) {
        Kind::Metrics
    } else {
        Kind::Log
    }
}

/// The endpoint's side of a batch: stores each `seq` once, checks that no record comes under two numbers nor a
/// number with two records, and answers with the highest `seq` held.
fn deliver(model: &mut Model, batch: &[Stored]) -> u64 {
    for r in batch {
        match model.endpoint.get(&r.seq) {
            Some(p) => assert_eq!(p, &r.payload, "seq {} sent with two payloads", r.seq),
            None => {
                assert!(
                    !model.endpoint.values().any(|p| p == &r.payload),
                    "record {:?} sent under a second seq {}",
                    String::from_utf8_lossy(&r.payload),
                    r.seq
                );
                model.endpoint.insert(r.seq, r.payload.clone());
            }
        }
        assert_eq!(model.kinds.get(&r.payload), Some(&r.kind), "seq {}: kind", r.seq);
    }
    model.endpoint.keys().next_back().copied().unwrap_or(0)
}

/// `steps` steps of the workload: an append each, a sync every 5, a batch every 7 unless the link is down (steps 30
/// to 109), so that the spool fills and drops segments. Stops at the first error (the cut).
fn work(spool: &mut Spool<MemFs>, model: &mut Model, steps: u64) -> Result<(), edge_agent::Error> {
    for step in 0..steps {
        let i = model.next_i;
        let p = payload(i);
        let seq = spool.append(kind_of(i), &p, Some(&i.to_le_bytes()))?;
        model.next_i += 1;
        model.n_appended += 1;
        model.kinds.insert(p.clone(), kind_of(i));
        model.by_seq.insert(seq, p);
        if step % 5 == 4 {
            let synced = spool.sync()?;
            model.synced.extend(model.by_seq.range(..=synced).map(|(s, _)| *s));
        }
        if step % 7 == 6 && !(30..110).contains(&step) {
            let batch = spool.read(spool.acked(), 4, 512)?;
            if !batch.is_empty() {
                let ack = deliver(model, &batch);
                spool.ack(ack)?;
            }
        }
    }
    Ok(())
}

/// Opens the spool after a cut and checks it against the model; forgets the records it lost unsynced.
fn reopen(fs: MemFs, model: &mut Model) -> Spool<MemFs> {
    let (mut spool, _) = Spool::open(fs, Path::new("/spool"), limits()).expect("open after the cut");
    let readable: BTreeMap<u64, Vec<u8>> = spool
        .read(spool.acked(), usize::MAX, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|r| (r.seq, r.payload))
        .collect();
    for (seq, p) in &readable {
        assert_eq!(model.by_seq.get(seq), Some(p), "seq {seq} reads back another record");
    }
    // Every synced record is at the endpoint, still readable, or counted as dropped, exactly.
    let mut missing: BTreeMap<Kind, u64> = BTreeMap::new();
    for seq in &model.synced {
        if !model.endpoint.contains_key(seq) && !readable.contains_key(seq) {
            *missing.entry(model.kinds[&model.by_seq[seq]]).or_default() += 1;
        }
    }
    for kind in Kind::ALL {
        assert_eq!(
            spool.counters().dropped_of(kind.word()),
            missing.get(&kind).copied().unwrap_or(0),
            "{kind:?}: synced records neither sent nor readable, against those counted as dropped"
        );
    }
    assert_eq!(spool.counters().damaged, 0, "only unsynced bytes were damaged");
    // Records appended but neither synced nor readable were lost in the cut; their numbers may be given again.
    let lost: Vec<u64> = model
        .by_seq
        .keys()
        .copied()
        .filter(|s| !model.synced.contains(s) && !readable.contains_key(s) && !model.endpoint.contains_key(s))
        .collect();
    for s in &lost {
        model.by_seq.remove(s);
    }
    model.n_lost_unsynced += lost.len() as u64;
    // Records that survived unsynced are synced now.
    model.synced.extend(readable.keys().copied());
    assert!(spool.last_seq() >= model.synced.iter().next_back().copied().unwrap_or(0));
    spool
}

/// Sends and acknowledges everything, then checks that every record appended is stored once, counted as
/// dropped, or was lost unsynced in a cut.
fn drain_and_account(spool: &mut Spool<MemFs>, model: &mut Model) {
    let synced = spool.sync().expect("sync");
    model.synced.extend(model.by_seq.range(..=synced).map(|(s, _)| *s));
    loop {
        let batch = spool.read(spool.acked(), 4, 512).expect("read");
        if batch.is_empty() {
            break;
        }
        let ack = deliver(model, &batch);
        spool.ack(ack).expect("ack");
    }
    assert_eq!(spool.n_pending(), 0);
    let dropped: u64 = Kind::ALL.iter().map(|k| spool.counters().dropped_of(k.word())).sum();
    assert_eq!(
        model.endpoint.len() as u64 + dropped + model.n_lost_unsynced,
        model.n_appended,
        "stored {} + dropped {dropped} + lost unsynced {} against appended {}",
        model.endpoint.len(),
        model.n_lost_unsynced,
        model.n_appended
    );
}

const STEPS: u64 = 160;

#[test]
fn without_a_cut_every_record_is_stored_once_or_counted_as_dropped() {
    let fs = MemFs::new(Disk::default());
    let (mut spool, _) = Spool::open(fs.clone(), Path::new("/spool"), limits()).expect("open");
    let mut model = Model::default();
    work(&mut spool, &mut model, STEPS).expect("work");
    assert!(spool.counters().dropped_of("log") > 0, "the outage must fill the spool");
    drain_and_account(&mut spool, &mut model);
    let bytes: usize = fs.0.borrow().files.values().map(|f| f.current.len()).sum();
    assert!(bytes < 7 * 1024, "the directory holds {bytes} bytes");
}

#[test]
fn a_power_cut_at_every_operation_loses_nothing_synced_and_numbers_nothing_twice() {
    let n_ops = {
        let fs = MemFs::new(Disk::default());
        let (mut spool, _) = Spool::open(fs.clone(), Path::new("/spool"), limits()).expect("open");
        work(&mut spool, &mut Model::default(), STEPS).expect("work");
        let n = fs.0.borrow().ops;
        n
    };
    assert!(n_ops > 100, "{n_ops} operations");
    for crash_at in 0..=n_ops {
        for mode in 0..4u8 {
            let fs = MemFs::new(Disk { crash_at: Some(crash_at), ..Disk::default() });
            let mut model = Model::default();
            if let Ok((mut spool, _)) = Spool::open(fs.clone(), Path::new("/spool"), limits()) {
                let _ = work(&mut spool, &mut model, STEPS);
            }
            let after = fs.0.borrow().cut(mode);
            // Opened cleanly, or cut again while it recovers (at its first operations) and then opened.
            for second in [None, Some(2u64), Some(4), Some(6)] {
                let mut model = model.clone();
                let fs2 = MemFs::new(after.cut(1));
                let fs2 = match second {
                    None => fs2,
                    Some(n) => {
                        fs2.0.borrow_mut().crash_at = Some(n);
                        let _ = Spool::open(fs2.clone(), Path::new("/spool"), limits());
                        let again = fs2.0.borrow().cut(mode);
                        MemFs::new(again)
                    }
                };
                let mut spool = reopen(fs2, &mut model);
                work(&mut spool, &mut model, 40).expect("work after the cut");
                drain_and_account(&mut spool, &mut model);
            }
        }
    }
}
