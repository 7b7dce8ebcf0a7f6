//! The agent's system calls beyond std: the only module that names `rustix`.

use std::fs::File;
use std::io;
use std::path::Path;

/// open(2) read-only with `O_NONBLOCK`, so that reading `/dev/kmsg` past its last record answers `EAGAIN` instead of
/// waiting for the next one.
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
    Ok(File::from(fd))
}

/// clock_gettime(2) of `CLOCK_MONOTONIC`, in milliseconds: the clock the kernel log's times count on (near enough:
/// it does not count time suspended either).
pub fn monotonic_ms() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec.saturating_mul(1000).saturating_add(t.tv_nsec / 1_000_000)
}

/// statvfs(3) of the file system holding `path`: its size and the bytes free to unprivileged users.
pub fn fs_size_free(path: &Path) -> io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path)?;
    Ok((s.f_blocks.saturating_mul(s.f_frsize), s.f_bavail.saturating_mul(s.f_frsize)))
}

/// poll(2) on `file` for reading, up to `timeout_ms`: whether it is readable.
pub fn wait_readable(file: &File, timeout_ms: i32) -> io::Result<bool> {
    use std::os::fd::AsFd as _;
    let fd = file.as_fd();
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let timeout = rustix::event::Timespec {
        tv_sec: i64::from(timeout_ms / 1000),
        tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000,
    };
    let n = rustix::event::poll(&mut fds, Some(&timeout))?;
    Ok(n > 0)
}
