//! One-command mode, `edge-init -- CMD ARGS...`: run one command as the only child, the way tini and dumb-init do
//! in containers. Not PID 1, it becomes a child subreaper so orphans of the command are re-parented to it; it
//! forwards the usual signals to the command, reaps every child, and exits with the command's status (128 + N when
//! the command died of signal N) once the command has ended.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use signal_hook::consts::signal::{
    SIGALRM, SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH,
};
use signal_hook::iterator::Signals;

use crate::sys::{self, Reaped};

/// The signals passed on to the command, as tini does: everything a person or a container runtime sends, none of
/// the synchronous faults (those are about `edge-init` itself).
pub const FORWARDED: [i32; 12] =
    [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU];

/// Everything that can make one-command mode act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A signal to pass on to the command.
    Signal(i32),
    /// A child ended (the command, or an orphan).
    ChildExited(u32, sys::Exit),
}

/// What to do about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the signal to the command.
    Forward(i32),
    /// The command ended: exit with this status.
    Exit(i32),
    /// Nothing (an orphan was reaped).
    Nothing,
}

/// Decides what an event does, given the command's pid.
pub fn decide(command: u32, event: Event) -> Action {
    match event {
        Event::Signal(s) => Action::Forward(s),
        Event::ChildExited(pid, exit) if pid == command => Action::Exit(exit.as_status()),
        Event::ChildExited(..) => Action::Nothing,
    }
}

/// Runs `argv` and returns the status to exit with.
pub fn run(argv: &[OsString]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        log::error!("no command given after --");
        return 2;
    };
    if sys::pid() != 1 {
        if let Err(e) = sys::become_subreaper() {
            log::warn!("cannot become a child subreaper, orphans will not be reaped here: {e}");
        }
    }
    // The handlers are in place before the child exists, so neither its exit nor a signal can be missed.
    let mut wanted = FORWARDED.to_vec();
    wanted.push(SIGCHLD);
    let mut signals = match Signals::new(&wanted) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the closure runs in the child between fork and exec and only calls `sys::reset_signals`, which is
    // async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            sys::reset_signals();
            Ok(())
        });
    }
    let command = match cmd.spawn() {
        Ok(child) => child.id(),
        Err(e) => {
            log::error!("cannot run {}: {e}", program.to_string_lossy());
            // The shell's codes: 127 not found, 126 found but not runnable.
            return if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
        }
    };
    loop {
        // Reap every child that has ended, the command's orphans included.
        loop {
            match sys::reap() {
                Ok(Reaped::Child(pid, exit)) => {
                    if let Action::Exit(status) = decide(command, Event::ChildExited(pid, exit)) {
                        drain();
                        return status;
                    }
                    log::debug!("reaped {pid}: {exit:?}");
                }
                Ok(Reaped::NoneReady | Reaped::NoChildren) => break,
                Err(e) => {
                    log::error!("waitpid: {e}");
                    break;
                }
            }
        }
        for sig in signals.wait() {
            if sig == SIGCHLD {
                continue;
            }
            if let Action::Forward(s) = decide(command, Event::Signal(sig)) {
                if let Err(e) = sys::kill(command, s) {
                    log::warn!("cannot pass signal {s} to {command}: {e}");
                }
            }
        }
    }
}

/// Reaps orphans that already ended before exiting, so none is left a zombie behind us.
fn drain() {
    while let Ok(Reaped::Child(pid, exit)) = sys::reap() {
        log::debug!("reaped {pid}: {exit:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Exit;

    #[test]
    fn decisions() {
        let check = |e: Event, a: Action| assert_eq!(decide(42, e), a, "{e:?}");
        check(Event::Signal(SIGTERM), Action::Forward(SIGTERM));
        check(Event::ChildExited(42, Exit::Code(7)), Action::Exit(7));
        check(Event::ChildExited(42, Exit::Signal(9)), Action::Exit(137));
        check(Event::ChildExited(43, Exit::Code(0)), Action::Nothing);
    }
}
