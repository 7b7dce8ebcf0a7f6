//! One-command mode, `edge-init -- CMD ARGS...`: run one command as the only child, the way tini and dumb-init do
//! in containers, and stay invisible to it. Not PID 1, it becomes a child subreaper so orphans of the command are
//! re-parented to it; it passes every signal it is sent on to the command, reaps every child, and exits with the
//! command's status (128 + N when the command died of signal N) once the command has ended. The command starts in
//! a process group of its own, with the terminal's foreground when `edge-init` had it, and with the signal
//! dispositions and mask `edge-init`'s parent gave `edge-init` (docs/edge-init.md, "One-command mode").

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use signal_hook::consts::signal::SIGCHLD;

use crate::sys::signals::{self, SignalState};
use crate::sys::{self, Reaped};

/// Everything that can make one-command mode act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A signal was sent to `edge-init` (any but `SIGKILL` and `SIGSTOP`, which cannot be caught).
    Signal(i32),
    /// The kernel raised a signal for one of `edge-init`'s own system calls (the `SIGPIPE` of a log line written to a
    /// closed pipe): it is about `edge-init`, not the command.
    OwnSignal(i32),
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
    /// Nothing (an orphan was reaped; `SIGCHLD` only wakes the reaping every wakeup does).
    Nothing,
}

/// Decides what an event does, given the command's pid.
pub fn decide(command: u32, event: Event) -> Action {
    match event {
        Event::Signal(SIGCHLD) | Event::OwnSignal(_) => Action::Nothing,
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
    // What the parent gave edge-init, recorded before Rust's runtime ignored SIGPIPE; the command gets exactly that.
    let inherited = signals::inherited().unwrap_or_else(|| {
        log::warn!("the inherited signal state was not recorded; the command starts with default signals");
        SignalState::CLEAN
    });
    if sys::pid() != 1 {
        if let Err(e) = sys::become_subreaper() {
            log::warn!("cannot become a child subreaper, orphans will not be reaped here: {e}");
        }
    }
    // Every signal is blocked before the child exists, so neither its exit nor a signal sent meanwhile can be
    // missed: each waits in the kernel until `signals::wait` takes it, and nothing runs in a signal handler.
    // This is also why a SIGSEGV, SIGBUS, SIGILL or SIGFPE sent with kill(2) can be passed on safely: it is only
    // ever dequeued, never delivered, so no handler returns into code that faulted. A real fault of edge-init is a
    // signal the kernel forces: when it is blocked, the kernel resets it to its default action and unblocks it, so
    // edge-init dies of it, as any process would, instead of looping on the faulting instruction.
    if let Err(e) = signals::block_all() {
        log::error!("cannot block signals: {e}");
        return 1;
    }
    // Only a foreground edge-init hands the terminal on; one started in the background must not take it from the
    // shell that started it.
    let take_terminal = signals::has_foreground();
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the closure runs in the child between fork and exec and only calls `signals::command_setup`, which
    // makes raw system calls (rt_sigprocmask, setpgid, getpid, ioctl, rt_sigaction) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || signals::command_setup(inherited, take_terminal));
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
                        // The command led its own group: the terminal goes back to the group it was taken from.
                        if take_terminal {
                            if let Err(e) = signals::give_back_terminal(command) {
                                log::warn!("cannot give the terminal back: {e}");
                            }
                        }
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
        let event = match signals::wait() {
            Ok(r) if r.own => Event::OwnSignal(r.signal),
            Ok(r) => Event::Signal(r.signal),
            Err(e) => {
                // rt_sigtimedwait fails only on bad arguments; there is no other way to wait left.
                log::error!("cannot wait for signals: {e}");
                return 1;
            }
        };
        if let Action::Forward(s) = decide(command, event) {
            if let Err(e) = signals::send(command, s) {
                log::warn!("cannot pass signal {s} to {command}: {e}");
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
    use signal_hook::consts::signal::{SIGPIPE, SIGSEGV, SIGTERM, SIGTSTP};

    const SIGRTMAX: i32 = 64;

    #[test]
    fn decisions() {
        let check = |e: Event, a: Action| assert_eq!(decide(42, e), a, "{e:?}");
        check(Event::Signal(SIGTERM), Action::Forward(SIGTERM));
        check(Event::Signal(SIGSEGV), Action::Forward(SIGSEGV));
        check(Event::Signal(SIGTSTP), Action::Forward(SIGTSTP));
        check(Event::Signal(SIGRTMAX), Action::Forward(SIGRTMAX));
        check(Event::Signal(SIGCHLD), Action::Nothing);
        check(Event::OwnSignal(SIGPIPE), Action::Nothing);
        check(Event::ChildExited(42, Exit::Code(7)), Action::Exit(7));
        check(Event::ChildExited(42, Exit::Signal(9)), Action::Exit(137));
        check(Event::ChildExited(43, Exit::Code(0)), Action::Nothing);
    }
}
