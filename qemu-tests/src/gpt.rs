//! A GUID partition table with one EFI system partition, written by hand.
//!
//! The harness builds images without root, loop devices or `sgdisk`, and the production disk is GPT with an ESP, so
//! this module writes the protective MBR, the primary and the backup GPT (UEFI 2.x, chapter 5) for a disk whose only
//! partition is the ESP. The GUIDs are fixed so that the same inputs give the same image.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Logical block size of the emulated disk.
pub const SECTOR_BYTES: u64 = 512;

/// First LBA of the ESP: 1 MiB, the usual alignment.
pub const ESP_FIRST_LBA: u64 = 2048;

/// Number of partition entries in each table, and the size of one.
const N_ENTRIES: u64 = 128;
const ENTRY_BYTES: u64 = 128;
/// Sectors taken by one partition entry array.
const ENTRIES_SECTORS: u64 = N_ENTRIES * ENTRY_BYTES / SECTOR_BYTES;

/// `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`, the EFI system partition type, in its on-disk byte order.
const ESP_TYPE: [u8; 16] = guid(0xC12A_7328, 0xF81F, 0x11D2, [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]);
/// The disk GUID of every harness image.
const DISK_GUID: [u8; 16] = guid(0x6564_6765, 0x7165, 0x4d75, [0x80, 0x00, 0x64, 0x69, 0x73, 0x6b, 0x00, 0x01]);
/// The unique GUID of every harness ESP.
const ESP_GUID: [u8; 16] = guid(0x6564_6765, 0x7165, 0x4d75, [0x80, 0x00, 0x65, 0x73, 0x70, 0x00, 0x00, 0x01]);

/// A GUID in the mixed-endian byte order GPT stores: the first three fields little-endian, the rest as written.
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

/// The sectors of the ESP on a disk of `total_sectors`: from [`ESP_FIRST_LBA`] to the last usable LBA.
pub fn esp_sectors(total_sectors: u64) -> u64 {
    last_usable_lba(total_sectors) - ESP_FIRST_LBA + 1
}

fn last_usable_lba(total_sectors: u64) -> u64 {
    total_sectors - 1 - ENTRIES_SECTORS - 1
}

/// Writes the protective MBR and both GPTs onto `file`, a disk of `total_sectors` sectors.
pub fn write(file: &File, path: &Path, total_sectors: u64) -> Result<()> {
    let entries = entries(total_sectors);
    let entries_crc = crc32(&entries);
    let backup_header_lba = total_sectors - 1;
    let backup_entries_lba = backup_header_lba - ENTRIES_SECTORS;
    let primary = header(1, backup_header_lba, 2, total_sectors, entries_crc);
    let backup = header(backup_header_lba, 1, backup_entries_lba, total_sectors, entries_crc);
    let writes: [(&[u8], u64); 5] = [
        (&protective_mbr(total_sectors), 0),
        (&primary, 1),
        (&entries, 2),
        (&entries, backup_entries_lba),
        (&backup, backup_header_lba),
    ];
    for (bytes, lba) in writes {
        file.write_all_at(bytes, lba * SECTOR_BYTES)
            .map_err(|source| Error::WriteFile { path: path.to_owned(), source })?;
    }
    Ok(())
}

/// Sector 0: one partition of type 0xEE covering the disk, so MBR-only tools leave the GPT alone.
fn protective_mbr(total_sectors: u64) -> [u8; 512] {
    let mut mbr = [0u8; 512];
    let size = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    mbr[446..462].copy_from_slice(&{
        let mut entry = [0u8; 16];
        entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
        entry[4] = 0xEE;
        entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        entry[8..12].copy_from_slice(&1u32.to_le_bytes());
        entry[12..16].copy_from_slice(&size.to_le_bytes());
        entry
    });
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

/// One GPT header sector.
fn header(my_lba: u64, alternate_lba: u64, entries_lba: u64, total_sectors: u64, entries_crc: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
    h[40..48].copy_from_slice(&(2 + ENTRIES_SECTORS).to_le_bytes());
    h[48..56].copy_from_slice(&last_usable_lba(total_sectors).to_le_bytes());
    h[56..72].copy_from_slice(&DISK_GUID);
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&(N_ENTRIES as u32).to_le_bytes());
    h[84..88].copy_from_slice(&(ENTRY_BYTES as u32).to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The partition entry array: the ESP, then empty entries.
fn entries(total_sectors: u64) -> Vec<u8> {
    let mut entries = vec![0u8; (N_ENTRIES * ENTRY_BYTES) as usize];
    let esp = &mut entries[..ENTRY_BYTES as usize];
    esp[0..16].copy_from_slice(&ESP_TYPE);
    esp[16..32].copy_from_slice(&ESP_GUID);
    esp[32..40].copy_from_slice(&ESP_FIRST_LBA.to_le_bytes());
    esp[40..48].copy_from_slice(&last_usable_lba(total_sectors).to_le_bytes());
    for (i, unit) in "EFI System".encode_utf16().enumerate() {
        esp[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    entries
}

/// CRC-32 (IEEE 802.3, reflected, as GPT uses); bitwise, since it runs over a few KiB per image.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn esp_type_guid_bytes() {
        assert_eq!(
            ESP_TYPE,
            [0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]
        );
    }

    #[test]
    fn headers_point_at_each_other_and_carry_their_crc() {
        let total = 32 * 2048;
        let entries = entries(total);
        let primary = header(1, total - 1, 2, total, crc32(&entries));
        let backup = header(total - 1, 1, total - 33, total, crc32(&entries));
        for (h, my, alternate, entries_lba) in [(&primary, 1, total - 1, 2), (&backup, total - 1, 1, total - 33)] {
            let mut zeroed = h[..92].to_vec();
            zeroed[16..20].fill(0);
            assert_eq!(h[16..20], crc32(&zeroed).to_le_bytes());
            assert_eq!(h[24..32], u64::to_le_bytes(my));
            assert_eq!(h[32..40], u64::to_le_bytes(alternate));
            assert_eq!(h[72..80], u64::to_le_bytes(entries_lba));
        }
        assert_eq!(entries[40..48], u64::to_le_bytes(total - 34));
        assert_eq!(esp_sectors(total), total - 34 - 2048 + 1);
    }
}
