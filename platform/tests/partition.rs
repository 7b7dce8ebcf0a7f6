//! The partition lookup on a fake sysfs and `/dev` in a temporary directory: by label (sysfs, then the GPT), by
//! PARTUUID (GPT and MBR) and by path, with the disks' tables written by [`platform::gpt`] (through `testkit::disk`).

use std::time::Duration;

use platform::gpt::Guid;
use platform::partition::{self, PartSpec};
use testkit::disk::{gpt_image, FakeSysfs};

/// A fake sysfs and /dev: disk vda (GPT) with partitions 1 to 3 (3 without PARTNAME), disk vdb (MBR) with
/// partition 1, sdz1 named like vda2 but without a device node, and vdc1 and vdd1 with the same name.
#[test]
fn partitions_are_found_by_label_uuid_and_path_in_a_fake_sysfs() {
    let dir = tempfile::tempdir().expect("scratch dir");
    let fake = FakeSysfs::new(dir.path());
    let (class_block, dev) = (fake.class_block.clone(), fake.dev.clone());
    let uuids = [Guid::v4_from([1; 16]), Guid::v4_from([2; 16]), Guid::v4_from([3; 16])];
    let add_disk =
        |disk: &str, content: &[u8], parts: &[(u32, Option<&str>, bool)]| fake.add_disk(disk, content, parts);
    let names = ["edge-root-a", "edge-data", "edge-gpt-only"];
    // One sector each from LBA 34.
    let gpt_parts: Vec<(&str, Guid, std::ops::Range<u64>)> =
        names.into_iter().zip(uuids).zip(34..).map(|((name, uuid), lba)| (name, uuid, lba..lba + 1)).collect();
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
