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

use platform::mountinfo::{self, Mount};
use platform::partition;

use crate::cmdline::PartSpec;
use crate::error::{chain, Error, Result};
use crate::paths::{self, Paths};
use crate::sys;
use crate::sys::mount::Flags;

/// One of the API filesystems early boot mounts.
#[derive(Debug, PartialEq, Eq)]
struct ApiMount<'a> {
    target: &'a Path,
    fstype: &'static str,
    flags: Flags,
    data: &'static str,
}

const NOSUID_NODEV: Flags = Flags::NOSUID.with(Flags::NODEV);
const NOSUID_NODEV_NOEXEC: Flags = NOSUID_NODEV.with(Flags::NOEXEC);

/// The API filesystems, in the order they are mounted (each after the one it sits on).
fn api_mounts(p: &Paths) -> [ApiMount<'_>; 8] {
    fn api<'a>(target: &'a Path, fstype: &'static str, flags: Flags, data: &'static str) -> ApiMount<'a> {
        ApiMount { target, fstype, flags, data }
    }
    [
        api(&p.proc, "proc", NOSUID_NODEV_NOEXEC, ""),
        api(&p.sys, "sysfs", NOSUID_NODEV_NOEXEC, ""),
        api(&p.dev, "devtmpfs", Flags::NOSUID, "mode=0755"),
        api(&p.dev_pts, "devpts", Flags::NOSUID.with(Flags::NOEXEC), "newinstance,ptmxmode=0666,mode=0620"),
        api(&p.dev_shm, "tmpfs", NOSUID_NODEV, "mode=1777"),
        api(&p.run, "tmpfs", NOSUID_NODEV, "mode=0755"),
        api(&p.tmp, "tmpfs", NOSUID_NODEV, "mode=1777"),
        api(&p.cgroup, "cgroup2", NOSUID_NODEV_NOEXEC, ""),
    ]
}

/// The API filesystems not mounted yet: those whose mount point has no mount, and cgroup2 unless it is mounted
/// anywhere (a hybrid host has it at `/sys/fs/cgroup/unified`).
fn missing_api_mounts<'a, 'b>(api: &'b [ApiMount<'a>], mounts: &[Mount]) -> Vec<&'b ApiMount<'a>> {
    api.iter()
        .filter(|a| match a.fstype {
            "cgroup2" => !mounts.iter().any(|m| m.fstype == "cgroup2"),
            _ => !mounts.iter().any(|m| m.mount_point == a.target),
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
/// `/tmp`, cgroup2 on `/sys/fs/cgroup`, each as `paths` places it): the first thing PID 1 does, since even the
/// kernel command line is read from `/proc`. Nothing here is fatal: each failure is logged as a warning and
/// returned; an empty list means everything is in place.
pub fn mount_api_filesystems(paths: &Paths) -> Vec<Error> {
    let mut failed = Vec::new();
    let mut fail = |e: Error| {
        log::warn!("{}", chain(&e));
        failed.push(e);
    };
    let api = api_mounts(paths);
    // What was mounted, for one log line, and whether `/dev` is a fresh devtmpfs.
    let (mut mounted, mut fresh_dev) = (String::new(), false);
    let mut mount = |a: &ApiMount| match mount_api(a) {
        Ok(()) => {
            let sep = if mounted.is_empty() { "" } else { ", " };
            mounted.push_str(&format!("{sep}{} on {}", a.fstype, a.target.display()));
            fresh_dev |= a.target == paths.dev;
        }
        Err(e) => fail(e),
    };
    // Without /proc there is no mountinfo to read: mount it first, then look.
    let table = mountinfo::read(&paths.mountinfo).unwrap_or_else(|_| {
        mount(&api[0]);
        mountinfo::read(&paths.mountinfo).unwrap_or_default()
    });
    for a in missing_api_mounts(&api, &table) {
        mount(a);
    }
    if !mounted.is_empty() {
        log::info!("mounted {mounted}");
    }
    // The links a fresh devtmpfs lacks and shells expect (a /dev mounted before, by the initramfs, has them).
    if fresh_dev {
        for (link, target) in paths::DEV_LINKS {
            let link = paths.dev.join(link);
            match std::os::unix::fs::symlink(target, &link) {
                Err(source) if source.kind() != io::ErrorKind::AlreadyExists => {
                    fail(Error::MakeLink { link, target: target.into(), source });
                }
                _ => {}
            }
        }
    }
    failed
}

/// Sets the hostname (`hostname`, else the first line of `paths.hostname`, else `edge`) and brings up `lo`.
/// Failures are logged as warnings and returned.
pub fn name_and_loopback(paths: &Paths, hostname: Option<&str>) -> Vec<Error> {
    let mut failed = Vec::new();
    let mut fail = |e: Error| {
        log::warn!("{}", chain(&e));
        failed.push(e);
    };
    let name = choose_hostname(hostname, fs::read_to_string(&paths.hostname).ok().as_deref());
    match sys::mount::set_hostname(&name) {
        Ok(()) => log::info!("hostname {name}"),
        Err(source) => fail(Error::SetHostname { name, source }),
    }
    match sys::mount::interface_up("lo") {
        Ok(true) => log::info!("lo up"),
        Ok(false) => log::debug!("lo was already up"),
        Err(source) => fail(Error::InterfaceUp { interface: "lo", source }),
    }
    failed
}

fn mount_api(a: &ApiMount) -> Result<()> {
    fs::create_dir_all(a.target).map_err(|source| Error::MakeDir { path: a.target.to_owned(), source })?;
    sys::mount::mount(Path::new(a.fstype), a.target, a.fstype, a.flags, a.data).map_err(|source| Error::MountApi {
        fstype: a.fstype,
        target: a.target.to_owned(),
        source,
    })
}

/// Where this process's services get their cgroups: the cgroup2 mount point joined with this process's own cgroup
/// (the `0::` line of `paths.self_cgroup`); `None` without cgroup2.
pub fn cgroup2_root(paths: &Paths) -> Option<PathBuf> {
    let own = fs::read_to_string(&paths.self_cgroup).ok()?;
    cgroup2_root_in(&mountinfo::read(&paths.mountinfo).ok()?, &own)
}

fn cgroup2_root_in(mounts: &[Mount], self_cgroup: &str) -> Option<PathBuf> {
    let m = mounts.iter().find(|m| m.fstype == "cgroup2")?;
    let own = self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim().trim_start_matches('/');
    Some(if own.is_empty() { m.mount_point.clone() } else { m.mount_point.join(own) })
}

/// `f_type` of statfs(2) for ramfs and tmpfs, what an initramfs's `/` is (statfs(2)).
const RAMFS_MAGIC: u32 = 0x8584_58f6;
const TMPFS_MAGIC: u32 = 0x0102_1994;

/// Whether the root (`paths.root`) is an initramfs (a ramfs or tmpfs), so that initramfs mode applies.
pub fn in_initramfs(paths: &Paths) -> bool {
    sys::mount::filesystem_type(&paths.root).is_ok_and(|m| m == RAMFS_MAGIC || m == TMPFS_MAGIC)
}

/// Initramfs mode: finds the slot's root (`root`), waiting up to `wait` for it to appear, mounts it read-only on
/// `/newroot`, moves `/dev`, `/proc`, `/sys` and `/run` into it, deletes the initramfs's files (without crossing
/// into other filesystems), makes it `/` and execs `edge-init` there (`paths.init`) with the same arguments
/// (`argv[0]` becomes that program). It runs only as PID 1 with a ramfs or tmpfs `/`, and returns only on failure.
/// A failure before the files are deleted (no such partition, it does not mount, it has no `init`) leaves the
/// initramfs as it was; after that, there is nothing to go back to.
pub fn switch_root(paths: &Paths, root: &PartSpec, fstype: &str, wait: Duration) -> Error {
    match try_switch_root(paths, root, fstype, wait) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_switch_root(paths: &Paths, root: &PartSpec, fstype: &str, wait: Duration) -> Result<std::convert::Infallible> {
    if sys::pid() != 1 {
        return Err(Error::SwitchRootNotPid1);
    }
    let top = paths.root.as_path();
    let magic =
        sys::mount::filesystem_type(top).map_err(|source| Error::StatFilesystem { path: top.to_owned(), source })?;
    if magic != RAMFS_MAGIC && magic != TMPFS_MAGIC {
        return Err(Error::NotInitramfs { magic });
    }
    let device = partition::wait_for(root, &paths.sys.join(partition::CLASS_BLOCK), &paths.dev, wait)
        .ok_or_else(|| Error::FindRoot { root: root.to_string(), wait_ms: wait.as_millis() })?;
    let new = paths.new_root.as_path();
    fs::create_dir_all(new).map_err(|source| Error::MakeDir { path: new.to_owned(), source })?;
    sys::mount::mount(&device, new, fstype, Flags::RDONLY, "").map_err(|source| Error::MountRoot {
        device: device.clone(),
        fstype: fstype.to_owned(),
        target: new.to_owned(),
        source,
    })?;
    // `init` as the new root names it, once it is `/`.
    let in_root = paths.init.strip_prefix(top).unwrap_or(&paths.init);
    let init = Path::new(paths::ROOT).join(in_root);
    // Check for init before anything is moved or deleted, so that a root without it leaves the initramfs whole.
    // Not followed: an absolute link resolves only once the new root is `/`.
    if fs::symlink_metadata(new.join(in_root)).is_err() {
        let _ = sys::mount::unmount(new);
        return Err(Error::RootHasNoInit { device, init });
    }
    let table = mountinfo::read(&paths.mountinfo).unwrap_or_default();
    for old in [&paths.dev, &paths.proc, &paths.sys, &paths.run] {
        if !table.iter().any(|m| &m.mount_point == old) {
            continue;
        }
        let to = new.join(old.strip_prefix(top).unwrap_or(old));
        let moved = if to.is_dir() { sys::mount::move_mount(old, &to) } else { Err(io::ErrorKind::NotFound.into()) };
        if let Err(source) = moved {
            let e = Error::MoveMount { from: old.clone(), to, source };
            log::warn!("switch root: {}; detaching it", chain(&e));
            let _ = sys::mount::unmount_detached(old);
        }
    }
    let chdir = |path: &Path| {
        std::env::set_current_dir(path).map_err(|source| Error::ChangeDir { path: path.to_owned(), source })
    };
    chdir(new)?;
    let removed = clear_one_filesystem(top);
    log::debug!("switch root: {removed} initramfs files deleted");
    sys::mount::move_mount(Path::new("."), top).map_err(|source| Error::MoveMount {
        from: new.to_owned(),
        to: top.to_owned(),
        source,
    })?;
    std::os::unix::fs::chroot(".").map_err(|source| Error::ChangeRoot { path: new.to_owned(), source })?;
    chdir(Path::new(paths::ROOT))?;
    log::info!("switched root to {} ({}); starting {}", device.display(), root, init.display());
    // The same arguments, but named for what runs now (the kernel started us as /init).
    let source = std::process::Command::new(&init).arg0(&init).args(std::env::args_os().skip(1)).exec();
    Err(Error::ExecInit { path: init, source })
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
        let node = Paths::default();
        let api = api_mounts(&node);
        let check = |mountinfo: &str, expected: &[&str]| {
            let got: Vec<&Path> =
                missing_api_mounts(&api, &mountinfo::parse(mountinfo)).iter().map(|a| a.target).collect();
            let expected: Vec<&Path> = expected.iter().map(Path::new).collect();
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
