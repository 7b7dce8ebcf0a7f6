//! Finding the slots' devices (a path, or `PARTLABEL=` looked up in sysfs, since no udev runs under `edge-init`)
//! and the checks that keep an install off anything in use: the target is not mounted and is not the root.
//! Devices are compared by device number, never by name.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use bootctl::rules::Slot;

use crate::config::Config;
use crate::error::{Error, Result};

/// A slot's device, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPath {
    /// The slot.
    pub slot: Slot,
    /// The device node or file.
    pub path: PathBuf,
    /// The device number, for a block device.
    pub rdev: Option<u64>,
}

/// The configured device of `slot`, found.
pub fn resolve(config: &Config, slot: Slot) -> Result<SlotPath> {
    let spec = match slot {
        Slot::A => &config.slots.a,
        Slot::B => &config.slots.b,
    };
    let not_found = || Error::ResolveSlot { slot, spec: spec.clone() };
    let path = match spec.strip_prefix("PARTLABEL=") {
        Some(label) => {
            let mut found = find_partlabel(&config.sys_class_block, &config.dev_dir, label);
            if found.len() > 1 {
                found.sort();
                return Err(Error::AmbiguousLabel { slot, label: label.to_owned(), devices: found });
            }
            found.pop().ok_or_else(not_found)?
        }
        None => PathBuf::from(spec),
    };
    let meta = std::fs::metadata(&path).map_err(|_| not_found())?;
    let rdev = meta.file_type().is_block_device().then(|| meta.rdev());
    Ok(SlotPath { slot, path, rdev })
}

/// The device nodes of every partition whose GPT name is `label` (`PARTNAME=` in its sysfs `uevent`); more than
/// one means a second disk with the same layout is attached.
fn find_partlabel(sys_class_block: &Path, dev_dir: &Path, label: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(sys_class_block) else { return Vec::new() };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let Ok(uevent) = std::fs::read_to_string(e.path().join("uevent")) else { continue };
        let field = |k: &str| uevent.lines().find_map(|l| l.strip_prefix(k).map(str::to_owned));
        if field("PARTNAME=").as_deref() == Some(label) {
            if let Some(name) = field("DEVNAME=") {
                found.push(dev_dir.join(name));
            }
        }
    }
    found
}

/// The loop device backed by `file`, if any (`loop/backing_file` in sysfs).
fn loop_backing(sys_class_block: &Path, file: &Path) -> Option<String> {
    let entries = std::fs::read_dir(sys_class_block).ok()?;
    for e in entries.flatten() {
        let Ok(backing) = std::fs::read_to_string(e.path().join("loop/backing_file")) else { continue };
        if Path::new(backing.trim_end()) == file {
            return Some(e.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// One line of /proc/self/mountinfo, the fields the checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` as a device number.
    pub dev: u64,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The mount source (a device path, or a file for a loop mount).
    pub source: String,
}

/// Parses mountinfo text (proc(5)); lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (major, minor) = fields.get(2)?.split_once(':')?;
            let dev = rustix_free_makedev(major.parse().ok()?, minor.parse().ok()?);
            let mount_point = PathBuf::from(unescape(fields.get(4)?));
            let sep = fields.iter().position(|f| *f == "-")?;
            let source = unescape(fields.get(sep + 2)?);
            Some(Mount { dev, mount_point, source })
        })
        .collect()
}

/// The kernel's dev_t encoding (glibc's `makedev`), so device numbers from mountinfo compare with `st_rdev`.
fn rustix_free_makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses a target that is mounted anywhere or is the running root's device.
pub fn check_target(config: &Config, target: &SlotPath) -> Result<()> {
    let text = std::fs::read_to_string(&config.mountinfo)
        .map_err(|source| Error::ReadMounts { path: config.mountinfo.clone(), source })?;
    let canonical = std::fs::canonicalize(&target.path).unwrap_or_else(|_| target.path.clone());
    for m in parse_mountinfo(&text) {
        let same_dev = target.rdev == Some(m.dev);
        let same_file = Path::new(&m.source) == canonical || Path::new(&m.source) == target.path;
        if same_dev || same_file {
            return Err(Error::SlotMounted {
                slot: target.slot,
                device: target.path.clone(),
                mount_point: m.mount_point,
            });
        }
    }
    // A file slot attached to a loop device may be mounted through it, under the loop device's name.
    if target.rdev.is_none() {
        if let Some(loop_device) = loop_backing(&config.sys_class_block, &canonical) {
            return Err(Error::SlotInUse { slot: target.slot, device: target.path.clone(), loop_device });
        }
    }
    if let Some(rdev) = target.rdev {
        let root = &config.bootctl.root;
        let root_dev =
            std::fs::metadata(root).map_err(|source| Error::ReadConfig { path: root.clone(), source })?.dev();
        if root_dev == rdev {
            return Err(Error::SlotIsRoot { slot: target.slot, device: target.path.clone() });
        }
    }
    Ok(())
}

/// The booted slot: `edge.slot=` on the kernel command line, cross-checked against the root device when the
/// booted slot is a block device.
pub fn booted(config: &Config) -> Result<Slot> {
    let device = |s: Slot| resolve(config, s).ok().filter(|p| p.rdev.is_some()).map(|p| p.path);
    bootctl::booted::booted_slot(&config.bootctl.cmdline, &config.bootctl.root, device)
        .map_err(|source| Error::Booted { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_cases() {
        let text = "22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    30 22 7:3 / /mnt/my\\040slot rw - ext4 /tmp/slot\\040b.img rw\n\
                    31 22 0:5 / /dev rw shared:2 - devtmpfs udev rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].dev, rustix_free_makedev(253, 1));
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/my slot"));
        assert_eq!(m[1].source, "/tmp/slot b.img");
        assert_eq!(m[2].source, "udev");
        // glibc's encoding, as stat(2) reports it.
        assert_eq!(rustix_free_makedev(8, 1), 0x801);
        assert_eq!(rustix_free_makedev(259, 300), (259 << 8) | (300 & 0xff) | ((300 & !0xff) << 12));
    }

    #[test]
    fn the_root_device_and_mounted_slots_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(&mountinfo, "22 1 7:77 / /mnt rw - ext4 /dev/loop77 rw\n").expect("write");
        let text = format!(
            "compatible = \"t\"\nmountinfo = {:?}\n[bootctl]\nroot = {:?}\n",
            mountinfo.display().to_string(),
            dir.path().display().to_string()
        );
        let config = Config::parse(&text, Path::new("t")).expect("config");
        let root_dev = std::fs::metadata(dir.path()).expect("stat").dev();
        let check =
            |rdev: Option<u64>, path: &str| check_target(&config, &SlotPath { slot: Slot::B, path: path.into(), rdev });
        // A device number equal to the root's (no device is opened: the check compares numbers only).
        assert!(matches!(check(Some(root_dev), "/dev/x"), Err(Error::SlotIsRoot { slot: Slot::B, .. })));
        assert!(matches!(check(Some(rustix_free_makedev(7, 77)), "/dev/x"), Err(Error::SlotMounted { .. })));
        assert!(matches!(check(None, "/dev/loop77"), Err(Error::SlotMounted { .. })));
        assert!(check(Some(rustix_free_makedev(7, 78)), "/dev/loop78").is_ok());
    }

    #[test]
    fn partlabels_are_found_in_sysfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sys = dir.path().join("sys");
        for (name, uevent) in [
            ("vda", "MAJOR=253\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n"),
            ("vda2", "MAJOR=253\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=edge-slot-a\n"),
            ("vda3", "MAJOR=253\nMINOR=3\nDEVNAME=vda3\nDEVTYPE=partition\nPARTN=3\nPARTNAME=edge-slot-b\n"),
        ] {
            std::fs::create_dir_all(sys.join(name)).expect("mkdir");
            std::fs::write(sys.join(name).join("uevent"), uevent).expect("write");
        }
        let dev = Path::new("/dev");
        assert_eq!(find_partlabel(&sys, dev, "edge-slot-b"), [PathBuf::from("/dev/vda3")]);
        assert!(find_partlabel(&sys, dev, "edge-c").is_empty());
        // A second disk with the same layout (a provisioning stick left in): the label is ambiguous.
        std::fs::create_dir_all(sys.join("sda3")).expect("mkdir");
        std::fs::write(sys.join("sda3/uevent"), "DEVNAME=sda3\nDEVTYPE=partition\nPARTNAME=edge-slot-b\n")
            .expect("write");
        let text = format!("compatible = \"t\"\nsys_class_block = {:?}\n", sys.display().to_string());
        let config = Config::parse(&text, Path::new("t")).expect("config");
        let r = resolve(&config, Slot::B);
        assert!(matches!(&r, Err(Error::AmbiguousLabel { devices, .. }) if devices.len() == 2), "{r:?}");
        // A file slot that backs a loop device is in use.
        std::fs::create_dir_all(sys.join("loop3/loop")).expect("mkdir");
        let file = dir.path().join("b.img");
        std::fs::write(&file, b"slot").expect("write");
        std::fs::write(sys.join("loop3/loop/backing_file"), format!("{}\n", file.display())).expect("write");
        let text = format!(
            "compatible = \"t\"\nsys_class_block = {:?}\nmountinfo = {:?}\n",
            sys.display().to_string(),
            sys.join("loop3/loop/backing_file").display().to_string()
        );
        let config = Config::parse(&text, Path::new("t")).expect("config");
        let r = check_target(&config, &SlotPath { slot: Slot::B, path: file, rdev: None });
        assert!(matches!(&r, Err(Error::SlotInUse { loop_device, .. }) if loop_device == "loop3"), "{r:?}");
    }
}
