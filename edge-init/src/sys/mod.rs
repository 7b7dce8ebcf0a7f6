//! The system calls `edge-init` makes, and the only module (with its submodules) that names `rustix` or `libc`.

pub mod mount;
pub mod watchdog;

use std::io;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// exit(2) with this status.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    /// The shell's convention: the status, or 128 + the signal.
    pub fn as_status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// What one non-blocking wait found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// A child (ours, or an orphan re-parented to us) ended and is gone.
    Child(u32, Exit),
    /// Children are running, none has ended.
    NoneReady,
    /// No children at all.
    NoChildren,
}

/// waitpid(2) `(-1, WNOHANG)`: reaps one ended child, of any parentage.
pub fn reap() -> io::Result<Reaped> {
    match rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG) {
        Ok(Some((pid, status))) => {
            let exit = match (status.exit_status(), status.terminating_signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(sig)) => Exit::Signal(sig),
                // Stopped or continued children are not reported without WUNTRACED; count as still running.
                (None, None) => return Ok(Reaped::NoneReady),
            };
            Ok(Reaped::Child(pid.as_raw_nonzero().get() as u32, exit))
        }
        Ok(None) => Ok(Reaped::NoneReady),
        Err(rustix::io::Errno::CHILD) => Ok(Reaped::NoChildren),
        Err(e) => Err(e.into()),
    }
}

/// prctl(2) `PR_SET_CHILD_SUBREAPER`: orphans of our descendants are re-parented to us, so we reap them.
pub fn become_subreaper() -> io::Result<()> {
    Ok(rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?)
}

/// getpid(2).
pub fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// kill(2) of one process.
pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let p = rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    let s = rustix::process::Signal::from_named_raw(signal).ok_or_else(|| io::Error::other("unknown signal"))?;
    Ok(rustix::process::kill_process(p, s)?)
}
