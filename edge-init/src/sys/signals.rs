//! Signal state below `std` and `signal-hook`: what `edge-init` inherited from its parent (recorded before Rust's
//! runtime changes it), blocking and waiting for signals in one-command mode, and a child's dispositions, mask,
//! process group and terminal between fork and exec. A module of its own because these calls work on the kernel's
//! signal sets directly: raw system calls, so that the C library's reserved signals (32 to 34) are treated like any
//! other and everything a child calls is async-signal-safe.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Signal dispositions and mask as the kernel keeps them: bit N-1 stands for signal N (1 to 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignalState {
    /// The signals whose disposition is `SIG_IGN` (every other is `SIG_DFL`: exec drops handlers).
    pub ignored: u64,
    /// The signal mask.
    pub blocked: u64,
}

impl SignalState {
    /// Every signal at its default and none blocked: how services start.
    pub const CLEAN: SignalState = SignalState { ignored: 0, blocked: 0 };
}

/// The bit of signal `signal` in a kernel signal set.
pub fn bit(signal: i32) -> u64 {
    1u64 << (signal - 1)
}

/// The size of the kernel's signal set, as the `rt_sig*` calls take it.
const SET_SIZE: usize = 8;

static RECORDED: AtomicBool = AtomicBool::new(false);
static INHERITED_IGNORED: AtomicU64 = AtomicU64::new(0);
static INHERITED_BLOCKED: AtomicU64 = AtomicU64::new(0);

/// rt_sigaction(2) and rt_sigprocmask(2) queries: records which signals the parent left ignored and which it left
/// blocked. `main.rs` calls this from `.init_array`, which the C library runs before `main` and so before Rust's
/// runtime sets `SIGPIPE` to ignored and installs its stack-overflow handlers for `SIGSEGV` and `SIGBUS`: what is
/// recorded is the parent's state, not Rust's. Nothing here allocates or needs the runtime.
pub extern "C" fn record_inherited() {
    let mut ignored = 0;
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // The kernel's struct sigaction (handler, flags, restorer, mask on x86-64; smaller elsewhere), whose first
        // word is the handler.
        let mut old = [0u64; 4];
        // SAFETY: rt_sigaction(2) with no new action only writes the old one into `old`, a live buffer at least as
        // large as the kernel's struct sigaction.
        let r =
            unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, std::ptr::null::<u64>(), old.as_mut_ptr(), SET_SIZE) };
        if r == 0 && old[0] == libc::SIG_IGN as u64 {
            ignored |= bit(sig);
        }
    }
    let mut blocked = 0u64;
    // SAFETY: rt_sigprocmask(2) with no new set only writes the current mask into `blocked`, a live u64 of the
    // size passed.
    unsafe {
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, std::ptr::null::<u64>(), &mut blocked, SET_SIZE)
    };
    INHERITED_IGNORED.store(ignored, Ordering::SeqCst);
    INHERITED_BLOCKED.store(blocked, Ordering::SeqCst);
    RECORDED.store(true, Ordering::SeqCst);
}

/// What [`record_inherited`] found, or `None` when it did not run (the library used from another binary).
pub fn inherited() -> Option<SignalState> {
    RECORDED.load(Ordering::SeqCst).then(|| SignalState {
        ignored: INHERITED_IGNORED.load(Ordering::SeqCst),
        blocked: INHERITED_BLOCKED.load(Ordering::SeqCst),
    })
}

/// rt_sigprocmask(2) `SIG_SETMASK`: the signal mask becomes `blocked` (the kernel leaves `SIGKILL` and `SIGSTOP`
/// out). Async-signal-safe.
fn set_mask(blocked: u64) -> io::Result<()> {
    // SAFETY: rt_sigprocmask(2) reads `blocked`, a live u64 of the size passed, and writes nothing (old set null).
    let r = unsafe {
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &blocked, std::ptr::null_mut::<u64>(), SET_SIZE)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// rt_sigprocmask(2): blocks every signal, so that each one sent to this process waits for [`wait`] instead of
/// acting. Signals the kernel raises for a fault of this process (a real `SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`)
/// are not held: a blocked fault signal is forced back to its default action and unblocked, so the process dies of
/// it instead of returning into the faulting instruction.
pub fn block_all() -> io::Result<()> {
    set_mask(!0)
}

/// One signal taken by [`wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its number.
    pub signal: i32,
    /// Raised by the kernel for a system call of this process (the `SIGPIPE` of a write to a closed pipe, the
    /// `SIGXFSZ` of a write past the file size limit): it carries `SI_USER` with this process as the sender.
    pub own: bool,
}

/// rt_sigtimedwait(2) on every signal, without a timeout: takes the next pending one (they are all blocked, see
/// [`block_all`]). Retries when interrupted (a stop and continue).
pub fn wait() -> io::Result<Received> {
    let all: u64 = !0;
    loop {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: rt_sigtimedwait(2) reads `all`, a live u64 of the size passed, and writes one siginfo into `info`,
        // a live buffer of that type; the timeout is null (wait as long as it takes).
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &all,
                info.as_mut_ptr(),
                std::ptr::null::<libc::timespec>(),
                SET_SIZE,
            )
        };
        if r > 0 {
            // SAFETY: the call succeeded, so the kernel filled `info`; si_pid is meaningful for SI_USER, the only
            // code for which it is read.
            let own = unsafe {
                let info = info.assume_init();
                info.si_code == libc::SI_USER && info.si_pid() as u32 == super::pid()
            };
            return Ok(Received { signal: r as i32, own });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// kill(2) of one process with any signal, the real-time ones included (rustix names only the classic ones).
pub fn send(pid: u32, signal: i32) -> io::Result<()> {
    let pid = i32::try_from(pid).ok().filter(|p| *p > 0).ok_or_else(|| io::Error::other("not a process id"))?;
    // SAFETY: kill(2) takes two integers; `pid` is positive, so it names one process, never a group or everyone.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// ioctl(2) `TIOCGPGRP` on stdin (tcgetpgrp(3)) against getpgrp(2): whether this process's group is the foreground
/// group of a terminal on stdin (false when stdin is no terminal).
pub fn has_foreground() -> bool {
    let mut group: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t into `group`, a live local; fd 0 is only borrowed for the call.
    let r = unsafe { libc::ioctl(0, libc::TIOCGPGRP, &mut group) };
    r == 0 && group == rustix::process::getpgrp().as_raw_nonzero().get()
}

/// tcsetpgrp(3) on stdin: the terminal's foreground back to this process's group when it is still `group`'s (the
/// command's, which has ended), so that whoever started `edge-init` finds the terminal as it left it. Every signal is
/// blocked by then ([`block_all`]), so a background group may do this without being stopped by `SIGTTOU`.
pub fn give_back_terminal(group: u32) -> io::Result<()> {
    let mut current: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t into `current`, a live local; fd 0 is only borrowed for the call.
    if unsafe { libc::ioctl(0, libc::TIOCGPGRP, &mut current) } != 0 || current as u32 != group {
        return Ok(());
    }
    let own = rustix::process::getpgrp().as_raw_nonzero().get();
    // SAFETY: TIOCSPGRP reads one pid_t from `own`, a live local; fd 0 is only borrowed for the call.
    if unsafe { libc::ioctl(0, libc::TIOCSPGRP, &own) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Between fork and exec, in one-command mode's child: a process group of its own (`setpgid(0, 0)`), the terminal's
/// foreground handed to that group when `take_terminal` (tcsetpgrp(3) on stdin; no terminal is fine), then exactly
/// the dispositions and mask of `state`. Every signal stays blocked until the end: `std` has already emptied the
/// mask, and tcsetpgrp from a background group raises `SIGTTOU` unless it is blocked. Async-signal-safe.
pub fn command_setup(state: SignalState, take_terminal: bool) -> io::Result<()> {
    set_mask(!0)?;
    rustix::process::setpgid(None, None)?;
    if take_terminal {
        let group = rustix::process::getpid().as_raw_nonzero().get();
        // SAFETY: TIOCSPGRP reads one pid_t from `group`, a live local; fd 0 is only borrowed for the call.
        let r = unsafe { libc::ioctl(0, libc::TIOCSPGRP, &group) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::ENXIO)) {
                return Err(e);
            }
        }
    }
    restore(state);
    set_mask(state.blocked)
}

/// Between fork and exec: each signal's disposition back to `SIG_IGN` when `state` has it ignored, else to
/// `SIG_DFL` (an ignored signal survives exec, a handler does not); the mask is the caller's to set.
/// Async-signal-safe.
pub fn restore(state: SignalState) {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // The kernel's struct sigaction: the handler, then no flags and an empty mask (larger than any
        // architecture's).
        let handler = if state.ignored & bit(sig) != 0 { libc::SIG_IGN } else { libc::SIG_DFL };
        let action = [handler as u64, 0, 0, 0];
        // SAFETY: rt_sigaction(2) reads `action`, a live buffer at least as large as the kernel's struct sigaction,
        // and writes nothing (old action null). The raw call, not the C library's, so that the signals the C
        // library keeps for itself (32 to 34) are set too: the kernel takes them like any other.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, action.as_ptr(), std::ptr::null_mut::<u64>(), SET_SIZE) };
    }
}

/// Between fork and exec: every signal disposition back to its default and an empty mask, whatever `edge-init`
/// itself inherited (how services start). Async-signal-safe.
pub fn reset() -> io::Result<()> {
    restore(SignalState::CLEAN);
    set_mask(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        let check = |sig: i32, expected: u64| assert_eq!(bit(sig), expected, "{sig}");
        check(1, 1);
        check(libc::SIGINT, 0x2);
        check(libc::SIGTERM, 0x4000);
        check(64, 1 << 63);
    }
}
