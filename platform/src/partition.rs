//! The one partition lookup of the node: a device path as it is, or the partition whose GPT name (`PARTLABEL=`)
//! or unique id (`PARTUUID=`) matches, found in sysfs (`PARTNAME=` in a partition's `uevent`) first and otherwise
//! in its disk's partition table, read with [`crate::gpt`] (or the MBR, for a PARTUUID).
//!
//! It is a module of its own because `edge-init` (root and data partitions) and the updater (slots) look up
//! partitions the same way, with no udev to make `/dev/disk/by-partlabel` links. The sysfs and `/dev` roots are
//! arguments, so tests run it on a fake sysfs in a temporary directory.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::gpt;

/// The block devices' directory in sysfs, below its root.
pub const CLASS_BLOCK: &str = "class/block";

/// How a partition is named: `PARTLABEL=name`, `PARTUUID=uuid` or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartSpec {
    /// `PARTLABEL=name`: the GPT partition name.
    Label(String),
    /// `PARTUUID=uuid`: the GPT partition's unique id (lowercase), or an MBR disk's `1234abcd-02`.
    Uuid(String),
    /// A device path, such as `/dev/vda4`.
    Path(String),
}

impl PartSpec {
    /// `PARTLABEL=name`, `PARTUUID=uuid` or an absolute path; `None` for anything else.
    pub fn parse(s: &str) -> Option<PartSpec> {
        if let Some(l) = s.strip_prefix("PARTLABEL=") {
            return (!l.is_empty()).then(|| PartSpec::Label(l.to_owned()));
        }
        if let Some(u) = s.strip_prefix("PARTUUID=") {
            return (!u.is_empty()).then(|| PartSpec::Uuid(u.to_ascii_lowercase()));
        }
        s.starts_with('/').then(|| PartSpec::Path(s.to_owned()))
    }
}

impl fmt::Display for PartSpec {
    /// As written on the kernel command line: `PARTLABEL=edge-data`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartSpec::Label(l) => write!(f, "PARTLABEL={l}"),
            PartSpec::Uuid(u) => write!(f, "PARTUUID={u}"),
            PartSpec::Path(p) => f.write_str(p),
        }
    }
}

/// One block device as sysfs describes it.
struct BlockDev {
    /// Its directory in sysfs (a link under `class/block`).
    sys_dir: PathBuf,
    devname: String,
    /// The partition's number, for a partition (`PARTN=`, else the `partition` file).
    partn: Option<u32>,
    /// The GPT partition name, for a partition that has one.
    partname: Option<String>,
}

fn read_uevent(dir: &Path) -> Option<BlockDev> {
    let text = fs::read_to_string(dir.join("uevent")).ok()?;
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::to_owned);
    let partn = value("PARTN").or_else(|| fs::read_to_string(dir.join("partition")).ok());
    Some(BlockDev {
        sys_dir: dir.to_owned(),
        devname: value("DEVNAME")?,
        partn: partn.and_then(|n| n.trim().parse().ok()),
        partname: value("PARTNAME"),
    })
}

/// Every device node that `spec` names, sorted: a path that exists, or each partition listed in `class_block`
/// (normally `/sys/class/block`) whose GPT name (`PARTNAME=` in its `uevent`, else read from its disk's GPT) or
/// PARTUUID (read from its disk's partition table, GPT or MBR) matches and whose node exists below `dev_root`.
/// More than one means a second disk with the same layout is attached.
pub fn find_all(spec: &PartSpec, class_block: &Path, dev_root: &Path) -> Vec<PathBuf> {
    let wanted: Box<dyn Fn(&BlockDev) -> bool> = match spec {
        PartSpec::Path(p) => return Path::new(p).exists().then(|| PathBuf::from(p)).into_iter().collect(),
        // A kernel without a GPT parser (partitions added with BLKPG) has no PARTNAME: read the GPT then.
        PartSpec::Label(l) => Box::new(move |d| match &d.partname {
            Some(name) => name == l,
            None => table_entry_of(d, dev_root).and_then(|e| e.name).as_ref() == Some(l),
        }),
        PartSpec::Uuid(u) => {
            Box::new(move |d| table_entry_of(d, dev_root).is_some_and(|e| e.uuid.eq_ignore_ascii_case(u)))
        }
    };
    let Ok(entries) = fs::read_dir(class_block) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| read_uevent(&e.ok()?.path()))
        .filter(|d| (d.partn.is_some() || d.partname.is_some()) && wanted(d))
        .map(|d| dev_root.join(&d.devname))
        .filter(|node| node.exists())
        .collect();
    // The same on every boot, whatever order sysfs lists them in.
    found.sort();
    found.dedup();
    found
}

/// The device node `spec` names (see [`find_all`]); when several match, the first by name is taken and the others
/// are named in a warning.
pub fn find(spec: &PartSpec, class_block: &Path, dev_root: &Path) -> Option<PathBuf> {
    let found = find_all(spec, class_block, dev_root);
    let first = found.first()?;
    if found.len() > 1 {
        let all: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        log::warn!("{} matches {}: using {}", spec, all.join(", "), first.display());
    }
    Some(first.clone())
}

/// [`find`], looking again every 50 ms until `wait` has passed: devices appear while the kernel probes its buses,
/// after the program that looks has started. A `wait` of zero looks once.
pub fn wait_for(spec: &PartSpec, class_block: &Path, dev_root: &Path, wait: Duration) -> Option<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(p) = find(spec, class_block, dev_root) {
            return Some(p);
        }
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// What the partition table of a partition's disk says about it; its disk is the sysfs directory above its own.
fn table_entry_of(part: &BlockDev, dev_root: &Path) -> Option<TableEntry> {
    // `class/block/vda4` links to `../../devices/.../vda/vda4`, and `class/block/vda` is the disk.
    let link = fs::read_link(&part.sys_dir).ok()?;
    let disk = read_uevent(&part.sys_dir.parent()?.join(link.parent()?.file_name()?))?;
    let mut f = File::open(dev_root.join(&disk.devname)).ok()?;
    table_entry(&mut f, part.partn?).ok()?
}

/// One partition as its disk's partition table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// Its PARTUUID: the unique GUID of its GPT entry, or for an MBR disk the disk signature and the partition's
    /// number, `1234abcd-02`, as the kernel spells them.
    pub uuid: String,
    /// Its GPT name (what PARTLABEL matches), when it has one.
    pub name: Option<String>,
}

/// The partition table's entry for partition `partn` (from 1) of a disk, GPT or MBR.
pub fn table_entry<D: Read + Seek>(disk: &mut D, partn: u32) -> io::Result<Option<TableEntry>> {
    disk.seek(io::SeekFrom::Start(0))?;
    let head = gpt::read_head(disk)?;
    if let Some(h) = gpt::parse_header(&head) {
        let Some(e) = gpt::read_entry(disk, &h, partn)? else { return Ok(None) };
        return Ok(Some(TableEntry { uuid: e.unique_guid.to_string(), name: (!e.name.is_empty()).then_some(e.name) }));
    }
    if head.get(510..512) == Some(&[0x55, 0xaa][..]) {
        let sig = u32::from_le_bytes(head[440..444].try_into().expect("a 4-byte slice"));
        return Ok(Some(TableEntry { uuid: format!("{sig:08x}-{partn:02x}"), name: None }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk image with a GPT (entries at LBA 2, no CRCs: the reader does not check them) whose partition 2 has
    /// the given unique GUID bytes and name.
    fn gpt_disk(sector: usize, unique: [u8; 16], name: &str) -> Vec<u8> {
        let mut d = vec![0u8; sector * 40];
        d[510] = 0x55;
        d[511] = 0xaa;
        d[sector..sector + 8].copy_from_slice(b"EFI PART");
        d[sector + 72..sector + 80].copy_from_slice(&2u64.to_le_bytes());
        d[sector + 80..sector + 84].copy_from_slice(&128u32.to_le_bytes());
        d[sector + 84..sector + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 2 * sector + 128;
        d[e] = 0xaf;
        d[e + 16..e + 32].copy_from_slice(&unique);
        for (i, u) in name.encode_utf16().enumerate() {
            d[e + 56 + 2 * i..e + 58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        d
    }

    #[test]
    fn partition_table_entries() {
        let check = |disk: Vec<u8>, partn: u32, expected: Option<(&str, Option<&str>)>| {
            let got = table_entry(&mut io::Cursor::new(disk), partn).expect("read");
            let expected = expected.map(|(uuid, name)| TableEntry { uuid: uuid.into(), name: name.map(Into::into) });
            assert_eq!(got, expected, "partition {partn}");
        };
        let unique = [0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8];
        let text = "12345678-9abc-def0-0102-030405060708";
        check(gpt_disk(512, unique, "edge-data"), 2, Some((text, Some("edge-data"))));
        check(gpt_disk(4096, unique, "ÿ-root"), 2, Some((text, Some("ÿ-root"))));
        check(gpt_disk(512, unique, ""), 2, Some((text, None)));
        check(gpt_disk(512, unique, "x"), 1, None);
        check(gpt_disk(512, unique, "x"), 0, None);
        check(gpt_disk(512, unique, "x"), 129, None);
        let mut mbr = vec![0u8; 1024];
        mbr[440..444].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        check(mbr.clone(), 2, Some(("1234abcd-02", None)));
        mbr[511] = 0;
        check(mbr, 2, None);
        check(Vec::new(), 1, None);
    }

    #[test]
    fn specs() {
        let check = |s: &str, expected: Option<PartSpec>| {
            let got = PartSpec::parse(s);
            assert_eq!(got, expected, "{s}");
            if let Some(spec) = got.filter(|p| !matches!(p, PartSpec::Uuid(_))) {
                assert_eq!(spec.to_string(), s);
            }
        };
        check("PARTLABEL=edge-data", Some(PartSpec::Label("edge-data".into())));
        check("PARTUUID=ABCD-01", Some(PartSpec::Uuid("abcd-01".into())));
        check("/dev/vda4", Some(PartSpec::Path("/dev/vda4".into())));
        check("PARTLABEL=", None);
        check("PARTUUID=", None);
        check("vda4", None);
        check("LABEL=x", None);
    }
}
