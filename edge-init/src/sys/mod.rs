//! The system calls `edge-init` makes, and the only module (with its submodules) that names `rustix` or `libc`.

pub mod mount;
pub mod signals;
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
    // rustix's `waitpid(None)` is pid 0 (our process group only); `wait` is pid -1, every child.
    match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
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

/// How the machine ends after a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// Restart.
    Reboot,
    /// Power off.
    PowerOff,
    /// Stop the CPUs, leave the power on.
    Halt,
}

/// reboot(2): restarts, powers off or halts. In a PID namespace other than the first, the kernel instead kills
/// that namespace's PID 1 (with SIGHUP for a restart, SIGINT otherwise), which the tests observe.
pub fn reboot(how: Halt) -> io::Result<()> {
    use rustix::system::RebootCommand;
    let cmd = match how {
        Halt::Reboot => RebootCommand::Restart,
        Halt::PowerOff => RebootCommand::PowerOff,
        Halt::Halt => RebootCommand::Halt,
    };
    Ok(rustix::system::reboot(cmd)?)
}

/// reboot(2) `LINUX_REBOOT_CMD_CAD_OFF`: ctrl-alt-del sends SIGINT to PID 1 instead of restarting at once.
pub fn disable_ctrl_alt_del() -> io::Result<()> {
    Ok(rustix::system::reboot(rustix::system::RebootCommand::CadOff)?)
}

/// kill(2) of a process group.
pub fn kill_group(pgid: u32, signal: i32) -> io::Result<()> {
    let p = rustix::process::Pid::from_raw(pgid as i32).ok_or_else(|| io::Error::other("process group 0"))?;
    let s = rustix::process::Signal::from_named_raw(signal).ok_or_else(|| io::Error::other("unknown signal"))?;
    Ok(rustix::process::kill_process_group(p, s)?)
}

/// kill(2) with pid -1: every process this one may signal, except itself (and PID 1).
pub fn kill_everyone(signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes no pointers; -1 and a signal number are plain integers.
    let r = unsafe { libc::kill(-1, signal) };
    if r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// getsid(2): the session of `pid`; a service is the leader of its own session, so this names the service of any
/// process it started.
pub fn session_of(pid: u32) -> io::Result<u32> {
    let p = rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    Ok(rustix::process::getsid(Some(p))?.as_raw_nonzero().get() as u32)
}

/// close_range(2) with `CLOSE_RANGE_CLOEXEC` from fd 3 up: whatever `edge-init` inherited is not passed on to
/// the services it starts.
pub fn cloexec_inherited() -> io::Result<()> {
    // SAFETY: close_range takes integers only; CLOSE_RANGE_CLOEXEC marks the fds instead of closing them, so no
    // fd owned by Rust code is invalidated.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// pipe2(2) with `O_CLOEXEC`: a service's output; the read end (first) is non-blocking.
pub fn output_pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    rustix::io::ioctl_fionbio(&r, true)?;
    Ok((r, w))
}

/// read(2) of what is there (`Ok(0)` at the end, `WouldBlock` when nothing is).
pub fn read(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::io::read(fd, buf)?)
}

/// poll(2) for input on `fds`, up to `timeout` (forever when `None`); which are readable (or closed).
pub fn poll(fds: &[std::os::fd::BorrowedFd<'_>], timeout: Option<std::time::Duration>) -> io::Result<Vec<bool>> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut set: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    let ts = timeout.map(|t| Timespec { tv_sec: t.as_secs() as i64, tv_nsec: t.subsec_nanos() as _ });
    match rustix::event::poll(&mut set, ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(set.iter().map(|p| !p.revents().is_empty()).collect())
}

/// setsockopt(2) `SO_PASSCRED`: each datagram on the notify socket carries its sender's pid.
pub fn pass_credentials(sock: &std::os::unix::net::UnixDatagram) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_passcred(sock, true)?)
}

/// recvmsg(2) of one datagram with its sender's pid (`None` when nothing is waiting); with `peek` the datagram
/// stays queued (`MSG_PEEK`), so the next call reads it again.
pub fn recv_with_pid(
    sock: &std::os::unix::net::UnixDatagram,
    buf: &mut [u8],
    peek: bool,
) -> io::Result<Option<(usize, u32)>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let flags = if peek { RecvFlags::DONTWAIT | RecvFlags::PEEK } else { RecvFlags::DONTWAIT };
    let msg = match rustix::net::recvmsg(sock, &mut iov, &mut control, flags) {
        Ok(m) => m,
        Err(rustix::io::Errno::AGAIN) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut pid = 0;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmCredentials(c) = m {
            pid = c.pid.as_raw_nonzero().get() as u32;
        }
    }
    Ok(Some((msg.bytes, pid)))
}

/// getsockopt(2) `SO_PEERCRED`: the pid and uid of the process at the other end of a control connection (pid 0
/// when it is in a PID namespace this one cannot see). Through libc: rustix refuses a pid of 0.
pub fn peer(stream: &std::os::unix::net::UnixStream) -> io::Result<(u32, u32)> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live locals of the size passed; the fd is borrowed from `stream` for the call.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid.max(0) as u32, cred.uid))
}

/// stat(2) of `/proc/self/ns/pid` (`ns`): whether this is the machine's first PID namespace (a real node's, not a
/// container's or a test's).
pub fn in_initial_pid_namespace(ns: &std::path::Path) -> bool {
    // The kernel's PROC_PID_INIT_INO.
    const INITIAL: u64 = 0xEFFF_FFFC;
    rustix::fs::stat(ns).is_ok_and(|st| st.st_ino == INITIAL)
}

/// Between fork and exec, in a service's child: into its cgroup when `cgroup_procs` (an open `cgroup.procs`) is
/// given, a session of its own (`setsid`), every signal back to its default and none blocked, then, when `ids`
/// (uid, gid) is given, no supplementary groups and that group and user. The cgroup is joined while still root:
/// kernels check the writer's credentials against `cgroup.procs`. Only async-signal-safe calls: no allocation, no
/// locks.
pub fn child_setup(cgroup_procs: Option<std::os::fd::BorrowedFd<'_>>, ids: Option<(u32, u32)>) -> io::Result<()> {
    if let Some(fd) = cgroup_procs {
        // "0" moves the writing process; done first, so nothing the service forks escapes its cgroup.
        rustix::io::write(fd, b"0")?;
    }
    rustix::process::setsid()?;
    signals::reset()?;
    if let Some((uid, gid)) = ids {
        // Per-thread calls, which in a child of fork (one thread) are the process's.
        rustix::thread::set_thread_groups(&[])?;
        rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(gid))?;
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid))?;
    }
    Ok(())
}

/// ioctl(2) `SIOCOUTQ` on a datagram socket: bytes sent and not yet read by the receiver.
pub fn unread(sock: &std::os::unix::net::UnixDatagram) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is a live c_int, which is what SIOCOUTQ writes; the fd is borrowed from `sock` for the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// SIGPWR, which signal-hook does not name: a UPS daemon's "power is failing".
pub const SIGPWR: i32 = libc::SIGPWR;
