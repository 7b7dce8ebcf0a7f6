//! The shutdown sequence's decisions, pure (docs/edge-init.md, "Shutdown"): services stop in reverse order (the
//! supervisor's `Input::StopAll`), then every other process gets SIGTERM, a grace period, SIGKILL and another,
//! then PID 1 syncs, unmounts and calls reboot(2). This module says which stage comes next and when a deadline has
//! passed, over the clock and what the loop saw; `pid1` carries out each [`Effect`] (signals, sync, unmount,
//! reboot), so the sequence is tested here without a process in sight.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sys::Halt;

/// How long every other process has after SIGTERM, and again after SIGKILL, in a shutdown.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long a shutdown waits for sync(2).
pub const SYNC_DEADLINE: Duration = Duration::from_secs(10);
/// How long unmounting may take in a shutdown.
pub const UNMOUNT_DEADLINE: Duration = Duration::from_secs(10);

/// Where a shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Services stopping, in reverse order; past `until` (every grace period and then some), the rest are ended
    /// with everything else.
    Services {
        /// The deadline.
        until: Duration,
    },
    /// SIGTERM sent to every remaining process.
    Term {
        /// The deadline.
        until: Duration,
    },
    /// SIGKILL sent to every remaining process.
    Kill {
        /// The deadline.
        until: Duration,
    },
}

/// A shutdown under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// How it ends: reboot(2) with this, or `None` when not PID 1 (then it ends in an exit, and the other
    /// processes are not ours to end).
    pub how: Option<Halt>,
    /// Where it stands.
    pub stage: Stage,
}

/// What the loop saw that concerns a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The supervisor says every service is stopped.
    AllStopped,
    /// Time passed; `children_left` is whether the last wait found any child still running.
    Tick {
        /// Whether any child is left.
        children_left: bool,
    },
}

/// What `pid1` does about an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Every service is stopped: send SIGTERM to every other process.
    TermEveryone,
    /// Services are still stopping past the shutdown's deadline: end them with everything else (as if every service
    /// had stopped).
    ServicesOverdue,
    /// Processes are still running past SIGTERM's grace period: send SIGKILL to every one.
    KillEveryone,
    /// Done: sync, unmount, then reboot(2) with `how`, or exit when `None`.
    Finish(Option<Halt>),
}

impl Shutdown {
    /// A shutdown asked at `now` that ends in `how` (for PID 1; `pid1` false ends in an exit), with the services'
    /// grace periods: each service gets its grace and [`KILL_GRACE`] after it, and the whole another
    /// [`KILL_GRACE`].
    pub fn start(how: Halt, pid1: bool, graces: impl IntoIterator<Item = Duration>, now: Duration) -> Shutdown {
        let graces: Duration = graces.into_iter().map(|g| g + KILL_GRACE).sum();
        Shutdown { how: pid1.then_some(how), stage: Stage::Services { until: now + graces + KILL_GRACE } }
    }

    /// The current stage's deadline, for the loop to wake at.
    pub fn deadline(&self) -> Duration {
        match self.stage {
            Stage::Services { until } | Stage::Term { until } | Stage::Kill { until } => until,
        }
    }

    /// The next state and what to do about `input` at `now`.
    pub fn step(self, now: Duration, input: Input) -> (Shutdown, Option<Effect>) {
        let pid1 = self.how.is_some();
        let at = |stage| Shutdown { stage, ..self };
        match (self.stage, input) {
            (Stage::Services { .. }, Input::AllStopped) if pid1 => {
                (at(Stage::Term { until: now + KILL_GRACE }), Some(Effect::TermEveryone))
            }
            // Not PID 1: nothing else to end, so straight to the end.
            (Stage::Services { .. }, Input::AllStopped) => (at(Stage::Kill { until: now }), None),
            (_, Input::AllStopped) => (self, None),
            (Stage::Services { until }, Input::Tick { .. }) if now < until => (self, None),
            (Stage::Services { .. }, Input::Tick { .. }) => (self, Some(Effect::ServicesOverdue)),
            (Stage::Term { until }, Input::Tick { children_left: true }) if now < until => (self, None),
            (Stage::Term { .. }, Input::Tick { children_left: true }) => {
                (at(Stage::Kill { until: now + KILL_GRACE }), Some(Effect::KillEveryone))
            }
            (Stage::Kill { until }, Input::Tick { children_left: true }) if now < until && pid1 => (self, None),
            (Stage::Term { .. } | Stage::Kill { .. }, Input::Tick { .. }) => (self, Some(Effect::Finish(self.how))),
        }
    }
}

/// What to unmount at the end: everything (under `/`) for the machine's PID 1; in a container or a test, only the
/// data partition `edge-init` mounted there.
pub fn unmount_under(machine: bool, data_mount: Option<&Path>) -> Option<PathBuf> {
    if machine {
        Some(PathBuf::from("/"))
    } else {
        data_mount.map(Path::to_owned)
    }
}

/// The last log line before reboot(2).
pub fn last_words(how: Halt) -> &'static str {
    match how {
        Halt::Reboot => "rebooting",
        Halt::PowerOff => "powering off",
        Halt::Halt => "halting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn issue_15_the_first_deadline_covers_every_grace_period() {
        let check = |pid1: bool, graces: &[u64], now: u64, expected: Shutdown| {
            let got = Shutdown::start(Halt::PowerOff, pid1, graces.iter().copied().map(s), s(now));
            assert_eq!(got, expected, "pid1 {pid1} graces {graces:?} now {now}");
            assert_eq!(got.deadline(), expected.deadline());
        };
        let services = |how, until| Shutdown { how, stage: Stage::Services { until: s(until) } };
        check(true, &[], 0, services(Some(Halt::PowerOff), 5));
        check(true, &[10], 100, services(Some(Halt::PowerOff), 120));
        check(true, &[10, 0, 30], 7, services(Some(Halt::PowerOff), 7 + 15 + 5 + 35 + 5));
        check(false, &[10], 0, services(None, 20));
    }

    #[test]
    fn issue_15_each_stage_and_what_ends_it() {
        // (how, stage, now, input) -> (next stage, effect); deadlines are at 10 s.
        let check = |how: Option<Halt>, stage: Stage, now: u64, input: Input, expected: (Stage, Option<Effect>)| {
            let (next, effect) = Shutdown { how, stage }.step(s(now), input);
            assert_eq!(next.how, how);
            assert_eq!((next.stage, effect), expected, "{how:?} {stage:?} at {now} s, {input:?}");
        };
        let pid1 = Some(Halt::Reboot);
        let (services, term, kill) =
            (Stage::Services { until: s(10) }, Stage::Term { until: s(10) }, Stage::Kill { until: s(10) });
        let (left, none) = (Input::Tick { children_left: true }, Input::Tick { children_left: false });
        let all = Input::AllStopped;
        // Services stopping: they end the stage, or the deadline does.
        check(pid1, services, 3, all, (Stage::Term { until: s(8) }, Some(Effect::TermEveryone)));
        check(None, services, 3, all, (Stage::Kill { until: s(3) }, None));
        check(pid1, services, 9, left, (services, None));
        check(pid1, services, 9, none, (services, None));
        check(pid1, services, 10, left, (services, Some(Effect::ServicesOverdue)));
        check(None, services, 11, none, (services, Some(Effect::ServicesOverdue)));
        // After SIGTERM: the last child gone, or the grace period over.
        check(pid1, term, 9, left, (term, None));
        check(pid1, term, 9, none, (term, Some(Effect::Finish(pid1))));
        check(pid1, term, 10, left, (Stage::Kill { until: s(15) }, Some(Effect::KillEveryone)));
        check(pid1, term, 10, none, (term, Some(Effect::Finish(pid1))));
        check(pid1, term, 3, all, (term, None));
        // After SIGKILL: the same, and a supervisor that is not PID 1 never waits here.
        check(pid1, kill, 9, left, (kill, None));
        check(pid1, kill, 9, none, (kill, Some(Effect::Finish(pid1))));
        check(pid1, kill, 10, left, (kill, Some(Effect::Finish(pid1))));
        check(None, kill, 0, left, (kill, Some(Effect::Finish(None))));
        check(None, kill, 0, none, (kill, Some(Effect::Finish(None))));
        check(Some(Halt::Halt), kill, 3, all, (kill, None));
    }

    #[test]
    fn issue_15_what_is_unmounted_and_said_last() {
        let data = Path::new("/data");
        assert_eq!(unmount_under(true, Some(data)), Some(PathBuf::from("/")));
        assert_eq!(unmount_under(true, None), Some(PathBuf::from("/")));
        assert_eq!(unmount_under(false, Some(data)), Some(data.to_owned()));
        assert_eq!(unmount_under(false, None), None);
        let words: Vec<&str> = [Halt::Reboot, Halt::PowerOff, Halt::Halt].into_iter().map(last_words).collect();
        assert_eq!(words, ["rebooting", "powering off", "halting"]);
    }
}
