//! The compiled U-Boot script, `boot.scr`: the legacy U-Boot image that `mkimage -A arm64 -O linux -T script -C none
//! -n NAME -d boot.cmd boot.scr` writes, which U-Boot's `source` command (and so its distro boot) runs.
//!
//! The format (U-Boot's `include/image.h`, the legacy image header, and `tools/mkimage.c` for a script): a 64-byte
//! header of big-endian fields, then the data. The header holds, in order: the magic `0x27051956`; the CRC-32 of
//! the header with this field zero; the creation time (seconds since 1970); the data's size; the load and entry
//! addresses (0 for a script); the CRC-32 of the data; one byte each for the OS (Linux, 5), the architecture (arm64,
//! 22), the image type (script, 6) and the compression (none, 0); and a 32-byte name, zero padded and not
//! necessarily zero terminated. The data of a script is a "multi-file" image of one file: its length as a
//! big-endian u32, a u32 zero ending the list of lengths, then the script's bytes, with no padding after them. The
//! CRC is the IEEE one (zlib's `crc32`).
//!
//! It is a module of its own because it is a byte format: pure, and checked byte for byte against the real
//! `mkimage` (here against a vector made by it, and in `tests/disk.rs` against `mkimage` itself).

/// The legacy image magic (`IH_MAGIC`).
pub const MAGIC: u32 = 0x2705_1956;
/// Bytes of the header.
pub const HEADER_BYTES: usize = 64;
/// Bytes of the name field (`IH_NMLEN`).
pub const NAME_BYTES: usize = 32;
/// `IH_OS_LINUX`.
const OS_LINUX: u8 = 5;
/// `IH_ARCH_ARM64`.
const ARCH_ARM64: u8 = 22;
/// `IH_TYPE_SCRIPT`.
const TYPE_SCRIPT: u8 = 6;
/// `IH_COMP_NONE`.
const COMP_NONE: u8 = 0;

/// The image of `script` (the source text, `boot.cmd`), named `name` and stamped `time` (seconds since 1970), as
/// `mkimage` writes it with `SOURCE_DATE_EPOCH=time`. Only the first [`NAME_BYTES`] bytes of `name` are kept, as
/// `mkimage -n` keeps them.
///
/// Panics if the script is 4 GiB or more, which the format cannot say; `uboot::read_boot_script` allows 1 MiB.
pub fn encode(script: &[u8], name: &str, time: u32) -> Vec<u8> {
    let script_len = u32::try_from(script.len()).expect("a script is at most 1 MiB (uboot::MAX_SCRIPT_BYTES)");
    let mut data = Vec::with_capacity(8 + script.len());
    data.extend_from_slice(&script_len.to_be_bytes());
    data.extend_from_slice(&0u32.to_be_bytes());
    data.extend_from_slice(script);
    let data_len = u32::try_from(data.len()).expect("8 bytes more than a script of at most 1 MiB");

    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    // h[4..8], the header CRC, stays zero until the rest is in place.
    h[8..12].copy_from_slice(&time.to_be_bytes());
    h[12..16].copy_from_slice(&data_len.to_be_bytes());
    // h[16..20] and h[20..24], the load and entry addresses, are zero for a script.
    h[24..28].copy_from_slice(&crc32fast::hash(&data).to_be_bytes());
    h[28..32].copy_from_slice(&[OS_LINUX, ARCH_ARM64, TYPE_SCRIPT, COMP_NONE]);
    let name = &name.as_bytes()[..name.len().min(NAME_BYTES)];
    h[32..32 + name.len()].copy_from_slice(name);
    let hcrc = crc32fast::hash(&h);
    h[4..8].copy_from_slice(&hcrc.to_be_bytes());

    let mut out = h.to_vec();
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    /// `printf 'echo hi\n' > t.cmd; SOURCE_DATE_EPOCH=315532800 mkimage -A arm64 -O linux -T script -C none
    /// -n "edge boot script" -d t.cmd t.scr` (u-boot-tools 2023.01), `xxd -p t.scr`.
    const ECHO_HI: &str = "
        27051956 03d85386 12cea600 00000010 00000000 00000000 d9340162 05160600
        65646765 20626f6f 74207363 72697074 00000000 00000000 00000000 00000000
        00000008 00000000 6563686f 2068690a";

    #[test]
    fn the_image_is_what_mkimage_writes() {
        assert_eq!(encode(b"echo hi\n", "edge boot script", 315_532_800), unhex(ECHO_HI));
    }

    #[test]
    fn the_header_describes_the_data() {
        let script = b"setenv a 1\nboot\n";
        let img = encode(script, "", 0);
        let be = |at: usize| u32::from_be_bytes([img[at], img[at + 1], img[at + 2], img[at + 3]]);
        assert_eq!(img.len(), HEADER_BYTES + 8 + script.len(), "no padding after an odd-sized script");
        assert_eq!(be(0), MAGIC);
        assert_eq!(be(8), 0);
        assert_eq!(be(12) as usize, 8 + script.len());
        assert_eq!(be(24), crc32fast::hash(&img[HEADER_BYTES..]));
        assert_eq!(img[28..32], [5, 22, 6, 0]);
        assert_eq!(img[32..64], [0; 32]);
        let mut zeroed = img[..HEADER_BYTES].to_vec();
        zeroed[4..8].fill(0);
        assert_eq!(be(4), crc32fast::hash(&zeroed));
        assert_eq!(be(HEADER_BYTES) as usize, script.len());
        assert_eq!(be(HEADER_BYTES + 4), 0);
        assert_eq!(&img[HEADER_BYTES + 8..], script);
    }

    #[test]
    fn a_long_name_is_cut_to_32_bytes_unterminated() {
        let img = encode(b"x", &"n".repeat(40), 0);
        assert_eq!(img[32..64], [b'n'; 32]);
        assert_eq!(img[64..68], 1u32.to_be_bytes(), "the data follows the 64-byte header");
    }
}
