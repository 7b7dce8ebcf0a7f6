//! The GPT encoder checked by the tools an operator uses (`sgdisk --verify`, `sgdisk -i N`, `sfdisk --json`), and
//! the reader checked on tables those tools wrote.

use std::path::{Path, PathBuf};

use platform::gpt::{self, Guid, Partition, ESP_TYPE, LINUX_DATA_TYPE, SECTOR_BYTES};
use testkit::host::{run, tool};

const TOTAL: u64 = 64 * 2048;

fn parts() -> Vec<Partition> {
    let p = |n: u8, type_guid, first_lba, last_lba, name: &str| Partition {
        type_guid,
        unique_guid: Guid::v4_from([n; 16]),
        first_lba,
        last_lba,
        name: name.to_owned(),
    };
    vec![
        p(1, ESP_TYPE, 2048, 4095, "edge-esp"),
        p(2, LINUX_DATA_TYPE, 4096, 20479, "edge-slot-a"),
        p(3, LINUX_DATA_TYPE, 20480, 36863, "edge-slot-b"),
        p(4, LINUX_DATA_TYPE, 36864, gpt::last_usable_lba(TOTAL), "edge-data ÿ"),
    ]
}

/// A disk image of [`TOTAL`] sectors holding our encoding of `parts`.
fn encoded_disk(dir: &Path, parts: &[Partition]) -> PathBuf {
    let mut disk = vec![0u8; (TOTAL * SECTOR_BYTES) as usize];
    gpt::encode(Guid::v4_from([0x99; 16]), TOTAL, parts).expect("valid").place(&mut disk);
    let path = dir.join("disk.img");
    std::fs::write(&path, disk).expect("write disk");
    path
}

#[test]
fn sgdisk_verifies_the_encoding_and_reads_each_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parts = parts();
    let disk = encoded_disk(dir.path(), &parts);
    let verify = run(tool("sgdisk").arg("--verify").arg(&disk));
    assert!(verify.contains("No problems found"), "{verify}");
    for (i, p) in parts.iter().enumerate() {
        let info = run(tool("sgdisk").arg(format!("--info={}", i + 1)).arg(&disk));
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {info}"))
                .trim()
                .to_owned()
        };
        assert!(field("Partition GUID code:").to_lowercase().starts_with(&p.type_guid.to_string()), "{info}");
        assert_eq!(field("Partition unique GUID:").to_lowercase(), p.unique_guid.to_string());
        assert_eq!(field("First sector:").split_whitespace().next(), Some(p.first_lba.to_string().as_str()));
        assert_eq!(field("Last sector:").split_whitespace().next(), Some(p.last_lba.to_string().as_str()));
        assert_eq!(field("Partition name:"), format!("'{}'", p.name));
    }
}

#[test]
fn sfdisk_reads_the_encoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parts = parts();
    let disk = encoded_disk(dir.path(), &parts);
    let json: serde_json::Value =
        serde_json::from_str(&run(tool("sfdisk").arg("--json").arg(&disk))).expect("sfdisk prints JSON");
    let t = &json["partitiontable"];
    assert_eq!(t["label"], "gpt");
    assert_eq!(t["id"].as_str().expect("id").to_lowercase(), Guid::v4_from([0x99; 16]).to_string());
    assert_eq!(t["firstlba"], 34);
    assert_eq!(t["lastlba"], TOTAL - 34);
    let got = t["partitions"].as_array().expect("partitions");
    assert_eq!(got.len(), parts.len());
    for (g, p) in got.iter().zip(&parts) {
        assert_eq!(g["start"], p.first_lba);
        assert_eq!(g["size"], p.last_lba - p.first_lba + 1);
        assert_eq!(g["type"].as_str().expect("type").to_lowercase(), p.type_guid.to_string());
        assert_eq!(g["uuid"].as_str().expect("uuid").to_lowercase(), p.unique_guid.to_string());
        assert_eq!(g["name"], p.name);
    }
}

#[test]
fn the_reader_reads_what_sgdisk_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("sgdisk.img");
    std::fs::write(&disk, vec![0u8; (TOTAL * SECTOR_BYTES) as usize]).expect("blank disk");
    run(tool("sgdisk")
        .args(["--clear", "--disk-guid=5eed0000-0000-4000-8000-00000000d15c"])
        .args(["--new=1:2048:4095", "--typecode=1:ef00", "--change-name=1:edge-esp"])
        .args(["--partition-guid=1:11111111-2222-4333-8444-555555555555"])
        .args(["--new=3:8192:16383", "--typecode=3:8300", "--change-name=3:edge-data"])
        .args(["--partition-guid=3:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"])
        .arg(&disk));
    let mut f = std::fs::File::open(&disk).expect("open");
    let (header, entries) = gpt::read_entries(&mut f).expect("read").expect("a GPT");
    assert_eq!(header.sector_bytes, 512);
    assert_eq!(header.disk_guid.to_string(), "5eed0000-0000-4000-8000-00000000d15c");
    let got: Vec<(u32, Guid, String, u64, u64, String)> = entries
        .into_iter()
        .map(|e| (e.number, e.type_guid, e.unique_guid.to_string(), e.first_lba, e.last_lba, e.name))
        .collect();
    assert_eq!(
        got,
        [
            (1, ESP_TYPE, "11111111-2222-4333-8444-555555555555".into(), 2048, 4095, "edge-esp".into()),
            (3, LINUX_DATA_TYPE, "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee".into(), 8192, 16383, "edge-data".into()),
        ]
    );
    let entry = platform::partition::table_entry(&mut f, 3).expect("read").expect("partition 3");
    assert_eq!(entry.name.as_deref(), Some("edge-data"));
    assert_eq!(platform::partition::table_entry(&mut f, 2).expect("read"), None);
}
