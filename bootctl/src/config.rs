//! `/etc/edge/bootctl.toml`: which backend keeps the boot state and where; docs/boot-state.md, "Configuration".

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::rules::{Slot, DEFAULT_TRIES, MAX_TRIES};

/// The config file's default path.
pub const DEFAULT_PATH: &str = "/etc/edge/bootctl.toml";

/// Which bootloader keeps the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Two GRUB environment blocks on the ESP (x86 UEFI).
    Grub,
    /// A redundant U-Boot environment (ARM boards).
    Uboot,
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
    /// Loads and checks a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        Config::parse(&text, path)
    }

    /// Parses and checks config text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let c: Config = toml::from_str(text)
            .map_err(|e| Error::Config { path: path.to_owned(), detail: e.message().to_owned() })?;
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
    crate::docgen::key_table(&rows)
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
}
