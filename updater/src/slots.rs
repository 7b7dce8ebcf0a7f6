//! Finding the slots' devices (a path, or `PARTLABEL=` or `PARTUUID=` looked up with `platform::partition`: sysfs,
//! then the disk's GPT, since no udev runs under `edge-init`) and the checks that keep an install off anything in
//! use: the target is not mounted and is not the root. Devices are compared by device number, never by name.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use bootctl::rules::Slot;
use platform::mountinfo;
use platform::partition::{self, PartSpec};

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
    let path = match PartSpec::parse(spec) {
        Some(named @ (PartSpec::Label(_) | PartSpec::Uuid(_))) => {
            let mut found = partition::find_all(&named, &config.sys_class_block, &config.dev_dir);
            if found.len() > 1 {
                return Err(Error::AmbiguousLabel { slot, label: named.to_string(), devices: found });
            }
            found.pop().ok_or_else(not_found)?
        }
        // A path, absolute or not (a file slot in a test).
        _ => PathBuf::from(spec),
    };
    let meta = std::fs::metadata(&path).map_err(|_| not_found())?;
    let rdev = meta.file_type().is_block_device().then(|| meta.rdev());
    Ok(SlotPath { slot, path, rdev })
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

/// Refuses a target that is mounted anywhere or is the running root's device.
pub fn check_target(config: &Config, target: &SlotPath) -> Result<()> {
    let text = std::fs::read_to_string(&config.mountinfo)
        .map_err(|source| Error::ReadMounts { path: config.mountinfo.clone(), source })?;
    let canonical = std::fs::canonicalize(&target.path).unwrap_or_else(|_| target.path.clone());
    for m in mountinfo::parse(&text) {
        let same_dev = target.rdev.is_some() && target.rdev == m.dev_number();
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
        assert!(matches!(check(Some(mountinfo::makedev(7, 77)), "/dev/x"), Err(Error::SlotMounted { .. })));
        assert!(matches!(check(None, "/dev/loop77"), Err(Error::SlotMounted { .. })));
        assert!(check(Some(mountinfo::makedev(7, 78)), "/dev/loop78").is_ok());
    }

    #[test]
    fn partlabels_are_found_in_sysfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sys = dir.path().join("sys");
        // The device nodes a partition found in sysfs must have to be found.
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(&dev).expect("mkdir");
        for node in ["vda", "vda2", "vda3", "sda3"] {
            std::fs::write(dev.join(node), b"").expect("node");
        }
        for (name, uevent) in [
            ("vda", "MAJOR=253\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n"),
            ("vda2", "MAJOR=253\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=edge-slot-a\n"),
            ("vda3", "MAJOR=253\nMINOR=3\nDEVNAME=vda3\nDEVTYPE=partition\nPARTN=3\nPARTNAME=edge-slot-b\n"),
        ] {
            std::fs::create_dir_all(sys.join(name)).expect("mkdir");
            std::fs::write(sys.join(name).join("uevent"), uevent).expect("write");
        }
        let find = |label: &str| partition::find_all(&PartSpec::Label(label.into()), &sys, &dev);
        assert_eq!(find("edge-slot-b"), [dev.join("vda3")]);
        assert!(find("edge-c").is_empty());
        // A second disk with the same layout (a provisioning stick left in): the label is ambiguous.
        std::fs::create_dir_all(sys.join("sda3")).expect("mkdir");
        std::fs::write(sys.join("sda3/uevent"), "DEVNAME=sda3\nDEVTYPE=partition\nPARTNAME=edge-slot-b\n")
            .expect("write");
        let text = format!(
            "compatible = \"t\"\nsys_class_block = {:?}\ndev_dir = {:?}\n",
            sys.display().to_string(),
            dev.display().to_string()
        );
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

    /// A kernel without a GPT parser (partitions added with BLKPG) gives no PARTNAME: the slot is found by the name
    /// in its disk's GPT, and by its PARTUUID, as `edge-init` finds the root.
    #[test]
    fn issue_15_a_slot_without_partname_in_sysfs_is_found_in_the_gpt() {
        use platform::gpt::Guid;
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = testkit::disk::FakeSysfs::new(dir.path());
        let (class_block, dev) = (&fake.class_block, &fake.dev);
        // Slot B's partition, vda3, has a node but no PARTNAME; the disk's GPT names it.
        let parts = [
            ("edge-esp", Guid::v4_from([1; 16]), 34..35),
            ("edge-slot-a", Guid::v4_from([2; 16]), 35..36),
            ("edge-slot-b", Guid::v4_from([3; 16]), 36..37),
        ];
        fake.add_disk("vda", &testkit::disk::gpt_image(1 << 20, &parts), &[(3, None, true)]);
        let check = |slot_b: &str, expected: Option<PathBuf>| {
            let text = format!(
                "compatible = \"t\"\nsys_class_block = {:?}\ndev_dir = {:?}\n[slots]\na = \"/dev/null\"\nb = {slot_b:?}\n",
                class_block.display().to_string(),
                dev.display().to_string()
            );
            let config = Config::parse(&text, Path::new("t")).expect("config");
            let got = resolve(&config, Slot::B);
            match expected {
                Some(path) => assert_eq!(got.expect("found").path, path, "{slot_b}"),
                None => assert!(matches!(got, Err(Error::ResolveSlot { slot: Slot::B, .. })), "{slot_b}: {got:?}"),
            }
        };
        check("PARTLABEL=edge-slot-b", Some(dev.join("vda3")));
        check(&format!("PARTUUID={}", Guid::v4_from([3; 16])), Some(dev.join("vda3")));
        check("PARTLABEL=edge-slot-a", None);
        check("PARTLABEL=edge-slot-c", None);
    }
}
