//! One copy of a U-Boot environment, as bytes: the variables ([`Env`]) and the block that holds them. It is apart
//! from the store so that the format can be encoded, decoded and tested without a device.
//!
//! Byte layout of one copy of `size` bytes (U-Boot's `include/env_internal.h`, `env_t`):
//!
//! - bytes 0..4: the CRC-32 (zlib's, the IEEE polynomial) of everything after the header, padding included,
//!   little-endian as on every ARM and x86 board (`mkenvimage -b` makes big-endian ones, which are not supported);
//! - a redundant copy only: byte 4, the flags, outside the CRC;
//! - then the data: `name=value\0` for each variable, one more `\0`, and padding to the end.
//!
//! U-Boot's export (`hexport_r`) writes variables sorted by name with `strcmp` and pads with `0x00`; libubootenv
//! keeps its list sorted the same way and pads with whatever its heap buffer held; `mkenvimage` keeps its input's
//! order and pads with `0xff` unless given `-p`. The CRC covers the padding, so any padding reads back; [`Env`] keeps
//! variables sorted by name, so what it encodes is what U-Boot and `fw_setenv` would write for the same variables.

use std::collections::BTreeMap;

use super::copies::{select, CopyChoice, FlagScheme, OtherCopy};
use super::error::{Error, Result};

/// Bytes of the CRC at the start of every copy.
pub const CRC_LEN: usize = 4;
/// The padding U-Boot's `env save` writes after the data.
pub const PAD_UBOOT: u8 = 0x00;
/// The padding `mkenvimage` writes after the data unless given `-p`.
pub const PAD_MKENVIMAGE: u8 = 0xff;

/// The variables of an environment, sorted by name as U-Boot and libubootenv store them.
///
/// Values are kept as raw as the Linux tools keep them. U-Boot itself escapes `\` as `\\` when it saves and
/// unescapes when it loads, and it drops a variable whose value is empty; neither matters for names and values
/// without a backslash that are not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// An empty environment.
    pub fn new() -> Env {
        Env::default()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        check_name(name)?;
        if value.contains('\0') {
            return Err(Error::InvalidValue { name: name.to_owned() });
        }
        self.vars.insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    /// Removes `name`.
    pub fn unset(&mut self, name: &str) {
        self.vars.remove(name);
    }

    /// The variables, sorted by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Bytes the data takes: every `name=value\0` and the final `\0`.
    pub fn data_len(&self) -> usize {
        self.vars.iter().map(|(n, v)| n.len() + v.len() + 2).sum::<usize>() + 1
    }
}

/// Refuses names U-Boot's import (`himport_r`) would not read back as themselves: it skips leading blanks, takes a
/// `#` line for a comment and ends a name at `=`.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['=', '\0']) || name.starts_with([' ', '\t', '#']) {
        return Err(Error::InvalidName { name: name.to_owned() });
    }
    Ok(())
}

/// The header in front of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A single environment: the CRC only.
    Single,
    /// One copy of a redundant environment: the CRC and the flags byte.
    Redundant {
        /// The flags byte.
        flags: u8,
    },
}

impl Header {
    /// Bytes in front of the data.
    pub fn header_len(self) -> usize {
        match self {
            Header::Single => CRC_LEN,
            Header::Redundant { .. } => CRC_LEN + 1,
        }
    }
}

/// Encodes `env` in a block of `size` bytes with `header`, filling the rest with `pad`.
pub fn encode(env: &Env, size: usize, header: Header, pad: u8) -> Result<Vec<u8>> {
    let start = header.header_len();
    let available = size.saturating_sub(start);
    let needed = env.data_len();
    if needed > available {
        return Err(Error::TooLarge { needed, available });
    }
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(&[0; CRC_LEN]);
    if let Header::Redundant { flags } = header {
        b.push(flags);
    }
    for (n, v) in &env.vars {
        b.extend_from_slice(n.as_bytes());
        b.push(b'=');
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b.push(0);
    b.resize(size, pad);
    let crc = crc32fast::hash(&b[start..]);
    b[..CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(b)
}

/// Encodes a single environment of `size` bytes as U-Boot's `env save` writes it (zero padding).
pub fn encode_single(env: &Env, size: usize) -> Result<Vec<u8>> {
    encode(env, size, Header::Single, PAD_UBOOT)
}

/// Encodes one copy of a redundant environment of `size` bytes with `flags` (zero padding).
pub fn encode_redundant(env: &Env, size: usize, flags: u8) -> Result<Vec<u8>> {
    encode(env, size, Header::Redundant { flags }, PAD_UBOOT)
}

/// The CRC stored in a block and the one its data has, for a block of at least `start` bytes.
fn crcs(block: &[u8], start: usize) -> (u32, u32) {
    let mut stored = [0; CRC_LEN];
    stored.copy_from_slice(&block[..CRC_LEN]);
    (u32::from_le_bytes(stored), crc32fast::hash(&block[start..]))
}

pub(super) fn check_len(size: usize, header: Header) -> Result<()> {
    let min = header.header_len() + 1;
    if size < min {
        return Err(Error::BlockTooSmall { size, min });
    }
    Ok(())
}

/// Decodes a single environment block.
pub fn decode_single(block: &[u8]) -> Result<Env> {
    check_len(block.len(), Header::Single)?;
    let (stored, computed) = crcs(block, CRC_LEN);
    if stored != computed {
        return Err(Error::BadCrc { stored, computed });
    }
    decode_data(block, CRC_LEN)
}

/// The flags of one redundant copy if its CRC is good.
pub(super) fn valid_flags(block: &[u8]) -> Option<u8> {
    let (stored, computed) = crcs(block, CRC_LEN + 1);
    (stored == computed).then_some(block[CRC_LEN])
}

/// Decodes a redundant environment from its two copies as U-Boot does: the copy [`select`] picks is read, whatever
/// the other holds.
pub fn decode_redundant(primary: &[u8], redundant: &[u8], scheme: FlagScheme) -> Result<(Env, CopyChoice)> {
    if primary.len() != redundant.len() {
        return Err(Error::SizeMismatch { primary: primary.len(), redundant: redundant.len() });
    }
    check_len(primary.len(), Header::Redundant { flags: 0 })?;
    decode_copies([Some(primary), Some(redundant)], scheme)
}

/// Decodes a redundant environment from the copies that are there (each at least a header and a NUL long): a
/// missing copy counts as one with a bad CRC.
pub(super) fn decode_copies(blocks: [Option<&[u8]>; 2], scheme: FlagScheme) -> Result<(Env, CopyChoice)> {
    let flags = blocks.map(|b| b.and_then(valid_flags));
    let (current, current_flags) = select(flags[0], flags[1], scheme).ok_or(Error::NoValidCopy)?;
    let other = match flags[current.other().index()] {
        Some(flags) => OtherCopy::Valid { flags },
        None => OtherCopy::BadCrc,
    };
    let block = blocks[current.index()].expect("a copy with valid flags is there");
    let env = decode_data(block, CRC_LEN + 1)?;
    Ok((env, CopyChoice { current, flags: current_flags, other }))
}

/// Decodes the data of a block from byte `start` on; offsets in errors count from the start of the block.
///
/// Stricter than U-Boot's import, which skips what it cannot use: an entry without `=`, a duplicate name, a name
/// U-Boot would rewrite or bytes that are not UTF-8 mean the block was not written by U-Boot or its tools, and
/// reading it as if it were could hide damage.
fn decode_data(block: &[u8], start: usize) -> Result<Env> {
    let mut env = Env::new();
    let mut p = start;
    loop {
        let Some(len) = block[p..].iter().position(|&c| c == 0) else { return Err(Error::Unterminated { offset: p }) };
        if len == 0 {
            return Ok(env);
        }
        let entry = &block[p..p + len];
        let Some(eq) = entry.iter().position(|&c| c == b'=') else { return Err(Error::NoEquals { offset: p }) };
        let (Ok(name), Ok(value)) = (std::str::from_utf8(&entry[..eq]), std::str::from_utf8(&entry[eq + 1..])) else {
            return Err(Error::NotUtf8 { offset: p });
        };
        check_name(name)?;
        if env.vars.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(Error::DuplicateName { name: name.to_owned() });
        }
        p += len + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uboot::test_env::env;
    use crate::uboot::CopyId;
    use std::path::{Path, PathBuf};

    #[test]
    fn round_trips() {
        let check = |vars: &[(&str, &str)], size: usize| {
            let e = env(vars);
            for pad in [PAD_UBOOT, PAD_MKENVIMAGE] {
                let b = encode(&e, size, Header::Single, pad).expect("fits");
                assert_eq!(b.len(), size);
                assert_eq!(decode_single(&b).expect("decodes"), e, "{vars:?} pad {pad:#x}");
                let r = encode(&e, size, Header::Redundant { flags: 7 }, pad).expect("fits");
                let (back, choice) = decode_redundant(&r, &r, FlagScheme::Incremental).expect("decodes");
                assert_eq!(back, e);
                let expected = CopyChoice { current: CopyId::Primary, flags: 7, other: OtherCopy::Valid { flags: 7 } };
                assert_eq!(choice, expected);
            }
        };
        check(&[], 6);
        check(&[], 0x2000);
        check(&[("a", "1")], 64);
        check(&[("bootcmd", "run a; run b"), ("empty", ""), ("x", "=y=")], 256);
        check(&[("path", "C:\\dir\\"), ("two", "line\nbreak"), ("utf8", "grüße")], 256);
        check(&[(".flags", "a:sa"), ("a", "1")], 256);
    }

    #[test]
    fn layout_is_u_boots() {
        // Sorted by name (bytewise, as strcmp), NUL after each entry, one more NUL, zeros to the end.
        let e = env(&[("b", "2"), ("a", "1"), ("B", "x y")]);
        let b = encode_single(&e, 32).expect("fits");
        let data = b"B=x y\0a=1\0b=2\0\0";
        assert_eq!(&b[4..4 + data.len()], data);
        assert!(b[4 + data.len()..].iter().all(|&c| c == 0));
        assert_eq!(b[..4], crc32fast::hash(&b[4..]).to_le_bytes());
        let r = encode(&e, 32, Header::Redundant { flags: 0x2a }, 0xff).expect("fits");
        assert_eq!(r[4], 0x2a);
        assert_eq!(&r[5..5 + data.len()], data);
        assert!(r[5 + data.len()..].iter().all(|&c| c == 0xff));
        assert_eq!(r[..4], crc32fast::hash(&r[5..]).to_le_bytes());
    }

    #[test]
    fn too_large_is_refused_exactly_at_the_limit() {
        // "a=1\0" and the final NUL: 5 bytes of data.
        let e = env(&[("a", "1")]);
        let check = |size: usize, header: Header, fits: bool| {
            let r = encode(&e, size, header, 0);
            if fits {
                assert!(r.is_ok(), "{size} {header:?}: {r:?}");
            } else {
                assert!(matches!(r, Err(Error::TooLarge { needed: 5, .. })), "{size} {header:?}: {r:?}");
            }
        };
        check(9, Header::Single, true);
        check(8, Header::Single, false);
        check(10, Header::Redundant { flags: 1 }, true);
        check(9, Header::Redundant { flags: 1 }, false);
        check(2, Header::Single, false);
        assert!(matches!(encode(&Env::new(), 4, Header::Single, 0), Err(Error::TooLarge { needed: 1, available: 0 })));
    }

    #[test]
    fn bad_single_blocks_are_refused() {
        let good = encode_single(&env(&[("a", "1"), ("b", "2")]), 64).expect("fits");
        // Rebuilds the CRC over `data` so that only the data is wrong.
        let with_data = |data: &[u8]| {
            let mut b = vec![0; 4];
            b.extend_from_slice(data);
            b.resize(64, 0);
            let crc = crc32fast::hash(&b[4..]);
            b[..4].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let check = |b: &[u8], expected: fn(&Error) -> bool| {
            let r = decode_single(b);
            assert!(r.as_ref().is_err_and(expected), "{r:?}");
        };
        let mut flipped = good.clone();
        flipped[9] ^= 0x01;
        check(&flipped, |e| matches!(e, Error::BadCrc { .. }));
        let mut bad_crc = good.clone();
        bad_crc[0] ^= 0x80;
        check(&bad_crc, |e| matches!(e, Error::BadCrc { .. }));
        check(&good[..32], |e| matches!(e, Error::BadCrc { .. }));
        check(&good[..4], |e| matches!(e, Error::BlockTooSmall { size: 4, min: 5 }));
        check(&[], |e| matches!(e, Error::BlockTooSmall { size: 0, min: 5 }));
        let mut full = vec![0; 4];
        full.extend_from_slice(b"a=1\0b=2");
        let crc = crc32fast::hash(&full[4..]);
        full[..4].copy_from_slice(&crc.to_le_bytes());
        check(&full, |e| matches!(e, Error::Unterminated { offset: 8 }));
        let mut no_end = vec![0; 4];
        no_end.extend_from_slice(b"a=1\0");
        let crc = crc32fast::hash(&no_end[4..]);
        no_end[..4].copy_from_slice(&crc.to_le_bytes());
        check(&no_end, |e| matches!(e, Error::Unterminated { offset: 8 }));
        check(&with_data(b"a=1\0noequals\0\0"), |e| matches!(e, Error::NoEquals { offset: 8 }));
        check(&with_data(b"=1\0\0"), |e| matches!(e, Error::InvalidName { name } if name.is_empty()));
        check(&with_data(b" a=1\0\0"), |e| matches!(e, Error::InvalidName { name } if name == " a"));
        check(&with_data(b"#a=1\0\0"), |e| matches!(e, Error::InvalidName { name } if name == "#a"));
        check(&with_data(b"a=1\0a=2\0\0"), |e| matches!(e, Error::DuplicateName { name } if name == "a"));
        check(&with_data(b"a=1\0b=\xff\0\0"), |e| matches!(e, Error::NotUtf8 { offset: 8 }));
    }

    #[test]
    fn names_and_values_are_checked() {
        let check = |name: &str, value: &str, expected: fn(&Result<()>) -> bool| {
            let r = Env::new().set(name, value);
            assert!(expected(&r), "{name:?}={value:?}: {r:?}");
        };
        check("a", "", |r| r.is_ok());
        check("a.b-c_d", "x=y", |r| r.is_ok());
        check("", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("a=b", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check(" a", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("\ta", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("#a", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("a\0", "1", |r| matches!(r, Err(Error::InvalidName { .. })));
        check("a", "1\0x", |r| matches!(r, Err(Error::InvalidValue { .. })));
    }

    #[test]
    fn redundant_decode_reports_the_copies() {
        let old = env(&[("v", "old")]);
        let new = env(&[("v", "new")]);
        let a = encode_redundant(&old, 64, 3).expect("fits");
        let b = encode_redundant(&new, 64, 4).expect("fits");
        let mut torn = b.clone();
        torn[20] ^= 0xff;
        let check = |p: &[u8], r: &[u8], expected: Option<(&Env, CopyChoice)>| {
            let got = decode_redundant(p, r, FlagScheme::Incremental);
            match expected {
                Some((e, c)) => {
                    let (env, choice) = got.expect("decodes");
                    assert_eq!((&env, choice), (e, c));
                }
                None => assert!(matches!(got, Err(Error::NoValidCopy)), "{got:?}"),
            }
        };
        let c = |current, flags, other| CopyChoice { current, flags, other };
        check(&a, &b, Some((&new, c(CopyId::Redundant, 4, OtherCopy::Valid { flags: 3 }))));
        check(&b, &a, Some((&new, c(CopyId::Primary, 4, OtherCopy::Valid { flags: 3 }))));
        check(&a, &torn, Some((&old, c(CopyId::Primary, 3, OtherCopy::BadCrc))));
        check(&torn, &a, Some((&old, c(CopyId::Redundant, 3, OtherCopy::BadCrc))));
        check(&torn, &torn, None);
        assert!(matches!(
            decode_redundant(&a, &b[..32], FlagScheme::Incremental),
            Err(Error::SizeMismatch { primary: 64, redundant: 32 })
        ));
        assert!(matches!(
            decode_redundant(&a[..5], &b[..5], FlagScheme::Incremental),
            Err(Error::BlockTooSmall { size: 5, min: 6 })
        ));
        // The current copy is read even when its data is malformed: U-Boot would not fall back either.
        let mut bad = vec![0; 5];
        bad[4] = 9;
        bad.extend_from_slice(b"nope\0\0");
        bad.resize(64, 0);
        let crc = crc32fast::hash(&bad[5..]);
        bad[..4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode_redundant(&a, &bad, FlagScheme::Incremental), Err(Error::NoEquals { offset: 5 })));
    }

    /// A disk may write the sectors of one request in any order: every subset of the new copy's 512-byte sectors
    /// reaching the medium still reads as the old or the new environment.
    #[test]
    fn any_subset_of_written_sectors_reads_old_or_new() {
        let size = 0x1000;
        let n_sectors = size / 512;
        let small = |generation: usize| {
            let mut e = Env::new();
            for i in 0..30 {
                e.set(&format!("v{i}"), &format!("{generation}{}", "x".repeat(100))).expect("valid");
            }
            e
        };
        for (cur, prev) in [(5u8, 4u8), (0, 255), (255, 254)] {
            let current = encode_redundant(&small(1), size, cur).expect("fits");
            let replaced = encode_redundant(&small(0), size, prev).expect("fits");
            let new = encode_redundant(&small(2), size, FlagScheme::Incremental.next(cur)).expect("fits");
            for mask in 0u32..1 << n_sectors {
                let mut target = replaced.clone();
                for s in (0..n_sectors).filter(|s| mask & 1 << s != 0) {
                    target[s * 512..(s + 1) * 512].copy_from_slice(&new[s * 512..(s + 1) * 512]);
                }
                for (p, r) in [(&current, &target), (&target, &current)] {
                    let (got, _) = decode_redundant(p, r, FlagScheme::Incremental).expect("one copy is whole");
                    // Sectors past the data hold the same padding in both, so a mix equal to the new copy can
                    // happen before every sector is written; any other mix must fail its CRC.
                    let expected = if target == new { small(2) } else { small(1) };
                    assert!(got == expected, "flags {cur}/{prev}, sectors {mask:#b}");
                }
            }
        }
    }

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
    }

    /// The environment of the golden vectors: what a board's U-Boot environment might hold.
    fn vector_env(bootcount: &str) -> Env {
        env(&[
            ("arch", "arm"),
            ("baudrate", "115200"),
            ("board", "edge"),
            ("bootargs", "console=ttyS0,115200 rootwait"),
            ("bootcmd", "run edge_boot"),
            ("bootcount", bootcount),
            ("bootdelay", "0"),
            ("edge_boot", "load mmc 0:1 ${loadaddr} boot.scr; source ${loadaddr}"),
            ("fdtfile", "edge/board.dtb"),
            ("loadaddr", "0x82000000"),
        ])
    }

    /// Golden vectors: `uboot-env.txt` (the variables, as `fw_printenv` prints them), `uboot-single.bin` (a single
    /// environment of 0x2000 bytes) and `uboot-redundant.bin` (both copies of a redundant one, 0x2000 bytes each:
    /// the primary with flags 1 holds bootcount=1, the redundant with flags 2 the variables of `uboot-env.txt`).
    /// `UPDATE_GOLDEN=1` rewrites them; the interop test checks them against `fw_printenv` and `mkenvimage`.
    #[test]
    fn golden_vectors() {
        let size = 0x2000;
        let e = vector_env("2");
        let text: String = e.vars().map(|(n, v)| format!("{n}={v}\n")).collect();
        let single = encode_single(&e, size).expect("fits");
        let mut redundant = encode_redundant(&vector_env("1"), size, 1).expect("fits");
        redundant.extend(encode_redundant(&e, size, 2).expect("fits"));
        let files =
            [("uboot-env.txt", text.as_bytes()), ("uboot-single.bin", &single), ("uboot-redundant.bin", &redundant)];
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            for (name, bytes) in files {
                std::fs::write(vectors().join(name), bytes).expect("write vector");
            }
            return;
        }
        for (name, bytes) in files {
            let committed = std::fs::read(vectors().join(name)).expect("tests/vectors/uboot-* are committed");
            assert!(
                committed == bytes,
                "tests/vectors/{name} differs from the rebuilt one (UPDATE_GOLDEN=1 to rewrite)"
            );
        }
        assert_eq!(decode_single(&single).expect("decodes"), e);
        let (back, choice) =
            decode_redundant(&redundant[..size], &redundant[size..], FlagScheme::Incremental).expect("decodes");
        assert_eq!(back, e);
        assert_eq!(choice, CopyChoice { current: CopyId::Redundant, flags: 2, other: OtherCopy::Valid { flags: 1 } });
    }
}
