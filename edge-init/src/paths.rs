//! Every fixed on-node path `edge-init` reads or writes, in one place (STYLE.md, "Naming" and "Config"): each is a
//! constant naming who else reads that file, and [`Paths::under`] hangs all of them off a root, so tests run the real
//! code against a temporary tree. No other module of `edge-init` spells a path under `/proc`, `/sys`, `/dev`, `/etc` or
//! `/run`; those the `platform` crate owns (the mount table, the control socket) are named here by its constants, not
//! spelt again.

use std::path::{Path, PathBuf};

/// The root of the tree: `/` on a node; early boot's switch from an initramfs and shutdown's unmounting work on it.
pub const ROOT: &str = "/";
/// The kernel command line, read once at start; the kernel writes it, and the bootloader chose it.
pub const CMDLINE: &str = "/proc/cmdline";
/// Whether the kernel log rate-limits writers; services' lines go there, so PID 1 turns the limit off.
/// `dmesg` and the kernel itself read it.
pub const PRINTK_DEVKMSG: &str = "/proc/sys/kernel/printk_devkmsg";
/// This process's PID namespace, to tell the machine's PID 1 from a container's; the kernel keeps it.
pub const PID_NAMESPACE: &str = "/proc/self/ns/pid";
/// This process's mount table (`platform::mountinfo` owns its format); the updater reads it too.
pub const MOUNTINFO: &str = platform::mountinfo::PATH;
/// This process's cgroup (its `0::` line), under which the services' cgroups are made; the kernel writes it.
pub const SELF_CGROUP: &str = "/proc/self/cgroup";
/// The links a fresh devtmpfs lacks and shells expect, each a name in [`DEV`] and what it points to (this process's
/// open files, as seen from inside the node); early boot makes them when it mounts `/dev` itself.
pub const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];
/// procfs, an API filesystem early boot mounts; everything that reads `/proc` needs it.
pub const PROC: &str = "/proc";
/// sysfs: partitions by label and uuid (`class/block`) and watchdogs by identity (`class/watchdog`); udev reads
/// the same tree where it runs.
pub const SYS: &str = "/sys";
/// Device nodes: partitions and watchdogs; everything on the node opens its devices here.
pub const DEV: &str = "/dev";
/// Pseudo-terminals (devpts), mounted by early boot; shells and `ssh` allocate terminals there.
pub const DEV_PTS: &str = "/dev/pts";
/// POSIX shared memory (a tmpfs), mounted by early boot; programs using `shm_open` need it.
pub const DEV_SHM: &str = "/dev/shm";
/// The cgroup2 hierarchy, mounted by early boot where nothing mounted it; `edge-init` makes its services' cgroups
/// below it, and container runtimes use it too.
pub const CGROUP: &str = "/sys/fs/cgroup";
/// Runtime state (a tmpfs), mounted by early boot; every service may keep its sockets and pid files there.
pub const RUN: &str = "/run";
/// Scratch files (a tmpfs), mounted by early boot.
pub const TMP: &str = "/tmp";
/// The kernel log, where `edge-init` and its services' output go; `dmesg` and the serial console show it.
pub const KMSG: &str = "/dev/kmsg";
/// The console, for the few lines an operator at the machine must see; the kernel and getty write it too.
pub const CONSOLE: &str = "/dev/console";
/// The node's name when the services file sets none; image builders write it.
pub const HOSTNAME: &str = "/etc/hostname";
/// Users, for a service's `user`; every program that maps names to ids reads it.
pub const PASSWD: &str = "/etc/passwd";
/// Groups, for a service's `group`; likewise.
pub const GROUP: &str = "/etc/group";
/// The services file; `edge-init check` reads it too, and image builders write it.
pub const SERVICES: &str = "/etc/edge/services.toml";
/// The directory of the control and notify sockets; `edge-init ctl`, `edge-init notify` and `edge-update` connect
/// there.
pub const RUN_DIR: &str = "/run/edge-init";
/// The control socket, as `platform::ctl` names it for every client; it is [`RUN_DIR`]'s
/// [`CONTROL_SOCKET_NAME`].
pub const CONTROL_SOCKET: &str = platform::ctl::SOCKET;
/// The control socket's name in the run directory (`--run`).
pub const CONTROL_SOCKET_NAME: &str = "control.sock";
/// The notify socket's name in the run directory; services find it in `NOTIFY_SOCKET`.
pub const NOTIFY_SOCKET_NAME: &str = "notify.sock";
/// Where early boot mounts a slot's root before it becomes `/` (initramfs mode); nothing else reads it.
pub const NEW_ROOT: &str = "/newroot";
/// The running kernel's modules, one directory per release; depmod writes `modules.dep` there.
pub const MODULES: &str = "/lib/modules";
/// `edge-init` in a slot's root, which an initramfs's `edge-init` executes after the switch.
pub const INIT: &str = "/sbin/edge-init";

/// The fixed paths, under one root (`/` on a node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// [`ROOT`]: the root all the others hang off.
    pub root: PathBuf,
    /// [`CMDLINE`].
    pub cmdline: PathBuf,
    /// [`PRINTK_DEVKMSG`].
    pub printk_devkmsg: PathBuf,
    /// [`PID_NAMESPACE`].
    pub pid_namespace: PathBuf,
    /// [`MOUNTINFO`].
    pub mountinfo: PathBuf,
    /// [`SELF_CGROUP`].
    pub self_cgroup: PathBuf,
    /// [`PROC`].
    pub proc: PathBuf,
    /// [`SYS`].
    pub sys: PathBuf,
    /// [`DEV`].
    pub dev: PathBuf,
    /// [`DEV_PTS`].
    pub dev_pts: PathBuf,
    /// [`DEV_SHM`].
    pub dev_shm: PathBuf,
    /// [`CGROUP`].
    pub cgroup: PathBuf,
    /// [`RUN`].
    pub run: PathBuf,
    /// [`TMP`].
    pub tmp: PathBuf,
    /// [`KMSG`].
    pub kmsg: PathBuf,
    /// [`CONSOLE`].
    pub console: PathBuf,
    /// [`HOSTNAME`].
    pub hostname: PathBuf,
    /// [`PASSWD`].
    pub passwd: PathBuf,
    /// [`GROUP`].
    pub group: PathBuf,
    /// [`SERVICES`].
    pub services: PathBuf,
    /// [`RUN_DIR`].
    pub run_dir: PathBuf,
    /// [`NEW_ROOT`].
    pub new_root: PathBuf,
    /// [`MODULES`].
    pub modules: PathBuf,
    /// [`INIT`].
    pub init: PathBuf,
}

impl Paths {
    /// Every path under `root`.
    pub fn under(root: &Path) -> Paths {
        let at = |p: &str| root.join(p.trim_start_matches('/'));
        Paths {
            root: root.to_owned(),
            cmdline: at(CMDLINE),
            printk_devkmsg: at(PRINTK_DEVKMSG),
            pid_namespace: at(PID_NAMESPACE),
            mountinfo: at(MOUNTINFO),
            self_cgroup: at(SELF_CGROUP),
            proc: at(PROC),
            sys: at(SYS),
            dev: at(DEV),
            dev_pts: at(DEV_PTS),
            dev_shm: at(DEV_SHM),
            cgroup: at(CGROUP),
            run: at(RUN),
            tmp: at(TMP),
            kmsg: at(KMSG),
            console: at(CONSOLE),
            hostname: at(HOSTNAME),
            passwd: at(PASSWD),
            group: at(GROUP),
            services: at(SERVICES),
            run_dir: at(RUN_DIR),
            new_root: at(NEW_ROOT),
            modules: at(MODULES),
            init: at(INIT),
        }
    }
}

impl Default for Paths {
    /// The node's own: under `/`.
    fn default() -> Paths {
        Paths::under(Path::new(ROOT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_15_every_path_hangs_off_the_root() {
        let node = Paths::default();
        assert_eq!((node.cmdline.as_path(), node.kmsg.as_path()), (Path::new(CMDLINE), Path::new(KMSG)));
        assert_eq!((node.services.as_path(), node.run_dir.as_path()), (Path::new(SERVICES), Path::new(RUN_DIR)));
        let t = Paths::under(Path::new("/tmp/t"));
        let all = [
            &t.cmdline,
            &t.printk_devkmsg,
            &t.pid_namespace,
            &t.mountinfo,
            &t.self_cgroup,
            &t.proc,
            &t.sys,
            &t.dev,
            &t.dev_pts,
            &t.dev_shm,
            &t.cgroup,
            &t.run,
            &t.tmp,
            &t.kmsg,
            &t.console,
            &t.hostname,
            &t.passwd,
            &t.group,
            &t.services,
            &t.run_dir,
            &t.new_root,
            &t.modules,
            &t.init,
        ];
        assert!(all.iter().all(|p| p.starts_with("/tmp/t") && p != &Path::new("/tmp/t")), "{t:?}");
        assert_eq!(t.passwd, Path::new("/tmp/t/etc/passwd"));
        assert_eq!(t.root, Path::new("/tmp/t"));
    }

    #[test]
    fn issue_15_the_control_socket_is_the_one_clients_know() {
        assert_eq!(Path::new(CONTROL_SOCKET), Path::new(RUN_DIR).join(CONTROL_SOCKET_NAME));
        assert_eq!(Paths::default().mountinfo, Path::new(platform::mountinfo::PATH));
    }
}
