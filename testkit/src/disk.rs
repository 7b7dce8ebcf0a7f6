//! Disks for tests that look for partitions: a disk image with a GPT written by the workspace's one encoder
//! (`platform::gpt`), and a fake sysfs and `/dev` in a temporary directory laid out the way the kernel lays out
//! `/sys/class/block`, so the partition lookup of `platform`, `edge-init` and the updater runs on them unchanged.

use std::fs;
use std::ops::Range;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use platform::gpt::{self, Guid, Partition};

/// A disk image of `size_bytes` (whole 512-byte sectors) with a GPT holding `parts`: each a name, a unique GUID and
/// the LBAs it covers, all of the Linux data type.
pub fn gpt_image(size_bytes: usize, parts: &[(&str, Guid, Range<u64>)]) -> Vec<u8> {
    let parts: Vec<Partition> = parts
        .iter()
        .map(|(name, unique_guid, lbas)| Partition {
            type_guid: gpt::LINUX_DATA_TYPE,
            unique_guid: *unique_guid,
            first_lba: lbas.start,
            last_lba: lbas.end - 1,
            name: (*name).to_owned(),
        })
        .collect();
    let mut image = vec![0u8; size_bytes];
    let sectors = size_bytes as u64 / gpt::SECTOR_BYTES;
    gpt::encode(Guid::v4_from([0xd1; 16]), sectors, &parts).expect("a valid test table").place(&mut image);
    image
}

/// A fake sysfs and `/dev` under one directory.
pub struct FakeSysfs {
    /// The kernel's `class/block` directory (what the lookups take as their sysfs).
    pub class_block: PathBuf,
    /// The device nodes: plain files holding each disk's bytes.
    pub dev: PathBuf,
    devices: PathBuf,
}

/// One partition of a fake disk: its number, the `PARTNAME` sysfs gives (none, as from a kernel without a GPT
/// parser), and whether it has a device node.
pub type FakePartition<'a> = (u32, Option<&'a str>, bool);

impl FakeSysfs {
    /// An empty sysfs and `/dev` under `root`.
    pub fn new(root: &Path) -> FakeSysfs {
        let class_block = root.join("sys/class/block");
        let dev = root.join("dev");
        let devices = root.join("sys/devices/virtual/block");
        for dir in [&class_block, &dev, &devices] {
            fs::create_dir_all(dir).expect("make the fake sysfs");
        }
        FakeSysfs { class_block, dev, devices }
    }

    /// Adds disk `disk` (major 254) whose node holds `content`, and its partitions `disk1`, `disk2`, ...
    pub fn add_disk(&self, disk: &str, content: &[u8], parts: &[FakePartition]) {
        let disk_dir = self.devices.join(disk);
        fs::create_dir_all(&disk_dir).expect("mkdir");
        let uevent = format!("MAJOR=254\nMINOR=0\nDEVNAME={disk}\nDEVTYPE=disk\n");
        fs::write(disk_dir.join("uevent"), uevent).expect("write a uevent");
        symlink(format!("../../devices/virtual/block/{disk}"), self.class_block.join(disk)).expect("ln");
        fs::write(self.dev.join(disk), content).expect("write a disk node");
        for &(n, name, node) in parts {
            let part = format!("{disk}{n}");
            let part_dir = disk_dir.join(&part);
            fs::create_dir_all(&part_dir).expect("mkdir");
            let partname = name.map(|l| format!("PARTNAME={l}\n")).unwrap_or_default();
            let uevent = format!("MAJOR=254\nMINOR={n}\nDEVNAME={part}\nDEVTYPE=partition\nPARTN={n}\n{partname}");
            fs::write(part_dir.join("uevent"), uevent).expect("write a uevent");
            symlink(format!("../../devices/virtual/block/{disk}/{part}"), self.class_block.join(&part)).expect("ln");
            if node {
                fs::write(self.dev.join(&part), b"").expect("write a partition node");
            }
        }
    }
}
