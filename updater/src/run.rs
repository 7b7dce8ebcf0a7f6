//! The node as the updater acts on it: the journal, the boot state backend and the event log behind one value,
//! and the thin executor that carries out the [`Action`]s that `phase::step` decides, in order.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bootctl::backend::Backend;
use bootctl::rules::{BootState, Slot};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::{Config, RebootMethod};
use crate::error::{Error, Result};
use crate::journal::{BundleInfo, FileJournal, Journal, JournalStore};
use crate::phase::{step, Action, Event};
use crate::wire::{EventKind, EventRecord, EVENT_SCHEMA};

/// Held while the journal is saved together with the events that describe it, so that a stop signal, whose handler
/// ends the process ([`record_stop_signals`]), never falls between a save and its events.
static SAVING: Mutex<()> = Mutex::new(());

/// Set once this process has saved a flip: from then on its install is done, whatever stops the process.
static FLIPPED: AtomicBool = AtomicBool::new(false);

fn saving() -> MutexGuard<'static, ()> {
    SAVING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What handling an event led to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// A reboot was requested (or, with reboot method `none`, is needed).
    pub reboot: bool,
    /// The health checks failed, and why.
    pub unhealthy: Option<crate::health::Unhealthy>,
    /// The health checks passed and the slot was committed.
    pub committed: bool,
    /// A reboot was asked for after a flip but could not be requested, and why; the slot is flipped all the same.
    pub reboot_error: Option<String>,
}

/// What an event log line is about, which decides its `target`, `version` and `phase`.
#[derive(Debug, Clone, Copy)]
pub enum About<'a> {
    /// The journal's update (the one the event changed).
    Update,
    /// A bundle an install read and checked: its target and version, and the journal's phase only when the
    /// journal's update is this bundle into this slot.
    Attempt(Slot, &'a BundleInfo),
    /// Nothing known: an install that failed before it had a bundle to name.
    Nothing,
}

/// The node's update state: journal, boot state backend, event log.
pub struct Node<'c> {
    /// The config.
    pub config: &'c Config,
    /// The slot running now.
    pub booted: Slot,
    /// How a reboot is requested.
    pub reboot: RebootMethod,
    backend: Box<dyn Backend>,
    store: Box<dyn JournalStore>,
    journal: Journal,
    events: PathBuf,
    /// The bundle this run's install read, verified, and the slot it is for, once known; events about its failure
    /// name it (and not an earlier update the journal still holds).
    pub attempt: Option<(Slot, BundleInfo)>,
    _lock: Option<File>,
}

impl<'c> Node<'c> {
    /// Opens the node as configured: takes the lock (refused while another run holds it), loads the journal, opens
    /// the boot state read-write.
    pub fn open(config: &'c Config, booted: Slot) -> Result<Node<'c>> {
        Node::open_locked(config, booted, false)
    }

    /// As [`Node::open`], waiting for the lock when `wait` (`boot` must run its checks even while an install from
    /// the cloud link holds it).
    pub fn open_locked(config: &'c Config, booted: Slot, wait: bool) -> Result<Node<'c>> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| Error::Lock { path: dir.clone(), source })?;
        let lock_path = config.lock_path();
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Lock { path: lock_path.clone(), source })?;
        match crate::sys::try_lock(&lock) {
            Ok(true) => {}
            Ok(false) if wait => {
                log::info!("waiting for the edge-update that holds {}", lock_path.display());
                crate::sys::lock(&lock).map_err(|source| Error::Lock { path: lock_path.clone(), source })?;
            }
            Ok(false) => return Err(Error::Locked { path: lock_path }),
            Err(source) => return Err(Error::Lock { path: lock_path, source }),
        }
        let backend = bootctl::backend::open(&config.bootctl, bootctl::blockdev::Access::ReadWrite)
            .map_err(|source| Error::Bootctl { source })?;
        let store = Box::new(FileJournal::new(config.journal_path()));
        let mut node = Node::with_parts(config, booted, backend, store)?;
        node._lock = Some(lock);
        Ok(node)
    }

    /// A node over given parts (tests put crashing devices behind them).
    pub fn with_parts(
        config: &'c Config,
        booted: Slot,
        backend: Box<dyn Backend>,
        mut store: Box<dyn JournalStore>,
    ) -> Result<Node<'c>> {
        let journal = store.load()?;
        Ok(Node {
            config,
            booted,
            reboot: config.reboot,
            backend,
            store,
            journal,
            events: config.events_path(),
            attempt: None,
            _lock: None,
        })
    }

    /// The journal as last saved.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The boot state now.
    pub fn boot_state(&mut self) -> Result<BootState> {
        self.backend.read().map_err(|source| Error::Bootctl { source })
    }

    /// Saves a journal the install changed (progress, phase), then keeps it as the current one.
    pub fn save(&mut self, journal: Journal) -> Result<()> {
        let _saving = saving();
        self.store.save(&journal)?;
        self.journal = journal;
        Ok(())
    }

    /// Appends an event about the journal's update to the event log and syncs it; a failure carries the update's
    /// `reason`.
    pub fn emit(&mut self, kind: EventKind, message: &str) {
        let reason = self.journal.update.as_ref().and_then(|u| u.reason.clone()).filter(|_| is_failure(kind));
        self.record(kind, message, reason, About::Update);
    }

    /// Appends an install's failure to the event log: about the bundle this run read when it got that far
    /// ([`Node::attempt`]), with the whole cause as `reason`.
    pub fn emit_install_failed(&mut self, source: &str, error: &Error) {
        let reason = crate::error::chain(error);
        let attempt = self.attempt.clone();
        let about = match &attempt {
            Some((slot, bundle)) => About::Attempt(*slot, bundle),
            None => About::Nothing,
        };
        self.record(
            EventKind::InstallFailed,
            &format!("install from {source} failed: {reason}"),
            Some(reason.clone()),
            about,
        );
    }

    /// Appends an event to the event log and syncs it. A log that cannot be written is reported, not fatal: the
    /// journal, not the log, is what the update relies on.
    pub fn record(&mut self, kind: EventKind, message: &str, reason: Option<String>, about: About<'_>) {
        let u = self.journal.update.as_ref();
        let (target, version, phase) = match about {
            About::Update => (
                u.map(|u| u.target.to_string()),
                u.map(|u| u.bundle.version.clone()),
                u.map(|u| u.phase.name().to_owned()),
            ),
            About::Attempt(slot, bundle) => {
                let same = u.filter(|u| u.target == slot && u.bundle == *bundle);
                (Some(slot.to_string()), Some(bundle.version.clone()), same.map(|u| u.phase.name().to_owned()))
            }
            About::Nothing => (None, None, None),
        };
        let record = EventRecord {
            schema: EVENT_SCHEMA.to_owned(),
            time: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            event: kind,
            message: message.to_owned(),
            reason,
            target,
            version,
            phase,
        };
        match kind {
            // The error itself is what `edge-update` prints on its way out: logged once, there.
            EventKind::InstallFailed => log::debug!("{message}"),
            k if is_failure(k) => log::error!("{message}"),
            _ => log::info!("{message}"),
        }
        if let Err(e) = append_line(&self.events, &record) {
            log::warn!("{}", Error::WriteEvents { path: self.events.clone(), source: e });
        }
    }

    /// Decides what `event` does ([`step`]) and carries out the actions in order.
    pub fn handle(&mut self, event: Event) -> Result<Outcome> {
        let s = step(&self.journal, &event)?;
        let mut outcome = Outcome::default();
        let mut emits: Vec<(EventKind, String)> = Vec::new();
        for action in s.actions {
            match action {
                Action::Save => {
                    let _saving = saving();
                    self.store.save(&s.journal)?;
                    self.journal = s.journal.clone();
                    if matches!(event, Event::Flip { .. }) {
                        FLIPPED.store(true, Ordering::SeqCst);
                    }
                    for (kind, message) in emits.drain(..) {
                        self.emit(kind, &message);
                    }
                }
                Action::SetActive(slot) => {
                    let state = self.boot_state()?;
                    let tries = self.config.bootctl.tries;
                    let next = state.set_active(slot, tries).map_err(|source| Error::Bootctl { source })?;
                    self.write_state(&next)?;
                    log::info!("slot {slot}: active, {tries} tries");
                }
                Action::MarkGood(slot) => {
                    let next = self.boot_state()?.mark_good(slot);
                    self.write_state(&next)?;
                    log::info!("slot {slot}: marked good");
                }
                Action::MarkBad(slot) => {
                    let next = self.boot_state()?.mark_bad(slot);
                    self.write_state(&next)?;
                    log::info!("slot {slot}: marked bad");
                }
                Action::RunChecks => {
                    let booted = self.booted;
                    let next = match crate::health::run(self.config) {
                        Ok(()) => {
                            outcome.committed = true;
                            Event::ChecksPassed { booted }
                        }
                        Err(unhealthy) => {
                            let reason = unhealthy.to_string();
                            outcome.unhealthy = Some(unhealthy);
                            Event::ChecksFailed { booted, reason }
                        }
                    };
                    let inner = self.handle(next)?;
                    outcome.reboot |= inner.reboot;
                }
                Action::Reboot => match self.request_reboot() {
                    Ok(()) => outcome.reboot = true,
                    // The flip is done and saved: a reboot that cannot be asked for is the operator's to do, not
                    // a failed install (the next reboot, however it comes, tries the slot).
                    Err(e) if matches!(event, Event::Flip { .. }) => {
                        for (kind, message) in emits.drain(..) {
                            self.emit(kind, &message);
                        }
                        let reason = crate::error::chain(&e);
                        self.handle(Event::RebootFailed { reason: reason.clone() })?;
                        outcome.reboot_error = Some(reason);
                    }
                    Err(e) => return Err(e),
                },
                // Events are logged once the journal they describe is saved (or at once when nothing is saved).
                Action::Emit(e) => emits.push((e.kind, e.message)),
            }
        }
        for (kind, message) in emits {
            self.emit(kind, &message);
        }
        Ok(outcome)
    }

    fn write_state(&mut self, state: &BootState) -> Result<()> {
        self.backend.write(state).map_err(|source| Error::Bootctl { source })
    }

    /// Requests a reboot the configured way.
    pub fn request_reboot(&mut self) -> Result<()> {
        match self.reboot {
            RebootMethod::None => {
                log::warn!("a reboot is needed (reboot method none: not rebooting)");
                Ok(())
            }
            RebootMethod::Syscall => {
                let source = crate::sys::reboot();
                Err(Error::Reboot { detail: "reboot(2)".to_owned(), source })
            }
            RebootMethod::Init => {
                let detail = format!("asking edge-init at {}", self.config.init_socket.display());
                // Only `ok` means the shutdown has begun (docs/updater.md, "Talking to edge-init"); a refusal or a
                // connection closed without an answer is no reboot.
                match platform::ctl::ask(&self.config.init_socket, &platform::ctl::Request::Reboot) {
                    Ok(platform::ctl::Reply::Ok { .. }) => Ok(()),
                    Ok(platform::ctl::Reply::Refused(refusal)) => Err(Error::InitRefused { detail, refusal }),
                    Err(source) => Err(Error::AskInit { detail, source }),
                }
            }
        }
    }
}

/// Records a stop signal (SIGINT, SIGTERM, SIGHUP) during an install as an `interrupted` event, then ends the
/// process with 128 plus the signal's number, as the signal itself would have. The journal needs nothing: it is
/// consistent at every instant, and the install resumes from it. A signal after this process saved the flip ends
/// it with 0 and records nothing: the install is done, and `edge-init`'s shutdown after a `--reboot` stops every
/// service this way. Returns the handle that stops the watching (`close`), for when the install is over.
pub fn record_stop_signals(config: &Config, source: &str) -> std::io::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = signals.handle();
    let (journal, events, source) = (config.journal_path(), config.events_path(), source.to_owned());
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let name = match signal {
                SIGINT => "SIGINT",
                SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            // Waits for a save in progress and its events, and holds the lock until the process ends.
            let _saving = saving();
            if FLIPPED.load(Ordering::SeqCst) {
                log::info!("stopped by {name} after the flip: the install is done, the next boot tries the slot");
                std::process::exit(0);
            }
            // The journal as last saved; the install thread may save another in the meantime, which a resumed
            // install reads, so this only words the event.
            let journal = Journal::load(&journal).unwrap_or_default();
            let record = interrupted_record(&journal, &source, name);
            log::warn!("{}", record.message);
            if let Err(e) = append_line(&events, &record) {
                log::warn!("{}", Error::WriteEvents { path: events.clone(), source: e });
            }
            std::process::exit(128 + signal);
        }
    });
    Ok(handle)
}

/// The `interrupted` event of an install from `source` stopped by `signal`, worded from the journal.
fn interrupted_record(journal: &Journal, source: &str, signal: &str) -> EventRecord {
    let u = journal.update.as_ref().filter(|u| u.source == source && !u.phase.is_final());
    let message = match u {
        Some(u) => format!(
            "install of {} {} into slot {} stopped by {signal} in phase {} with {}/{} chunks on the slot; install \
             again to resume",
            u.bundle.name,
            u.bundle.version,
            u.target,
            u.phase.name(),
            u.n_done(),
            u.n_chunks
        ),
        None => format!("install from {source} stopped by {signal} before it started writing"),
    };
    EventRecord {
        schema: EVENT_SCHEMA.to_owned(),
        time: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        event: EventKind::Interrupted,
        message,
        reason: Some(format!("stopped by {signal}")),
        target: u.map(|u| u.target.to_string()),
        version: u.map(|u| u.bundle.version.clone()),
        phase: u.map(|u| u.phase.name().to_owned()),
    }
}

/// Whether an `edge-update` holds the node's lock now (an install, or `boot` running its checks). Told from
/// `/proc/locks` rather than by trying the lock, so asking never makes a starting install find the lock taken.
pub fn running(config: &Config) -> bool {
    lock_held(&config.lock_path())
}

/// Whether some process holds a flock(2) on the file at `path` now (a missing file: no), told from `/proc/locks`
/// so that asking never takes the lock, even for an instant.
pub fn lock_held(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return false };
    let (major, minor) = crate::sys::major_minor(meta.dev());
    std::fs::read_to_string("/proc/locks").is_ok_and(|locks| flock_held(&locks, major, minor, meta.ino()))
}

/// Takes an exclusive flock(2) on the file at `path` (made when missing) without waiting: the open file that holds
/// it, or none when another process holds the lock.
pub fn try_take_lock(path: &std::path::Path) -> std::io::Result<Option<std::fs::File>> {
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    Ok(crate::sys::try_lock(&f)?.then_some(f))
}

/// Whether `/proc/locks` lists a flock(2) held (not waited for) on the file `major:minor:inode`; proc(5), "locks".
fn flock_held(locks: &str, major: u32, minor: u32, inode: u64) -> bool {
    let want = format!("{major:02x}:{minor:02x}:{inode}");
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // `N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END`; a waiter's line has `->` after the number.
        f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str())
    })
}

/// Failures are logged as errors: an operator must act.
fn is_failure(kind: EventKind) -> bool {
    matches!(kind, EventKind::Failed | EventKind::RolledBack | EventKind::RollingBack | EventKind::RebootFailed)
}

/// Appends one JSON line and syncs it: one write(2) of the whole line to a file opened for appending, so lines of
/// two writers never interleave.
pub fn append_line(path: &std::path::Path, record: &EventRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(&line)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_14_a_held_lock_is_told_from_proc_locks() {
        let locks = "1: FLOCK  ADVISORY  WRITE 16539 fe:00:10012329 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 16540 fe:00:777 0 EOF\n\
                     3: POSIX  ADVISORY  WRITE 20767 fe:00:888 0 EOF\n";
        let check = |major, minor, inode, held| assert_eq!(flock_held(locks, major, minor, inode), held, "{inode}");
        check(0xfe, 0, 10012329, true);
        check(0xfe, 1, 10012329, false);
        check(0xfe, 0, 1001232, false);
        // Only waited for, or a POSIX lock (not ours): not held.
        check(0xfe, 0, 777, false);
        check(0xfe, 0, 888, false);
    }

    #[test]
    fn issue_14_running_sees_this_process_hold_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        assert!(!running(&config), "no lock file");
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(config.lock_path()).expect("lock");
        assert!(!running(&config), "a lock file nobody holds");
        assert!(crate::sys::try_lock(&f).expect("flock"));
        assert!(running(&config), "held");
        drop(f);
        assert!(!running(&config), "let go");
    }
}
