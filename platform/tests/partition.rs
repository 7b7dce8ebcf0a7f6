//! The partition lookup on a fake sysfs and `/dev` in a temporary directory: by label (sysfs, then the GPT), by
//! PARTUUID (GPT and MBR) and by path, with the disks' tables written by [`platform::gpt`].

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

use platform::gpt::{self, Guid, Partition, LINUX_DATA_TYPE};
use platform::partition::{self, PartSpec, CLASS_BLOCK};

/// A disk image of `size` bytes with a GPT holding `parts` (name, unique GUID), one sector each from LBA 34.
fn gpt_image(size: usize, parts: &[(&str, Guid)]) -> Vec<u8> {
    let parts: Vec<Partition> = parts
        .iter()
        .enumerate()
        .map(|(i, &(name, unique_guid))| Partition {
            type_guid: LINUX_DATA_TYPE,
            unique_guid,
            first_lba: 34 + i as u64,
            last_lba: 34 + i as u64,
            name: name.to_owned(),
        })
        .collect();
    let mut d = vec![0u8; size];
    let sectors = size as u64 / gpt::SECTOR_BYTES;
    gpt::encode(Guid::v4_from([0xd1; 16]), sectors, &parts).expect("valid").place(&mut d);
    d
}

/// A fake sysfs and /dev: disk vda (GPT) with partitions 1 to 3 (3 without PARTNAME), disk vdb (MBR) with
/// partition 1, sdz1 named like vda2 but without a device node, and vdc1 and vdd1 with the same name.
#[test]
fn partitions_are_found_by_label_uuid_and_path_in_a_fake_sysfs() {
    let dir = tempfile::tempdir().expect("scratch dir");
    let (sys, dev) = (dir.path().join("sys"), dir.path().join("dev"));
    let class_block = sys.join(CLASS_BLOCK);
    fs::create_dir_all(&class_block).expect("mkdir");
    fs::create_dir_all(&dev).expect("mkdir");
    let uuids = [Guid::v4_from([1; 16]), Guid::v4_from([2; 16]), Guid::v4_from([3; 16])];
    let add_disk = |disk: &str, content: &[u8], parts: &[(u32, Option<&str>, bool)]| {
        let disk_dir = sys.join("devices/virtual/block").join(disk);
        fs::create_dir_all(&disk_dir).expect("mkdir");
        fs::write(disk_dir.join("uevent"), format!("MAJOR=254\nMINOR=0\nDEVNAME={disk}\nDEVTYPE=disk\n")).expect("w");
        symlink(format!("../../devices/virtual/block/{disk}"), class_block.join(disk)).expect("ln");
        fs::write(dev.join(disk), content).expect("disk");
        for &(n, name, node) in parts {
            let part = format!("{disk}{n}");
            let part_dir = disk_dir.join(&part);
            fs::create_dir_all(&part_dir).expect("mkdir");
            let partname = name.map(|l| format!("PARTNAME={l}\n")).unwrap_or_default();
            let uevent = format!("MAJOR=254\nMINOR={n}\nDEVNAME={part}\nDEVTYPE=partition\nPARTN={n}\n{partname}");
            fs::write(part_dir.join("uevent"), uevent).expect("w");
            let link = format!("../../devices/virtual/block/{disk}/{part}");
            symlink(link, class_block.join(&part)).expect("ln");
            if node {
                fs::write(dev.join(&part), b"").expect("node");
            }
        }
    };
    let names = ["edge-root-a", "edge-data", "edge-gpt-only"];
    let gpt_parts: Vec<(&str, Guid)> = names.into_iter().zip(uuids).collect();
    add_disk(
        "vda",
        &gpt_image(1 << 20, &gpt_parts),
        &[(1, Some("edge-root-a"), true), (2, Some("edge-data"), true), (3, None, true)],
    );
    let mut mbr = vec![0u8; 4096];
    mbr[440..444].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
    mbr[510..512].copy_from_slice(&[0x55, 0xaa]);
    add_disk("vdb", &mbr, &[(1, None, true)]);
    add_disk("sdz", &[], &[(1, Some("edge-data"), false)]);
    add_disk("vdc", &[], &[(1, Some("edge-dup"), true)]);
    add_disk("vdd", &[], &[(1, Some("edge-dup"), true)]);

    let check = |spec: &str, expected: Option<&str>| {
        let spec = PartSpec::parse(spec).expect("a spec");
        let expected = expected.map(|name| dev.join(name));
        assert_eq!(partition::find(&spec, &class_block, &dev), expected, "{spec:?}");
        assert_eq!(partition::wait_for(&spec, &class_block, &dev, Duration::ZERO), expected, "{spec:?}");
    };
    check("PARTLABEL=edge-root-a", Some("vda1"));
    check("PARTLABEL=edge-data", Some("vda2"));
    check("PARTLABEL=edge-dup", Some("vdc1"));
    // No PARTNAME in sysfs (a kernel without a GPT parser): the name is read from the disk's GPT.
    check("PARTLABEL=edge-gpt-only", Some("vda3"));
    check("PARTLABEL=nosuch", None);
    check(&format!("PARTUUID={}", uuids[2]), Some("vda3"));
    check(&format!("PARTUUID={}", uuids[0].to_string().to_uppercase()), Some("vda1"));
    check("PARTUUID=1234abcd-01", Some("vdb1"));
    check("PARTUUID=1234abcd-02", None);
    check("PARTUUID=00000000-0000-0000-0000-000000000000", None);
    check(&format!("{}", dev.join("vda2").display()), Some("vda2"));
    check(&format!("{}", dev.join("vda9").display()), None);
    // Every match, for a caller that refuses an ambiguous name.
    let dup = PartSpec::Label("edge-dup".into());
    assert_eq!(partition::find_all(&dup, &class_block, &dev), [dev.join("vdc1"), dev.join("vdd1")]);
    // No sysfs at all.
    let none = dir.path().join("none");
    assert_eq!(partition::find(&PartSpec::Label("edge-data".into()), &none, &dev), None);
}
