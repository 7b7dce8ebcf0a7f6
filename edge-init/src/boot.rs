//! Early boot and the end of shutdown (docs/edge-init.md, "Early boot", "Initramfs mode", "Shutdown"): the API
//! filesystems, the hostname and `lo` at start; finding a partition by PARTLABEL or PARTUUID; switching from an
//! initramfs to a slot's root; and, at shutdown, sync with a deadline and unmounting in reverse order.
//! It is a module of its own because all of it runs once, before the services start or after they stopped, and
//! because none of it may keep the node from coming up: what fails is logged and boot goes on.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cmdline::PartSpec;
use crate::sys;
use crate::sys::mount::Flags;

/// One line of `/proc/self/mountinfo` (proc(5)), with the fields `edge-init` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount's id.
    pub id: u32,
    /// The id of the mount it sits on (its own id, or one not listed, for the root of the namespace).
    pub parent: u32,
    /// `major:minor` of the filesystem; two mounts with the same value share one filesystem.
    pub device: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The per-mount options, such as `rw,nosuid,relatime`.
    pub options: String,
    /// The filesystem type, such as `ext4`.
    pub fstype: String,
    /// The source, such as `/dev/vda4`, or the filesystem's name for those without a device.
    pub source: String,
}

impl Mount {
    /// Whether it is mounted read-only.
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses the text of `/proc/self/mountinfo`, in its order (the order the mounts were made, mostly); lines that do
/// not parse are left out.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    // `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: the optional fields end
    // at a lone `-`.
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let id = l.next()?.parse().ok()?;
    let parent = l.next()?.parse().ok()?;
    let device = l.next()?.to_owned();
    let _root = l.next()?;
    let mount_point = PathBuf::from(OsString::from_vec(unescape(l.next()?)));
    let options = l.next()?.to_owned();
    let mut r = right.split(' ');
    let fstype = r.next()?.to_owned();
    let source = String::from_utf8_lossy(&unescape(r.next()?)).into_owned();
    Some(Mount { id, parent, device, mount_point, options, fstype, source })
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// The mounts of this process's mount namespace, from `/proc/self/mountinfo`.
pub fn mounts() -> io::Result<Vec<Mount>> {
    Ok(parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo")?))
}

/// One of the API filesystems early boot mounts.
#[derive(Debug, PartialEq, Eq)]
struct ApiMount {
    target: &'static str,
    fstype: &'static str,
    flags: Flags,
    data: &'static str,
}

const NOSUID_NODEV: Flags = Flags::NOSUID.with(Flags::NODEV);
const NOSUID_NODEV_NOEXEC: Flags = NOSUID_NODEV.with(Flags::NOEXEC);

/// The API filesystems, in the order they are mounted (each after the one it sits on).
const API_MOUNTS: [ApiMount; 8] = [
    ApiMount { target: "/proc", fstype: "proc", flags: NOSUID_NODEV_NOEXEC, data: "" },
    ApiMount { target: "/sys", fstype: "sysfs", flags: NOSUID_NODEV_NOEXEC, data: "" },
    ApiMount { target: "/dev", fstype: "devtmpfs", flags: Flags::NOSUID, data: "mode=0755" },
    ApiMount {
        target: "/dev/pts",
        fstype: "devpts",
        flags: Flags::NOSUID.with(Flags::NOEXEC),
        data: "newinstance,ptmxmode=0666,mode=0620",
    },
    ApiMount { target: "/dev/shm", fstype: "tmpfs", flags: NOSUID_NODEV, data: "mode=1777" },
    ApiMount { target: "/run", fstype: "tmpfs", flags: NOSUID_NODEV, data: "mode=0755" },
    ApiMount { target: "/tmp", fstype: "tmpfs", flags: NOSUID_NODEV, data: "mode=1777" },
    ApiMount { target: "/sys/fs/cgroup", fstype: "cgroup2", flags: NOSUID_NODEV_NOEXEC, data: "" },
];

/// The API filesystems not mounted yet: those whose mount point has no mount, and cgroup2 unless it is mounted
/// anywhere (a hybrid host has it at `/sys/fs/cgroup/unified`).
fn missing_api_mounts(mounts: &[Mount]) -> Vec<&'static ApiMount> {
    API_MOUNTS
        .iter()
        .filter(|a| match a.fstype {
            "cgroup2" => !mounts.iter().any(|m| m.fstype == "cgroup2"),
            _ => !mounts.iter().any(|m| m.mount_point == Path::new(a.target)),
        })
        .collect()
}

/// The hostname to set: the argument (services.toml's `hostname`), else the first line of `/etc/hostname`, else
/// `edge`.
fn choose_hostname(configured: Option<&str>, etc_hostname: Option<&str>) -> String {
    let first_line = etc_hostname.and_then(|t| t.lines().next());
    [configured, first_line].into_iter().flatten().map(str::trim).find(|h| !h.is_empty()).unwrap_or("edge").to_owned()
}

/// Mounts the API filesystems that are not mounted yet (`/proc`, `/sys`, `/dev`, `/dev/pts`, `/dev/shm`, `/run`,
/// `/tmp`, cgroup2 on `/sys/fs/cgroup`): the first thing PID 1 does, since even the kernel command line is read
/// from `/proc`. Nothing here is fatal: each failure is logged as a warning and returned, one line each; an empty
/// list means everything is in place.
pub fn mount_api_filesystems() -> Vec<String> {
    let mut failed = Vec::new();
    let mut fail = |line: String| {
        log::warn!("{line}");
        failed.push(line);
    };
    let mut done = Vec::new();
    // Without /proc there is no mountinfo to read: mount it first, then look.
    let table = match mounts() {
        Ok(t) => t,
        Err(_) => {
            match mount_api(&API_MOUNTS[0]) {
                Ok(()) => done.push("proc on /proc".to_owned()),
                Err(e) => fail(e),
            }
            mounts().unwrap_or_default()
        }
    };
    for a in missing_api_mounts(&table) {
        match mount_api(a) {
            Ok(()) => done.push(format!("{} on {}", a.fstype, a.target)),
            Err(e) => fail(e),
        }
    }
    if !done.is_empty() {
        log::info!("mounted {}", done.join(", "));
    }
    // The links a fresh devtmpfs lacks and shells expect (a /dev mounted before, by the initramfs, has them).
    if done.iter().any(|d| d.ends_with(" on /dev")) {
        let links = [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ];
        for (link, to) in links {
            let link = Path::new("/dev").join(link);
            match std::os::unix::fs::symlink(to, &link) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    fail(format!("cannot make {} -> {to}: {e}", link.display()));
                }
                _ => {}
            }
        }
    }
    failed
}

/// Sets the hostname (`hostname`, else `/etc/hostname`, else `edge`) and brings up `lo`. Failures are logged as
/// warnings and returned.
pub fn name_and_loopback(hostname: Option<&str>) -> Vec<String> {
    let mut failed = Vec::new();
    let mut fail = |line: String| {
        log::warn!("{line}");
        failed.push(line);
    };
    let name = choose_hostname(hostname, fs::read_to_string("/etc/hostname").ok().as_deref());
    match sys::mount::set_hostname(&name) {
        Ok(()) => log::info!("hostname {name}"),
        Err(e) => fail(format!("cannot set the hostname to {name:?}: {e}")),
    }
    match sys::mount::interface_up("lo") {
        Ok(true) => log::info!("lo up"),
        Ok(false) => log::debug!("lo was already up"),
        Err(e) => fail(format!("cannot bring up lo: {e}")),
    }
    failed
}

fn mount_api(a: &ApiMount) -> Result<(), String> {
    let target = Path::new(a.target);
    fs::create_dir_all(target).map_err(|e| format!("cannot make {} for {}: {e}", a.target, a.fstype))?;
    sys::mount::mount(Path::new(a.fstype), target, a.fstype, a.flags, a.data)
        .map_err(|e| format!("cannot mount {} on {}: {e}", a.fstype, a.target))
}

/// Where this process's services get their cgroups: the cgroup2 mount point joined with this process's own cgroup
/// (the `0::` line of `/proc/self/cgroup`); `None` without cgroup2.
pub fn cgroup2_root() -> Option<PathBuf> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup2_root_in(&mounts().ok()?, &own)
}

fn cgroup2_root_in(mounts: &[Mount], self_cgroup: &str) -> Option<PathBuf> {
    let m = mounts.iter().find(|m| m.fstype == "cgroup2")?;
    let own = self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim().trim_start_matches('/');
    Some(if own.is_empty() { m.mount_point.clone() } else { m.mount_point.join(own) })
}

/// One block device as sysfs describes it in its `uevent`.
struct BlockDev {
    /// Its directory in sysfs (a link under `class/block`).
    sys_dir: PathBuf,
    devname: String,
    /// The partition's number, for a partition.
    partn: Option<u32>,
    /// The GPT partition name, for a partition that has one.
    partname: Option<String>,
}

fn read_uevent(dir: &Path) -> Option<BlockDev> {
    let text = fs::read_to_string(dir.join("uevent")).ok()?;
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::to_owned);
    Some(BlockDev {
        sys_dir: dir.to_owned(),
        devname: value("DEVNAME")?,
        partn: value("PARTN").and_then(|n| n.parse().ok()),
        partname: value("PARTNAME"),
    })
}

/// The device node of a partition: a path as it is, or the partition whose GPT name (`PARTNAME=` in its sysfs
/// `uevent`, else read from its disk's GPT) or PARTUUID (read from its disk's partition table, GPT or MBR)
/// matches. `sys_root` and `dev_root` are normally `/sys` and `/dev`. Only a device whose node exists is found;
/// when several match, the first by name is taken and the others are named in a warning.
pub fn find_partition(spec: &PartSpec, sys_root: &Path, dev_root: &Path) -> Option<PathBuf> {
    let wanted: Box<dyn Fn(&BlockDev) -> bool> = match spec {
        PartSpec::Path(p) => return Path::new(p).exists().then(|| PathBuf::from(p)),
        // A kernel without a GPT parser (partitions added with BLKPG) has no PARTNAME: read the GPT then.
        PartSpec::Label(l) => Box::new(move |d| match &d.partname {
            Some(name) => name == l,
            None => table_entry(d, dev_root).and_then(|e| e.name).as_ref() == Some(l),
        }),
        PartSpec::Uuid(u) => {
            Box::new(move |d| table_entry(d, dev_root).is_some_and(|e| e.uuid.eq_ignore_ascii_case(u)))
        }
    };
    let found: Vec<PathBuf> = fs::read_dir(sys_root.join("class/block"))
        .ok()?
        .filter_map(|e| read_uevent(&e.ok()?.path()))
        .filter(|d| d.partn.is_some() && wanted(d))
        .map(|d| dev_root.join(&d.devname))
        .filter(|node| node.exists())
        .collect();
    // The same on every boot, whatever order sysfs lists them in.
    let first = found.iter().min()?;
    if found.len() > 1 {
        let all: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        log::warn!("{} matches {}: using {}", spec, all.join(", "), first.display());
    }
    Some(first.clone())
}

/// [`find_partition`], looking again every 50 ms until `wait` has passed: devices appear while the kernel probes
/// its buses, after `edge-init` has started. A `wait` of zero looks once.
pub fn wait_for_partition(spec: &PartSpec, sys_root: &Path, dev_root: &Path, wait: Duration) -> Option<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(p) = find_partition(spec, sys_root, dev_root) {
            return Some(p);
        }
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// What the partition table of a partition's disk says about it; its disk is the sysfs directory above its own.
fn table_entry(part: &BlockDev, dev_root: &Path) -> Option<TableEntry> {
    // `class/block/vda4` links to `../../devices/.../vda/vda4`, and `class/block/vda` is the disk.
    let link = fs::read_link(&part.sys_dir).ok()?;
    let disk = read_uevent(&part.sys_dir.parent()?.join(link.parent()?.file_name()?))?;
    let mut f = File::open(dev_root.join(&disk.devname)).ok()?;
    read_table_entry(&mut f, part.partn?).ok()?
}

/// Where a GPT's partition entries are.
#[derive(Debug, PartialEq, Eq)]
struct GptHeader {
    entries_offset: u64,
    n_entries: u32,
    entry_size: u32,
}

/// The GPT header in the first 8 KiB of a disk, for 512- or 4096-byte sectors (UEFI 2.10, 5.3.2).
fn gpt_header(head: &[u8]) -> Option<GptHeader> {
    [512usize, 4096].into_iter().find_map(|sector| {
        let h = head.get(sector..sector + 92)?;
        if &h[..8] != b"EFI PART" {
            return None;
        }
        let lba = u64::from_le_bytes(h[72..80].try_into().ok()?);
        let n_entries = u32::from_le_bytes(h[80..84].try_into().ok()?);
        let entry_size = u32::from_le_bytes(h[84..88].try_into().ok()?);
        (entry_size >= 128).then_some(GptHeader {
            entries_offset: lba.checked_mul(sector as u64)?,
            n_entries,
            entry_size,
        })
    })
}

/// A GUID as text: the first three fields are little-endian on disk.
fn guid_text(b: &[u8; 16]) -> String {
    let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let d2 = u16::from_le_bytes([b[4], b[5]]);
    let d3 = u16::from_le_bytes([b[6], b[7]]);
    let tail: String = b[10..].iter().map(|x| format!("{x:02x}")).collect();
    format!("{d1:08x}-{d2:04x}-{d3:04x}-{:02x}{:02x}-{tail}", b[8], b[9])
}

/// One partition as its disk's partition table describes it.
#[derive(Debug, PartialEq, Eq)]
struct TableEntry {
    /// Its PARTUUID: the unique GUID of its GPT entry, or for an MBR disk the disk signature and the partition's
    /// number, `1234abcd-02`, as the kernel spells them.
    uuid: String,
    /// Its GPT name (what PARTLABEL matches), when it has one.
    name: Option<String>,
}

/// The partition table's entry for partition `partn` (from 1) of a disk, GPT or MBR.
fn read_table_entry<D: Read + Seek>(disk: &mut D, partn: u32) -> io::Result<Option<TableEntry>> {
    let mut head = Vec::with_capacity(8192);
    disk.by_ref().take(8192).read_to_end(&mut head)?;
    if let Some(h) = gpt_header(&head) {
        if partn == 0 || partn > h.n_entries {
            return Ok(None);
        }
        disk.seek(SeekFrom::Start(h.entries_offset + u64::from(partn - 1) * u64::from(h.entry_size)))?;
        let mut entry = [0u8; 128];
        disk.read_exact(&mut entry)?;
        // An unused entry has a zero type GUID.
        if entry[..16].iter().all(|&x| x == 0) {
            return Ok(None);
        }
        let unique: [u8; 16] = entry[16..32].try_into().expect("a 16-byte slice");
        let units: Vec<u16> =
            entry[56..].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
        let name = String::from_utf16_lossy(&units);
        return Ok(Some(TableEntry { uuid: guid_text(&unique), name: (!name.is_empty()).then_some(name) }));
    }
    if head.get(510..512) == Some(&[0x55, 0xaa][..]) {
        let sig = u32::from_le_bytes(head[440..444].try_into().expect("a 4-byte slice"));
        return Ok(Some(TableEntry { uuid: format!("{sig:08x}-{partn:02x}"), name: None }));
    }
    Ok(None)
}

/// `f_type` of statfs(2) for ramfs and tmpfs, what an initramfs's `/` is (statfs(2)).
const RAMFS_MAGIC: u32 = 0x8584_58f6;
const TMPFS_MAGIC: u32 = 0x0102_1994;

/// Whether `/` is an initramfs (a ramfs or tmpfs), so that initramfs mode applies.
pub fn in_initramfs() -> bool {
    sys::mount::filesystem_type(Path::new("/")).is_ok_and(|m| m == RAMFS_MAGIC || m == TMPFS_MAGIC)
}

/// Where the slot's root is mounted before it becomes `/`.
const NEW_ROOT: &str = "/newroot";

/// Initramfs mode: finds the slot's root (`root`), waiting up to `wait` for it to appear, mounts it read-only on
/// `/newroot`, moves `/dev`, `/proc`, `/sys` and `/run` into it, deletes the initramfs's files (without crossing
/// into other filesystems), makes it `/` and execs `init` there with the same arguments (`argv[0]` becomes `init`).
/// It runs only as PID 1 with a ramfs or tmpfs `/`, and returns only on failure. A failure before the files are
/// deleted (no such partition, it does not mount, it has no `init`) leaves the initramfs as it was; after that,
/// there is nothing to go back to.
pub fn switch_root(root: &PartSpec, fstype: &str, wait: Duration, init: &Path) -> io::Error {
    match try_switch_root(root, fstype, wait, init) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_switch_root(root: &PartSpec, fstype: &str, wait: Duration, init: &Path) -> io::Result<std::convert::Infallible> {
    let ctx = |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("switch root: {what}: {e}"));
    if sys::pid() != 1 {
        return Err(io::Error::other("switch root: only PID 1 may switch root"));
    }
    let magic = sys::mount::filesystem_type(Path::new("/")).map_err(ctx("statfs /".into()))?;
    if magic != RAMFS_MAGIC && magic != TMPFS_MAGIC {
        return Err(io::Error::other(format!("switch root: / is not an initramfs (statfs type {magic:#x})")));
    }
    let device = wait_for_partition(root, Path::new("/sys"), Path::new("/dev"), wait).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("switch root: root {} not found within {} ms", root, wait.as_millis()),
        )
    })?;
    let new = Path::new(NEW_ROOT);
    fs::create_dir_all(new).map_err(ctx(format!("mkdir {NEW_ROOT}")))?;
    sys::mount::mount(&device, new, fstype, Flags::RDONLY, "")
        .map_err(ctx(format!("mount {} ({fstype}) on {NEW_ROOT}", device.display())))?;
    // Check for init before anything is moved or deleted, so that a root without it leaves the initramfs whole.
    // Not followed: an absolute link resolves only once the new root is `/`.
    let new_init = new.join(init.strip_prefix("/").unwrap_or(init));
    if fs::symlink_metadata(&new_init).is_err() {
        let _ = sys::mount::unmount(new);
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("switch root: {} has no {}", device.display(), init.display()),
        ));
    }
    let table = mounts().unwrap_or_default();
    for api in ["/dev", "/proc", "/sys", "/run"] {
        let old = Path::new(api);
        if !table.iter().any(|m| m.mount_point == old) {
            continue;
        }
        let to = new.join(&api[1..]);
        let moved = if to.is_dir() { sys::mount::move_mount(old, &to) } else { Err(io::ErrorKind::NotFound.into()) };
        if let Err(e) = moved {
            log::warn!("switch root: cannot move {api} to {}: {e}; detaching it", to.display());
            let _ = sys::mount::unmount_detached(old);
        }
    }
    std::env::set_current_dir(new).map_err(ctx(format!("chdir {NEW_ROOT}")))?;
    let removed = clear_one_filesystem(Path::new("/"));
    log::debug!("switch root: {removed} initramfs files deleted");
    sys::mount::move_mount(Path::new("."), Path::new("/")).map_err(ctx(format!("move {NEW_ROOT} to /")))?;
    std::os::unix::fs::chroot(".").map_err(ctx("chroot .".into()))?;
    std::env::set_current_dir("/").map_err(ctx("chdir /".into()))?;
    log::info!("switched root to {} ({}); starting {}", device.display(), root, init.display());
    // The same arguments, but named for what runs now (the kernel started us as /init).
    let e = std::process::Command::new(init).arg0(init).args(std::env::args_os().skip(1)).exec();
    Err(ctx(format!("exec {}", init.display()))(e))
}

/// Deletes everything below `dir` that is on the same filesystem as `dir`, and nothing on any other: a directory
/// with a filesystem mounted on it is left alone, with what is in it. This is how switch root frees the memory of
/// the initramfs (as busybox `switch_root` does). Returns how many entries were deleted; what cannot be deleted is
/// skipped.
pub fn clear_one_filesystem(dir: &Path) -> usize {
    match fs::symlink_metadata(dir) {
        Ok(meta) => remove_below(dir, meta.dev()),
        Err(_) => 0,
    }
}

fn remove_below(dir: &Path, dev: u64) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        // Not followed: a link is deleted, never what it points to.
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            n += remove_below(&path, dev);
            n += usize::from(fs::remove_dir(&path).is_ok());
        } else {
            n += usize::from(fs::remove_file(&path).is_ok());
        }
    }
    n
}

/// sync(2) on a thread of its own, waiting for it up to `limit`: a dying disk can hold sync for minutes, and a
/// shutdown must end. Returns whether it finished in time; if not, it goes on in the background.
pub fn sync_with_deadline(limit: Duration) -> bool {
    let start = Instant::now();
    let thread = match std::thread::Builder::new().name("sync".into()).spawn(sys::mount::sync) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("cannot start a thread for sync: {e}; syncing without a deadline");
            sys::mount::sync();
            return true;
        }
    };
    // Looked at every 10 ms: smaller than a channel, and a shutdown does not miss 10 ms.
    loop {
        if thread.is_finished() {
            return true;
        }
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            log::warn!("sync did not finish within {} ms; going on", limit.as_millis());
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
    }
}

/// Filesystems the kernel provides, which hold no data to save: never unmounted at shutdown.
const API_FILESYSTEMS: [&str; 19] = [
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "pstore",
    "configfs",
    "mqueue",
    "efivarfs",
    "fusectl",
    "binfmt_misc",
    "hugetlbfs",
    "selinuxfs",
    "rootfs",
];

/// The mounts at or below `under` that shutdown unmounts, in the order to unmount them: every mount after all
/// those that sit on it, and among siblings the last made first. API filesystems are left out.
fn unmount_order<'a>(mounts: &'a [Mount], under: &Path) -> Vec<&'a Mount> {
    let mut out = Vec::new();
    let mut seen = vec![false; mounts.len()];
    // Depth first from the roots, children in reverse order, each mount after its children.
    for (i, m) in mounts.iter().enumerate().rev() {
        if m.parent == m.id || !mounts.iter().any(|p| p.id == m.parent) {
            visit(mounts, i, &mut seen, &mut out);
        }
    }
    // Mounts left over have a parent cycle, which mountinfo never shows; keep them, last first.
    for i in (0..mounts.len()).rev() {
        visit(mounts, i, &mut seen, &mut out);
    }
    // What is mounted below /proc or /sys belongs to the kernel too, such as a tmpfs holding cgroup v1 mounts.
    let kernel_trees: Vec<&Path> =
        mounts.iter().filter(|m| matches!(m.fstype.as_str(), "proc" | "sysfs")).map(|m| &*m.mount_point).collect();
    out.into_iter()
        .map(|i| &mounts[i])
        .filter(|m| m.mount_point.starts_with(under) && !API_FILESYSTEMS.contains(&m.fstype.as_str()))
        .filter(|m| !kernel_trees.iter().any(|t| m.mount_point.starts_with(t)))
        .collect()
}

fn visit(mounts: &[Mount], i: usize, seen: &mut [bool], out: &mut Vec<usize>) {
    if std::mem::replace(&mut seen[i], true) {
        return;
    }
    let id = mounts[i].id;
    for (j, child) in mounts.iter().enumerate().rev() {
        if child.parent == id && j != i {
            visit(mounts, j, seen, out);
        }
    }
    out.push(i);
}

/// What [`unmount_all`] did with one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Unmounted.
    Unmounted,
    /// Still in use after the retries: its filesystem is now read-only (or already was).
    ReadOnly,
    /// Still mounted, possibly read-write: why.
    Left(String),
}

/// What [`unmount_all`] did, in the order it did it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Each mount point and its fate.
    pub mounts: Vec<(PathBuf, Fate)>,
}

/// How many times a busy mount is tried, and the pause between tries.
const UNMOUNT_TRIES: u32 = 3;
const UNMOUNT_PAUSE: Duration = Duration::from_millis(100);

/// Shutdown: unmounts every mount at or below `under` (API filesystems aside), each after those that sit on it,
/// the last made first. A busy mount is tried again a few times (never detached: a detached filesystem is written
/// back whenever its last user goes, which may be after the power is off), then its filesystem is remounted
/// read-only. Retries stop at `deadline` from the start. Nothing outside `under` is touched: a busy filesystem
/// that is also mounted outside `under` is not made read-only, since that would change it there too, and `/` is
/// only ever remounted when `under` is `/`. `under` is spelt as mountinfo spells mount points (absolute, no
/// links). Each step is logged.
pub fn unmount_all(under: &Path, deadline: Duration) -> Report {
    let start = Instant::now();
    let table = match mounts() {
        Ok(t) => t,
        Err(e) => {
            log::warn!("cannot read /proc/self/mountinfo: {e}; nothing unmounted");
            return Report::default();
        }
    };
    let mut report = Report::default();
    for m in unmount_order(&table, under) {
        let mp = &m.mount_point;
        let fate = if mp == Path::new("/") {
            Err(io::Error::other("the root"))
        } else {
            unmount_retrying(mp, start, deadline)
        };
        let fate = match fate {
            Ok(()) => {
                log::info!("unmounted {} ({})", mp.display(), m.source);
                Fate::Unmounted
            }
            Err(busy) => read_only(m, &table, under, &busy),
        };
        report.mounts.push((mp.clone(), fate));
    }
    report
}

fn unmount_retrying(mp: &Path, start: Instant, deadline: Duration) -> io::Result<()> {
    let mut tries = 1;
    loop {
        match sys::mount::unmount(mp) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy && tries < UNMOUNT_TRIES => {
                // A process that was just killed may still be closing its files.
                let left = deadline.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(e);
                }
                std::thread::sleep(left.min(UNMOUNT_PAUSE));
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why making `m`'s filesystem read-only would reach outside `under`, if it would: remounting changes the
/// filesystem, so every other mount of it changes too.
fn remount_refusal(m: &Mount, table: &[Mount], under: &Path) -> Option<String> {
    if let Some(o) = table.iter().find(|o| o.device == m.device && !o.mount_point.starts_with(under)) {
        return Some(format!(
            "its filesystem is also mounted on {}, outside {}",
            o.mount_point.display(),
            under.display()
        ));
    }
    (m.mount_point == Path::new("/") && under != Path::new("/"))
        .then(|| "the root is remounted only when all of it is being unmounted".to_owned())
}

/// The second chance of a mount that did not unmount: its filesystem made read-only, when that is safe.
fn read_only(m: &Mount, table: &[Mount], under: &Path, busy: &io::Error) -> Fate {
    let mp = m.mount_point.display();
    if m.read_only() {
        log::info!("{mp} stays mounted ({busy}); it is read-only");
        return Fate::ReadOnly;
    }
    if let Some(why) = remount_refusal(m, table, under) {
        log::warn!("{mp} stays mounted read-write ({busy}): {why}");
        return Fate::Left(why);
    }
    match sys::mount::remount_read_only(&m.mount_point) {
        Ok(()) => {
            log::warn!("{mp} stays mounted ({busy}); remounted read-only");
            Fate::ReadOnly
        }
        Err(e) => {
            log::warn!("{mp} stays mounted read-write ({busy}); remounting it read-only failed: {e}");
            Fate::Left(format!("remount read-only: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 254:4 / /data rw,noatime shared:5 - ext4 /dev/vda4 rw
51 50 0:40 / /data/with\\040space ro,nosuid - tmpfs tmp\\134fs rw
52 27 0:41 / /run rw - tmpfs tmpfs rw
53 50 254:4 /log /data/log2 rw - ext4 /dev/vda4 rw
54 53 0:42 / /data/log2/x rw - tmpfs tmpfs rw
55 26 0:43 / /dev/pts rw - devpts devpts rw
";

    #[test]
    fn mountinfo_lines() {
        let check = |line: &str, expected: Option<(u32, u32, &str, &str, &str, &str, bool)>| {
            let got = parse_mountinfo_line(line).map(|m| {
                let ro = m.read_only();
                (m.id, m.parent, m.device, m.mount_point, m.fstype, m.source, ro)
            });
            let expected = expected.map(|(id, parent, dev, mp, fstype, source, ro)| {
                (id, parent, dev.to_owned(), PathBuf::from(mp), fstype.to_owned(), source.to_owned(), ro)
            });
            assert_eq!(got, expected, "{line}");
        };
        check(
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard",
            Some((27, 1, "254:0", "/", "ext4", "/dev/vda", false)),
        );
        check(
            "36 35 98:0 /mnt1 /mnt2 ro,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue",
            Some((36, 35, "98:0", "/mnt2", "ext3", "/dev/root", true)),
        );
        check(
            "51 50 0:40 / /data/with\\040space ro,nosuid - tmpfs tmp\\134fs rw",
            Some((51, 50, "0:40", "/data/with space", "tmpfs", "tmp\\fs", true)),
        );
        check("51 50 0:40 / /a\\011b\\012c rw - tmpfs t rw", Some((51, 50, "0:40", "/a\tb\nc", "tmpfs", "t", false)));
        check("51 50 0:40 / /a\\04 rw - tmpfs t rw", Some((51, 50, "0:40", "/a\\04", "tmpfs", "t", false)));
        check("", None);
        check("27 1 254:0 / / rw,relatime ext4 /dev/vda rw", None);
        check("x 1 254:0 / / rw - ext4 /dev/vda rw", None);
        assert_eq!(parse_mountinfo(HOST).len(), 14);
    }

    #[test]
    fn which_api_filesystems_are_missing() {
        let check = |mountinfo: &str, expected: &[&str]| {
            let got: Vec<&str> = missing_api_mounts(&parse_mountinfo(mountinfo)).iter().map(|a| a.target).collect();
            assert_eq!(got, expected, "{mountinfo}");
        };
        let all = ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/tmp", "/sys/fs/cgroup"];
        check("", &all);
        check("1 1 0:1 / / rw - rootfs rootfs rw", &all);
        // The hybrid host: cgroup2 at /sys/fs/cgroup/unified counts, a tmpfs on /sys/fs/cgroup does not matter.
        check(HOST, &["/tmp"]);
        check("22 1 0:21 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", &all[..7]);
        check(
            "22 1 0:21 / /proc rw - proc proc rw\n23 1 0:3 / /tmp rw - ext4 /dev/vda rw",
            &[all[1], all[2], all[3], all[4], all[5], all[7]],
        );
    }

    #[test]
    fn the_hostname() {
        let check = |configured: Option<&str>, etc: Option<&str>, expected: &str| {
            assert_eq!(choose_hostname(configured, etc), expected, "{configured:?} {etc:?}");
        };
        check(Some("node-7"), Some("other\n"), "node-7");
        check(None, Some("from-etc\nsecond\n"), "from-etc");
        check(Some("  "), Some(" spaced \n"), "spaced");
        check(None, Some("\nsecond\n"), "edge");
        check(None, Some(""), "edge");
        check(None, None, "edge");
    }

    #[test]
    fn the_cgroup2_root() {
        let check = |mountinfo: &str, self_cgroup: &str, expected: Option<&str>| {
            let got = cgroup2_root_in(&parse_mountinfo(mountinfo), self_cgroup);
            assert_eq!(got.as_deref(), expected.map(Path::new), "{self_cgroup}");
        };
        check(HOST, "4:memory:/x\n0::/\n", Some("/sys/fs/cgroup/unified"));
        check(HOST, "0::/init.scope\n", Some("/sys/fs/cgroup/unified/init.scope"));
        check(HOST, "4:memory:/x\n", None);
        check("23 1 0:22 / /sys rw - sysfs sysfs rw", "0::/\n", None);
    }

    #[test]
    fn unmount_order_is_children_first_last_first() {
        let check = |under: &str, expected: &[&str]| {
            let table = parse_mountinfo(HOST);
            let got: Vec<&Path> = unmount_order(&table, Path::new(under)).iter().map(|m| &*m.mount_point).collect();
            let expected: Vec<&Path> = expected.iter().map(Path::new).collect();
            assert_eq!(got, expected, "under {under}");
        };
        check("/", &["/run", "/data/log2/x", "/data/log2", "/data/with space", "/data", "/dev/shm", "/"]);
        check("/data", &["/data/log2/x", "/data/log2", "/data/with space", "/data"]);
        check("/data/log2", &["/data/log2/x", "/data/log2"]);
        check("/dat", &[]);
        check("/proc", &[]);
        // A mount made later on a mount point made earlier (mount 60 on /a, which 61 sits on, moved there).
        let moved = "61 1 0:2 / /a/b rw - tmpfs t rw\n60 1 0:1 / /a rw - tmpfs t rw\n";
        let table: Vec<Mount> = parse_mountinfo(moved)
            .into_iter()
            .map(|mut m| {
                if m.id == 61 {
                    m.parent = 60;
                }
                m
            })
            .collect();
        let got: Vec<&Path> = unmount_order(&table, Path::new("/")).iter().map(|m| &*m.mount_point).collect();
        assert_eq!(got, [Path::new("/a/b"), Path::new("/a")]);
    }

    #[test]
    fn busy_filesystems_are_not_made_read_only_outside() {
        let table = parse_mountinfo(HOST);
        let check = |mount_point: &str, under: &str, expected: Option<&str>| {
            let m = table.iter().rev().find(|m| m.mount_point == Path::new(mount_point)).expect("in the table");
            assert_eq!(remount_refusal(m, &table, Path::new(under)).as_deref(), expected, "{mount_point} {under}");
        };
        check("/data", "/data", None);
        check("/data/log2", "/data", None);
        check("/data/log2", "/data/log2", Some("its filesystem is also mounted on /data, outside /data/log2"));
        check("/data/log2/x", "/data/log2", None);
        check("/", "/", None);
        check("/run", "/", None);
    }

    /// A disk image with a GPT (entries at LBA 2) whose partition 2 has the given unique GUID bytes and name.
    fn gpt_disk(sector: usize, unique: [u8; 16], name: &str) -> Vec<u8> {
        let mut d = vec![0u8; sector * 40];
        d[510] = 0x55;
        d[511] = 0xaa;
        d[sector..sector + 8].copy_from_slice(b"EFI PART");
        d[sector + 72..sector + 80].copy_from_slice(&2u64.to_le_bytes());
        d[sector + 80..sector + 84].copy_from_slice(&128u32.to_le_bytes());
        d[sector + 84..sector + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 2 * sector + 128;
        d[e] = 0xaf;
        d[e + 16..e + 32].copy_from_slice(&unique);
        for (i, u) in name.encode_utf16().enumerate() {
            d[e + 56 + 2 * i..e + 58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        d
    }

    #[test]
    fn partition_table_entries() {
        let check = |disk: Vec<u8>, partn: u32, expected: Option<(&str, Option<&str>)>| {
            let got = read_table_entry(&mut io::Cursor::new(disk), partn).expect("read");
            let expected = expected.map(|(uuid, name)| TableEntry { uuid: uuid.into(), name: name.map(Into::into) });
            assert_eq!(got, expected, "partition {partn}");
        };
        let unique = [0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8];
        let text = "12345678-9abc-def0-0102-030405060708";
        check(gpt_disk(512, unique, "edge-data"), 2, Some((text, Some("edge-data"))));
        check(gpt_disk(4096, unique, "ÿ-root"), 2, Some((text, Some("ÿ-root"))));
        check(gpt_disk(512, unique, ""), 2, Some((text, None)));
        check(gpt_disk(512, unique, "x"), 1, None);
        check(gpt_disk(512, unique, "x"), 0, None);
        check(gpt_disk(512, unique, "x"), 129, None);
        let mut mbr = vec![0u8; 1024];
        mbr[440..444].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        check(mbr.clone(), 2, Some(("1234abcd-02", None)));
        mbr[511] = 0;
        check(mbr, 2, None);
        check(Vec::new(), 1, None);
    }
}
