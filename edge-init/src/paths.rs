//! Every fixed on-node path `edge-init` reads or writes, in one place (STYLE.md, "Naming" and "Config"): each is a
//! constant naming who else reads that file, and [`Paths::under`] hangs all of them off a root, so tests run the real
//! code against a temporary tree. Early boot and the control client (`boot`, `ctl`) still name their own.

use std::path::{Path, PathBuf};

/// The kernel command line, read once at start; the kernel writes it, and the bootloader chose it.
pub const CMDLINE: &str = "/proc/cmdline";
/// Whether the kernel log rate-limits writers; services' lines go there, so PID 1 turns the limit off.
/// `dmesg` and the kernel itself read it.
pub const PRINTK_DEVKMSG: &str = "/proc/sys/kernel/printk_devkmsg";
/// This process's PID namespace, to tell the machine's PID 1 from a container's; the kernel keeps it.
pub const PID_NAMESPACE: &str = "/proc/self/ns/pid";
/// sysfs: partitions by label and uuid (`class/block`) and watchdogs by identity (`class/watchdog`); udev reads
/// the same tree where it runs.
pub const SYS: &str = "/sys";
/// Device nodes: partitions and watchdogs; everything on the node opens its devices here.
pub const DEV: &str = "/dev";
/// The kernel log, where `edge-init` and its services' output go; `dmesg` and the serial console show it.
pub const KMSG: &str = "/dev/kmsg";
/// The console, for the few lines an operator at the machine must see; the kernel and getty write it too.
pub const CONSOLE: &str = "/dev/console";
/// Users, for a service's `user`; every program that maps names to ids reads it.
pub const PASSWD: &str = "/etc/passwd";
/// Groups, for a service's `group`; likewise.
pub const GROUP: &str = "/etc/group";
/// The services file; `edge-init check` reads it too, and image builders write it.
pub const SERVICES: &str = "/etc/edge/services.toml";
/// The directory of the control and notify sockets; `edge-init ctl`, `edge-init notify` and `edge-update` connect
/// there.
pub const RUN_DIR: &str = "/run/edge-init";
/// The running kernel's modules, one directory per release; depmod writes `modules.dep` there.
pub const MODULES: &str = "/lib/modules";
/// `edge-init` in a slot's root, which an initramfs's `edge-init` executes after the switch.
pub const INIT: &str = "/sbin/edge-init";

/// The fixed paths, under one root (`/` on a node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// [`CMDLINE`].
    pub cmdline: PathBuf,
    /// [`PRINTK_DEVKMSG`].
    pub printk_devkmsg: PathBuf,
    /// [`PID_NAMESPACE`].
    pub pid_namespace: PathBuf,
    /// [`SYS`].
    pub sys: PathBuf,
    /// [`DEV`].
    pub dev: PathBuf,
    /// [`KMSG`].
    pub kmsg: PathBuf,
    /// [`CONSOLE`].
    pub console: PathBuf,
    /// [`PASSWD`].
    pub passwd: PathBuf,
    /// [`GROUP`].
    pub group: PathBuf,
    /// [`SERVICES`].
    pub services: PathBuf,
    /// [`RUN_DIR`].
    pub run_dir: PathBuf,
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
            cmdline: at(CMDLINE),
            printk_devkmsg: at(PRINTK_DEVKMSG),
            pid_namespace: at(PID_NAMESPACE),
            sys: at(SYS),
            dev: at(DEV),
            kmsg: at(KMSG),
            console: at(CONSOLE),
            passwd: at(PASSWD),
            group: at(GROUP),
            services: at(SERVICES),
            run_dir: at(RUN_DIR),
            modules: at(MODULES),
            init: at(INIT),
        }
    }
}

impl Default for Paths {
    /// The node's own: under `/`.
    fn default() -> Paths {
        Paths::under(Path::new("/"))
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
            &t.sys,
            &t.dev,
            &t.kmsg,
            &t.console,
            &t.passwd,
            &t.group,
            &t.services,
            &t.run_dir,
            &t.modules,
            &t.init,
        ];
        assert!(all.iter().all(|p| p.starts_with("/tmp/t") && p != &Path::new("/tmp/t")), "{t:?}");
        assert_eq!(t.passwd, Path::new("/tmp/t/etc/passwd"));
    }
}
