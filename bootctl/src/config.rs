//! `/etc/edge/bootctl.toml`: which backend keeps the boot state and where; docs/boot-state.md, "Configuration".

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::blockdev::{read_small, ReadSmall};
use crate::error::{Error, Result};
use crate::rules::{Slot, DEFAULT_TRIES, MAX_TRIES};

/// The config file's default path.
pub const DEFAULT_PATH: &str = "/etc/edge/bootctl.toml";

/// The largest config file read: a handful of keys, with room for comments.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// The line and column (both from 1, the column in characters) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = (0..=offset.min(text.len())).rev().find(|&o| text.is_char_boundary(o)).unwrap_or(0);
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// The key of the `key = value` line holding byte `offset` of `text` (TOML errors point at the value or the key).
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = (0..=offset.min(text.len())).rev().find(|&o| text.is_char_boundary(o)).unwrap_or(0);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with(['#', '['])).then(|| key.to_owned())
}

/// Which bootloader keeps the state: `grub` or `uboot`, in the config file and in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Two GRUB environment blocks on the ESP (x86 UEFI).
    Grub,
    /// A redundant U-Boot environment (ARM boards).
    Uboot,
}

impl BackendKind {
    /// Its word, as the config file and `status` spell it.
    pub fn word(self) -> &'static str {
        match self {
            BackendKind::Grub => "grub",
            BackendKind::Uboot => "uboot",
        }
    }
}

/// The whole config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `grub` or `uboot`.
    pub backend: BackendKind,
    /// Tries a slot gets from `set-active` (1..=9).
    pub tries: u8,
    /// Directory holding `state0.env` and `state1.env` (GRUB).
    pub grub_state_dir: PathBuf,
    /// The `fw_env.config` describing the state environment (U-Boot).
    pub uboot_fw_env_config: PathBuf,
    /// Slot A's block device, to check the booted slot against the root device (unset: not checked).
    pub slot_a_device: Option<PathBuf>,
    /// Slot B's block device.
    pub slot_b_device: Option<PathBuf>,
    /// Where the kernel command line is read.
    pub cmdline: PathBuf,
    /// The mount point whose device must be the booted slot's.
    pub root: PathBuf,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            backend: BackendKind::Grub,
            tries: DEFAULT_TRIES,
            grub_state_dir: PathBuf::from("/boot/efi/EFI/edge"),
            uboot_fw_env_config: PathBuf::from("/etc/edge/fw_env.config"),
            slot_a_device: None,
            slot_b_device: None,
            cmdline: PathBuf::from("/proc/cmdline"),
            root: PathBuf::from("/"),
        }
    }
}

impl Config {
    /// Loads and checks a config file, which must exist.
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = read_small(path, MAX_CONFIG_BYTES).map_err(|e| Error::small_file(path, e, MAX_CONFIG_BYTES))?;
        Config::parse_bytes(&bytes, path)
    }

    /// Loads and checks the config file at its default place: a file that does not exist means every key's
    /// default, as an empty file does; one that cannot be read, or is invalid, is still an error.
    pub fn load_default(path: &Path) -> Result<Config> {
        match read_small(path, MAX_CONFIG_BYTES) {
            Ok(bytes) => Config::parse_bytes(&bytes, path),
            Err(ReadSmall::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(Error::small_file(path, e, MAX_CONFIG_BYTES)),
        }
    }

    fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Config> {
        let text = std::str::from_utf8(bytes).map_err(|e| Error::ParseConfig {
            path: path.to_owned(),
            at: Some(line_column(&String::from_utf8_lossy(&bytes[..e.valid_up_to()]), e.valid_up_to())),
            key: None,
            detail: "not UTF-8 text".to_owned(),
        })?;
        Config::parse(text, path)
    }

    /// Parses and checks config text (`path` names it in errors, with the line, column and key of a TOML error).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let span = e.span();
            Error::ParseConfig {
                path: path.to_owned(),
                at: span.as_ref().map(|s| line_column(text, s.start)),
                key: span.and_then(|s| key_at(text, s.start)),
                detail: e.message().trim_end().to_owned(),
            }
        })?;
        c.check().map_err(|detail| Error::Config { path: path.to_owned(), detail })?;
        Ok(c)
    }

    /// Checks the values the types cannot (also for a config embedded in another file, such as the updater's
    /// `[bootctl]` table); the error names the key.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(1..=MAX_TRIES).contains(&self.tries) {
            return Err(format!("tries {} out of range 1..=9", self.tries));
        }
        Ok(())
    }

    /// The block device of a slot, if configured.
    pub fn slot_device(&self, s: Slot) -> Option<PathBuf> {
        match s {
            Slot::A => self.slot_a_device.clone(),
            Slot::B => self.slot_b_device.clone(),
        }
    }
}

/// The Markdown table of every key and its default, for docs/boot-state.md ("Configuration").
pub fn defaults_table() -> String {
    let d = Config::default();
    let show =
        |p: &Option<PathBuf>| p.as_ref().map_or("unset".to_owned(), |p| format!("`{:?}`", p.display().to_string()));
    let rows = [
        (
            "backend",
            "`\"grub\"`".to_owned(),
            "`grub` (two GRUB blocks on the ESP) or `uboot` (a redundant U-Boot environment)",
        ),
        ("tries", format!("`{}`", d.tries), "tries `set-active` gives a slot, 1 to 9"),
        (
            "grub_state_dir",
            format!("`{:?}`", d.grub_state_dir.display().to_string()),
            "directory of `state0.env` and `state1.env`",
        ),
        (
            "uboot_fw_env_config",
            format!("`{:?}`", d.uboot_fw_env_config.display().to_string()),
            "the `fw_env.config` of the state environment",
        ),
        (
            "slot_a_device",
            show(&d.slot_a_device),
            "slot A's block device; when set, the booted slot must be the root device",
        ),
        ("slot_b_device", show(&d.slot_b_device), "slot B's block device"),
        ("cmdline", format!("`{:?}`", d.cmdline.display().to_string()), "where the kernel command line is read"),
        (
            "root",
            format!("`{:?}`", d.root.display().to_string()),
            "the mount point whose device must be the booted slot's",
        ),
    ];
    docgen::key_table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_cases() {
        let check = |text: &str, ok: bool| assert_eq!(Config::parse(text, Path::new("t.toml")).is_ok(), ok, "{text}");
        check("", true);
        check("backend = \"uboot\"\ntries = 5", true);
        check("backend = \"lilo\"", false);
        check("tries = 0", false);
        check("tries = 10", false);
        check("surprise = 1", false);
        assert_eq!(Config::parse("", Path::new("t")).expect("empty"), Config::default());
    }

    /// A config file that does not exist at the default place means every key's default; one that exists must be
    /// readable and valid, and one named on the command line must exist.
    #[test]
    fn issue_14_a_missing_default_config_means_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("bootctl.toml");
        assert_eq!(Config::load_default(&missing).expect("the defaults"), Config::default());
        assert!(matches!(Config::load(&missing), Err(Error::Read { .. })));
        std::fs::write(&missing, "tries = 0\n").expect("write");
        assert!(matches!(Config::load_default(&missing), Err(Error::Config { .. })));
        std::fs::remove_file(&missing).expect("remove");
        std::fs::create_dir(&missing).expect("a directory in its place");
        assert!(matches!(Config::load_default(&missing), Err(Error::FileType { found: "directory", .. })));
        std::fs::remove_dir(&missing).expect("remove");
        assert!(std::process::Command::new("mkfifo").arg(&missing).status().expect("mkfifo").success());
        assert!(matches!(Config::load_default(&missing), Err(Error::FileType { found: "FIFO", .. })));
    }

    /// A TOML error names the file, the line and column, and the key.
    #[test]
    fn issue_14_toml_errors_name_the_key_and_the_line() {
        let check = |text: &str, at: (usize, usize), key: Option<&str>| match Config::parse(text, Path::new("t.toml")) {
            Err(Error::ParseConfig { at: a, key: k, detail, .. }) => {
                assert_eq!((a, k.as_deref()), (Some(at), key), "{text:?}: {detail}")
            }
            r => panic!("{text:?}: {r:?}"),
        };
        check("backend = \"grub\"\ntries = \"3\"\n", (2, 9), Some("tries"));
        check("# comment\n\n  backend = \"lilo\"", (3, 13), Some("backend"));
        check("cmdline = 7\n", (1, 11), Some("cmdline"));
        check("surprise = 1\n", (1, 1), Some("surprise"));
        check("tries = 3\ntries = 4\n", (2, 1), Some("tries"));
        check("tries = \n", (1, 9), Some("tries"));
        check("[table\n", (1, 7), None);
        assert_eq!(line_column("é = 1\nab", 9), (2, 3));
        let text = "tries = \"3\"\n";
        let e = Config::parse(text, Path::new("/etc/edge/bootctl.toml")).expect_err("a type error");
        assert!(e.to_string().starts_with("/etc/edge/bootctl.toml:1:9: key tries: invalid type"), "{e}");
    }
}
