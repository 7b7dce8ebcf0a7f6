//! The end of shutdown (docs/edge-init.md, "Shutdown"): sync with a deadline, then unmounting in reverse order,
//! with retries, and what stays busy remounted read-only.
//! It is a module of its own because it runs once, after every process has ended, and every step has a deadline:
//! a disk that hangs must not keep the node from rebooting. Which mounts there are comes from the mount table as
//! `platform::mountinfo` reads it; the order and the read-only fallback are decided here, purely, and tested.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use platform::mountinfo::{self, Mount};

use crate::error::chain;
use crate::paths::{self, Paths};
use crate::sys;

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

/// Why a mount is still there after [`unmount_all`] tried.
enum Stayed {
    /// umount(2) failed (the last try's error).
    Busy(io::Error),
    /// It is the root, which is never unmounted, only remounted read-only.
    Root,
}

impl fmt::Display for Stayed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stayed::Busy(e) => e.fmt(f),
            Stayed::Root => f.write_str("the root"),
        }
    }
}

/// Shutdown: unmounts every mount at or below `under` (API filesystems aside), each after those that sit on it,
/// the last made first, as the mount table at `paths.mountinfo` lists them. A busy mount is tried again a few
/// times (never detached: a detached filesystem is written back whenever its last user goes, which may be after
/// the power is off), then its filesystem is remounted read-only. Retries stop at `deadline` from the start.
/// Nothing outside `under` is touched: a busy filesystem that is also mounted outside `under` is not made
/// read-only, since that would change it there too, and `/` is only ever remounted when `under` is `/`. `under`
/// is spelt as mountinfo spells mount points (absolute, no links). Each step is logged.
pub fn unmount_all(paths: &Paths, under: &Path, deadline: Duration) -> Report {
    let start = Instant::now();
    let table = match mountinfo::read(&paths.mountinfo) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("{}; nothing unmounted", chain(&e));
            return Report::default();
        }
    };
    let mut report = Report::default();
    for m in unmount_order(&table, under) {
        let mp = &m.mount_point;
        let fate = if mp == Path::new(paths::ROOT) {
            Err(Stayed::Root)
        } else {
            unmount_retrying(mp, start, deadline).map_err(Stayed::Busy)
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
    let root = Path::new(paths::ROOT);
    (m.mount_point == root && under != root)
        .then(|| "the root is remounted only when all of it is being unmounted".to_owned())
}

/// The second chance of a mount that did not unmount: its filesystem made read-only, when that is safe.
fn read_only(m: &Mount, table: &[Mount], under: &Path, busy: &Stayed) -> Fate {
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
pub(crate) mod tests {
    use super::*;

    /// A host's mount table: API filesystems, a data partition with mounts on it, one of them bound twice.
    pub(crate) const HOST: &str = "\
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
    fn unmount_order_is_children_first_last_first() {
        let check = |under: &str, expected: &[&str]| {
            let table = mountinfo::parse(HOST);
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
        let table: Vec<Mount> = mountinfo::parse(moved)
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
        let table = mountinfo::parse(HOST);
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
}
