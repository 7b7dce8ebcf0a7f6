//! A GUID partition table encoded by hand: the protective MBR, the primary header and entry array, and their backups
//! at the end of the disk (UEFI 2.10, chapter 5), for 512-byte logical blocks.
//!
//! It is a module of its own because it is a byte format with its own rules (CRCs, mixed-endian GUIDs, UTF-16LE
//! names) that `disk` only fills in; it is pure, so the tests check every field without a disk, and `sfdisk` and
//! `sgdisk` check what it writes in `tests/disk.rs`.

use std::fmt;

/// Bytes of a logical block.
pub const SECTOR_BYTES: u64 = 512;
/// Partition entries in each array (the usual 128, so the array takes 32 sectors).
pub const N_ENTRIES: usize = 128;
/// Bytes of one partition entry.
pub const ENTRY_BYTES: usize = 128;
/// Sectors taken by one entry array.
pub const ENTRIES_SECTORS: u64 = (N_ENTRIES * ENTRY_BYTES) as u64 / SECTOR_BYTES;
/// Sectors the table takes at each end besides the MBR: a header and an entry array.
const TABLE_SECTORS: u64 = 1 + ENTRIES_SECTORS;
/// Longest partition name, in UTF-16 code units.
pub const MAX_NAME_UNITS: usize = 36;
/// Bytes of the header that its CRC covers.
const HEADER_BYTES: usize = 92;

/// A GUID, held in the byte order of its text form (RFC 9562); GPT stores the first three fields little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The GUID `a-b-c-d[0..2]-d[2..8]`.
    pub const fn from_fields(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
        let a = a.to_be_bytes();
        let b = b.to_be_bytes();
        let c = c.to_be_bytes();
        Guid([a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }

    /// A random-looking (version 4, RFC 9562 variant) GUID made from 16 bytes, e.g. of a hash.
    pub fn v4_from(mut bytes: [u8; 16]) -> Guid {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }

    /// The 16 bytes as GPT stores them: the first three fields little-endian, the rest as written.
    pub fn to_gpt_bytes(self) -> [u8; 16] {
        let mut b = self.0;
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        b
    }
}

impl fmt::Display for Guid {
    /// Lowercase with hyphens, as `blkid` and the kernel's `PARTUUID=` show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`: EFI system partition.
pub const ESP_TYPE: Guid =
    Guid::from_fields(0xC12A_7328, 0xF81F, 0x11D2, [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]);
/// `0FC63DAF-8483-4772-8E79-3D69D8477DE4`: Linux filesystem data.
pub const LINUX_DATA_TYPE: Guid =
    Guid::from_fields(0x0FC6_3DAF, 0x8483, 0x4772, [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4]);

/// One partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// What the partition holds.
    pub type_guid: Guid,
    /// Its own identity (`PARTUUID=`).
    pub unique_guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// Its name (`PARTLABEL=`), at most [`MAX_NAME_UNITS`] UTF-16 code units.
    pub name: String,
}

/// The first sector partitions may use: after the MBR, the primary header and its entry array.
pub fn first_usable_lba() -> u64 {
    1 + TABLE_SECTORS
}

/// The last sector partitions may use on a disk of `total_sectors`: before the backup entry array and header.
pub fn last_usable_lba(total_sectors: u64) -> u64 {
    total_sectors - 1 - TABLE_SECTORS
}

/// The encoded table: what goes at the start of the disk and what goes at its end.
#[derive(Debug, Clone)]
pub struct Table {
    /// The protective MBR, the primary header and the primary entry array: sectors 0 to 33.
    pub head: Vec<u8>,
    /// The backup entry array and the backup header: the last 33 sectors.
    pub tail: Vec<u8>,
    /// The sector where `tail` starts.
    pub tail_lba: u64,
}

/// Why a table cannot be encoded; the caller checks its plan first, so these are programming errors made visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// More partitions than entries.
    TooManyPartitions(usize),
    /// A name longer than [`MAX_NAME_UNITS`].
    NameTooLong(String),
    /// A partition outside the usable sectors, empty, or overlapping the one before (they must be in order).
    Placement(String),
}

/// Encodes the table of a disk of `total_sectors` sectors holding `partitions`, in order and not overlapping.
pub fn encode(disk_guid: Guid, total_sectors: u64, partitions: &[Partition]) -> Result<Table, Invalid> {
    if partitions.len() > N_ENTRIES {
        return Err(Invalid::TooManyPartitions(partitions.len()));
    }
    if total_sectors < 2 * (1 + TABLE_SECTORS) + 1 {
        return Err(Invalid::Placement(format!("a disk of {total_sectors} sectors has no room for a table")));
    }
    let last_usable = last_usable_lba(total_sectors);
    let mut next_free = first_usable_lba();
    let mut entries = vec![0u8; N_ENTRIES * ENTRY_BYTES];
    for (p, e) in partitions.iter().zip(entries.chunks_mut(ENTRY_BYTES)) {
        if p.first_lba < next_free || p.last_lba < p.first_lba || p.last_lba > last_usable {
            return Err(Invalid::Placement(format!(
                "{} at sectors {}..={} (usable from {next_free} to {last_usable})",
                p.name, p.first_lba, p.last_lba
            )));
        }
        next_free = p.last_lba + 1;
        e[0..16].copy_from_slice(&p.type_guid.to_gpt_bytes());
        e[16..32].copy_from_slice(&p.unique_guid.to_gpt_bytes());
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        // Bytes 48..56, the attributes, stay zero.
        let units: Vec<u16> = p.name.encode_utf16().collect();
        if units.len() > MAX_NAME_UNITS {
            return Err(Invalid::NameTooLong(p.name.clone()));
        }
        for (i, u) in units.iter().enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let backup_header_lba = total_sectors - 1;
    let backup_entries_lba = backup_header_lba - ENTRIES_SECTORS;
    let header = |my_lba: u64, alternate_lba: u64, entries_lba: u64| {
        let mut h = vec![0u8; SECTOR_BYTES as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable_lba().to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_gpt_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(N_ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_BYTES as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        // The header CRC is computed with its own field zero, which it still is here.
        let crc = crc32fast::hash(&h[..HEADER_BYTES]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut head = protective_mbr(total_sectors);
    head.extend_from_slice(&header(1, backup_header_lba, 2));
    head.extend_from_slice(&entries);
    let mut tail = entries;
    tail.extend_from_slice(&header(backup_header_lba, 1, backup_entries_lba));
    Ok(Table { head, tail, tail_lba: backup_entries_lba })
}

/// Sector 0: one partition of type 0xEE over the disk (capped at 2^32 - 1 sectors), so that MBR-only tools see the
/// disk as in use and leave it alone.
fn protective_mbr(total_sectors: u64) -> Vec<u8> {
    let mut mbr = vec![0u8; SECTOR_BYTES as usize];
    let size = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    let e = &mut mbr[446..462];
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    e[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOTAL: u64 = 64 * 2048;

    fn part(name: &str, first_lba: u64, last_lba: u64) -> Partition {
        Partition {
            type_guid: LINUX_DATA_TYPE,
            unique_guid: Guid::v4_from([0x11; 16]),
            first_lba,
            last_lba,
            name: name.to_owned(),
        }
    }

    fn le_u64(b: &[u8]) -> u64 {
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    }

    #[test]
    fn type_guids_have_their_on_disk_bytes() {
        assert_eq!(
            ESP_TYPE.to_gpt_bytes(),
            [0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]
        );
        assert_eq!(ESP_TYPE.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(LINUX_DATA_TYPE.to_string(), "0fc63daf-8483-4772-8e79-3d69d8477de4");
    }

    #[test]
    fn v4_sets_the_version_and_variant_bits() {
        let g = Guid::v4_from([0xff; 16]);
        assert_eq!(g.to_string(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let g = Guid::v4_from([0; 16]);
        assert_eq!(g.to_string(), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn headers_point_at_each_other_and_carry_their_crcs() {
        let parts = [part("edge-esp", 2048, 4095), part("edge-slot-a", 4096, 8191)];
        let t = encode(Guid::v4_from([0x22; 16]), TOTAL, &parts).expect("valid");
        assert_eq!(t.head.len() as u64, 34 * SECTOR_BYTES);
        assert_eq!(t.tail.len() as u64, 33 * SECTOR_BYTES);
        assert_eq!(t.tail_lba, TOTAL - 33);
        let primary = &t.head[512..1024];
        let backup = &t.tail[t.tail.len() - 512..];
        let entries = &t.head[1024..];
        assert_eq!(entries, &t.tail[..t.tail.len() - 512]);
        for (h, my, alternate, entries_lba) in [(primary, 1, TOTAL - 1, 2), (backup, TOTAL - 1, 1, TOTAL - 33)] {
            assert_eq!(&h[0..8], b"EFI PART");
            let mut zeroed = h[..92].to_vec();
            zeroed[16..20].fill(0);
            assert_eq!(h[16..20], crc32fast::hash(&zeroed).to_le_bytes());
            assert_eq!(le_u64(&h[24..32]), my);
            assert_eq!(le_u64(&h[32..40]), alternate);
            assert_eq!(le_u64(&h[40..48]), 34);
            assert_eq!(le_u64(&h[48..56]), TOTAL - 34);
            assert_eq!(le_u64(&h[72..80]), entries_lba);
            assert_eq!(h[88..92], crc32fast::hash(entries).to_le_bytes());
            assert!(h[92..].iter().all(|&b| b == 0));
        }
        assert_eq!(&t.head[510..512], &[0x55, 0xAA]);
        assert_eq!(t.head[446 + 4], 0xEE);
    }

    #[test]
    fn entries_hold_guids_lbas_and_utf16_names() {
        let parts = [part("edge-esp", 2048, 4095), part("edge-slot-a", 4096, 8191)];
        let t = encode(Guid::v4_from([0x22; 16]), TOTAL, &parts).expect("valid");
        let e = &t.head[1024 + 128..1024 + 256];
        assert_eq!(e[0..16], LINUX_DATA_TYPE.to_gpt_bytes());
        assert_eq!(le_u64(&e[32..40]), 4096);
        assert_eq!(le_u64(&e[40..48]), 8191);
        let name: Vec<u16> =
            e[56..].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
        assert_eq!(String::from_utf16(&name).expect("utf-16"), "edge-slot-a");
        assert!(t.head[1024 + 256..].iter().all(|&b| b == 0), "unused entries are zero");
    }

    #[test]
    fn bad_placements_and_names_are_refused() {
        let g = Guid::v4_from([0; 16]);
        let check = |parts: &[Partition], ok: bool| assert_eq!(encode(g, TOTAL, parts).is_ok(), ok, "{parts:?}");
        check(&[part("a", 34, TOTAL - 34)], true);
        check(&[part("a", 33, 100)], false);
        check(&[part("a", 34, TOTAL - 33)], false);
        check(&[part("a", 100, 99)], false);
        check(&[part("a", 2048, 4095), part("b", 4095, 8191)], false);
        check(&[part("b", 4096, 8191), part("a", 2048, 4095)], false);
        check(&[part(&"x".repeat(36), 2048, 4095)], true);
        check(&[part(&"x".repeat(37), 2048, 4095)], false);
        assert!(matches!(encode(g, 10, &[]), Err(Invalid::Placement(_))));
    }
}
