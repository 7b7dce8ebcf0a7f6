//! Early boot (docs/edge-init.md, "Early boot", "Initramfs mode"): the API filesystems, the hostname and `lo` at
//! start, and switching from an initramfs to a slot's root.
//! It is a module of its own because all of it runs once, before the services start, and because none of it may
//! keep the node from coming up: what fails is logged and boot goes on. The mount table, the partition lookup and
//! the GPT are the `platform` crate's; the end of shutdown (sync, unmounting) is `unmount`'s.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use platform::mountinfo;
pub use platform::mountinfo::Mount;
use platform::partition;

use crate::cmdline::PartSpec;
use crate::sys;
use crate::sys::mount::Flags;
// The end of shutdown, where PID 1's loop has always found it.
pub use crate::unmount::{sync_with_deadline, unmount_all, Fate, Report};

/// The mounts of this process's mount namespace, from `/proc/self/mountinfo`.
pub fn mounts() -> io::Result<Vec<Mount>> {
    Ok(mountinfo::parse(&fs::read_to_string(mountinfo::PATH)?))
}

/// The device node of a partition (see `platform::partition::find`), looking again every 50 ms until `wait` has
/// passed: devices appear while the kernel probes its buses, after `edge-init` has started. A `wait` of zero
/// looks once. `sys_root` and `dev_root` are normally `/sys` and `/dev`.
pub fn wait_for_partition(spec: &PartSpec, sys_root: &Path, dev_root: &Path, wait: Duration) -> Option<PathBuf> {
    partition::wait_for(spec, &sys_root.join(partition::CLASS_BLOCK), dev_root, wait)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unmount::tests::HOST;

    #[test]
    fn which_api_filesystems_are_missing() {
        let check = |mountinfo: &str, expected: &[&str]| {
            let got: Vec<&str> = missing_api_mounts(&mountinfo::parse(mountinfo)).iter().map(|a| a.target).collect();
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
            let got = cgroup2_root_in(&mountinfo::parse(mountinfo), self_cgroup);
            assert_eq!(got.as_deref(), expected.map(Path::new), "{self_cgroup}");
        };
        check(HOST, "4:memory:/x\n0::/\n", Some("/sys/fs/cgroup/unified"));
        check(HOST, "0::/init.scope\n", Some("/sys/fs/cgroup/unified/init.scope"));
        check(HOST, "4:memory:/x\n", None);
        check("23 1 0:22 / /sys rw - sysfs sysfs rw", "0::/\n", None);
    }
}
