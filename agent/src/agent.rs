//! The agent's loop: one round of contacts per wakeup, each result turned into a `decide::Event` and handed to
//! `decide::step`, and the thin code that carries out each `decide::Action` (a request, an install, a remote
//! action, a report spooled). The decisions are `decide`'s; this module only executes them, in order, and keeps the
//! rule that a changed state is saved before any action that step returned is carried out.
//!
//! It never exits on a failure of the endpoint, the updater or its own files: each is logged once where it is met
//! and the loop goes on, so the agent neither blocks the node's other services nor takes the updater down.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use fleet_wire::node::{
    Action as RemoteAction, ActionKind, BundleRef, EnrollRequest, Progress, Report, ReportBatch, ReportKind, WaitOn,
};

use crate::client::{Client, Contact};
use crate::clock::Clock;
use crate::config::{Config, Scheme};
use crate::decide::{self, Action, Event, Facts, Installed, Link, Outcome};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::install::Ended;
use crate::paths::Paths;
use crate::spool::{DiskFile, Spool};
use crate::state::State;

/// The largest enrollment token read.
const MAX_TOKEN_BYTES: u64 = 4096;

/// The agent, open: its config, key, spool and state, and the link's pace.
pub struct Agent<C: Clock> {
    config: Config,
    paths: Paths,
    client: Client,
    public_key: ed25519_dalek::VerifyingKey,
    /// The endpoint's CA certificates (DER), with `https`.
    ca_der: Option<std::sync::Arc<Vec<Vec<u8>>>>,
    spool: Spool<DiskFile>,
    state: State,
    link: Link,
    clock: C,
    update: Option<updater::config::Config>,
    /// The last refusal logged, so each is logged once while it lasts.
    last_refusal: Option<String>,
}

impl<C: Clock> Agent<C> {
    /// Opens the agent: the node key (made on the first start), the state, the spool, the client (the CA is read
    /// here). Touches no network.
    pub fn open(config: Config, paths: Paths, clock: C) -> Result<Agent<C>> {
        let (identity, _) = Identity::load_or_create(&paths.key)?;
        log::info!("node {}", identity.id);
        if config.scheme == Scheme::Http {
            log::warn!("the endpoint {} is plain http: requests are signed, but not private", config.endpoint);
        }
        let state = State::load(&paths.state).unwrap_or_else(|e| {
            // A damaged state is started over (the node enrolls again with the same key, which the endpoint
            // answers with 200): a loop that stops on it would stop reporting for good.
            log::error!("{}; starting from an empty state", crate::error::chain(&e));
            State::default()
        });
        let spool = Spool::open(DiskFile::new(&paths.spool), &paths.spool)?;
        let public_key = identity.key.verifying_key();
        let ca_der = match config.scheme {
            Scheme::Https => Some(std::sync::Arc::new(
                crate::client::load_ca(&config.ca_file)?.iter().map(|c| c.der().to_vec()).collect(),
            )),
            Scheme::Http => None,
        };
        let client = Client::new(&config, identity.id.clone(), identity.key)?;
        let link = Link::new(&config.timing);
        prepare_lock_file(&config.update_lock_file);
        let mut agent = Agent {
            config,
            paths,
            client,
            public_key,
            ca_der,
            spool,
            state,
            link,
            clock,
            update: None,
            last_refusal: None,
        };
        agent.load_update_config();
        Ok(agent)
    }

    /// The node id.
    pub fn node_id(&self) -> &fleet_wire::node::NodeId {
        self.client.node()
    }

    /// The state as last saved.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Reports waiting in the spool.
    pub fn n_pending(&self) -> usize {
        self.spool.n_pending()
    }

    /// Starts the telemetry's threads (docs/telemetry.md) unless the config turns it off; a spool that cannot be
    /// opened is logged and the agent goes on without it.
    pub fn start_telemetry(&self) {
        if !self.config.telemetry.enabled {
            return;
        }
        if let Err(e) = self.open_telemetry().and_then(crate::telemetry::run::Telemetry::spawn) {
            log::error!("telemetry: {}; the agent goes on without it", crate::error::chain(&e));
        }
    }

    /// Opens the telemetry (its spool, where the kernel log was left) with this agent's config, paths and client.
    pub fn open_telemetry(&self) -> Result<crate::telemetry::run::Telemetry> {
        crate::telemetry::run::Telemetry::open(&self.config, &self.paths, self.client.clone())
    }

    /// Runs rounds forever, waiting between them as the decisions say.
    pub fn run(&mut self) -> ! {
        loop {
            let wait = self.round();
            log::debug!("next contact in {} s", wait.as_secs());
            self.clock.sleep(wait);
        }
    }

    /// One round: the event log into the spool, then the contacts the decisions ask for, in order; returns how
    /// long to wait before the next.
    pub fn round(&mut self) -> Duration {
        if self.update.is_none() {
            self.load_update_config();
        }
        self.tail();
        let inventory = self.inventory();
        let hash = crate::inventory::hash(&inventory);
        let mut queue = VecDeque::new();
        let changed = self.state.inventory_hash.as_deref() != Some(hash.as_str());
        self.apply(Event::Wake { inventory_changed: changed }, &mut queue);
        while let Some(action) = queue.pop_front() {
            if let Some(event) = self.execute(action, &inventory, &hash) {
                self.apply(event, &mut queue);
            }
        }
        decide::delay(&self.link, &self.config.timing, self.clock.random())
    }

    /// Decides what `event` does, saves a changed state, and queues the actions (none when the state could not be
    /// saved: an action is carried out only once it is recorded).
    fn apply(&mut self, event: Event, queue: &mut VecDeque<Action>) {
        let step = decide::step(&self.link, &self.state, &self.config.timing, event);
        self.link = step.link;
        if step.end_round {
            queue.clear();
        }
        if step.state != self.state {
            // Durability: the state (actions recorded done among it) is on disk before any action of this step
            // runs; a cut before the save runs none of them, a cut after it never runs them again.
            if let Err(e) = step.state.save(&self.paths.state) {
                log::error!("{}; not acting on it", crate::error::chain(&e));
                return;
            }
            self.state = step.state;
        }
        queue.extend(step.actions);
    }

    /// Carries out one action; returns the event its result makes.
    fn execute(&mut self, action: Action, inventory: &fleet_wire::node::Inventory, hash: &str) -> Option<Event> {
        let now = self.clock.now_unix_secs();
        match action {
            Action::Enroll => Some(Event::Enrolled(self.enroll(inventory, now))),
            Action::SendReports => Some(Event::Reported(self.send_reports(now))),
            Action::PutInventory => {
                let contact = self.client.put_inventory(inventory, now);
                Some(Event::InventoryPut(self.outcome("inventory", contact).map_ok(|()| hash.to_owned())))
            }
            Action::PollDesired => {
                let contact = self.client.desired(self.state.etag.as_deref(), now);
                let outcome = self.outcome("desired state", contact);
                Some(Event::Desired(outcome, self.facts()))
            }
            Action::Install(bundle) => {
                let end = self.install(&bundle);
                Some(Event::Installed(bundle.manifest_hash, end))
            }
            Action::Flip { bundle, lock_overridden } => {
                let end = self.flip(&bundle, lock_overridden, now);
                Some(Event::Installed(bundle.manifest_hash, end))
            }
            Action::Wait(bundle, on) => {
                self.report_wait(&bundle, on);
                None
            }
            Action::CancelHold => {
                if let Some(update) = &self.update {
                    match crate::install::cancel(update) {
                        Ok(()) => log::info!("the held update is no longer desired: cancelled"),
                        Err(e) => log::warn!("the held update could not be cancelled: {}", crate::error::chain(&e)),
                    }
                }
                self.tail();
                None
            }
            Action::Run(a) => {
                self.run_action(&a, now);
                None
            }
            Action::Refuse(a, reason) => {
                log::warn!("action {} ({}) refused: {reason}", a.id, a.kind.word());
                self.spool_report(action_report(&a, ReportKind::ActionRefused, reason.to_owned()));
                None
            }
        }
    }

    fn enroll(
        &mut self,
        inventory: &fleet_wire::node::Inventory,
        now: u64,
    ) -> Outcome<(fleet_wire::node::NodeStatus, u32)> {
        let token = match read_token(&self.config.token_file) {
            Ok(t) => t,
            Err(e) => {
                self.log_refusal(format!("cannot enroll: {}", crate::error::chain(&e)));
                return Outcome::Refused(0);
            }
        };
        let public_key = fleet_wire::node::encode_public_key(&self.public_key);
        let request = EnrollRequest { token, public_key, inventory: inventory.clone() };
        if let Err(e) = request.check() {
            self.log_refusal(format!("cannot enroll: {}", crate::error::chain(&e)));
            return Outcome::Refused(0);
        }
        match self.outcome("enrollment", self.client.enroll(&request, now)) {
            Outcome::Ok((status, reply)) => {
                let again = if status == 200 { " (again)" } else { "" };
                log::info!("enrolled{again} as {}: {}", reply.node_id, reply.status);
                let mut r = report(ReportKind::Enrolled, format!("enrolled as {}: {}", reply.node_id, reply.status));
                r.phase = inventory.update_phase.clone();
                self.spool_report(r);
                Outcome::Ok((reply.status, reply.poll_interval_secs))
            }
            Outcome::Rejected => Outcome::Rejected,
            Outcome::Refused(s) => Outcome::Refused(s),
            Outcome::Down => Outcome::Down,
        }
    }

    /// Sends the next batch; acknowledged reports leave the spool.
    fn send_reports(&mut self, now: u64) -> Outcome<bool> {
        let reports = self.spool.batch(self.config.report_batch);
        let Some(last) = reports.last().map(|r| r.seq) else { return Outcome::Ok(false) };
        let batch = ReportBatch { reports };
        if let Err(e) = batch.check() {
            log::error!("the spool's next batch breaks the protocol ({}): it is kept", crate::error::chain(&e));
            return Outcome::Refused(0);
        }
        match self.outcome("reports", self.client.post_reports(&batch, now)) {
            Outcome::Ok(ack) => {
                log::debug!("reports up to {last} sent: {} stored, {} already held", ack.stored, ack.duplicates);
                if let Err(e) = self.spool.ack(ack.acked_seq) {
                    log::error!("{}", crate::error::chain(&e));
                    return Outcome::Ok(false);
                }
                self.tail();
                // More right away only when this batch was taken whole, so an endpoint that acknowledges less
                // than it was sent does not make a tight loop.
                Outcome::Ok(ack.acked_seq >= last && self.spool.n_pending() > 0)
            }
            Outcome::Rejected => Outcome::Rejected,
            Outcome::Refused(s) => Outcome::Refused(s),
            Outcome::Down => Outcome::Down,
        }
    }

    /// Installs the desired bundle, spooling coarse progress and a refusal.
    fn install(&mut self, bundle: &BundleRef) -> Installed {
        let Some(update) = self.update.clone() else {
            log::error!("no install of {} {}: the updater's config is not readable", bundle.name, bundle.version);
            return Installed::Failed;
        };
        log::info!("installing {} {} (manifest {})", bundle.name, bundle.version, bundle.manifest_hash);
        let mut r = report(ReportKind::Downloading, format!("installing {} {}", bundle.name, bundle.version));
        r.version = Some(bundle.version.clone());
        r.progress = Some(Progress { done_bytes: 0, total_bytes: bundle.size_bytes });
        self.spool_report(r);
        let mut quarter = 0;
        let spool = &mut self.spool;
        let mut progress = |p: &updater::wire::Progress| {
            // Coarse progress: one report per quarter written, from synced progress only.
            if !p.synced || p.stage != updater::wire::Stage::Writing || p.image_bytes == 0 {
                return;
            }
            let q = (p.done_bytes.saturating_mul(4) / p.image_bytes).min(4);
            if q > quarter {
                quarter = q;
                let mut r = report(ReportKind::Downloading, format!("{}% written", q * 25));
                r.version = Some(bundle.version.clone());
                r.progress = Some(Progress { done_bytes: p.done_bytes, total_bytes: p.image_bytes });
                if let Err(e) = spool.push(r, 0) {
                    log::error!("{}", crate::error::chain(&e));
                }
            }
        };
        // The endpoint's own store is trusted through the endpoint's CA, like the endpoint; other hosts (a CDN, an
        // object store) through the public roots. The bundle's signatures are checked either way.
        let own_store = format!("{}/", self.config.endpoint);
        let ca = self.ca_der.clone();
        let roots_for = |url: &str| ca.clone().filter(|_| url.starts_with(&own_store));
        let (ended, stack) = crate::install::run(&update, bundle, &roots_for, &mut progress);
        if let Some(stack) = stack.filter(|s| !s.is_null()) {
            let keep: Vec<String> = self.slot_hashes();
            let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
            self.state.record_stack(&bundle.manifest_hash, stack, &keep);
            if let Err(e) = self.state.save(&self.paths.state) {
                log::warn!("{}", crate::error::chain(&e));
            }
        }
        self.tail();
        self.ended(bundle, ended)
    }

    /// Flips the held target of `bundle`, holding the update lock over the flip and the reboot's request (an
    /// application that asks for the lock meanwhile waits for the reboot), or passing over an application's lock
    /// that held it back as long as the rule allows.
    fn flip(&mut self, bundle: &BundleRef, lock_overridden: bool, now: u64) -> Installed {
        let Some(update) = self.update.clone() else { return Installed::Failed };
        let lock_file = &self.config.update_lock_file;
        let _lock = if lock_overridden {
            let since = self.state.hold.as_ref().and_then(|h| h.lock_since).unwrap_or(now);
            let held = now.saturating_sub(since);
            log::warn!(
                "the update lock has held {} {} back {held} s, as long as allowed: flipping",
                bundle.name,
                bundle.version
            );
            let mut r = report(
                ReportKind::LockOverridden,
                format!("the update lock held {} {} back {held} s; flipping anyway", bundle.name, bundle.version),
            );
            r.version = Some(bundle.version.clone());
            r.reason = Some(WaitOn::UpdateLock.word().to_owned());
            self.spool_report(r);
            None
        } else {
            match updater::run::try_take_lock(lock_file) {
                Ok(Some(f)) => Some(f),
                Ok(None) => {
                    log::info!("an application took the update lock; {} {} waits", bundle.name, bundle.version);
                    return Installed::Busy;
                }
                Err(e) => {
                    // A lock file that cannot be opened is no lock an application can hold.
                    log::warn!("the update lock {} cannot be taken ({e}); flipping", lock_file.display());
                    None
                }
            }
        };
        log::info!("flipping to {} {}", bundle.name, bundle.version);
        let ended = crate::install::flip(&update);
        self.tail();
        self.ended(bundle, ended)
    }

    /// Reports what a held target now waits on.
    fn report_wait(&mut self, bundle: &BundleRef, on: WaitOn) {
        let what = match on {
            WaitOn::Paused => "its deployment is paused",
            WaitOn::Window => "the site's maintenance window",
            WaitOn::UpdateLock => "an application's update lock",
        };
        log::info!("{} {} is verified and waits for its flip: {what}", bundle.name, bundle.version);
        let mut r =
            report(ReportKind::Waiting, format!("{} {} is verified; waiting: {what}", bundle.name, bundle.version));
        r.version = Some(bundle.version.clone());
        r.reason = Some(on.word().to_owned());
        self.spool_report(r);
    }

    /// What an install or flip's end is to the loop, logged and reported.
    fn ended(&mut self, bundle: &BundleRef, ended: Ended) -> Installed {
        match ended {
            Ended::Verified => {
                log::info!("{} {} is verified and held for its flip", bundle.name, bundle.version);
                Installed::Verified
            }
            Ended::Flipped => {
                log::info!("{} {} is flipped; edge-init reboots the node into it", bundle.name, bundle.version);
                Installed::Flipped
            }
            Ended::Refused { exit_code, reason } => {
                log::error!("refused {} {}: {reason}", bundle.name, bundle.version);
                let mut r = report(ReportKind::Refused, format!("refused {} {}", bundle.name, bundle.version));
                r.version = Some(bundle.version.clone());
                r.exit_code = Some(exit_code);
                r.reason = Some(crate::events::clip(&reason));
                self.spool_report(r);
                Installed::Refused
            }
            Ended::Failed { reason } => {
                log::warn!(
                    "the install of {} {} failed, retried at the next poll: {reason}",
                    bundle.name,
                    bundle.version
                );
                Installed::Failed
            }
            Ended::Busy { reason } => {
                log::info!("no install of {} {} now: {reason}", bundle.name, bundle.version);
                Installed::Busy
            }
        }
    }

    /// Carries out a remote action (recorded done already) and reports it.
    fn run_action(&mut self, a: &RemoteAction, now: u64) {
        log::info!("action {}: {}", a.id, a.kind.word());
        let result = match a.kind {
            ActionKind::Reboot => {
                // Reported before it is asked: edge-init's shutdown stops this service right after it answers,
                // which could come before a report written after the answer. Should edge-init refuse, an
                // `action-refused` follows, and the later report is the one that holds.
                let done = "reboot requested of edge-init".to_owned();
                self.spool_report(action_report(a, ReportKind::ActionDone, done));
                match self.reboot() {
                    Ok(()) => return,
                    Err(e) => Err(e),
                }
            }
            ActionKind::Diagnostics => self.diagnostics(&a.id, now),
        };
        match result {
            Ok(message) => self.spool_report(action_report(a, ReportKind::ActionDone, message)),
            Err(e) => {
                let reason = crate::error::chain(&e);
                log::warn!("action {} ({}) failed: {reason}", a.id, a.kind.word());
                self.spool_report(action_report(a, ReportKind::ActionRefused, reason));
            }
        }
    }

    fn reboot(&self) -> Result<()> {
        let socket = &self.config.init_socket;
        match platform::ctl::ask(socket, &platform::ctl::Request::Reboot) {
            Ok(platform::ctl::Reply::Ok { .. }) => Ok(()),
            Ok(platform::ctl::Reply::Refused(r)) => {
                Err(Error::Init { socket: socket.clone(), detail: format!("refused: {r}") })
            }
            Err(e) => Err(Error::Init { socket: socket.clone(), detail: crate::error::chain(&e) }),
        }
    }

    fn diagnostics(&mut self, action: &str, now: u64) -> Result<String> {
        let d = crate::diagnostics::collect(&self.config, self.update.as_ref(), &self.paths);
        let body = serde_json::to_vec(&d).expect("diagnostics serialize");
        match self.client.put_diagnostics(action, &body, now) {
            Contact::Ok(()) => Ok(format!("diagnostics uploaded ({} bytes)", body.len())),
            Contact::Down(e) => Err(e),
            Contact::Rejected(status) | Contact::Refused(status, _) => Err(Error::Status {
                method: "PUT",
                url: fleet_wire::node::diagnostics_path(self.client.node(), action),
                status,
                error: None,
            }),
        }
    }

    /// Moves new event log lines into the spool.
    fn tail(&mut self) {
        let Some(u) = &self.update else { return };
        if let Err(e) = crate::spool::tail(&mut self.spool, &u.events_path()) {
            log::error!("{}", crate::error::chain(&e));
        }
    }

    fn spool_report(&mut self, r: Report) {
        if let Err(e) = self.spool.push(r, 0) {
            log::error!("{}", crate::error::chain(&e));
        }
    }

    fn inventory(&self) -> fleet_wire::node::Inventory {
        crate::inventory::collect(&self.paths, &self.config, self.update.as_ref(), &self.state.stacks)
    }

    /// The manifest hashes of the bundles in both slots.
    fn slot_hashes(&self) -> Vec<String> {
        use updater::journal::JournalStore as _;
        let Some(u) = &self.update else { return Vec::new() };
        let journal = updater::journal::FileJournal::new(u.journal_path()).load().unwrap_or_default();
        [journal.slot_a, journal.slot_b].into_iter().flatten().map(|s| s.bundle.manifest_blake3).collect()
    }

    /// What the node runs and does now.
    fn facts(&self) -> Facts {
        use updater::journal::JournalStore as _;
        let Some(u) = &self.update else { return Facts::default() };
        let journal = updater::journal::FileJournal::new(u.journal_path()).load().unwrap_or_default();
        let booted = updater::slots::booted(u).ok();
        let held = journal.update.as_ref().filter(|up| up.held && up.phase == updater::journal::Phase::Verified);
        Facts {
            booted_manifest: booted.and_then(|b| journal.slot(b).map(|s| s.bundle.manifest_blake3.clone())),
            install_running: updater::run::running(u),
            held: held.map(|up| up.bundle.manifest_blake3.clone()),
            now: self.clock.now_unix_secs(),
            app_lock: updater::run::lock_held(&self.config.update_lock_file),
            update_done: journal
                .update
                .as_ref()
                .filter(|up| !up.phase.is_installing())
                .map(|up| up.bundle.manifest_blake3.clone()),
        }
    }

    fn load_update_config(&mut self) {
        match updater::config::Config::load(&self.config.update_config) {
            Ok(u) => self.update = Some(u),
            Err(e) => self.log_refusal(format!(
                "the updater's config cannot be read (no installs, no reports of the updater): {}",
                crate::error::chain(&e)
            )),
        }
    }

    /// A contact's outcome; its error is logged (a refusal once while it lasts).
    fn outcome<T>(&mut self, what: &str, contact: Contact<T>) -> Outcome<T> {
        match contact {
            Contact::Ok(t) => {
                self.last_refusal = None;
                Outcome::Ok(t)
            }
            Contact::Rejected(s) => {
                self.log_refusal(format!("the endpoint refuses this node ({what}: status {s}); retrying slowly"));
                Outcome::Rejected
            }
            Contact::Refused(s, error) => {
                let word = error.map_or(String::new(), |e| format!(", {e}"));
                self.log_refusal(format!("the endpoint refused the {what} (status {s}{word})"));
                Outcome::Refused(s)
            }
            Contact::Down(e) => {
                log::warn!("{what}: {}", crate::error::chain(&e));
                Outcome::Down
            }
        }
    }

    fn log_refusal(&mut self, message: String) {
        if self.last_refusal.as_deref() != Some(message.as_str()) {
            log::error!("{message}");
            self.last_refusal = Some(message);
        }
    }
}

impl<T> Outcome<T> {
    fn map_ok<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Ok(t) => Outcome::Ok(f(t)),
            Outcome::Rejected => Outcome::Rejected,
            Outcome::Refused(s) => Outcome::Refused(s),
            Outcome::Down => Outcome::Down,
        }
    }
}

/// Reads the enrollment token: one line of printable text.
pub fn read_token(path: &Path) -> Result<String> {
    let bytes = image_layout::fsutil::read_bounded(path, MAX_TOKEN_BYTES)
        .map_err(|source| Error::ReadToken { path: path.to_owned(), source })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Token { path: path.to_owned(), detail: "not UTF-8 text".to_owned() })?;
    let token = text.trim();
    if token.is_empty() || token.contains(|c: char| c.is_control() || c.is_whitespace()) {
        return Err(Error::Token { path: path.to_owned(), detail: "expected one word on one line".to_owned() });
    }
    Ok(token.to_owned())
}

/// An agent's own report, numbered by the spool.
fn report(kind: ReportKind, message: String) -> Report {
    Report {
        seq: 0,
        time: crate::events::now(),
        kind,
        message: crate::events::clip(&message),
        reason: None,
        exit_code: None,
        version: None,
        slot: None,
        phase: None,
        progress: None,
        action: None,
    }
}

/// Makes the update lock file and its directory, readable by all, so that an application can take the lock
/// without write access; a failure is logged (the lock is then only what an application makes of it).
fn prepare_lock_file(path: &Path) {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let made = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
        std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
    });
    if let Err(e) = made {
        log::warn!("the update lock file {} cannot be made: {e}", path.display());
    }
}

fn action_report(a: &RemoteAction, kind: ReportKind, message: String) -> Report {
    let mut r = report(kind, format!("action {} ({}): {message}", a.id, a.kind.word()));
    r.action = Some(crate::events::clip(&a.id));
    if kind == ReportKind::ActionRefused {
        r.reason = Some(crate::events::clip(&message));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_one_word_on_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "fleet-token-1\n").expect("write");
        assert_eq!(read_token(&path).expect("token"), "fleet-token-1");
        for bad in ["", "\n", "two words\n", "a\u{1}b"] {
            std::fs::write(&path, bad).expect("write");
            assert!(matches!(read_token(&path), Err(Error::Token { .. })), "{bad:?}");
        }
        std::fs::write(&path, vec![b'a'; 5000]).expect("write");
        assert!(matches!(read_token(&path), Err(Error::ReadToken { .. })));
        assert!(matches!(read_token(&dir.path().join("none")), Err(Error::ReadToken { .. })));
    }
}
