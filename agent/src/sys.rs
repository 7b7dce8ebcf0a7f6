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
