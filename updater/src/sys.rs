//! The system calls the updater makes, and the only module that names `rustix`.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// posix_fadvise(2) `POSIX_FADV_DONTNEED` over `len` bytes at `offset` (0: to the end): drops the file's clean
/// cached pages there, so the next reads come from the device (the read-back must not be answered by the cache).
pub fn drop_page_cache(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let len = std::num::NonZeroU64::new(len);
    Ok(rustix::fs::fadvise(file.as_fd(), offset, len, rustix::fs::Advice::DontNeed)?)
}

/// flock(2) `LOCK_EX | LOCK_NB`: `Ok(false)` when another process holds the lock.
pub fn try_lock(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// major(3) and minor(3) of a device number, as `/proc/locks` writes them.
pub fn major_minor(dev: u64) -> (u32, u32) {
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// flock(2) `LOCK_EX`, waiting for another holder to let go.
pub fn lock(file: &File) -> io::Result<()> {
    Ok(rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)?)
}

/// sync(2), then reboot(2) `LINUX_REBOOT_CMD_RESTART`; returns only on failure.
pub fn reboot() -> io::Error {
    rustix::fs::sync();
    match rustix::system::reboot(rustix::system::RebootCommand::Restart) {
        Ok(()) => io::Error::other("reboot(2) returned"),
        Err(e) => e.into(),
    }
}

/// kill(2) of a whole process group with SIGKILL (a health check command and everything it started).
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pgid as i32).ok_or_else(|| io::Error::other("process group 0"))?;
    Ok(rustix::process::kill_process_group(pid, rustix::process::Signal::KILL)?)
}
