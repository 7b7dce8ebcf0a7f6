//! PID 1: one loop over a closed [`Event`]. Each wakeup (a signal, a child's exit, a timer, a control connection,
//! a readiness message, a service's output, a watchdog tick) becomes one event, and [`Init::handle`] is the one
//! `match` that acts on it (docs/edge-init.md, "PID 1").
//!
//! Decisions about services are `supervise::Supervisor`'s; this module runs its commands, reaps every child,
//! and owns the shutdown sequence: services in reverse order, then every other process (TERM, grace, KILL), then
//! sync and unmount with deadlines, then reboot(2). It never exits while it is PID 1.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::ctl::{Refusal, Reply, Request};
use signal_hook::consts::signal::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

use crate::boot;
use crate::cgroup::Cgroups;
use crate::control::{self, ServiceView, View};
use crate::error::{chain, Error};
use crate::log_sink::Sink;
use crate::output::Reader;
use crate::paths::{self, Paths};
use crate::services::{self, Config};
use crate::shutdown::{self, Effect, Shutdown};
use crate::supervise::{Cmd, Input, State, Supervisor};
use crate::sys::{self, Exit, Halt, Reaped, SIGPWR};
use crate::unmount;
use crate::watchdog::{Petting, Watchdog};

pub use crate::shutdown::{KILL_GRACE, SYNC_DEADLINE, UNMOUNT_DEADLINE};
/// The longest the loop sleeps with nothing to do (a bound, not a poll: every wakeup has a cause).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The signals PID 1 handles.
const SIGNALS: [i32; 8] = [SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGPWR, SIGHUP, SIGQUIT, SIGCHLD];

/// Where things are, for a real node and for tests.
#[derive(Debug, Clone)]
pub struct Options {
    /// The services file (`--config`; `edge.services=` on the kernel command line wins).
    pub config: PathBuf,
    /// The directory of the control and notify sockets (`--run`).
    pub run_dir: PathBuf,
    /// The kernel command line to use instead of `/proc/cmdline` (`--cmdline`).
    pub cmdline: Option<String>,
    /// Every other fixed path (`/proc/cmdline`, `/etc/passwd`, `/dev/kmsg`...): under `/` on a node.
    pub paths: Paths,
}

impl Default for Options {
    fn default() -> Self {
        let paths = Paths::default();
        Options { config: paths.services.clone(), run_dir: paths.run_dir.clone(), cmdline: None, paths }
    }
}

/// Everything that can make PID 1 act.
#[derive(Debug)]
pub enum Event {
    /// A signal arrived.
    Signal(i32),
    /// A child ended: a service, or any orphan re-parented to us.
    ChildExited(u32, Exit),
    /// Time passed (a restart delay, a grace period, a start timeout or a shutdown deadline may have ended).
    Timer,
    /// A client connected to the control socket.
    Control(UnixStream),
    /// A datagram on `NOTIFY_SOCKET`.
    Notify {
        /// The sender's session (read as the datagram arrives, while the sender surely still exists): a service
        /// leads its own session, so this is the service's main pid.
        session: u32,
        /// Its text (`READY=1`, `STATUS=...`).
        message: String,
    },
    /// A service's output pipe is readable (the reader's position).
    Output(usize),
    /// The hardware watchdog is due to be petted.
    WatchdogTick,
}

/// The state of PID 1.
pub struct Init {
    sink: &'static Sink,
    paths: Paths,
    start: Instant,
    pid1: bool,
    /// PID 1 of the machine's first PID namespace: the one that unmounts `/` and reboots the machine.
    machine: bool,
    sup: Supervisor,
    cgroups: Option<Cgroups>,
    readers: Vec<Option<Reader>>,
    notify_path: PathBuf,
    shutdown: Option<Shutdown>,
    children_left: bool,
    data: String,
    /// Where `edge-init` mounted the data partition (or its tmpfs stand-in), to unmount at shutdown.
    data_mount: Option<PathBuf>,
    watchdog: Option<(Watchdog, Petting)>,
    petting_stopped: bool,
    /// What PID 1 keeps about each service beside the supervisor's state, in the supervisor's order.
    services: Vec<Tracked>,
}

/// What PID 1 keeps about one service beside the supervisor's state.
#[derive(Debug, Clone, Default)]
struct Tracked {
    /// The last `STATUS=` it sent (empty: none).
    status: String,
    /// How often it was started again after it ended.
    restarts: u32,
    /// Whether its current process joined its cgroup leaf.
    in_cgroup: bool,
}

/// The self-pipe: each handled signal sets its flag and writes a byte to wake the loop.
struct SignalPipe {
    read: UnixStream,
    flags: Vec<(i32, Arc<AtomicBool>)>,
}

impl SignalPipe {
    fn install() -> std::io::Result<SignalPipe> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut flags = Vec::new();
        for sig in SIGNALS {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(sig, flag.clone())?;
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
            flags.push((sig, flag));
        }
        Ok(SignalPipe { read, flags })
    }

    fn drain(&self) -> Vec<i32> {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
        self.flags.iter().filter(|(_, f)| f.swap(false, Ordering::SeqCst)).map(|(s, _)| *s).collect()
    }
}

/// Loads the services file; a missing or bad one is an error an operator must act on, and the node still comes
/// up with no services (an update in trial is then not committed, and the bootloader falls back).
fn load_config(path: &Path) -> Config {
    services::load(path).unwrap_or_else(|e| {
        log::error!("{}; starting no services", chain(&e));
        services::parse("", path).expect("an empty services file is valid")
    })
}

/// Runs PID 1 (or, when not PID 1, a supervisor that exits after a stop): never returns while PID 1.
pub fn run(opts: Options, sink: &'static Sink) -> i32 {
    let pid1 = sys::pid() == 1;
    install_panic_hook(pid1, opts.paths.kmsg.clone());
    // Handlers first: the kernel drops a signal to PID 1 that has none, and a `reboot` during a first-boot format
    // must not be lost.
    let signals = match SignalPipe::install() {
        Ok(s) => s,
        Err(source) => fatal(pid1, &chain(&Error::InstallSignals { source }).to_string()),
    };
    if let Err(e) = sys::cloexec_inherited() {
        log::warn!("cannot mark inherited descriptors close-on-exec: {e}");
    }
    // /proc first: the kernel command line and the namespace check read it.
    if pid1 {
        boot::mount_api_filesystems(&opts.paths);
    }
    // The machine itself: not a container's PID 1, not a test's, not a supervisor outside PID 1.
    let machine = pid1 && sys::in_initial_pid_namespace(&opts.paths.pid_namespace);
    if machine {
        if let Err(e) = sys::disable_ctrl_alt_del() {
            log::warn!("cannot route ctrl-alt-del to PID 1: {e}");
        }
    }
    if !pid1 {
        if let Err(e) = sys::become_subreaper() {
            log::warn!("cannot become a child subreaper, orphans will not be reaped here: {e}");
        }
    }
    let cmdline = match &opts.cmdline {
        Some(c) => c.clone(),
        None => std::fs::read_to_string(&opts.paths.cmdline).unwrap_or_else(|source| {
            let e = Error::ReadCmdline { path: opts.paths.cmdline.clone(), source };
            log::error!("{}; going on without the edge. words", chain(&e));
            String::new()
        }),
    };
    let cmdline = crate::cmdline::parse(&cmdline);
    if cmdline.debug {
        log::set_max_level(log::LevelFilter::Debug);
    }
    for w in &cmdline.unknown {
        log::warn!("kernel command line: {w} means nothing to this version; ignored");
    }
    let config_path = cmdline.services.as_ref().map_or(opts.config.clone(), PathBuf::from);
    let config = load_config(&config_path);
    let (data, data_mount) =
        if pid1 { early_boot(&opts.paths, &config, &cmdline, machine) } else { ("not managed".to_owned(), None) };
    if let Err(source) = std::fs::create_dir_all(&opts.run_dir) {
        log::error!("{}", chain(&Error::MakeDir { path: opts.run_dir.clone(), source }));
    }
    let control_path = opts.run_dir.join(paths::CONTROL_SOCKET_NAME);
    let notify_path = opts.run_dir.join(paths::NOTIFY_SOCKET_NAME);
    let control = bind_control(&control_path);
    let notify = bind_notify(&notify_path);
    let cgroups = Cgroups::discover(&opts.paths);
    let watchdog = if pid1 {
        match Watchdog::open(&config.watchdog, cmdline.watchdog, &opts.paths.sys, &opts.paths.dev) {
            Ok(w) => w.map(|w| {
                let p = Petting::new(w.interval());
                (w, p)
            }),
            Err(e) => {
                log::error!("{}; running without the hardware watchdog", chain(&e));
                None
            }
        }
    } else {
        None
    };
    let n = config.services.len();
    let mut init = Init {
        sink,
        paths: opts.paths.clone(),
        start: Instant::now(),
        pid1,
        machine,
        sup: Supervisor::new(config.services.clone()),
        cgroups,
        readers: Vec::new(),
        notify_path,
        shutdown: None,
        children_left: true,
        data,
        data_mount,
        watchdog,
        petting_stopped: false,
        services: vec![Tracked::default(); n],
    };
    log::info!("started with {n} services from {}", config_path.display());
    init.drive(Input::Tick);
    init.run_loop(&signals, control.as_ref(), notify.as_ref())
}

/// PID 1's start: the mounts, hostname and `lo`; the kernel modules; in an initramfs, the switch to the slot's
/// root (which does not come back); then the data partition. Returns the data partition's state and where it is.
fn early_boot(
    paths: &Paths,
    config: &Config,
    cmdline: &crate::cmdline::Cmdline,
    machine: bool,
) -> (String, Option<PathBuf>) {
    if machine {
        // Service output goes to the kernel log line by line; its default rate limit would drop most of it.
        if let Err(source) = std::fs::write(&paths.printk_devkmsg, "on\n") {
            let e = Error::WriteKernelSetting { path: paths.printk_devkmsg.clone(), source };
            log::warn!("cannot lift the kernel log's rate limit for services: {}", chain(&e));
        }
    }
    // Each failure was logged where it happened.
    boot::name_and_loopback(paths, config.hostname.as_deref());
    crate::modules::load(
        &config.modules,
        &cmdline.modules,
        &cmdline.module_params,
        &crate::modules::default_dir(&paths.modules),
    );
    if let Some(root) = &cmdline.root {
        if boot::in_initramfs(paths) {
            let fstype = cmdline.root_fstype.as_deref().unwrap_or("ext4");
            let e = boot::switch_root(paths, root, fstype, config.data.wait);
            // Before the initramfs is cleared this leaves it as it was; after, there is nothing to go back to.
            fatal(true, &format!("switch root: {}", chain(&e)));
        }
    }
    let state = crate::data::mount_data_in(paths, &config.data, cmdline.data.as_ref());
    (state.to_string(), Some(config.data.mount.clone()))
}

fn bind_control(path: &Path) -> Option<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(source) => {
            log::error!("control socket: {}", chain(&Error::BindSocket { path: path.to_owned(), source }));
            return None;
        }
    };
    use std::os::unix::fs::PermissionsExt;
    if let Err(source) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        log::warn!("control socket: {}", chain(&Error::SocketMode { path: path.to_owned(), source }));
    }
    listener.set_nonblocking(true).ok()?;
    Some(listener)
}

fn bind_notify(path: &Path) -> Option<UnixDatagram> {
    let _ = std::fs::remove_file(path);
    let sock = UnixDatagram::bind(path)
        .and_then(|s| sys::pass_credentials(&s).map(|()| s))
        .map_err(|source| log::error!("notify socket: {}", chain(&Error::BindSocket { path: path.to_owned(), source })))
        .ok()?;
    // Services running as other users must be able to send; the kernel, not the message, says who sent it.
    use std::os::unix::fs::PermissionsExt;
    if let Err(source) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)) {
        log::warn!("notify socket: {}", chain(&Error::SocketMode { path: path.to_owned(), source }));
    }
    sock.set_nonblocking(true).ok()?;
    Some(sock)
}

impl Init {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn run_loop(&mut self, signals: &SignalPipe, control: Option<&UnixListener>, notify: Option<&UnixDatagram>) -> ! {
        loop {
            let now = self.now();
            let critical = self.critical_alive();
            let pet_at = self.watchdog.as_ref().and_then(|(_, p)| p.next_deadline(critical));
            let wake = [self.sup.next_deadline(), self.shutdown_deadline(), pet_at].into_iter().flatten().min();
            let timeout = wake.map_or(MAX_SLEEP, |w| w.saturating_sub(now)).min(MAX_SLEEP);
            let mut fds = vec![signals.read.as_fd()];
            fds.extend(control.map(|c| c.as_fd()));
            fds.extend(notify.map(|n| n.as_fd()));
            let fixed = fds.len();
            let reader_at: Vec<usize> = (0..self.readers.len()).filter(|&i| self.readers[i].is_some()).collect();
            fds.extend(reader_at.iter().filter_map(|&i| self.readers[i].as_ref().map(|r| r.fd())));
            let ready = match sys::poll(&fds, Some(timeout)) {
                Ok(r) => r,
                Err(e) => {
                    log::error!("poll: {e}");
                    std::thread::sleep(timeout.min(Duration::from_secs(1)));
                    vec![false; fds.len()]
                }
            };
            drop(fds);
            let mut events = Vec::new();
            if ready[0] {
                events.extend(signals.drain().into_iter().map(Event::Signal));
            }
            // Every wakeup reaps: an exit is never missed, whatever woke the loop.
            loop {
                match sys::reap() {
                    Ok(Reaped::Child(pid, exit)) => events.push(Event::ChildExited(pid, exit)),
                    Ok(Reaped::NoneReady) => {
                        self.children_left = true;
                        break;
                    }
                    Ok(Reaped::NoChildren) => {
                        self.children_left = false;
                        break;
                    }
                    Err(e) => {
                        log::error!("waitpid: {e}");
                        break;
                    }
                }
            }
            let mut at = 1;
            if let Some(c) = control {
                if ready[at] {
                    while let Ok((s, _)) = c.accept() {
                        events.push(Event::Control(s));
                    }
                }
                at += 1;
            }
            if let Some(n) = notify {
                if ready[at] {
                    let mut buf = [0u8; 4096];
                    // A bounded number per wakeup: a sender that never stops cannot hold the loop.
                    for _ in 0..64 {
                        // The sender's session is looked up while its datagram is still queued: `edge-init notify`
                        // waits for the queue to empty before it exits, so it is alive for getsid. Reading first
                        // let a sender rescheduled in between exit, be reaped, and its READY=1 go to no service.
                        let Ok(Some((_, sender))) = sys::recv_with_pid(n, &mut buf, true) else { break };
                        let session = sys::session_of(sender).unwrap_or(sender);
                        let Ok(Some((len, _))) = sys::recv_with_pid(n, &mut buf, false) else { break };
                        let message = String::from_utf8_lossy(&buf[..len]).into_owned();
                        events.push(Event::Notify { session, message });
                    }
                }
            }
            for (k, &i) in reader_at.iter().enumerate() {
                if ready[fixed + k] {
                    events.push(Event::Output(i));
                }
            }
            events.push(Event::Timer);
            let (critical, now) = (self.critical_alive(), self.now());
            if self.watchdog.as_ref().is_some_and(|(_, p)| p.due(now, critical)) {
                events.push(Event::WatchdogTick);
            }
            for e in events {
                self.handle(e);
            }
            self.readers.retain(Option::is_some);
        }
    }

    /// The one place that acts on an event.
    pub fn handle(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Signal(sig) => self.signal(sig),
            Event::ChildExited(pid, exit) => {
                let svc = self.sup.service_of(pid);
                // What the service wrote before it ended comes before the news of its end.
                if let Some(idx) = svc {
                    for slot in self.readers.iter_mut().filter(|r| r.as_ref().is_some_and(|r| r.idx == idx)) {
                        if let Some(r) = slot.as_mut() {
                            if !r.readable(self.sink) {
                                *slot = None;
                            }
                        }
                    }
                }
                // What the ended service left in its cgroup goes before a new instance can be started there.
                if let Some(idx) = svc {
                    self.after_exit(idx, exit);
                } else {
                    log::debug!("reaped {pid}: {exit:?}");
                }
                self.drive(Input::Exited { pid, exit });
                if let Some(idx) = svc {
                    if matches!(
                        self.sup.svcs[idx].state,
                        State::Backoff { .. } | State::Waiting | State::Starting { .. } | State::Up { .. }
                    ) {
                        self.services[idx].restarts += 1;
                    }
                }
            }
            Event::Timer => {
                self.drive(Input::Tick);
                self.shutdown_step(now, shutdown::Input::Tick { children_left: self.children_left });
            }
            Event::Control(stream) => self.control(stream),
            Event::Notify { session: pid, message } => {
                for line in message.lines() {
                    if line == "READY=1" {
                        let before = self.sup.service_of(pid).map(|idx| self.sup.svcs[idx].state.clone());
                        self.drive(Input::Ready { pid });
                        if let Some(idx) = self.sup.service_of(pid) {
                            if before.as_ref() != Some(&self.sup.svcs[idx].state) {
                                log::info!("{}: ready", self.sup.svcs[idx].spec.name);
                            }
                        }
                    } else if let Some(status) = line.strip_prefix("STATUS=") {
                        if let Some(idx) = self.sup.service_of(pid) {
                            self.services[idx].status = status.to_owned();
                        }
                    }
                }
            }
            Event::Output(i) => {
                if let Some(r) = self.readers[i].as_mut() {
                    if !r.readable(self.sink) {
                        self.readers[i] = None;
                    }
                }
            }
            Event::WatchdogTick => {
                if let Some((w, p)) = self.watchdog.as_mut() {
                    if let Err(e) = w.pet() {
                        log::warn!("{}", chain(&e));
                    }
                    // A failed pet counts too, so a broken device does not make the loop spin.
                    p.petted(now);
                }
            }
        }
    }

    /// Feeds one input to the supervisor and runs its commands, again while they start services (so services
    /// waiting for a `ready = "started"` one start at once).
    /// Whether every critical service is alive or being brought back within its crash budget (only `failed`, or
    /// ended and not restarted, is down); during a shutdown, always: its deadlines bound it, and only a PID 1 that
    /// hangs should let the watchdog fire.
    fn critical_alive(&mut self) -> bool {
        if self.shutdown.is_some() {
            return true;
        }
        let down: Vec<&str> = self
            .sup
            .svcs
            .iter()
            .filter(|s| s.spec.critical)
            .filter(|s| matches!(s.state, State::Failed { .. } | State::Exited { .. }))
            .map(|s| s.spec.name.as_str())
            .collect();
        if !down.is_empty() && !self.petting_stopped && self.watchdog.is_some() {
            log::error!("critical service {} is down; the watchdog is no longer petted", down.join(", "));
        }
        if down.is_empty() && self.petting_stopped {
            log::info!("every critical service is back; petting the watchdog again");
        }
        self.petting_stopped = !down.is_empty();
        down.is_empty()
    }

    fn drive(&mut self, input: Input) {
        let now = self.now();
        let mut cmds = self.sup.step(now, input);
        loop {
            let mut spawned = false;
            for c in cmds {
                spawned |= self.exec(c, now);
            }
            if !spawned {
                break;
            }
            cmds = self.sup.step(now, Input::Tick);
        }
    }

    /// Runs one command; whether it started a service.
    fn exec(&mut self, cmd: Cmd, now: Duration) -> bool {
        match cmd {
            Cmd::Spawn(idx) => {
                self.spawn(idx, now);
                true
            }
            Cmd::Signal { idx, pid, signal } => {
                log::info!("{}: stopping (signal {signal})", self.sup.svcs[idx].spec.name);
                if sys::kill_group(pid, signal).is_err() {
                    let _ = sys::kill(pid, signal);
                }
                false
            }
            Cmd::KillAll { idx, pid } => {
                let name = self.sup.svcs[idx].spec.name.clone();
                let in_cgroup = self.services[idx].in_cgroup.then_some(()).and(self.cgroups.as_ref());
                let by_cgroup = in_cgroup.map(|cg| cg.kill(&name).map_err(|e| log::warn!("{name}: {}", chain(&e))));
                let killed = match by_cgroup {
                    Some(Ok(n)) => n,
                    // Not in its cgroup, or the cgroup would not kill: its process group, which is most of it.
                    _ => usize::from(sys::kill_group(pid, signal_hook::consts::signal::SIGKILL).is_ok()),
                };
                log::warn!("{name}: still running after its grace period; killed ({killed} processes)");
                false
            }
            Cmd::AllStopped => {
                self.shutdown_step(now, shutdown::Input::AllStopped);
                false
            }
        }
    }

    fn spawn(&mut self, idx: usize, now: Duration) {
        let svc = self.sup.svcs[idx].spec.clone();
        let id = match crate::spawn::lookup(&self.paths, svc.user.as_deref(), svc.group.as_deref()) {
            Ok(id) => id,
            Err(e) => {
                log::error!("{}: {}", svc.name, chain(&e));
                self.sup.spawn_failed(idx, now);
                return;
            }
        };
        let procs = match &self.cgroups {
            Some(cg) => match cg.leaf(&svc.name) {
                Ok(f) => Some(f),
                Err(e) => {
                    log::warn!("{}: no cgroup ({}); it is stopped by its process group", svc.name, chain(&e));
                    None
                }
            },
            None => None,
        };
        let joins = procs.is_some();
        match crate::spawn::spawn(&svc, &id, &self.notify_path, procs) {
            Ok(s) => {
                self.services[idx].in_cgroup = joins;
                log::info!("{}: started (pid {})", svc.name, s.pid);
                self.sup.spawned(idx, s.pid, now);
                self.readers.push(Some(Reader::new(idx, &svc.name, s.output, &svc.output)));
            }
            Err(e) => {
                log::error!("{}", chain(&e));
                self.sup.spawn_failed(idx, now);
            }
        }
    }

    /// After a service's main process ended: what it left in its cgroup is killed (it is not a service any
    /// more), and a restart is counted.
    fn after_exit(&mut self, idx: usize, exit: Exit) {
        let name = self.sup.svcs[idx].spec.name.clone();
        log::debug!("{name}: main process ended: {exit:?}");
        if let Some(cg) = &self.cgroups {
            match cg.kill(&name) {
                Ok(0) => {}
                Ok(n) => log::warn!("{name}: {n} processes left behind; killed"),
                Err(e) => log::warn!("{name}: {}", chain(&e)),
            }
        }
    }

    fn signal(&mut self, sig: i32) {
        let how = match sig {
            SIGTERM => Some(Halt::Reboot),
            SIGINT => {
                log::info!("ctrl-alt-del");
                Some(Halt::Reboot)
            }
            SIGUSR1 => Some(Halt::Halt),
            SIGUSR2 => Some(Halt::PowerOff),
            SIGPWR => {
                // A UPS daemon decides when to power off (it sends USR2); all PID 1 does is save what it can.
                log::warn!("power failure signalled; syncing filesystems");
                // On a thread: a failing disk can hold sync(2) for minutes, and the loop must go on.
                if let Err(e) = std::thread::Builder::new().spawn(sys::mount::sync) {
                    log::warn!("cannot start a thread for sync: {e}");
                }
                None
            }
            SIGCHLD => None,
            _ => {
                log::info!("signal {sig} ignored");
                None
            }
        };
        if let Some(how) = how {
            self.request(how);
        }
    }

    /// Starts a shutdown that ends in `how` (PID 1) or in an exit (otherwise).
    fn request(&mut self, how: Halt) {
        if self.shutdown.is_some() {
            log::info!("{how:?} asked while already shutting down; carrying on");
            return;
        }
        let sd = Shutdown::start(how, self.pid1, self.sup.svcs.iter().map(|s| s.spec.grace), self.now());
        log::info!("shutting down, then {}", sd.how.map_or("exit".to_owned(), |h| format!("{h:?}").to_lowercase()));
        self.shutdown = Some(sd);
        self.drive(Input::StopAll);
    }

    fn shutdown_deadline(&self) -> Option<Duration> {
        self.shutdown.map(|sd| sd.deadline())
    }

    /// Feeds one input to the shutdown (when there is one) and carries out what it says.
    fn shutdown_step(&mut self, now: Duration, input: shutdown::Input) {
        let Some(sd) = self.shutdown else { return };
        let (next, effect) = sd.step(now, input);
        if next.stage != sd.stage && input == shutdown::Input::AllStopped {
            log::info!("every service is stopped");
        }
        self.shutdown = Some(next);
        match effect {
            None => {}
            Some(Effect::TermEveryone) => {
                let _ = sys::kill_everyone(signal_hook::consts::signal::SIGTERM);
            }
            Some(Effect::ServicesOverdue) => {
                log::error!("services still stopping past the shutdown's deadline; ending every process");
                self.exec(Cmd::AllStopped, now);
            }
            Some(Effect::KillEveryone) => {
                log::warn!("processes still running {} s after SIGTERM; killing them", KILL_GRACE.as_secs());
                let _ = sys::kill_everyone(signal_hook::consts::signal::SIGKILL);
            }
            Some(Effect::Finish(how)) => self.finish(how),
        }
    }

    /// The end of a shutdown: sync, unmount, and reboot(2), or exit when not PID 1.
    fn finish(&mut self, how: Option<Halt>) -> ! {
        if let Some(cg) = &self.cgroups {
            cg.remove_empty();
        }
        // What is left in the pipes is written out, and the log files are closed before their filesystem is
        // unmounted.
        for mut r in self.readers.drain(..).flatten() {
            r.readable(self.sink);
        }
        log::info!("syncing filesystems");
        if !unmount::sync_with_deadline(SYNC_DEADLINE) {
            log::warn!("sync still running after {} s; unmounting anyway", SYNC_DEADLINE.as_secs());
        }
        if let Some(under) = shutdown::unmount_under(self.machine, self.data_mount.as_deref()) {
            unmount::unmount_all(&self.paths, &under, UNMOUNT_DEADLINE);
        }
        let Some(how) = how else {
            log::info!("stopped; exiting");
            std::process::exit(0);
        };
        log::info!("{}", shutdown::last_words(how));
        end(how)
    }

    fn control(&mut self, stream: UnixStream) {
        if let Some(how) = control::serve(stream, |req, pid| self.answer(req, pid)) {
            self.request(how);
        }
    }

    fn answer(&mut self, req: Request, pid: u32) -> Reply {
        let known = |s: &Supervisor, name: &str| s.svcs.iter().any(|v| v.spec.name == name);
        match req {
            Request::Status => Reply::ok_with(&self.view().text()),
            Request::StatusJson => Reply::ok_with(&self.view().status().to_json()),
            Request::Health => {
                // Time-based state (a crash streak that a long run ended) is brought up to date first.
                self.drive(Input::Tick);
                let asker = sys::session_of(pid).unwrap_or(pid);
                match self.sup.healthy(Some(asker)) {
                    Ok(()) => Reply::ok(),
                    Err(not) => Reply::Refused(Refusal::NotReady { why: not.to_string() }),
                }
            }
            Request::Start(n) | Request::Stop(n) | Request::Restart(n) if !known(&self.sup, &n) => {
                Reply::Refused(Refusal::NoService { name: n })
            }
            _ if self.shutdown.is_some() => Reply::Refused(Refusal::ShuttingDown),
            Request::Start(n) => {
                self.drive(Input::Start(n));
                Reply::ok()
            }
            Request::Stop(n) => {
                self.drive(Input::Stop(n));
                Reply::ok()
            }
            Request::Restart(n) => {
                self.drive(Input::Restart(n));
                Reply::ok()
            }
            Request::Reboot | Request::Poweroff | Request::Halt => Reply::ok(),
        }
    }

    /// What `ctl status` shows.
    fn view(&self) -> View<'_> {
        let now = self.now();
        let services = self
            .sup
            .svcs
            .iter()
            .enumerate()
            .map(|(i, s)| ServiceView {
                name: &s.spec.name,
                state: &s.state,
                n_restarts: self.services[i].restarts,
                status: &self.services[i].status,
                crash_budget_left: self.sup.crash_budget_left(i, now),
            })
            .collect();
        View {
            services,
            data: &self.data,
            watchdog: self.watchdog_text(),
            watchdog_reset: self.watchdog.as_ref().is_some_and(|(w, _)| w.reset_by_watchdog()),
            health: self.sup.healthy(None),
        }
    }

    fn watchdog_text(&self) -> String {
        match &self.watchdog {
            None => "none".to_owned(),
            Some((w, _)) => format!(
                "{} ({}), timeout {}, {}",
                w.path().display(),
                w.identity(),
                w.timeout().map_or("unknown".to_owned(), |t| format!("{} s", t.as_secs())),
                if self.petting_stopped { "not petted: a critical service is down" } else { "petted" }
            ),
        }
    }
}

/// reboot(2), and if even that fails, wait for the hardware watchdog (no longer petted) or a person.
fn end(how: Halt) -> ! {
    if let Err(e) = sys::reboot(how) {
        log::error!("reboot(2): {e}; waiting for the watchdog");
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A path PID 1 cannot recover from: said in the kernel log, then a reboot (never an exit of PID 1).
pub fn fatal(pid1: bool, why: &str) -> ! {
    log::error!("fatal: {why}");
    if pid1 {
        sys::mount::sync();
        end(Halt::Reboot)
    }
    std::process::exit(1)
}

/// A panic (a bug) is written to the kernel log, then PID 1 syncs and reboots; `panic = "abort"` in release.
fn install_panic_hook(pid1: bool, kmsg: PathBuf) {
    std::panic::set_hook(Box::new(move |info| {
        let line = format!("<2>edge-init: panic: {info}\n");
        match std::fs::OpenOptions::new().write(true).open(&kmsg) {
            Ok(mut k) if pid1 => {
                let _ = k.write_all(line.as_bytes());
            }
            _ => eprint!("{}", &line[3..]),
        }
        if pid1 {
            sys::mount::sync();
            let _ = sys::reboot(Halt::Reboot);
        }
    }));
}
