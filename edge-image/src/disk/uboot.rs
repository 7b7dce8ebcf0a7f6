//! The boot files of a U-Boot board (`[uboot]` in the layout; docs/disk-image.md, "U-Boot boards"): the script
//! source, compiled here into `boot.scr`, and the boot state, a redundant U-Boot environment written raw at the start
//! of the state partition.
//!
//! It is a module of its own, beside `esp`, because these are other files with other checks; like `esp`, it checks
//! of them only what the bootloader itself requires (a script that is text, an environment copy whose CRC holds):
//! what the script does and what the variables say are `bootctl`'s and `edge-bootctl`'s, which made them.

use std::path::Path;

use crate::disk::ext4;
use crate::disk::ubootscr;
use crate::error::{Error, Result};

/// Where U-Boot's distro boot looks for the script on the boot partition (it tries `/boot.scr` first).
pub const SCRIPT_PATH: &str = "boot.scr";
/// The name in `boot.scr`'s header, which U-Boot prints as it runs the script (`mkimage -n`).
pub const SCRIPT_NAME: &str = "edge boot script";
/// The creation time in `boot.scr`'s header: the disk's one fixed time, 1980-01-01 00:00:00 UTC, as on the FAT
/// and the ext4, so that the same script gives the same bytes (`SOURCE_DATE_EPOCH` is not read).
pub const SCRIPT_TIME: u32 = ext4::FIXED_TIME as u32;
/// The FAT volume label of the boot partition (11 bytes, space padded).
pub const VOLUME_LABEL: [u8; 11] = *b"EDGE-BOOT  ";
/// The state partition's `filesystem` in `disk --json`: no filesystem, a raw redundant U-Boot environment.
pub const STATE_FILESYSTEM: &str = "u-boot-env";
/// The largest script read: `bootctl`'s is a few KiB, and U-Boot loads the whole image into RAM before it runs it.
pub const MAX_SCRIPT_BYTES: u64 = 1 << 20;
/// Bytes of a block: each environment copy is a whole number of them, since the script reads and writes the state
/// area in blocks (`bootctl::ubootscript::BLOCK_BYTES`).
pub const BLOCK_BYTES: u64 = 512;
/// The smallest environment copy `bootctl`'s script takes (its `env_size`): 1 KiB, so 2 KiB for both copies.
pub const MIN_ENV_BYTES: u64 = 1024;
/// Bytes before a copy's data: the CRC-32 (little-endian) and the flags byte of a redundant environment.
const ENV_HEADER_BYTES: usize = 5;

/// Reads the script source and compiles it into `boot.scr` ([`ubootscr::encode`]). Refused: a script that is empty,
/// larger than [`MAX_SCRIPT_BYTES`], not UTF-8, or holding a NUL byte (U-Boot reads the script as a C string, and a
/// compiled `boot.scr` named by mistake has NULs in its header).
pub fn read_boot_script(path: &Path) -> Result<Vec<u8>> {
    let bytes = image_layout::fsutil::read_bounded(path, MAX_SCRIPT_BYTES)?;
    if bytes.is_empty() {
        return Err(Error::BootScriptEmpty { path: path.to_owned() });
    }
    let not_text = |detail: String| Error::BootScriptText { path: path.to_owned(), detail };
    if let Err(e) = std::str::from_utf8(&bytes) {
        return Err(not_text(format!("not UTF-8 at byte {}", e.valid_up_to())));
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(not_text(format!("a NUL byte at byte {at}")));
    }
    Ok(ubootscr::encode(&bytes, SCRIPT_NAME, SCRIPT_TIME))
}

/// Reads the boot state: both copies of a redundant U-Boot environment back to back, as `edge-bootctl provision`
/// writes them through an `fw_env.config` naming the file at offset 0 and at the copy size. Refused: a file larger
/// than the state partition (`state_bytes`); one that is not two copies of the same whole number of blocks, at least
/// [`MIN_ENV_BYTES`] each; one in which neither copy's CRC-32 (of everything after its flags byte) matches.
pub fn read_boot_state(path: &Path, state_bytes: u64) -> Result<Vec<u8>> {
    // The type and the length are checked before reading, so a FIFO is not waited on and a disk image named by
    // mistake is not read whole; a file over the bound is refused as too large for the partition.
    let bytes = image_layout::fsutil::read_bounded(path, state_bytes).map_err(|e| match Error::from(e) {
        Error::FileTooLarge { path, size_bytes, max_bytes } => {
            Error::UbootStateTooLarge { path, size_bytes, state_bytes: max_bytes }
        }
        e => e,
    })?;
    let size_bytes = bytes.len() as u64;
    if size_bytes < 2 * MIN_ENV_BYTES || !size_bytes.is_multiple_of(2 * BLOCK_BYTES) {
        return Err(Error::UbootStateSize { path: path.to_owned(), size_bytes });
    }
    let (copy0, copy1) = bytes.split_at(bytes.len() / 2);
    if !copy_is_whole(copy0) && !copy_is_whole(copy1) {
        return Err(Error::UbootStateCrc { path: path.to_owned(), env_bytes: copy0.len() as u64 });
    }
    Ok(bytes)
}

/// Whether one copy of a redundant environment has a good CRC, as U-Boot and `fw_printenv` check it: the CRC-32 of
/// the data, stored little-endian in the first four bytes; the fifth is the flags byte, outside the CRC.
fn copy_is_whole(copy: &[u8]) -> bool {
    let stored = u32::from_le_bytes([copy[0], copy[1], copy[2], copy[3]]);
    crc32fast::hash(&copy[ENV_HEADER_BYTES..]) == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One copy of `env_bytes`: CRC, `flags`, then `vars` NUL-separated and zero padding.
    fn copy(env_bytes: usize, flags: u8, vars: &str) -> Vec<u8> {
        let mut c = vec![0u8; env_bytes];
        c[4] = flags;
        let data: Vec<u8> = vars.split(' ').flat_map(|v| v.bytes().chain([0])).collect();
        c[5..5 + data.len()].copy_from_slice(&data);
        let crc = crc32fast::hash(&c[5..]);
        c[..4].copy_from_slice(&crc.to_le_bytes());
        c
    }

    /// Writes `bytes` as the state file and reads it with a 1 MiB partition.
    fn check(bytes: &[u8], want: std::result::Result<(), &str>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.env");
        std::fs::write(&path, bytes).expect("write");
        let got = read_boot_state(&path, 1 << 20).map(|b| assert_eq!(b, bytes)).map_err(|e| match e {
            Error::UbootStateSize { size_bytes, .. } if size_bytes == bytes.len() as u64 => "size",
            Error::UbootStateCrc { env_bytes, .. } if env_bytes == bytes.len() as u64 / 2 => "crc",
            Error::UbootStateTooLarge { state_bytes: 1_048_576, .. } => "too large",
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(got, want, "{} bytes", bytes.len());
    }

    #[test]
    fn the_state_must_hold_a_whole_environment_copy() {
        let good = |n: usize, f: u8| copy(n, f, "edge_active=A edge_a_good=1");
        let both = |a: Vec<u8>, b: Vec<u8>| [a, b].concat();
        let torn = |mut c: Vec<u8>| {
            c[40] ^= 1;
            c
        };
        check(&both(good(0x2000, 1), good(0x2000, 2)), Ok(()));
        check(&both(good(1024, 1), good(1024, 2)), Ok(()));
        check(&both(torn(good(0x2000, 1)), good(0x2000, 2)), Ok(()));
        check(&both(good(0x2000, 1), torn(good(0x2000, 2))), Ok(()));
        check(&both(vec![0; 0x2000], good(0x2000, 2)), Ok(()));
        check(&both(torn(good(0x2000, 1)), torn(good(0x2000, 2))), Err("crc"));
        check(&[0; 0x4000], Err("crc"));
        check(&[0xff; 0x4000], Err("crc"));
        // The flags byte is outside the CRC; the CRC is little-endian.
        let mut flagged = good(1024, 1);
        flagged[4] = 0x7f;
        check(&both(flagged, vec![0; 1024]), Ok(()));
        let mut swapped = good(1024, 1);
        swapped[..4].reverse();
        check(&both(swapped, vec![0; 1024]), Err("crc"));
        // Two copies of whole blocks, 1 KiB or more each.
        check(&both(good(512, 1), good(512, 2)), Err("size"));
        check(&good(0x2000, 1)[..0x1fff], Err("size"));
        // Halves of the wrong size cut the copies elsewhere: neither CRC holds.
        check(&[good(0x2000, 1), vec![0; 0x1000]].concat(), Err("crc"));
        check(&[good(0x2000, 1), good(0x2000, 2), vec![0]].concat(), Err("size"));
        check(b"", Err("size"));
        check(&both(good(0x80000, 1), good(0x80000, 2)), Ok(()));
        check(&[both(good(0x80000, 1), good(0x80000, 2)), vec![0; 1024]].concat(), Err("too large"));
    }

    #[test]
    fn a_script_must_be_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("boot.cmd");
        let read = |bytes: &[u8]| {
            std::fs::write(&path, bytes).expect("write");
            read_boot_script(&path)
        };
        let img = read(b"echo hi\n").expect("a script");
        assert_eq!(img, ubootscr::encode(b"echo hi\n", SCRIPT_NAME, 315_532_800));
        assert!(matches!(read(b""), Err(Error::BootScriptEmpty { .. })));
        assert!(matches!(read(b"echo \xff\n"), Err(Error::BootScriptText { .. })));
        assert!(matches!(read(b"echo a\0b\n"), Err(Error::BootScriptText { .. })));
        // A compiled script named by mistake.
        assert!(matches!(read(&img), Err(Error::BootScriptText { .. })));
    }
}
