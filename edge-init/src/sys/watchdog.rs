//! The watchdog device's system calls: opening its node and the `WDIOC_*` ioctls of `linux/watchdog.h`
//! (the kernel's Documentation/watchdog/watchdog-api.rst). The policy (which device, how often to pet) is in
//! `crate::watchdog`; this module only speaks the kernel's interface.

use std::ffi::c_int;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{ioctl, opcode, Getter, Opcode, Updater};

/// `WDIOF_CARDRESET` in the boot status: the watchdog reset the machine last time.
pub const CARDRESET: u32 = 0x0020;
/// `WDIOF_KEEPALIVEPING` in the options: the driver takes `WDIOC_KEEPALIVE`.
pub const KEEPALIVEPING: u32 = 0x8000;

/// `WATCHDOG_IOCTL_BASE`.
const BASE: u8 = b'W';
const WDIOC_GETSUPPORT: Opcode = opcode::read::<RawInfo>(BASE, 0);
const WDIOC_GETBOOTSTATUS: Opcode = opcode::read::<c_int>(BASE, 2);
const WDIOC_KEEPALIVE: Opcode = opcode::read::<c_int>(BASE, 5);
const WDIOC_SETTIMEOUT: Opcode = opcode::read_write::<c_int>(BASE, 6);
const WDIOC_GETTIMEOUT: Opcode = opcode::read::<c_int>(BASE, 7);
const WDIOC_GETTIMELEFT: Opcode = opcode::read::<c_int>(BASE, 10);

/// `struct watchdog_info`, as the kernel lays it out.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawInfo {
    options: u32,
    firmware_version: u32,
    identity: [u8; 32],
}

/// What a driver says about itself (`struct watchdog_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The `WDIOF_*` bits it supports.
    pub options: u32,
    /// Its firmware version.
    pub firmware_version: u32,
    /// Its identity (`i6300ESB timer`, `iTCO_wdt`), the same text as sysfs `identity`.
    pub identity: String,
}

/// open(2) of a watchdog device node, write-only and close-on-exec; most drivers start the watchdog on open.
pub fn open(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?)
}

/// ioctl(2) `WDIOC_GETSUPPORT`: the driver's identity and options.
pub fn support(fd: BorrowedFd<'_>) -> io::Result<Info> {
    // SAFETY: WDIOC_GETSUPPORT writes one `struct watchdog_info`, which `RawInfo` lays out the same (repr(C), two
    // u32 and 32 bytes); the getter hands the kernel a buffer of exactly that size.
    let raw = unsafe { ioctl(fd, Getter::<WDIOC_GETSUPPORT, RawInfo>::new()) }?;
    let end = raw.identity.iter().position(|&b| b == 0).unwrap_or(raw.identity.len());
    let identity = String::from_utf8_lossy(&raw.identity[..end]).trim().to_owned();
    Ok(Info { options: raw.options, firmware_version: raw.firmware_version, identity })
}

/// ioctl(2) `WDIOC_SETTIMEOUT`: asks for a timeout in seconds; returns the one the driver wrote back.
pub fn set_timeout(fd: BorrowedFd<'_>, secs: u32) -> io::Result<u32> {
    let mut value = c_int::try_from(secs).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: WDIOC_SETTIMEOUT reads one int and writes the timeout in use back into it; `value` is that int and
    // lives across the call.
    unsafe { ioctl(fd, Updater::<WDIOC_SETTIMEOUT, c_int>::new(&mut value)) }?;
    Ok(u32::try_from(value).unwrap_or(0))
}

/// ioctl(2) `WDIOC_GETTIMEOUT`: the timeout in use, in seconds.
pub fn timeout(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: WDIOC_GETTIMEOUT writes one int, the size of the getter's buffer.
    let secs = unsafe { ioctl(fd, Getter::<WDIOC_GETTIMEOUT, c_int>::new()) }?;
    Ok(u32::try_from(secs).unwrap_or(0))
}

/// ioctl(2) `WDIOC_GETTIMELEFT`: seconds before the watchdog fires, where the driver can tell.
pub fn time_left(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: WDIOC_GETTIMELEFT writes one int, the size of the getter's buffer.
    let secs = unsafe { ioctl(fd, Getter::<WDIOC_GETTIMELEFT, c_int>::new()) }?;
    Ok(u32::try_from(secs).unwrap_or(0))
}

/// ioctl(2) `WDIOC_GETBOOTSTATUS`: the `WDIOF_*` bits that say why the machine last reset.
pub fn boot_status(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: WDIOC_GETBOOTSTATUS writes one int, the size of the getter's buffer.
    let bits = unsafe { ioctl(fd, Getter::<WDIOC_GETBOOTSTATUS, c_int>::new()) }?;
    Ok(bits as u32)
}

/// ioctl(2) `WDIOC_KEEPALIVE`: pets the watchdog (drivers with `KEEPALIVEPING`).
pub fn keepalive(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: WDIOC_KEEPALIVE is declared `_IOR(.., int)`; the kernel ignores the argument, and any driver that
    // wrote one int would write it into the getter's buffer of that size.
    unsafe { ioctl(fd, Getter::<WDIOC_KEEPALIVE, c_int>::new()) }?;
    Ok(())
}

/// write(2) of one NUL byte: pets any watchdog driver, and, not being `V`, never arms the magic close.
pub fn keepalive_by_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    match rustix::io::write(fd, &[0])? {
        1 => Ok(()),
        _ => Err(io::Error::from(io::ErrorKind::WriteZero)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers as `linux/watchdog.h` gives them on x86 and arm (other architectures encode the
    /// direction bits differently, and rustix follows them there).
    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64", target_arch = "arm"))]
    fn request_numbers_match_the_kernel_header() {
        let check = |ours: Opcode, header: u64| assert_eq!(u64::from(ours), header, "{ours:#x} vs {header:#x}");
        check(WDIOC_GETSUPPORT, 0x8028_5700);
        check(WDIOC_GETBOOTSTATUS, 0x8004_5702);
        check(WDIOC_KEEPALIVE, 0x8004_5705);
        check(WDIOC_SETTIMEOUT, 0xc004_5706);
        check(WDIOC_GETTIMEOUT, 0x8004_5707);
        check(WDIOC_GETTIMELEFT, 0x8004_570a);
    }

    /// A file that is no watchdog answers every ioctl with ENOTTY, which is what `crate::watchdog` falls back on.
    #[test]
    fn a_file_that_is_no_watchdog_refuses_the_ioctls() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("not-a-watchdog");
        std::fs::write(&path, b"").expect("create");
        let fd = open(&path).expect("open a plain file write-only");
        let enotty = |r: io::Result<()>| {
            assert_eq!(
                r.expect_err("ioctl on a plain file").raw_os_error(),
                Some(rustix::io::Errno::NOTTY.raw_os_error())
            )
        };
        enotty(support(fd.as_fd()).map(drop));
        enotty(set_timeout(fd.as_fd(), 30).map(drop));
        enotty(timeout(fd.as_fd()).map(drop));
        enotty(time_left(fd.as_fd()).map(drop));
        enotty(boot_status(fd.as_fd()).map(drop));
        enotty(keepalive(fd.as_fd()));
        keepalive_by_write(fd.as_fd()).expect("write one byte");
        assert_eq!(std::fs::read(&path).expect("read back"), [0]);
    }
}
