//! The node as the updater acts on it: the journal, the boot state backend and the event log behind one value,
//! and the thin executor that carries out the [`Action`]s that `phase::step` decides, in order.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use bootctl::backend::Backend;
use bootctl::rules::{BootState, Slot};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::{Config, RebootMethod};
use crate::error::{Error, Result};
use crate::journal::{FileJournal, Journal, JournalStore};
use crate::phase::{step, Action, Event};
use crate::wire::EventRecord;

/// What handling an event led to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A reboot was requested (or, with reboot method `none`, is needed).
    pub reboot: bool,
    /// The health checks failed, and why.
    pub unhealthy: Option<String>,
    /// The health checks passed and the slot was committed.
    pub committed: bool,
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
        self.store.save(&journal)?;
        self.journal = journal;
        Ok(())
    }

    /// Appends an event to the event log and syncs it. A log that cannot be written is reported, not fatal: the
    /// journal, not the log, is what the update relies on.
    pub fn emit(&mut self, kind: &str, message: &str) {
        let u = self.journal.update.as_ref();
        let record = EventRecord {
            time: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            event: kind.to_owned(),
            message: message.to_owned(),
            target: u.map(|u| u.target.to_string()),
            version: u.map(|u| u.bundle.version.clone()),
            phase: u.map(|u| u.phase.name().to_owned()),
        };
        log::info!("{message}");
        if let Err(e) = append_line(&self.events, &record) {
            log::warn!("{}", Error::WriteEvents { path: self.events.clone(), source: e });
        }
    }

    /// Decides what `event` does ([`step`]) and carries out the actions in order.
    pub fn handle(&mut self, event: Event) -> Result<Outcome> {
        let s = step(&self.journal, &event)?;
        let mut outcome = Outcome::default();
        let mut emits: Vec<(&str, String)> = Vec::new();
        for action in s.actions {
            match action {
                Action::Save => {
                    self.store.save(&s.journal)?;
                    self.journal = s.journal.clone();
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
                        Err(reason) => {
                            outcome.unhealthy = Some(reason.clone());
                            Event::ChecksFailed { booted, reason }
                        }
                    };
                    let inner = self.handle(next)?;
                    outcome.reboot |= inner.reboot;
                }
                Action::Reboot => {
                    self.request_reboot()?;
                    outcome.reboot = true;
                }
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
                crate::health::ask_init(&self.config.init_socket, "reboot").map(|_| ()).map_err(|source| {
                    Error::Reboot {
                        detail: format!("asking edge-init at {}", self.config.init_socket.display()),
                        source,
                    }
                })
            }
        }
    }
}

fn append_line(path: &std::path::Path, record: &EventRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(&line)?;
    f.sync_data()
}
