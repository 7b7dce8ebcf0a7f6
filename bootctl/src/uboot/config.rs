//! `/etc/fw_env.config`, the file that says where the copies of an environment live, read as `fw_printenv` and
//! `fw_setenv` read it. It is apart from the store because it is a text format of its own, parsed and tested
//! without any device.

use std::fmt;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use crate::blockdev::{read_small, ReadSmall};

/// The largest `fw_env.config` read: two lines of a few dozen bytes each, with room for comments.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Where `fw_printenv` and `fw_setenv` look for the config by default.
pub const FW_ENV_CONFIG: &str = "/etc/fw_env.config";

/// One line of `fw_env.config`: where one copy lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLine {
    /// The device or file.
    pub device: PathBuf,
    /// The byte offset of the copy; below zero, counted back from the end of the device.
    pub offset: i64,
    /// The size of the copy in bytes.
    pub env_size: usize,
    /// The erase sector size (flash only; files and block devices ignore it).
    pub sector_size: Option<u64>,
    /// The number of sectors the copy may span (flash only).
    pub n_sectors: Option<u64>,
}

/// `/etc/fw_env.config`: one line for a single environment, two for a redundant one.
///
/// Numbers are read as the tools read them (`sscanf("%ms %lli %lx %lx %lx")` in `fw_env.c` and libubootenv): the
/// offset as C's `strtoll` with base 0 (`0x` hex, a leading `0` octal, else decimal, a `-` counting from the end),
/// and the sizes and sector count always in hex, with or without `0x`, so `8192` means 0x8192. A line whose first
/// character is `#` is a comment, as is anything from a word starting with `#`. A sixth field (libubootenv 0.3.3's
/// MTD-lock switch) is accepted and ignored. Unlike the tools, which skip a line with fewer than three fields and
/// ignore lines after the second, this parser refuses both, naming the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The first line.
    pub primary: ConfigLine,
    /// The second line, for a redundant environment.
    pub redundant: Option<ConfigLine>,
}

impl Config {
    /// Reads and parses the config file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = read_small(path, MAX_CONFIG_BYTES).map_err(|e| match e {
            ReadSmall::Io(source) => Error::ReadConfig { path: path.to_owned(), source },
            ReadSmall::Type(found) => Error::ConfigType { path: path.to_owned(), found },
            ReadSmall::TooLarge(size_bytes) => {
                Error::ConfigTooLarge { path: path.to_owned(), size_bytes, max_bytes: MAX_CONFIG_BYTES }
            }
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&c| c == b'\n').count() + 1;
            Error::ParseConfig { path: path.to_owned(), line, detail: "not UTF-8 text".to_owned() }
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut lines: Vec<ConfigLine> = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let err = |detail: String| Error::ParseConfig { path: path.to_owned(), line, detail };
            if raw.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = raw.split_whitespace().take_while(|w| !w.starts_with('#')).collect();
            if fields.is_empty() {
                continue;
            }
            if !(3..=6).contains(&fields.len()) {
                return Err(err(format!(
                    "{} fields, expected DEVICE OFFSET ENV_SIZE [SECTOR_SIZE [N_SECTORS]]",
                    fields.len()
                )));
            }
            let offset = parse_c_int(fields[1]).ok_or_else(|| {
                err(format!("offset {:?} is not a number (0x.. hex, 0.. octal, or decimal)", fields[1]))
            })?;
            let hex = |what: &str, i: usize| -> Result<Option<u64>> {
                fields
                    .get(i)
                    .map(|f| parse_c_hex(f).ok_or_else(|| err(format!("{what} {f:?} is not a hex number"))))
                    .transpose()
            };
            let env_size = hex("env size", 2)?.and_then(|s| usize::try_from(s).ok()).unwrap_or(0);
            if env_size == 0 {
                return Err(err(format!("env size {:?} out of range 1..", fields[2])));
            }
            let sector_size = hex("sector size", 3)?;
            let n_sectors = hex("sector count", 4)?;
            if let Some(f) = fields.get(5) {
                if f.parse::<i32>().is_err() {
                    return Err(err(format!("MTD-lock switch {f:?} is not a decimal number")));
                }
            }
            if lines.len() == 2 {
                return Err(err("a third environment copy; U-Boot keeps at most two".to_owned()));
            }
            if let Some(first) = lines.first().filter(|first| first.env_size != env_size) {
                let detail = format!("env size {env_size:#x} differs from the first copy's {:#x}", first.env_size);
                return Err(err(detail));
            }
            lines.push(ConfigLine { device: PathBuf::from(fields[0]), offset, env_size, sector_size, n_sectors });
        }
        let mut it = lines.into_iter();
        let primary = it.next().ok_or_else(|| Error::ParseConfig {
            path: path.to_owned(),
            line: text.lines().count(),
            detail: "no environment line, expected DEVICE OFFSET ENV_SIZE [SECTOR_SIZE [N_SECTORS]]".to_owned(),
        })?;
        Ok(Config { primary, redundant: it.next() })
    }

    /// The size of each copy.
    pub fn env_size(&self) -> usize {
        self.primary.env_size
    }
}

/// Writes the config in the form the tools read: hex sizes, the offset in hex (signed).
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in std::iter::once(&self.primary).chain(&self.redundant) {
            let sign = if l.offset < 0 { "-" } else { "" };
            write!(f, "{} {sign}{:#x} {:#x}", l.device.display(), l.offset.unsigned_abs(), l.env_size)?;
            if let Some(s) = l.sector_size {
                write!(f, " {s:#x}")?;
                if let Some(n) = l.n_sectors {
                    write!(f, " {n:#x}")?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// A whole word as C's `strtoll(s, _, 0)` reads it: a sign, then `0x` hex, `0` octal or decimal.
fn parse_c_int(word: &str) -> Option<i64> {
    let (negative, rest) = match word.as_bytes().first() {
        Some(b'-') => (true, &word[1..]),
        Some(b'+') => (false, &word[1..]),
        _ => (false, word),
    };
    let (radix, digits) = match rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None if rest.len() > 1 && rest.starts_with('0') => (8, &rest[1..]),
        None => (10, rest),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from(u64::from_str_radix(digits, radix).ok()?);
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// A whole word as C's `strtoul(s, _, 16)` reads it: hex digits with or without `0x` (no sign).
fn parse_c_hex(word: &str) -> Option<u64> {
    let digits = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")).unwrap_or(word);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_are_read_as_the_tools_read_them() {
        let path = Path::new("fw_env.config");
        let line = |device: &str, offset: i64, env_size: usize, sector_size: Option<u64>, n_sectors: Option<u64>| {
            ConfigLine { device: PathBuf::from(device), offset, env_size, sector_size, n_sectors }
        };
        let check = |text: &str, primary: ConfigLine, redundant: Option<ConfigLine>| {
            let c = Config::parse(text, path).expect("parses");
            assert_eq!(c, Config { primary, redundant }, "{text:?}");
            assert_eq!(Config::parse(&c.to_string(), path).expect("its own output parses"), c);
        };
        check("/dev/mmcblk0 0x3f8000 0x4000\n", line("/dev/mmcblk0", 0x3f_8000, 0x4000, None, None), None);
        // Sizes are always hex; the offset is C's base 0: hex, octal or decimal.
        check("/a 4096 2000", line("/a", 4096, 0x2000, None, None), None);
        check("/a 0400 2000 0X200 4", line("/a", 256, 0x2000, Some(0x200), Some(4)), None);
        check("/a -0x4000 0x2000", line("/a", -0x4000, 0x2000, None, None), None);
        check("/a 0 0x2000 0x200 1 0", line("/a", 0, 0x2000, Some(0x200), Some(1)), None);
        check(
            "# comment\n\n  # indented\n/a\t0x0 0x2000 # trailing\n/b 0x2000 0x2000\n",
            line("/a", 0, 0x2000, None, None),
            Some(line("/b", 0x2000, 0x2000, None, None)),
        );
        let check_err = |text: &str, at: usize| {
            let r = Config::parse(text, path);
            assert!(matches!(r, Err(Error::ParseConfig { line, .. }) if line == at), "{text:?}: {r:?}");
        };
        check_err("", 0);
        check_err("# only a comment\n", 1);
        check_err("/a 0", 1);
        check_err("\n/a 0 0x100 1 1 1 1", 2);
        check_err("/a 09 0x100", 1);
        check_err("/a 0x 0x100", 1);
        check_err("/a 12k 0x100", 1);
        check_err("/a 0 0x100g", 1);
        check_err("/a 0 -0x100", 1);
        check_err("/a 0 0", 1);
        check_err("/a 0 0x100 0x", 1);
        check_err("/a 0 0x100 0x200 1 x", 1);
        check_err("/a 0 0x100\n/b 0 0x200\n", 2);
        check_err("/a 0 0x100\n/b 0 0x100\n/c 0 0x100\n", 3);
        check_err("/a 99999999999999999999 0x100", 1);
    }
}
