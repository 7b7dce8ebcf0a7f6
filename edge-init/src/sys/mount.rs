//! The system calls of early boot and of the end of shutdown: mount(2) and umount2(2), switch-root's moves, the
//! hostname, bringing up `lo`, finit_module(2) and sync(2). `boot`, `data` and `modules` call these and attach the
//! context (which mount, which device) at the call site.

use std::ffi::CString;
use std::io;
use std::ops::BitOr;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::mount::{MountFlags, UnmountFlags};

/// Mount flags (`MS_*`), as mount(2) takes them; the rest of the options travel as the data string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(u32);

impl Flags {
    /// No flags: read-write, with the filesystem's defaults.
    pub const NONE: Flags = Flags(0);
    /// `ro`.
    pub const RDONLY: Flags = Flags(MountFlags::RDONLY.bits());
    /// `nosuid`.
    pub const NOSUID: Flags = Flags(MountFlags::NOSUID.bits());
    /// `nodev`.
    pub const NODEV: Flags = Flags(MountFlags::NODEV.bits());
    /// `noexec`.
    pub const NOEXEC: Flags = Flags(MountFlags::NOEXEC.bits());
    /// `sync`.
    pub const SYNC: Flags = Flags(MountFlags::SYNCHRONOUS.bits());
    /// `dirsync`.
    pub const DIRSYNC: Flags = Flags(MountFlags::DIRSYNC.bits());
    /// `noatime`.
    pub const NOATIME: Flags = Flags(MountFlags::NOATIME.bits());
    /// `nodiratime`.
    pub const NODIRATIME: Flags = Flags(MountFlags::NODIRATIME.bits());
    /// `relatime`.
    pub const RELATIME: Flags = Flags(MountFlags::RELATIME.bits());
    /// `strictatime`.
    pub const STRICTATIME: Flags = Flags(MountFlags::STRICTATIME.bits());
    /// `lazytime`.
    pub const LAZYTIME: Flags = Flags(MountFlags::LAZYTIME.bits());

    /// These flags and those of `other` (`|`, usable in constants).
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// These flags without those of `other`.
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, other: Flags) -> Flags {
        self.with(other)
    }
}

/// mount(2): `source` (a device, or the filesystem's name for those without one) on `target`.
pub fn mount(source: &Path, target: &Path, fstype: &str, flags: Flags, data: &str) -> io::Result<()> {
    let data = CString::new(data).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount data"))?;
    let data = (!data.is_empty()).then_some(data.as_c_str());
    Ok(rustix::mount::mount(source, target, fstype, MountFlags::from_bits_retain(flags.0), data)?)
}

/// mount(2) `MS_MOVE`: the mount at `from` moves to `to`, with whatever is mounted below it.
pub fn move_mount(from: &Path, to: &Path) -> io::Result<()> {
    Ok(rustix::mount::mount_move(from, to)?)
}

/// mount(2) `MS_REMOUNT | MS_RDONLY`: the filesystem mounted at `target` becomes read-only, wherever else it is
/// mounted too (a bind mount shares its filesystem).
pub fn remount_read_only(target: &Path) -> io::Result<()> {
    Ok(rustix::mount::mount_remount(target, MountFlags::RDONLY, "")?)
}

/// umount2(2) with `UMOUNT_NOFOLLOW`: fails with `EBUSY` while anything uses the mount.
pub fn unmount(target: &Path) -> io::Result<()> {
    Ok(rustix::mount::unmount(target, UnmountFlags::NOFOLLOW)?)
}

/// umount2(2) with `MNT_DETACH`: the mount leaves the tree now and goes once nothing uses it. For API
/// filesystems only, never for one that holds data.
pub fn unmount_detached(target: &Path) -> io::Result<()> {
    Ok(rustix::mount::unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)?)
}

/// sync(2): every filesystem's dirty data to its device; it may take long on slow storage.
pub fn sync() {
    rustix::fs::sync();
}

/// statfs(2): the filesystem type (`f_type`, a magic number) of the filesystem holding `path`.
pub fn filesystem_type(path: &Path) -> io::Result<u32> {
    // The magic numbers are 32-bit; `f_type` is a signed word, so keep the low 32 bits.
    Ok(rustix::fs::statfs(path)?.f_type as u32)
}

/// sethostname(2).
pub fn set_hostname(name: &str) -> io::Result<()> {
    Ok(rustix::system::sethostname(name.as_bytes())?)
}

/// uname(2): the running kernel's release, such as `6.6.30-edge`.
pub fn kernel_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

/// `MODULE_INIT_COMPRESSED_FILE` of finit_module(2): the kernel decompresses the file itself (Linux 5.17 and later,
/// with `CONFIG_MODULE_DECOMPRESS`).
const MODULE_INIT_COMPRESSED_FILE: i32 = 4;

/// finit_module(2): loads the module in `fd` with `params` (`key=value` words separated by spaces).
pub fn finit_module(fd: BorrowedFd<'_>, params: &str, compressed: bool) -> io::Result<()> {
    let params =
        CString::new(params).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in module parameters"))?;
    let flags = if compressed { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    Ok(rustix::system::finit_module(fd, &params, flags)?)
}

/// `struct ifreq` of netdevice(7), with only the member we use (`ifr_flags`) and room for the largest of the union.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _rest: [u8; 22],
}

const SIOCGIFFLAGS: rustix::ioctl::Opcode = 0x8913;
const SIOCSIFFLAGS: rustix::ioctl::Opcode = 0x8914;
const IFF_UP: i16 = 0x1;

/// ioctl(2) `SIOCGIFFLAGS` then `SIOCSIFFLAGS` on an `AF_INET` datagram socket (netdevice(7)): sets `IFF_UP` on the
/// interface `name`; returns whether it was down before.
pub fn interface_up(name: &str) -> io::Result<bool> {
    use rustix::ioctl::{ioctl, Updater};
    use rustix::net::{socket, AddressFamily, SocketType};
    if name.is_empty() || name.len() >= 16 || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface names are 1 to 15 bytes"));
    }
    let sock = socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    let mut req = IfReq { name: [0; 16], flags: 0, _rest: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: SIOCGIFFLAGS reads and writes a `struct ifreq`; `IfReq` has its layout (a NUL-terminated name of 16
    // bytes, then the union, whose first member is the short `ifr_flags`) and is at least as large, and `req`
    // outlives the call.
    unsafe { ioctl(&sock, Updater::<SIOCGIFFLAGS, IfReq>::new(&mut req))? };
    if req.flags & IFF_UP != 0 {
        return Ok(false);
    }
    req.flags |= IFF_UP;
    // SAFETY: as above; SIOCSIFFLAGS reads the same `struct ifreq`.
    unsafe { ioctl(&sock, Updater::<SIOCSIFFLAGS, IfReq>::new(&mut req))? };
    Ok(true)
}
