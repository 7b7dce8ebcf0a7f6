//! The service supervisor's decisions, pure: each [`Input`] (a tick of the clock, a child's exit, a readiness
//! message, a request) changes the services' states and yields [`Cmd`]s for the thin code that spawns and signals
//! processes. Time is a `Duration` since `edge-init` started, so tests drive the clock themselves.
//! (docs/edge-init.md, "Services".)

use std::time::Duration;

use crate::services::{Ready, Restart, Service};
use crate::sys::Exit;

/// Where one service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started: waiting for the services it is `after`.
    Waiting,
    /// Started, not yet ready.
    Starting {
        /// Its process.
        pid: u32,
        /// When it was started.
        since: Duration,
    },
    /// Up.
    Up {
        /// Its process.
        pid: u32,
        /// When it was started.
        since: Duration,
    },
    /// Asked to stop; killed with its group at `deadline`.
    Stopping {
        /// Its process.
        pid: u32,
        /// When the grace period ends.
        deadline: Duration,
        /// Whether it is started again once it is gone.
        restart: bool,
    },
    /// Ended, to be started again at `until`.
    Backoff {
        /// When.
        until: Duration,
    },
    /// Ended and not started again (by its policy, or stopped on request).
    Exited {
        /// How it ended (`None`: stopped before it ever ran).
        exit: Option<Exit>,
    },
    /// Given up: it crashed more often than its budget allows.
    Failed {
        /// Why.
        reason: String,
    },
}

/// What can happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed.
    Tick,
    /// A child ended.
    Exited {
        /// Its pid.
        pid: u32,
        /// How.
        exit: Exit,
    },
    /// A service sent `READY=1`.
    Ready {
        /// Its pid (the sender's credentials).
        pid: u32,
    },
    /// `edge-init ctl start NAME`.
    Start(String),
    /// `edge-init ctl stop NAME`.
    Stop(String),
    /// `edge-init ctl restart NAME`.
    Restart(String),
    /// Shutdown: stop every service, in reverse order, one after the other.
    StopAll,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// Start service `idx`, then report its pid with [`Supervisor::spawned`] (or its failure to start with
    /// [`Supervisor::spawn_failed`]).
    Spawn(usize),
    /// Send a signal to service `idx`'s process.
    Signal {
        /// The service.
        idx: usize,
        /// Its process.
        pid: u32,
        /// The signal.
        signal: i32,
    },
    /// Kill service `idx` with everything it started (its cgroup, or its process group).
    KillAll {
        /// The service.
        idx: usize,
        /// Its process.
        pid: u32,
    },
    /// Every service is stopped (after [`Input::StopAll`]).
    AllStopped,
}

/// One service and its history.
#[derive(Debug, Clone)]
pub struct Svc {
    /// What it is.
    pub spec: Service,
    /// Where it stands.
    pub state: State,
    /// When it crashed, within its crash window.
    crashes: Vec<Duration>,
    /// Crashes in a row, for the backoff.
    streak: u32,
}

/// Every service.
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// The services, in start order.
    pub svcs: Vec<Svc>,
    stopping_all: bool,
}

impl Supervisor {
    /// A supervisor of `services` (in start order, as `services::parse` returns them).
    pub fn new(services: Vec<Service>) -> Supervisor {
        let svcs = services
            .into_iter()
            .map(|spec| Svc { spec, state: State::Waiting, crashes: Vec::new(), streak: 0 })
            .collect();
        Supervisor { svcs, stopping_all: false }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.svcs.iter().position(|s| s.spec.name == name)
    }

    fn by_pid(&self, pid: u32) -> Option<usize> {
        self.svcs.iter().position(|s| match s.state {
            State::Starting { pid: p, .. } | State::Up { pid: p, .. } | State::Stopping { pid: p, .. } => p == pid,
            _ => false,
        })
    }

    /// Whether service `idx` is what the services `after` it wait for: up, or a one-shot that exited 0.
    fn satisfies(&self, idx: usize) -> bool {
        let s = &self.svcs[idx];
        matches!(
            (&s.state, s.spec.ready),
            (State::Exited { exit: Some(Exit::Code(0)) }, Ready::Exited)
                | (State::Up { .. }, Ready::Started | Ready::Notify)
        )
    }

    /// Records that service `idx` was started as `pid`.
    pub fn spawned(&mut self, idx: usize, pid: u32, now: Duration) {
        let s = &mut self.svcs[idx];
        s.state = match s.spec.ready {
            Ready::Started => State::Up { pid, since: now },
            Ready::Notify | Ready::Exited => State::Starting { pid, since: now },
        };
    }

    /// Records that service `idx` could not be started (a missing program, a bad user): a crash.
    pub fn spawn_failed(&mut self, idx: usize, now: Duration) {
        self.crashed(idx, now, None);
    }

    /// The next time a [`Input::Tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.svcs
            .iter()
            .filter_map(|s| match s.state {
                State::Backoff { until } => Some(until),
                State::Stopping { deadline, .. } => Some(deadline),
                State::Starting { since, .. } => Some(since + s.spec.start_timeout),
                _ => None,
            })
            .min()
    }

    /// The health question of `edge-update`: `Ok` when every service is up (or a one-shot that ended well) and
    /// none is restarting, else what is not. The service of `asker` (the pid that asks, and the services that
    /// wait for it) is left out: `edge-update boot` asks while it runs.
    pub fn healthy(&self, asker: Option<u32>) -> Result<(), NotReady> {
        let mut excluded: Vec<usize> = asker.and_then(|p| self.by_pid(p)).into_iter().collect();
        for (idx, s) in self.svcs.iter().enumerate() {
            if s.spec.after.iter().any(|a| self.index(a).is_some_and(|d| excluded.contains(&d))) {
                excluded.push(idx);
            }
        }
        let mut not = Vec::new();
        for (idx, s) in self.svcs.iter().enumerate() {
            let ok = excluded.contains(&idx)
                || match (&s.state, s.spec.ready, s.spec.restart) {
                    (State::Up { .. }, _, _) => s.streak == 0 || s.spec.restart == Restart::Never,
                    (State::Exited { exit: Some(Exit::Code(0)) }, Ready::Exited, _) => true,
                    (State::Exited { exit: Some(Exit::Code(0)) }, _, Restart::Never | Restart::OnFailure) => true,
                    _ => false,
                };
            if !ok {
                not.push(format!("{} {}", s.spec.name, describe(&s.state)));
            }
        }
        if not.is_empty() {
            Ok(())
        } else {
            Err(NotReady { services: not })
        }
    }

    /// The index of the service whose process (or session) is `pid`.
    pub fn service_of(&self, pid: u32) -> Option<usize> {
        self.by_pid(pid)
    }

    /// Handles one input at time `now`.
    pub fn step(&mut self, now: Duration, input: Input) -> Vec<Cmd> {
        let mut cmds = Vec::new();
        match input {
            Input::Tick => {}
            Input::Exited { pid, exit } => {
                if let Some(idx) = self.by_pid(pid) {
                    self.exited(idx, now, exit);
                }
            }
            Input::Ready { pid } => {
                if let Some(idx) = self.by_pid(pid) {
                    if let State::Starting { pid, since } = self.svcs[idx].state {
                        if self.svcs[idx].spec.ready == Ready::Notify {
                            self.svcs[idx].state = State::Up { pid, since };
                        }
                    }
                }
            }
            Input::Start(name) => {
                if let Some(idx) = self.index(&name) {
                    if matches!(
                        self.svcs[idx].state,
                        State::Exited { .. } | State::Failed { .. } | State::Backoff { .. }
                    ) {
                        self.svcs[idx].state = State::Waiting;
                        self.svcs[idx].crashes.clear();
                        self.svcs[idx].streak = 0;
                    }
                }
            }
            Input::Stop(name) => {
                if let Some(idx) = self.index(&name) {
                    self.stop(idx, now, false, &mut cmds);
                    if !matches!(self.svcs[idx].state, State::Stopping { .. }) {
                        self.svcs[idx].state = State::Exited { exit: None };
                    }
                }
            }
            Input::Restart(name) => {
                if let Some(idx) = self.index(&name) {
                    self.stop(idx, now, true, &mut cmds);
                    if !matches!(self.svcs[idx].state, State::Stopping { .. }) {
                        self.svcs[idx].state = State::Waiting;
                    }
                }
            }
            Input::StopAll => self.stopping_all = true,
        }
        self.timers(now, &mut cmds);
        if self.stopping_all {
            self.stop_next(now, &mut cmds);
        } else {
            self.start_ready(&mut cmds);
        }
        cmds
    }

    fn stop(&mut self, idx: usize, now: Duration, restart: bool, cmds: &mut Vec<Cmd>) {
        let s = &mut self.svcs[idx];
        match s.state {
            State::Starting { pid, .. } | State::Up { pid, .. } => {
                s.state = State::Stopping { pid, deadline: now + s.spec.grace, restart };
                cmds.push(Cmd::Signal { idx, pid, signal: s.spec.stop_signal });
            }
            State::Stopping { pid, deadline, .. } => s.state = State::Stopping { pid, deadline, restart },
            _ => {}
        }
    }

    fn timers(&mut self, now: Duration, cmds: &mut Vec<Cmd>) {
        for idx in 0..self.svcs.len() {
            let s = &mut self.svcs[idx];
            match s.state {
                State::Backoff { until } if now >= until && !self.stopping_all => s.state = State::Waiting,
                State::Backoff { .. } if self.stopping_all => s.state = State::Exited { exit: None },
                State::Stopping { pid, deadline, restart } if now >= deadline => {
                    cmds.push(Cmd::KillAll { idx, pid });
                    // Killed once; the exit still has to come, so the deadline moves out of the way.
                    s.state = State::Stopping { pid, deadline: Duration::MAX, restart };
                }
                // A run as long as the largest backoff ends a crash streak, also while it goes on running.
                State::Up { since, .. } if s.streak > 0 && now.saturating_sub(since) >= s.spec.backoff_max => {
                    s.streak = 0;
                }
                State::Starting { since, .. } if now >= since + s.spec.start_timeout => {
                    log::warn!("{}: not ready after {} s; stopping it", s.spec.name, s.spec.start_timeout.as_secs());
                    self.stop(idx, now, false, cmds);
                    s_crash_mark(&mut self.svcs[idx]);
                }
                _ => {}
            }
        }
    }

    fn start_ready(&mut self, cmds: &mut Vec<Cmd>) {
        for idx in 0..self.svcs.len() {
            if self.svcs[idx].state != State::Waiting {
                continue;
            }
            let deps_ok = self.svcs[idx].spec.after.iter().all(|a| self.index(a).is_some_and(|d| self.satisfies(d)));
            if deps_ok {
                // Marked as starting at time zero until `spawned` says when; a spawn is asked for once.
                self.svcs[idx].state = State::Starting { pid: 0, since: Duration::ZERO };
                cmds.push(Cmd::Spawn(idx));
            }
        }
    }

    fn stop_next(&mut self, now: Duration, cmds: &mut Vec<Cmd>) {
        if self.svcs.iter().any(|s| matches!(s.state, State::Stopping { .. })) {
            return;
        }
        let running = (0..self.svcs.len())
            .rev()
            .find(|&i| matches!(self.svcs[i].state, State::Starting { .. } | State::Up { .. }));
        match running {
            Some(idx) => self.stop(idx, now, false, cmds),
            None => {
                for s in &mut self.svcs {
                    if matches!(s.state, State::Waiting | State::Backoff { .. }) {
                        s.state = State::Exited { exit: None };
                    }
                }
                cmds.push(Cmd::AllStopped);
            }
        }
    }

    fn exited(&mut self, idx: usize, now: Duration, exit: Exit) {
        let s = &mut self.svcs[idx];
        let (was_up_since, stopping) = match s.state {
            State::Starting { since, .. } | State::Up { since, .. } => (Some(since), None),
            State::Stopping { restart, .. } => (None, Some(restart)),
            _ => (None, None),
        };
        if let Some(restart) = stopping {
            let timed_out = s.crashes.last() == Some(&Duration::MAX);
            if timed_out {
                s.crashes.pop();
                if s.spec.restart == Restart::Never {
                    log::warn!("{}: stopped for not getting ready; not restarted", s.spec.name);
                    s.state = State::Exited { exit: Some(exit) };
                } else {
                    self.crashed(idx, now, Some(exit));
                }
                return;
            }
            log::info!("{}: stopped ({})", s.spec.name, describe_exit(exit));
            s.state = if restart && !self.stopping_all { State::Waiting } else { State::Exited { exit: Some(exit) } };
            return;
        }
        // A run as long as the largest backoff ends a crash streak.
        if was_up_since.is_some_and(|since| now.saturating_sub(since) >= s.spec.backoff_max) {
            s.streak = 0;
        }
        let failure = exit != Exit::Code(0);
        let restart = !self.stopping_all
            && match s.spec.restart {
                Restart::Always => true,
                Restart::OnFailure => failure,
                Restart::Never => false,
            };
        if !restart {
            if failure {
                log::warn!("{}: ended ({}); not restarted", s.spec.name, describe_exit(exit));
            } else {
                log::info!("{}: exited 0", s.spec.name);
            }
            s.state = State::Exited { exit: Some(exit) };
            return;
        }
        if failure {
            self.crashed(idx, now, Some(exit));
        } else {
            // Not a crash, but not at once either: a service that keeps exiting 0 must not spin.
            log::info!("{}: exited 0; starting it again in {} s", s.spec.name, s.spec.backoff.as_secs());
            s.state = State::Backoff { until: now + s.spec.backoff };
        }
    }

    /// Crashes service `idx` may still have within its window at `now` before it is given up (0 once it is).
    pub fn crash_budget_left(&self, idx: usize, now: Duration) -> u32 {
        let s = &self.svcs[idx];
        if matches!(s.state, State::Failed { .. }) {
            return 0;
        }
        // A crash marked but not yet counted (a start that timed out) counts already.
        let recent = s.crashes.iter().filter(|&&t| t == Duration::MAX || now.saturating_sub(t) < s.spec.crash_window);
        s.spec.crash_budget.saturating_sub(recent.count() as u32)
    }

    /// Counts a crash; restarts after the backoff, or gives up past the budget.
    fn crashed(&mut self, idx: usize, now: Duration, exit: Option<Exit>) {
        let s = &mut self.svcs[idx];
        let window = s.spec.crash_window;
        s.crashes.retain(|&t| now.saturating_sub(t) < window);
        s.crashes.push(now);
        if s.crashes.len() > s.spec.crash_budget as usize {
            let reason = format!("crashed {} times within {} s", s.crashes.len(), window.as_secs());
            log::error!("{}: {reason}; given up", s.spec.name);
            s.state = State::Failed { reason };
            return;
        }
        let delay = s.spec.backoff.saturating_mul(1u32 << s.streak.min(20)).min(s.spec.backoff_max);
        s.streak += 1;
        let how = exit.map_or("could not start".to_owned(), describe_exit);
        log::warn!("{}: {how}; restarting in {} s", s.spec.name, delay.as_secs());
        s.state = State::Backoff { until: now + delay };
    }
}

/// Marks a service being stopped for not getting ready: its exit then counts as a crash.
fn s_crash_mark(s: &mut Svc) {
    s.crashes.push(Duration::MAX);
}

fn describe_exit(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exited {c}"),
        Exit::Signal(s) => format!("killed by signal {s}"),
    }
}

/// The health answer when it is not `ok`: each service that keeps the node from being healthy, with its state in
/// words (`app restarting`, `boot exited 8`); its `Display` is what `ctl health` and `ctl status` show after
/// `not ready: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// Each service, in the order of the services file.
    pub services: Vec<String>,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.services.join(", "))
    }
}

/// A state in a few words, for `ctl status` and the health answer.
pub fn describe(state: &State) -> String {
    match state {
        State::Waiting => "waiting".to_owned(),
        State::Starting { .. } => "starting".to_owned(),
        State::Up { pid, .. } => format!("up (pid {pid})"),
        State::Stopping { .. } => "stopping".to_owned(),
        State::Backoff { .. } => "restarting".to_owned(),
        State::Exited { exit: None } => "stopped".to_owned(),
        State::Exited { exit: Some(e) } => describe_exit(*e),
        State::Failed { reason } => format!("failed: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sup(text: &str) -> Supervisor {
        Supervisor::new(crate::services::parse(text, Path::new("s.toml")).expect("services").services)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Spawns whatever is asked, with pids from 100 up, and returns the indexes spawned.
    fn run(s: &mut Supervisor, now: Duration, cmds: Vec<Cmd>, next_pid: &mut u32) -> Vec<usize> {
        let mut spawned = Vec::new();
        for c in cmds {
            if let Cmd::Spawn(idx) = c {
                s.spawned(idx, *next_pid, now);
                *next_pid += 1;
                spawned.push(idx);
            }
        }
        spawned
    }

    const TWO: &str = r#"
        [[service]]
        name = "boot"
        argv = ["/bin/boot"]
        restart = "never"
        ready = "exited"
        [[service]]
        name = "app"
        argv = ["/bin/app"]
        after = ["boot"]
        restart = "always"
        crash_budget = 2
        crash_window_secs = 100
    "#;

    #[test]
    fn order_readiness_and_restarts_with_backoff() {
        let mut s = sup(TWO);
        let mut pid = 100;
        // Only `boot` starts; `app` waits for it to exit 0.
        let c = s.step(secs(0), Input::Tick);
        assert_eq!(run(&mut s, secs(0), c, &mut pid), [0]);
        assert!(s.healthy(None).is_err());
        let c = s.step(secs(1), Input::Exited { pid: 100, exit: Exit::Code(0) });
        assert_eq!(run(&mut s, secs(1), c, &mut pid), [1]);
        assert_eq!(s.svcs[1].state, State::Up { pid: 101, since: secs(1) });
        assert_eq!(s.healthy(None), Ok(()));
        assert_eq!(s.crash_budget_left(1, secs(1)), 2);
        // `app` crashes: backoff 1 s, then 2 s; the third crash in the window is past the budget of 2.
        assert!(s.step(secs(2), Input::Exited { pid: 101, exit: Exit::Signal(11) }).is_empty());
        assert_eq!(s.svcs[1].state, State::Backoff { until: secs(3) });
        assert!(s.healthy(None).is_err_and(|e| e.to_string().contains("app restarting")));
        assert_eq!(s.next_deadline(), Some(secs(3)));
        let c = s.step(secs(3), Input::Tick);
        assert_eq!(run(&mut s, secs(3), c, &mut pid), [1]);
        assert_eq!(s.crash_budget_left(1, secs(3)), 1);
        s.step(secs(4), Input::Exited { pid: 102, exit: Exit::Code(1) });
        assert_eq!(s.svcs[1].state, State::Backoff { until: secs(6) });
        assert_eq!(s.crash_budget_left(1, secs(4)), 0);
        // Outside the window the crashes no longer count.
        assert_eq!(s.crash_budget_left(1, secs(103)), 1);
        let c = s.step(secs(6), Input::Tick);
        assert_eq!(run(&mut s, secs(6), c, &mut pid), [1]);
        s.step(secs(7), Input::Exited { pid: 103, exit: Exit::Code(1) });
        assert!(matches!(s.svcs[1].state, State::Failed { .. }), "{:?}", s.svcs[1].state);
        assert!(s.healthy(None).is_err_and(|e| e.to_string().contains("failed")));
        assert_eq!(s.crash_budget_left(1, secs(200)), 0, "a failed service has none left");
        // An operator's start clears the budget.
        let c = s.step(secs(8), Input::Start("app".into()));
        assert_eq!(run(&mut s, secs(8), c, &mut pid), [1]);
    }

    #[test]
    fn a_failed_one_shot_holds_back_what_waits_for_it() {
        let mut s = sup(TWO);
        let mut pid = 100;
        let c = s.step(secs(0), Input::Tick);
        run(&mut s, secs(0), c, &mut pid);
        let c = s.step(secs(1), Input::Exited { pid: 100, exit: Exit::Code(8) });
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(s.svcs[1].state, State::Waiting);
        assert!(s.healthy(None).is_err_and(|e| e.to_string().contains("boot exited 8")));
    }

    #[test]
    fn stop_grace_kill_and_shutdown_in_reverse_order() {
        let mut s = sup(&TWO
            .replace("restart = \"never\"\n        ready = \"exited\"", "ready = \"started\"\n        grace_secs = 5"));
        let mut pid = 100;
        let c = s.step(secs(0), Input::Tick);
        assert_eq!(run(&mut s, secs(0), c, &mut pid), [0]);
        // `boot` is up as soon as it is started; `app` follows at the next step.
        let c = s.step(secs(0), Input::Tick);
        assert_eq!(run(&mut s, secs(0), c, &mut pid), [1]);
        // Shutdown: `app` (last) is stopped first; `boot` only once `app` is gone.
        let c = s.step(secs(10), Input::StopAll);
        assert_eq!(c, [Cmd::Signal { idx: 1, pid: 101, signal: 15 }]);
        // `app` ignores it: killed with its group at the end of its grace (10 s by default).
        assert!(s.step(secs(15), Input::Tick).is_empty());
        assert_eq!(s.step(secs(20), Input::Tick), [Cmd::KillAll { idx: 1, pid: 101 }]);
        let c = s.step(secs(20), Input::Exited { pid: 101, exit: Exit::Signal(9) });
        assert_eq!(c, [Cmd::Signal { idx: 0, pid: 100, signal: 15 }]);
        let c = s.step(secs(21), Input::Exited { pid: 100, exit: Exit::Code(0) });
        assert_eq!(c, [Cmd::AllStopped]);
        // Nothing restarts during a shutdown.
        assert!(s.svcs.iter().all(|v| matches!(v.state, State::Exited { .. })));
    }

    #[test]
    fn notify_readiness_and_start_timeout() {
        let mut s = sup(
            "[[service]]\nname = \"n\"\nargv = [\"/bin/n\"]\nready = \"notify\"\nstart_timeout_secs = 5\ngrace_secs = 1\n",
        );
        let mut pid = 100;
        let c = s.step(secs(0), Input::Tick);
        run(&mut s, secs(0), c, &mut pid);
        assert!(matches!(s.svcs[0].state, State::Starting { .. }));
        s.step(secs(1), Input::Ready { pid: 100 });
        assert_eq!(s.svcs[0].state, State::Up { pid: 100, since: secs(0) });
        // A second run that never gets ready is stopped at its timeout, and that counts as a crash.
        s.step(secs(2), Input::Exited { pid: 100, exit: Exit::Code(3) });
        let c = s.step(secs(3), Input::Tick);
        run(&mut s, secs(3), c, &mut pid);
        assert_eq!(s.step(secs(8), Input::Tick), [Cmd::Signal { idx: 0, pid: 101, signal: 15 }]);
        s.step(secs(8), Input::Exited { pid: 101, exit: Exit::Signal(15) });
        assert!(matches!(s.svcs[0].state, State::Backoff { .. }), "{:?}", s.svcs[0].state);
    }

    #[test]
    fn operator_stop_and_restart() {
        let mut s = sup("[[service]]\nname = \"a\"\nargv = [\"/bin/a\"]\nrestart = \"always\"\n");
        let mut pid = 100;
        let c = s.step(secs(0), Input::Tick);
        run(&mut s, secs(0), c, &mut pid);
        assert_eq!(s.step(secs(1), Input::Restart("a".into())), [Cmd::Signal { idx: 0, pid: 100, signal: 15 }]);
        let c = s.step(secs(2), Input::Exited { pid: 100, exit: Exit::Signal(15) });
        assert_eq!(run(&mut s, secs(2), c, &mut pid), [0]);
        assert_eq!(s.step(secs(3), Input::Stop("a".into())), [Cmd::Signal { idx: 0, pid: 101, signal: 15 }]);
        assert!(s.step(secs(4), Input::Exited { pid: 101, exit: Exit::Code(0) }).is_empty());
        assert_eq!(s.svcs[0].state, State::Exited { exit: Some(Exit::Code(0)) });
        // An orphan's exit means nothing to the supervisor.
        assert!(s.step(secs(5), Input::Exited { pid: 999, exit: Exit::Code(1) }).is_empty());
    }

    #[test]
    fn a_never_restarted_service_that_is_not_ready_in_time_stays_down() {
        let mut s = sup(
            "[[service]]\nname = \"mute\"\nargv = [\"/m\"]\nready = \"notify\"\nstart_timeout_secs = 5\nrestart = \"never\"\n",
        );
        let mut pid = 100;
        let cmds = s.step(secs(0), Input::Tick);
        assert_eq!(run(&mut s, secs(0), cmds, &mut pid), [0]);
        let cmds = s.step(secs(5), Input::Tick);
        assert_eq!(cmds, [Cmd::Signal { idx: 0, pid: 100, signal: 15 }]);
        s.step(secs(6), Input::Exited { pid: 100, exit: Exit::Signal(15) });
        assert_eq!(s.svcs[0].state, State::Exited { exit: Some(Exit::Signal(15)) });
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn the_health_question_leaves_out_who_asks() {
        let mut s = sup(
            "[[service]]\nname = \"app\"\nargv = [\"/a\"]\n\
             [[service]]\nname = \"check\"\nargv = [\"/c\"]\nafter = [\"app\"]\nready = \"exited\"\nrestart = \"never\"\n\
             [[service]]\nname = \"late\"\nargv = [\"/l\"]\nafter = [\"check\"]\n",
        );
        let mut pid = 100;
        let cmds = s.step(secs(0), Input::Tick);
        run(&mut s, secs(0), cmds, &mut pid);
        let cmds = s.step(secs(0), Input::Tick);
        run(&mut s, secs(0), cmds, &mut pid);
        // app (100) is up, check (101) runs and asks; late waits for check.
        assert!(s
            .healthy(None)
            .is_err_and(|e| e.to_string().contains("check starting") && e.to_string().contains("late waiting")));
        assert_eq!(s.healthy(Some(101)), Ok(()));
        // A process that is no service's leaves nothing out.
        assert!(s.healthy(Some(999)).is_err_and(|e| e.to_string().contains("check starting")));
    }

    #[test]
    fn issue_6_review_restarts_neither_spin_nor_leave_health_failing_nor_get_lost() {
        let mut s = sup(
            "[[service]]\nname = \"a\"\nargv = [\"/a\"]\nrestart = \"always\"\nbackoff_secs = 2\nbackoff_max_secs = 8\n",
        );
        let mut pid = 100;
        let c = s.step(secs(0), Input::Tick);
        run(&mut s, secs(0), c, &mut pid);
        // A clean exit under `always` waits one backoff before the next start, without counting as a crash.
        assert!(s.step(secs(1), Input::Exited { pid: 100, exit: Exit::Code(0) }).is_empty());
        assert_eq!(s.svcs[0].state, State::Backoff { until: secs(3) });
        let c = s.step(secs(3), Input::Tick);
        assert_eq!(run(&mut s, secs(3), c, &mut pid), [0]);
        assert_eq!(s.healthy(None), Ok(()));
        // A crash, a restart: not healthy until it has run as long as the largest backoff, then healthy again.
        s.step(secs(4), Input::Exited { pid: 101, exit: Exit::Code(1) });
        let c = s.step(secs(6), Input::Tick);
        assert_eq!(run(&mut s, secs(6), c, &mut pid), [0]);
        assert!(s.healthy(None).is_err_and(|e| e.to_string().contains("a up (pid 102)")));
        s.step(secs(13), Input::Tick);
        assert!(s.healthy(None).is_err());
        s.step(secs(14), Input::Tick);
        assert_eq!(s.healthy(None), Ok(()));
        // A restart of a service that ignores its stop signal still starts it again after the kill.
        s.step(secs(20), Input::Restart("a".into()));
        assert_eq!(s.step(secs(30), Input::Tick), [Cmd::KillAll { idx: 0, pid: 102 }]);
        let c = s.step(secs(31), Input::Exited { pid: 102, exit: Exit::Signal(9) });
        assert_eq!(run(&mut s, secs(31), c, &mut pid), [0]);
    }
}
