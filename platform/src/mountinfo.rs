//! The one parser of `/proc/self/mountinfo` (proc(5)), with the kernel's octal escapes undone.
//!
//! It is a module of its own because `edge-init` (API mounts, unmounting at shutdown) and the updater (refusing a
//! mounted slot) read the same table, and a parser copied twice drifts: which fields are read, and how `\040` is
//! unescaped, is decided here only.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// This process's mount table.
pub const PATH: &str = "/proc/self/mountinfo";

/// One line of the mount table, with the fields the node's programs use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount's id.
    pub id: u32,
    /// The id of the mount it sits on (its own id, or one not listed, for the root of the namespace).
    pub parent: u32,
    /// `major:minor` of the filesystem; two mounts with the same value share one filesystem.
    pub device: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The per-mount options, such as `rw,nosuid,relatime`.
    pub options: String,
    /// The filesystem type, such as `ext4`.
    pub fstype: String,
    /// The source, such as `/dev/vda4`, or the filesystem's name for those without a device.
    pub source: String,
}

impl Mount {
    /// Whether it is mounted read-only.
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }

    /// The filesystem's device number as stat(2) reports it in `st_dev` and `st_rdev`.
    pub fn dev_number(&self) -> Option<u64> {
        let (major, minor) = self.device.split_once(':')?;
        Some(makedev(major.parse().ok()?, minor.parse().ok()?))
    }
}

/// The kernel's `dev_t` encoding (glibc's `makedev`), so numbers from the mount table compare with `st_rdev`.
pub fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff)
}

/// Parses the text of a mount table, in its order (the order the mounts were made, mostly); lines that do not
/// parse are left out.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// Reads and parses the mount table at `path` (normally [`PATH`]).
pub fn read(path: &Path) -> Result<Vec<Mount>> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::ReadMountinfo { path: path.to_owned(), source })?;
    Ok(parse(&text))
}

/// One line, or `None` when it does not have the fields of a mountinfo line.
pub fn parse_line(line: &str) -> Option<Mount> {
    // `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: the optional fields end
    // at a lone `-`.
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let id = l.next()?.parse().ok()?;
    let parent = l.next()?.parse().ok()?;
    let device = l.next()?.to_owned();
    let _root = l.next()?;
    let mount_point = PathBuf::from(OsString::from_vec(unescape(l.next()?)));
    let options = l.next()?.to_owned();
    let mut r = right.split(' ');
    let fstype = r.next()?.to_owned();
    let source = String::from_utf8_lossy(&unescape(r.next()?)).into_owned();
    Some(Mount { id, parent, device, mount_point, options, fstype, source })
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let check = |line: &str, expected: Option<(u32, u32, &str, &str, &str, &str, bool)>| {
            let got = parse_line(line).map(|m| {
                let ro = m.read_only();
                (m.id, m.parent, m.device, m.mount_point, m.fstype, m.source, ro)
            });
            let expected = expected.map(|(id, parent, dev, mp, fstype, source, ro)| {
                (id, parent, dev.to_owned(), PathBuf::from(mp), fstype.to_owned(), source.to_owned(), ro)
            });
            assert_eq!(got, expected, "{line}");
        };
        check(
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard",
            Some((27, 1, "254:0", "/", "ext4", "/dev/vda", false)),
        );
        check(
            "36 35 98:0 /mnt1 /mnt2 ro,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue",
            Some((36, 35, "98:0", "/mnt2", "ext3", "/dev/root", true)),
        );
        check(
            "51 50 0:40 / /data/with\\040space ro,nosuid - tmpfs tmp\\134fs rw",
            Some((51, 50, "0:40", "/data/with space", "tmpfs", "tmp\\fs", true)),
        );
        check("51 50 0:40 / /a\\011b\\012c rw - tmpfs t rw", Some((51, 50, "0:40", "/a\tb\nc", "tmpfs", "t", false)));
        check("51 50 0:40 / /a\\04 rw - tmpfs t rw", Some((51, 50, "0:40", "/a\\04", "tmpfs", "t", false)));
        check(
            "30 22 7:3 / /mnt/my\\040slot rw - ext4 /tmp/slot\\040b.img rw",
            Some((30, 22, "7:3", "/mnt/my slot", "ext4", "/tmp/slot b.img", false)),
        );
        check(
            "31 22 0:5 / /dev rw shared:2 - devtmpfs udev rw",
            Some((31, 22, "0:5", "/dev", "devtmpfs", "udev", false)),
        );
        check("", None);
        check("garbage", None);
        check("27 1 254:0 / / rw,relatime ext4 /dev/vda rw", None);
        check("x 1 254:0 / / rw - ext4 /dev/vda rw", None);
    }

    #[test]
    fn a_table_keeps_its_order_and_skips_what_does_not_parse() {
        let text = "22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    garbage\n\
                    30 22 7:3 / /mnt rw - ext4 /dev/loop3 rw\n";
        let got: Vec<u32> = parse(text).iter().map(|m| m.id).collect();
        assert_eq!(got, [22, 30]);
    }

    #[test]
    fn device_numbers_are_encoded_as_stat_reports_them() {
        let check = |device: &str, expected: Option<u64>| {
            let m = parse_line(&format!("1 1 {device} / / rw - ext4 x rw")).expect("a line");
            assert_eq!(m.dev_number(), expected, "{device}");
        };
        check("253:1", Some(makedev(253, 1)));
        // glibc's encoding.
        check("8:1", Some(0x801));
        check("259:300", Some((259 << 8) | (300 & 0xff) | ((300 & !0xff) << 12)));
        check("x:1", None);
        check("8", None);
    }

    #[test]
    fn a_missing_table_names_its_path() {
        let err = read(Path::new("/nonexistent/mountinfo")).expect_err("no such file");
        assert!(matches!(err, Error::ReadMountinfo { ref path, .. } if path == Path::new("/nonexistent/mountinfo")));
    }
}
