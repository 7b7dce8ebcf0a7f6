//! The one GUID partition table of the workspace (UEFI 2.10, chapter 5): an encoder for 512-byte logical blocks
//! (the protective MBR, the primary header and entry array, and their backups at the end of the disk) and a
//! reader of the primary table, for 512- and 4096-byte blocks.
//!
//! It is a module of its own because it is a byte format with its own rules (CRCs, mixed-endian GUIDs, UTF-16LE
//! names): `edge-image disk` and the test harnesses write it, `partition` reads it when the kernel did not, and
//! all of them agree because there is only this one. The encoder is pure; `sgdisk` and `sfdisk` check what it
//! writes, and the reader reads what `sgdisk` writes (`tests/gpt_tools.rs`).

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use crate::error::{Error, Result};

/// Bytes of a logical block, for the encoder.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

    /// The GUID stored as `bytes` in a GPT (the inverse of [`Guid::to_gpt_bytes`]).
    pub fn from_gpt_bytes(bytes: [u8; 16]) -> Guid {
        // Reversing the same three fields undoes it.
        Guid(Guid(bytes).to_gpt_bytes())
    }

    /// Whether every byte is zero, as the type of an unused entry is.
    pub fn is_zero(self) -> bool {
        self.0.iter().all(|&b| b == 0)
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

/// One partition entry, to encode.
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

impl Table {
    /// Writes the table into `disk`, a whole disk image in memory (as long as the disk the table was encoded for).
    pub fn place(&self, disk: &mut [u8]) {
        let tail_at = (self.tail_lba * SECTOR_BYTES) as usize;
        disk[..self.head.len()].copy_from_slice(&self.head);
        disk[tail_at..tail_at + self.tail.len()].copy_from_slice(&self.tail);
    }
}

/// Encodes the table of a disk of `total_sectors` sectors holding `partitions`, in order and not overlapping.
pub fn encode(disk_guid: Guid, total_sectors: u64, partitions: &[Partition]) -> Result<Table> {
    if partitions.len() > N_ENTRIES {
        return Err(Error::GptTooManyPartitions { n_partitions: partitions.len(), max: N_ENTRIES });
    }
    if total_sectors < 2 * (1 + TABLE_SECTORS) + 1 {
        return Err(Error::GptDiskTooSmall { total_sectors });
    }
    let last_usable = last_usable_lba(total_sectors);
    let mut next_free = first_usable_lba();
    let mut entries = vec![0u8; N_ENTRIES * ENTRY_BYTES];
    for (p, e) in partitions.iter().zip(entries.chunks_mut(ENTRY_BYTES)) {
        if p.first_lba < next_free || p.last_lba < p.first_lba || p.last_lba > last_usable {
            return Err(Error::GptPlacement {
                name: p.name.clone(),
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                free_lba: next_free,
                last_usable_lba: last_usable,
            });
        }
        next_free = p.last_lba + 1;
        e[0..16].copy_from_slice(&p.type_guid.to_gpt_bytes());
        e[16..32].copy_from_slice(&p.unique_guid.to_gpt_bytes());
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        // Bytes 48..56, the attributes, stay zero.
        let units: Vec<u16> = p.name.encode_utf16().collect();
        if units.len() > MAX_NAME_UNITS {
            return Err(Error::GptNameTooLong { name: p.name.clone(), max_units: MAX_NAME_UNITS });
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

/// The primary header of a disk's GPT, as read: where its entries are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The logical block size the table was found with (512 or 4096).
    pub sector_bytes: u64,
    /// The disk's GUID.
    pub disk_guid: Guid,
    /// Where the entry array starts, in bytes.
    pub entries_offset: u64,
    /// How many entries the array has.
    pub n_entries: u32,
    /// Bytes of one entry (at least 128).
    pub entry_bytes: u32,
}

/// One used partition entry, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its number, from 1 (what the kernel calls PARTN).
    pub number: u32,
    /// What the partition holds.
    pub type_guid: Guid,
    /// Its own identity (`PARTUUID=`).
    pub unique_guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// Its name (`PARTLABEL=`); empty when it has none.
    pub name: String,
}

/// The primary GPT header in the first 8 KiB of a disk (`head`), for 512- or 4096-byte sectors (UEFI 2.10,
/// 5.3.2). The CRCs are not checked: the table is read only to name partitions the kernel already found.
pub fn parse_header(head: &[u8]) -> Option<Header> {
    [512usize, 4096].into_iter().find_map(|sector| {
        let h = head.get(sector..sector + HEADER_BYTES)?;
        if &h[..8] != b"EFI PART" {
            return None;
        }
        let le64 = |at: usize| h[at..at + 8].try_into().ok().map(u64::from_le_bytes);
        let le32 = |at: usize| h[at..at + 4].try_into().ok().map(u32::from_le_bytes);
        let disk: [u8; 16] = h[56..72].try_into().ok()?;
        let (entries_lba, n_entries, entry_bytes) = (le64(72)?, le32(80)?, le32(84)?);
        (entry_bytes >= ENTRY_BYTES as u32).then_some(Header {
            sector_bytes: sector as u64,
            disk_guid: Guid::from_gpt_bytes(disk),
            entries_offset: entries_lba.checked_mul(sector as u64)?,
            n_entries,
            entry_bytes,
        })
    })
}

/// The first 8 KiB of a disk (less for a smaller one): where a partition table's headers are.
pub fn read_head<D: Read>(disk: &mut D) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(8192);
    disk.take(8192).read_to_end(&mut head)?;
    Ok(head)
}

/// The GPT header of `disk`, if it has one.
pub fn read_header<D: Read + Seek>(disk: &mut D) -> io::Result<Option<Header>> {
    disk.seek(SeekFrom::Start(0))?;
    Ok(parse_header(&read_head(disk)?))
}

/// Entry `number` (from 1) of the table `header` describes; `None` when it is out of range or unused.
pub fn read_entry<D: Read + Seek>(disk: &mut D, header: &Header, number: u32) -> io::Result<Option<Entry>> {
    if number == 0 || number > header.n_entries {
        return Ok(None);
    }
    disk.seek(SeekFrom::Start(header.entries_offset + u64::from(number - 1) * u64::from(header.entry_bytes)))?;
    let mut e = [0u8; ENTRY_BYTES];
    disk.read_exact(&mut e)?;
    Ok(parse_entry(number, &e))
}

/// Every used entry of `disk`'s GPT, in order; `None` when the disk has no GPT.
pub fn read_entries<D: Read + Seek>(disk: &mut D) -> io::Result<Option<(Header, Vec<Entry>)>> {
    let Some(header) = read_header(disk)? else { return Ok(None) };
    let mut entries = Vec::new();
    for number in 1..=header.n_entries {
        if let Some(e) = read_entry(disk, &header, number)? {
            entries.push(e);
        }
    }
    Ok(Some((header, entries)))
}

/// One 128-byte entry; `None` for an unused one (a zero type GUID).
fn parse_entry(number: u32, e: &[u8; ENTRY_BYTES]) -> Option<Entry> {
    let guid = |at: usize| Guid::from_gpt_bytes(e[at..at + 16].try_into().expect("a 16-byte slice"));
    let lba = |at: usize| u64::from_le_bytes(e[at..at + 8].try_into().expect("an 8-byte slice"));
    let type_guid = guid(0);
    if type_guid.is_zero() {
        return None;
    }
    let units: Vec<u16> =
        e[56..].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
    Some(Entry {
        number,
        type_guid,
        unique_guid: guid(16),
        first_lba: lba(32),
        last_lba: lba(40),
        name: String::from_utf16_lossy(&units),
    })
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
        assert_eq!(Guid::from_gpt_bytes(ESP_TYPE.to_gpt_bytes()), ESP_TYPE);
        assert_eq!(ESP_TYPE.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(LINUX_DATA_TYPE.to_string(), "0fc63daf-8483-4772-8e79-3d69d8477de4");
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
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
        assert!(matches!(encode(g, 10, &[]), Err(Error::GptDiskTooSmall { total_sectors: 10 })));
        assert!(matches!(
            encode(g, TOTAL, &[part(&"x".repeat(37), 2048, 4095)]),
            Err(Error::GptNameTooLong { max_units: 36, .. })
        ));
        assert!(matches!(
            encode(g, TOTAL, &[part("a", 33, 100)]),
            Err(Error::GptPlacement { first_lba: 33, free_lba: 34, .. })
        ));
        let many = vec![part("a", 34, 34); N_ENTRIES + 1];
        assert!(matches!(encode(g, TOTAL, &many), Err(Error::GptTooManyPartitions { n_partitions: 129, max: 128 })));
    }

    #[test]
    fn the_reader_reads_what_the_encoder_wrote() {
        let parts = [part("edge-esp", 2048, 4095), part("ÿ-root", 4096, 8191)];
        let disk_guid = Guid::v4_from([0x22; 16]);
        let mut disk = vec![0u8; (TOTAL * SECTOR_BYTES) as usize];
        encode(disk_guid, TOTAL, &parts).expect("valid").place(&mut disk);
        let (header, entries) = read_entries(&mut io::Cursor::new(&disk)).expect("read").expect("a GPT");
        assert_eq!(
            header,
            Header { sector_bytes: 512, disk_guid, entries_offset: 1024, n_entries: 128, entry_bytes: 128 }
        );
        let got: Vec<(u32, &str, u64, u64)> =
            entries.iter().map(|e| (e.number, e.name.as_str(), e.first_lba, e.last_lba)).collect();
        assert_eq!(got, [(1, "edge-esp", 2048, 4095), (2, "ÿ-root", 4096, 8191)]);
        assert!(entries.iter().all(|e| e.type_guid == LINUX_DATA_TYPE && e.unique_guid == parts[0].unique_guid));
        assert_eq!(read_entry(&mut io::Cursor::new(&disk), &header, 3).expect("read"), None);
        assert_eq!(read_entry(&mut io::Cursor::new(&disk), &header, 0).expect("read"), None);
        assert_eq!(read_entry(&mut io::Cursor::new(&disk), &header, 129).expect("read"), None);
        // No table: no header.
        assert_eq!(read_entries(&mut io::Cursor::new(vec![0u8; 4096])).expect("read"), None);
        assert_eq!(read_entries(&mut io::Cursor::new(Vec::new())).expect("read"), None);
    }
}
