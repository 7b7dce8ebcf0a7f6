//! The data partition (docs/edge-init.md, "Data partition"): found by PARTLABEL, PARTUUID or path, formatted when
//! blank, checked when it does not mount, mounted read-write; when it is missing or damaged a tmpfs takes its
//! place, so that the node still comes up far enough to be updated or rolled back.
//! It is a module of its own because its policy is the one place where `edge-init` decides to write to a disk, and
//! the rule is narrow: only a partition whose first MiB is all zeros is ever formatted.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use platform::{mountinfo, partition};

use crate::cmdline::PartSpec;
use crate::error::{chain, Error, Result};
use crate::paths::Paths;
use crate::services::DataConfig;
use crate::sys;
use crate::sys::mount::Flags;

/// How much of the start of a partition must be zeros for it to count as blank: every filesystem `edge-init` could
/// be asked to mount keeps its signature in the first MiB (ext4 at 1080, btrfs at 65600, xfs at 0, f2fs at 1024).
const BLANK_BYTES: u64 = 1 << 20;

/// How the data partition came to be mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// It mounted as it was.
    AsFound,
    /// It mounted after fsck.
    Repaired,
    /// It was blank and was formatted.
    Formatted,
}

/// Why a tmpfs is where the data partition should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// No partition matched within the wait.
    Missing {
        /// What was looked for, such as `PARTLABEL=edge-data`.
        spec: String,
    },
    /// It is blank and was not formatted, or does not mount after formatting.
    Blank {
        /// The partition.
        device: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// It holds data but does not mount, even after fsck: it was left untouched.
    Damaged {
        /// The partition.
        device: PathBuf,
        /// The mount's error.
        error: String,
    },
    /// The mount point could not be made.
    MountPoint {
        /// What went wrong.
        error: String,
    },
}

/// What is on the data partition's mount point after [`mount_data`]; its `Display` is the line of
/// `edge-init ctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataState {
    /// The data partition is mounted.
    Mounted {
        /// The partition.
        device: PathBuf,
        /// Where.
        mount: PathBuf,
        /// After what.
        how: How,
    },
    /// The data partition is not mounted; a tmpfs is there instead, unless `tmpfs_error` says why not.
    Tmpfs {
        /// Where.
        mount: PathBuf,
        /// Why.
        why: Why,
        /// Why the tmpfs could not be mounted either.
        tmpfs_error: Option<String>,
    },
}

impl fmt::Display for DataState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataState::Mounted { device, mount, how } => {
                let how = match how {
                    How::AsFound => "",
                    How::Repaired => "repaired by fsck and ",
                    How::Formatted => "formatted and ",
                };
                write!(f, "{how}mounted {} on {}", device.display(), mount.display())
            }
            DataState::Tmpfs { mount, why, tmpfs_error } => {
                match tmpfs_error {
                    None => write!(f, "tmpfs on {} (", mount.display())?,
                    Some(e) => write!(f, "nothing on {} (tmpfs: {e}; ", mount.display())?,
                }
                match why {
                    Why::Missing { spec } => write!(f, "missing: {spec})"),
                    Why::Blank { device, error } => write!(f, "blank: {}: {error})", device.display()),
                    Why::Damaged { device, error } => {
                        write!(f, "damaged: {}: {error}; left untouched)", device.display())
                    }
                    Why::MountPoint { error } => write!(f, "no mount point: {error})"),
                }
            }
        }
    }
}

/// Splits mount options (`noatime,nodev,commit=30`) into the flags mount(2) takes and the data string the
/// filesystem reads; empty words and `defaults` are dropped, and a later word wins over an earlier one.
pub fn parse_options(options: &str) -> (Flags, String) {
    let mut flags = Flags::NONE;
    let mut data: Vec<&str> = Vec::new();
    for word in options.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let (set, clear) = match word {
            "defaults" => (Flags::NONE, Flags::NONE),
            "ro" => (Flags::RDONLY, Flags::NONE),
            "rw" => (Flags::NONE, Flags::RDONLY),
            "nosuid" => (Flags::NOSUID, Flags::NONE),
            "suid" => (Flags::NONE, Flags::NOSUID),
            "nodev" => (Flags::NODEV, Flags::NONE),
            "dev" => (Flags::NONE, Flags::NODEV),
            "noexec" => (Flags::NOEXEC, Flags::NONE),
            "exec" => (Flags::NONE, Flags::NOEXEC),
            "sync" => (Flags::SYNC, Flags::NONE),
            "async" => (Flags::NONE, Flags::SYNC),
            "dirsync" => (Flags::DIRSYNC, Flags::NONE),
            "noatime" => (Flags::NOATIME, Flags::NONE),
            "atime" => (Flags::NONE, Flags::NOATIME),
            "nodiratime" => (Flags::NODIRATIME, Flags::NONE),
            "diratime" => (Flags::NONE, Flags::NODIRATIME),
            "relatime" => (Flags::RELATIME, Flags::NONE),
            "norelatime" => (Flags::NONE, Flags::RELATIME),
            "strictatime" => (Flags::STRICTATIME, Flags::NONE),
            "lazytime" => (Flags::LAZYTIME, Flags::NONE),
            "nolazytime" => (Flags::NONE, Flags::LAZYTIME),
            other => {
                data.push(other);
                continue;
            }
        };
        flags = flags.without(clear) | set;
    }
    (flags, data.join(","))
}

/// Mounts the data partition (`device_override`, from `edge.data=`, else `cfg.device`) on `cfg.mount`. The policy
/// (docs/edge-init.md, "Data partition"): wait up to `cfg.wait` for it; if its first MiB is all zeros, run
/// `cfg.format` on it, then mount; if it does not mount, run `cfg.fsck` once and try again; if it is missing, or
/// still does not mount, leave it untouched and mount a tmpfs there instead. Every outcome but a plain mount is
/// logged as an error and, when this is PID 1, written to `/dev/console` too. Call it before services start: it
/// waits for the programs it runs.
pub fn mount_data(cfg: &DataConfig, device_override: Option<&PartSpec>) -> DataState {
    mount_data_in(&Paths::default(), cfg, device_override)
}

/// [`mount_data`] with the partition looked up in `paths.sys` and `paths.dev`, and the console at `paths.console`.
pub fn mount_data_in(paths: &Paths, cfg: &DataConfig, device_override: Option<&PartSpec>) -> DataState {
    let spec = device_override.unwrap_or(&cfg.device);
    let fallback = |cfg, why| fallback(paths, cfg, why);
    let Some(device) = partition::wait_for(spec, &paths.sys.join(partition::CLASS_BLOCK), &paths.dev, cfg.wait) else {
        return fallback(cfg, Why::Missing { spec: spec.to_string() });
    };
    let dev = device.display();
    let mount = cfg.mount.as_path();
    // Already there: edge-init was started again, or the initramfs mounted it.
    let mounted = mountinfo::read(&paths.mountinfo).unwrap_or_default();
    if mounted.iter().any(|m| m.mount_point == mount && Path::new(&m.source) == device) {
        log::info!("data partition {dev} is already mounted on {}", mount.display());
        return DataState::Mounted { device, mount: mount.to_owned(), how: How::AsFound };
    }
    if let Err(e) = fs::create_dir_all(mount) {
        return fallback(cfg, Why::MountPoint { error: format!("mkdir {}: {e}", mount.display()) });
    }
    let (flags, data) = parse_options(&cfg.options);
    let try_mount = || sys::mount::mount(&device, mount, &cfg.fstype, flags, &data);
    let blank = match is_blank(&device) {
        Ok(b) => b,
        Err(e) => {
            log::warn!("data partition: {}; it is not treated as blank", chain(&e));
            false
        }
    };
    if blank {
        let Some(program) = cfg.format.first() else {
            return fallback(cfg, Why::Blank { device, error: "data.format is empty, so it was not formatted".into() });
        };
        log::info!(
            "data partition {dev} is blank (its first MiB is zeros): formatting it with {}",
            cfg.format.join(" ")
        );
        // Durability: a power cut during the format leaves a partial filesystem; it is then no longer blank, does
        // not mount, and is left alone as damaged on every later boot. Formatting again would be the fix, but
        // telling that from a damaged filesystem holding data is not something PID 1 should guess.
        if let Err(e) = run(program, &cfg.format[1..], &device) {
            let error = format!("formatting failed: {}", chain(&e));
            return fallback(cfg, Why::Blank { device, error });
        }
        return match try_mount() {
            Ok(()) => {
                log::info!("data partition {dev} formatted and mounted on {}", mount.display());
                DataState::Mounted { device, mount: mount.to_owned(), how: How::Formatted }
            }
            Err(e) => fallback(cfg, Why::Blank { device, error: format!("formatted, then mount: {e}") }),
        };
    }
    let first = match try_mount() {
        Ok(()) => {
            log::info!("data partition {dev} mounted on {}", mount.display());
            return DataState::Mounted { device, mount: mount.to_owned(), how: How::AsFound };
        }
        Err(e) => e,
    };
    let Some(program) = cfg.fsck.first() else {
        return fallback(cfg, Why::Damaged { device, error: format!("mount: {first}; data.fsck is empty") });
    };
    log::warn!("data partition {dev} does not mount ({first}): checking it with {}", cfg.fsck.join(" "));
    // The mount is tried again whatever fsck's status: e2fsck exits non-zero when it fixed something, too.
    match run(program, &cfg.fsck[1..], &device) {
        Ok(()) => log::info!("data partition {dev}: {program} found nothing to fix"),
        Err(e) => log::warn!("data partition {dev}: {}", chain(&e)),
    }
    match try_mount() {
        Ok(()) => {
            log::warn!("data partition {dev} repaired by fsck and mounted on {}", mount.display());
            DataState::Mounted { device, mount: mount.to_owned(), how: How::Repaired }
        }
        Err(e) => fallback(cfg, Why::Damaged { device, error: format!("mount: {e}") }),
    }
}

/// Whether the partition's first MiB (or all of it, if smaller) can be read and is all zeros.
fn is_blank(device: &Path) -> Result<bool> {
    let mut head = Vec::with_capacity(BLANK_BYTES as usize);
    let read = |source| Error::ReadDevice { device: device.to_owned(), source };
    fs::File::open(device).map_err(read)?.take(BLANK_BYTES).read_to_end(&mut head).map_err(read)?;
    Ok(!head.is_empty() && head.iter().all(|&b| b == 0))
}

/// Runs `program` with `args` and `device` added last, logging what it prints.
fn run(program: &str, args: &[String], device: &Path) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .arg(device)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::StartProgram { program: program.to_owned(), source })?;
    let name = Path::new(program).file_name().map_or(program.into(), |n| n.to_string_lossy());
    let text = [String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)].concat();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()).take(20) {
        log::info!("{name} {}: {line}", device.display());
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::ProgramFailed { program: program.to_owned(), status: out.status })
    }
}

/// The error line for `why`, naming the partition and what the node does about it.
fn problem(why: &Why, wait_secs: u64) -> String {
    match why {
        Why::Missing { spec } => format!("data partition {spec} not found within {wait_secs} s"),
        Why::Blank { device, error } => format!("data partition {} is blank: {error}", device.display()),
        Why::Damaged { device, error } => {
            format!("data partition {} is damaged ({error}); it was left untouched", device.display())
        }
        Why::MountPoint { error } => format!("data partition: no mount point ({error})"),
    }
}

/// Mounts a tmpfs where the data partition should be, and says so on the console and in the log.
fn fallback(paths: &Paths, cfg: &DataConfig, why: Why) -> DataState {
    let mount = cfg.mount.display();
    let tmpfs = fs::create_dir_all(&cfg.mount).and_then(|()| {
        sys::mount::mount(Path::new("tmpfs"), &cfg.mount, "tmpfs", Flags::NOSUID.with(Flags::NODEV), "mode=0755")
    });
    let problem = problem(&why, cfg.wait.as_secs());
    let tmpfs_error = match tmpfs {
        Ok(()) => {
            tell(paths, &format!("{problem}: {mount} is a tmpfs, nothing written there survives a reboot"));
            None
        }
        Err(e) => {
            tell(paths, &format!("{problem}; a tmpfs on {mount} failed too ({e}): {mount} is on the root filesystem"));
            Some(e.to_string())
        }
    };
    DataState::Tmpfs { mount: cfg.mount.clone(), why, tmpfs_error }
}

/// An error an operator must see: in the log, and on the console when this is PID 1 (when it is not, the log is
/// stderr, which is already in front of whoever started it).
fn tell(paths: &Paths, line: &str) {
    log::error!("{line}");
    if sys::pid() == 1 {
        if let Ok(mut console) = fs::OpenOptions::new().write(true).open(&paths.console) {
            let _ = console.write_all(format!("edge-init: {line}\n").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options() {
        let check = |options: &str, flags: Flags, data: &str| {
            assert_eq!(parse_options(options), (flags, data.to_owned()), "{options:?}");
        };
        check("", Flags::NONE, "");
        check("noatime", Flags::NOATIME, "");
        check("defaults", Flags::NONE, "");
        check("noatime,nodev,nosuid,noexec", Flags::NOATIME | Flags::NODEV | Flags::NOSUID | Flags::NOEXEC, "");
        check("ro,sync", Flags::RDONLY | Flags::SYNC, "");
        check("ro,rw", Flags::NONE, "");
        check("rw,ro", Flags::RDONLY, "");
        check("noatime,commit=30,nodev,data=journal", Flags::NOATIME | Flags::NODEV, "commit=30,data=journal");
        check(" noatime , errors=remount-ro ,,", Flags::NOATIME, "errors=remount-ro");
        check("nodev,dev,noexec,exec,nosuid,suid,atime", Flags::NONE, "");
        check("lazytime,dirsync,nodiratime", Flags::LAZYTIME | Flags::DIRSYNC | Flags::NODIRATIME, "");
        check("relatime,strictatime", Flags::RELATIME | Flags::STRICTATIME, "");
        check("async,sync", Flags::SYNC, "");
        check("sync,async,norelatime,nolazytime,diratime", Flags::NONE, "");
    }

    #[test]
    fn status_lines() {
        let check = |state: DataState, expected: &str| assert_eq!(state.to_string(), expected);
        let (device, mount) = (PathBuf::from("/dev/vda4"), PathBuf::from("/data"));
        let mounted = |how| DataState::Mounted { device: device.clone(), mount: mount.clone(), how };
        check(mounted(How::AsFound), "mounted /dev/vda4 on /data");
        check(mounted(How::Formatted), "formatted and mounted /dev/vda4 on /data");
        check(mounted(How::Repaired), "repaired by fsck and mounted /dev/vda4 on /data");
        let tmpfs = |why, tmpfs_error| DataState::Tmpfs { mount: mount.clone(), why, tmpfs_error };
        check(
            tmpfs(Why::Missing { spec: "PARTLABEL=edge-data".into() }, None),
            "tmpfs on /data (missing: PARTLABEL=edge-data)",
        );
        check(
            tmpfs(Why::Damaged { device: device.clone(), error: "mount: Invalid argument".into() }, None),
            "tmpfs on /data (damaged: /dev/vda4: mount: Invalid argument; left untouched)",
        );
        check(
            tmpfs(Why::Blank { device: device.clone(), error: "data.format is empty".into() }, None),
            "tmpfs on /data (blank: /dev/vda4: data.format is empty)",
        );
        check(
            tmpfs(Why::MountPoint { error: "mkdir /data: Read-only file system".into() }, Some("ENOENT".into())),
            "nothing on /data (tmpfs: ENOENT; no mount point: mkdir /data: Read-only file system)",
        );
    }

    #[test]
    fn error_lines() {
        let check = |why: Why, expected: &str| assert_eq!(problem(&why, 10), expected);
        let device = PathBuf::from("/dev/vda4");
        check(
            Why::Missing { spec: "PARTLABEL=edge-data".into() },
            "data partition PARTLABEL=edge-data not found within 10 s",
        );
        check(
            Why::Damaged { device: device.clone(), error: "mount: Invalid argument (os error 22)".into() },
            "data partition /dev/vda4 is damaged (mount: Invalid argument (os error 22)); it was left untouched",
        );
        check(
            Why::Blank { device, error: "formatting failed: mkfs.ext4 ended with exit status: 1".into() },
            "data partition /dev/vda4 is blank: formatting failed: mkfs.ext4 ended with exit status: 1",
        );
    }
}
