//! The disk layout file that `edge-image disk` reads (TOML; docs/disk-image.md, "Layout file"), and its checks.
//!
//! This is a boundary type, human-edited, so it alone in `disk` derives `Deserialize`: the file is parsed into
//! [`LayoutFile`] with unknown keys refused, then checked into a [`Layout`] whose sizes are whole MiB within their
//! bounds and whose paths are resolved against the layout file's directory. Everything after this module works on
//! a `Layout` and never sees the text. The table a layout has, `[esp]` or `[uboot]`, says how the board boots; a
//! `Layout` holds exactly one of them ([`Boot`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use image_layout::format::MAX_SIGNATURES;

/// One mebibyte: every size in a layout is a multiple of it, and every partition starts on one.
pub const MIB: u64 = 1 << 20;
/// One gibibyte.
const GIB: u64 = 1 << 30;
/// One tebibyte.
const TIB: u64 = 1 << 40;

/// The ESP's size when the layout does not give one.
pub const DEFAULT_ESP_BYTES: u64 = 32 * MIB;
/// The ESP's bounds: FAT16 (see `esp::write`) needs 4085 to 65524 clusters, which fatfs's cluster sizes give from
/// 8 MiB to 1 GiB; GRUB and the boot state take a few MiB.
pub const ESP_BYTES: std::ops::RangeInclusive<u64> = 8 * MIB..=GIB;
/// The size of a U-Boot board's boot partition when the layout does not give one.
pub const DEFAULT_BOOT_BYTES: u64 = 4 * MIB;
/// The boot partition's bounds: FAT12 below 8 MiB and FAT16 from 8 MiB (see `esp::fat_type_for`), whose clusters
/// fatfs sizes so that both stay within their cluster counts from 1 MiB to 1 GiB; `boot.scr` takes a few KiB.
pub const BOOT_BYTES: std::ops::RangeInclusive<u64> = MIB..=GIB;
/// The size of a U-Boot board's state partition when the layout does not give one.
pub const DEFAULT_STATE_BYTES: u64 = MIB;
/// The state partition's bounds: an environment copy is a few KiB (`bootctl`'s is 8 KiB); 64 MiB leaves room for
/// any, and keeps a unit typed wrong (`GiB` for `MiB`) from taking the disk.
pub const STATE_BYTES: std::ops::RangeInclusive<u64> = MIB..=64 * MIB;
/// A slot's bounds.
pub const SLOT_BYTES: std::ops::RangeInclusive<u64> = MIB..=TIB;
/// The data partition's bounds: below 8 MiB an ext4 has no room for its journal.
pub const DATA_BYTES: std::ops::RangeInclusive<u64> = 8 * MIB..=TIB;
/// The disk's bounds.
pub const DISK_BYTES: std::ops::RangeInclusive<u64> = 3 * MIB..=4 * TIB;

/// The largest layout file read: a layout is a few hundred bytes; this leaves room for many extra ESP files and
/// comments while keeping a wrong file (a disk image named by mistake) out of memory.
pub const MAX_LAYOUT_BYTES: u64 = 1 << 20;

/// The payload written into a slot when the layout does not name one.
pub const DEFAULT_PAYLOAD: &str = "rootfs";

/// A size as written: a TOML integer (bytes) or a string such as `"64MiB"`, `"1GiB"` or `"1048576"` ([`crate::size`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeText {
    /// Bytes.
    Bytes(u64),
    /// A number with an optional binary unit (`crate::size`).
    Text(String),
}

/// The layout file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutFile {
    /// The disk's size; default: the partitions plus 1 MiB before them and 1 MiB after (the backup table).
    pub size: Option<SizeText>,
    /// The board string every bundle must carry.
    pub compatible: String,
    /// Directory (or single `.pub` file) of trusted keys.
    pub keyring: PathBuf,
    /// Distinct trusted keys that must have signed each bundle.
    pub threshold: Option<usize>,
    /// The bundle payload written into a slot.
    pub payload: Option<String>,
    /// The EFI system partition, for a UEFI (GRUB) disk; a layout has this or `uboot`.
    pub esp: Option<EspFile>,
    /// The boot and state partitions, for a U-Boot board; a layout has this or `esp`.
    pub uboot: Option<UbootFile>,
    /// The two root slots.
    pub slots: SlotsFile,
    /// The data partition.
    pub data: DataFile,
}

/// `[esp]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EspFile {
    /// The partition's size.
    pub size: Option<SizeText>,
    /// The GRUB EFI binary, copied to `EFI/BOOT/BOOTX64.EFI`.
    pub grub_efi: PathBuf,
    /// The GRUB script, copied to `EFI/BOOT/grub.cfg`.
    pub grub_cfg: PathBuf,
    /// The directory holding `state0.env` and `state1.env`, copied to `EFI/edge/`.
    pub boot_state: PathBuf,
    /// Extra files: path on the ESP = file.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
}

/// `[uboot]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UbootFile {
    /// The boot partition's size.
    pub boot_size: Option<SizeText>,
    /// The U-Boot script's source, compiled to `boot.scr` on the boot partition.
    pub boot_script: PathBuf,
    /// Both copies of the redundant U-Boot environment, written at the start of the state partition.
    pub boot_state: PathBuf,
    /// The state partition's size.
    pub state_size: Option<SizeText>,
    /// Extra files: path on the boot partition = file.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
}

/// `[slots]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotsFile {
    /// Each slot's size.
    pub size: SizeText,
    /// The bundle written into slot A.
    pub a: PathBuf,
    /// The bundle written into slot B, if any.
    pub b: Option<PathBuf>,
}

/// `[data]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// The partition's size.
    pub size: SizeText,
    /// A directory whose contents become the filesystem.
    pub seed: Option<PathBuf>,
    /// Where in the filesystem the node's updater keeps its journal (its `data_dir` below the data partition's
    /// mount point), to record there what the slots hold.
    pub updater_dir: Option<String>,
}

/// A checked layout: sizes in bytes, whole MiB and within bounds; paths resolved.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The layout file (for messages).
    pub path: PathBuf,
    /// Its bytes, which with the bundles' identities determine the disk's GUIDs.
    pub text: Vec<u8>,
    /// The disk's size, when given.
    pub size_bytes: Option<u64>,
    /// The board string every bundle must carry.
    pub compatible: String,
    /// The keyring.
    pub keyring: PathBuf,
    /// The signature threshold.
    pub threshold: usize,
    /// The payload written into a slot.
    pub payload: String,
    /// How the board boots: the ESP or U-Boot's partitions.
    pub boot: Boot,
    /// The slots.
    pub slots: Slots,
    /// The data partition.
    pub data: Data,
}

/// How the board of a checked layout boots: the table the layout has.
#[derive(Debug, Clone)]
pub enum Boot {
    /// `[esp]`: UEFI firmware and GRUB.
    Esp(Esp),
    /// `[uboot]`: U-Boot's distro boot.
    Uboot(Uboot),
}

/// The ESP of a checked layout.
#[derive(Debug, Clone)]
pub struct Esp {
    /// Size.
    pub size_bytes: u64,
    /// The GRUB EFI binary.
    pub grub_efi: PathBuf,
    /// The GRUB script.
    pub grub_cfg: PathBuf,
    /// The directory holding the two boot state copies, `state0.env` and `state1.env`.
    pub boot_state: PathBuf,
    /// Extra files: path on the ESP (checked: relative, `/`-separated, 8.3 names) and source file.
    pub files: Vec<(String, PathBuf)>,
}

/// The boot and state partitions of a checked U-Boot layout.
#[derive(Debug, Clone)]
pub struct Uboot {
    /// The boot partition's size.
    pub boot_size_bytes: u64,
    /// The U-Boot script's source.
    pub boot_script: PathBuf,
    /// The file holding both environment copies.
    pub boot_state: PathBuf,
    /// The state partition's size.
    pub state_size_bytes: u64,
    /// Extra files: path on the boot partition (checked as for the ESP) and source file.
    pub files: Vec<(String, PathBuf)>,
}

/// The slots of a checked layout.
#[derive(Debug, Clone)]
pub struct Slots {
    /// Each slot's size.
    pub size_bytes: u64,
    /// Slot A's bundle.
    pub a: PathBuf,
    /// Slot B's bundle.
    pub b: Option<PathBuf>,
}

/// The data partition of a checked layout.
#[derive(Debug, Clone)]
pub struct Data {
    /// Size.
    pub size_bytes: u64,
    /// The seed directory.
    pub seed: Option<PathBuf>,
    /// The updater's directory in the filesystem: relative, `/`-separated, no `.` or `..`.
    pub updater_dir: Option<String>,
}

/// Paths on the ESP that `disk` writes itself; an extra file may not take one of them, nor a directory above one.
pub const RESERVED_ESP_PATHS: [&str; 4] =
    ["EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/grub.cfg", "EFI/edge/state0.env", "EFI/edge/state1.env"];
/// Paths on a U-Boot board's boot partition that `disk` writes itself (`uboot::SCRIPT_PATH`).
pub const RESERVED_UBOOT_PATHS: [&str; 1] = ["boot.scr"];

/// A size as written in the layout file, in the one size syntax ([`crate::size`]).
pub fn parse_size(s: &SizeText) -> std::result::Result<u64, String> {
    match s {
        SizeText::Bytes(n) => Ok(*n),
        SizeText::Text(t) => crate::size::parse(t),
    }
}

impl Layout {
    /// Reads and checks a layout file: a regular file of at most [`MAX_LAYOUT_BYTES`].
    pub fn load(path: &Path) -> Result<Layout> {
        let text = image_layout::fsutil::read_bounded(path, MAX_LAYOUT_BYTES)?;
        Layout::parse(&text, path)
    }

    /// Parses and checks layout text; `path` names it in errors and its directory anchors relative paths.
    pub fn parse(text: &[u8], path: &Path) -> Result<Layout> {
        let key_err = |key: &str, detail: String| Error::LayoutKey { path: path.to_owned(), key: key.into(), detail };
        let s = std::str::from_utf8(text).map_err(|e| key_err("(file)", format!("not UTF-8: {e}")))?;
        let f: LayoutFile =
            toml::from_str(s).map_err(|e| Error::ParseLayout { path: path.to_owned(), source: Box::new(e) })?;
        // A layout named without a directory has the empty path as base, so its paths stay as written.
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        let size = |key: &str, v: &SizeText, bounds: &std::ops::RangeInclusive<u64>| -> Result<u64> {
            let n = parse_size(v).map_err(|d| key_err(key, d))?;
            if n % MIB != 0 {
                return Err(key_err(key, format!("{n} bytes is not a multiple of 1 MiB")));
            }
            if !bounds.contains(&n) {
                return Err(key_err(
                    key,
                    format!("{} MiB out of range {}..={} MiB", n / MIB, bounds.start() / MIB, bounds.end() / MIB),
                ));
            }
            Ok(n)
        };
        if f.compatible.trim().is_empty() {
            return Err(key_err("compatible", "must not be empty".to_owned()));
        }
        let threshold = f.threshold.unwrap_or(1);
        if !(1..=MAX_SIGNATURES as usize).contains(&threshold) {
            return Err(key_err("threshold", format!("{threshold} out of range 1..={MAX_SIGNATURES}")));
        }
        let payload = f.payload.unwrap_or_else(|| DEFAULT_PAYLOAD.to_owned());
        if payload.is_empty() {
            return Err(key_err("payload", "must not be empty".to_owned()));
        }
        // Extra files on a FAT partition: 8.3 paths that take none of `reserved` nor each other's.
        let fat_files = |table: &str, files: BTreeMap<String, PathBuf>, reserved: &[&str]| {
            let mut checked = Vec::new();
            for (dest, src) in files {
                check_esp_path(&dest).map_err(|d| key_err(&format!("{table}.files.{dest:?}"), d))?;
                checked.push((dest, base.join(src)));
            }
            check_esp_collisions(&checked, reserved)
                .map_err(|(dest, d)| key_err(&format!("{table}.files.{dest:?}"), d))?;
            Ok::<_, Error>(checked)
        };
        let boot = match (f.esp, f.uboot) {
            (Some(esp), None) => Boot::Esp(Esp {
                size_bytes: match &esp.size {
                    Some(s) => size("esp.size", s, &ESP_BYTES)?,
                    None => DEFAULT_ESP_BYTES,
                },
                grub_efi: base.join(esp.grub_efi),
                grub_cfg: base.join(esp.grub_cfg),
                boot_state: base.join(esp.boot_state),
                files: fat_files("esp", esp.files, &RESERVED_ESP_PATHS)?,
            }),
            (None, Some(u)) => Boot::Uboot(Uboot {
                boot_size_bytes: match &u.boot_size {
                    Some(s) => size("uboot.boot_size", s, &BOOT_BYTES)?,
                    None => DEFAULT_BOOT_BYTES,
                },
                boot_script: base.join(u.boot_script),
                boot_state: base.join(u.boot_state),
                state_size_bytes: match &u.state_size {
                    Some(s) => size("uboot.state_size", s, &STATE_BYTES)?,
                    None => DEFAULT_STATE_BYTES,
                },
                files: fat_files("uboot", u.files, &RESERVED_UBOOT_PATHS)?,
            }),
            (esp, uboot) => {
                let found = if esp.is_some() && uboot.is_some() { "both are present" } else { "neither is present" };
                return Err(key_err(
                    "esp, uboot",
                    format!("{found}; a layout has exactly one: [esp] for a UEFI disk with GRUB, [uboot] for a U-Boot board"),
                ));
            }
        };
        if let Some(dir) = &f.data.updater_dir {
            check_data_dir(dir).map_err(|d| key_err("data.updater_dir", d))?;
        }
        Ok(Layout {
            path: path.to_owned(),
            text: text.to_vec(),
            size_bytes: f.size.as_ref().map(|s| size("size", s, &DISK_BYTES)).transpose()?,
            compatible: f.compatible,
            keyring: base.join(f.keyring),
            threshold,
            payload,
            boot,
            slots: Slots {
                size_bytes: size("slots.size", &f.slots.size, &SLOT_BYTES)?,
                a: base.join(f.slots.a),
                b: f.slots.b.map(|b| base.join(b)),
            },
            data: Data {
                size_bytes: size("data.size", &f.data.size, &DATA_BYTES)?,
                seed: f.data.seed.map(|s| base.join(s)),
                updater_dir: f.data.updater_dir.map(|d| d.trim_end_matches('/').to_owned()),
            },
        })
    }
}

/// A path on the ESP for an extra file: relative, `/`-separated, each name an 8.3 name (the ESP has no long file
/// names, see `esp::write`), stored upper case.
fn check_esp_path(dest: &str) -> std::result::Result<(), String> {
    if dest.is_empty() || dest.starts_with('/') || dest.ends_with('/') {
        return Err("must be a relative path to a file, like EFI/edge/extra.txt".to_owned());
    }
    for name in dest.split('/') {
        let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
        let sfn_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'()-@^_`{}~".contains(c);
        if stem.is_empty() || stem.len() > 8 || ext.len() > 3 || !stem.chars().chain(ext.chars()).all(sfn_char) {
            return Err(format!(
                "{name:?} is not an 8.3 name (up to 8 letters, digits or !#$%&'()-@^_`{{}}~, a dot, up to 3 more)"
            ));
        }
    }
    Ok(())
}

/// A directory in the data filesystem: relative, `/`-separated, each name neither empty, `.` nor `..`, and no
/// newline (the filesystem is fixed up by a script of lines, `ext4::fixup_script`).
fn check_data_dir(dir: &str) -> std::result::Result<(), String> {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() || trimmed.starts_with('/') {
        return Err(format!("{dir:?} must be a relative path, like \"edge-update\" for /data/edge-update"));
    }
    if let Some(name) = trimmed.split('/').find(|n| n.is_empty() || *n == "." || *n == ".." || n.contains('\n')) {
        return Err(format!("{dir:?} has the name {name:?}: each name must be neither empty, . nor .."));
    }
    Ok(())
}

/// FAT names ignore case: no extra file may take a path the disk writes itself (`reserved`), another extra file's
/// path, or a directory above either.
fn check_esp_collisions(files: &[(String, PathBuf)], reserved: &[&str]) -> std::result::Result<(), (String, String)> {
    let lower = |s: &str| s.to_lowercase();
    let mut taken: Vec<(String, String)> = reserved.iter().map(|p| (lower(p), (*p).to_owned())).collect();
    for (dest, _) in files {
        let d = lower(dest);
        for (t, shown) in &taken {
            if *t == d || t.starts_with(&format!("{d}/")) || d.starts_with(&format!("{t}/")) {
                return Err((dest.clone(), format!("collides with {shown:?} (FAT names ignore case)")));
            }
        }
        taken.push((d, dest.clone()));
    }
    Ok(())
}

/// The Markdown table of every layout key, its default and meaning, for docs/disk-image.md ("Layout file").
pub fn keys_table() -> String {
    let quoted = |s: &str| format!("`{s:?}`");
    let mib = |n: u64| quoted(&format!("{}MiB", n / MIB));
    let rows = [
        ("size", "the partitions + 2 MiB".to_owned(), "the disk's size; space after the data partition is left free"),
        ("compatible", "required".to_owned(), "the board string every bundle must carry exactly"),
        ("keyring", "required".to_owned(), "directory of trusted `*.pub` keys (or one `.pub` file)"),
        ("threshold", "`1`".to_owned(), "distinct trusted keys that must have signed each bundle, 1 to 32"),
        ("payload", quoted(DEFAULT_PAYLOAD), "the bundle payload written into a slot"),
        ("esp.size", "`\"32MiB\"`".to_owned(), "the ESP's size, 8 MiB to 1 GiB (FAT16)"),
        ("esp.grub_efi", "required".to_owned(), "the GRUB EFI binary, copied to `EFI/BOOT/BOOTX64.EFI`"),
        ("esp.grub_cfg", "required".to_owned(), "the GRUB script, copied to `EFI/BOOT/grub.cfg`; must not be empty"),
        (
            "esp.boot_state",
            "required".to_owned(),
            "directory holding `state0.env` and `state1.env`, 1024-byte GRUB environment blocks, copied to `EFI/edge/`",
        ),
        ("esp.files", "`{}`".to_owned(), "extra files: `\"PATH/ON/ESP.TXT\" = \"file\"`, 8.3 names"),
        (
            "uboot.boot_size",
            mib(DEFAULT_BOOT_BYTES),
            "the size of partition 1 `edge-boot`, 1 MiB to 1 GiB (FAT12 below 8 MiB, FAT16 from 8 MiB)",
        ),
        (
            "uboot.boot_script",
            "required".to_owned(),
            "the U-Boot script's source, such as `bootctl/uboot/boot.cmd`, compiled into `/boot.scr` on `edge-boot`; UTF-8 text, not empty, at most 1 MiB",
        ),
        (
            "uboot.boot_state",
            "required".to_owned(),
            "a file holding both copies of the redundant U-Boot environment back to back, as `edge-bootctl provision` writes it; copied to the start of partition 2 `edge-state`",
        ),
        (
            "uboot.state_size",
            mib(DEFAULT_STATE_BYTES),
            "the size of partition 2 `edge-state`, 1 MiB to 64 MiB; at least the size of `uboot.boot_state`",
        ),
        (
            "uboot.files",
            "`{}`".to_owned(),
            "extra files on `edge-boot`: `\"PATH/FILE.TXT\" = \"file\"`, 8.3 names, not `boot.scr`",
        ),
        ("slots.size", "required".to_owned(), "each slot's size, 1 MiB to 1 TiB"),
        ("slots.a", "required".to_owned(), "the bundle written into slot A, the slot `provision --good A` makes good"),
        ("slots.b", "none: zeros".to_owned(), "the bundle written into slot B"),
        ("data.size", "required".to_owned(), "the data partition's size, 8 MiB to 1 TiB"),
        ("data.seed", "none: empty".to_owned(), "a directory whose contents become the ext4 filesystem"),
        (
            "data.updater_dir",
            "none".to_owned(),
            "where the node's updater keeps its journal, relative to the data partition (`\"edge-update\"` for `data_dir = \"/data/edge-update\"`): the disk records there what each slot holds, and slot A's security version as the node's floor",
        ),
    ];
    docgen::key_table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
compatible = "edge-qemu-x86_64"
keyring = "keys"
[esp]
grub_efi = "BOOTX64.EFI"
grub_cfg = "grub.cfg"
boot_state = "state"
[slots]
size = "64MiB"
a = "v1.bundle"
[data]
size = 67108864
"#;

    fn parse(text: &str) -> Result<Layout> {
        Layout::parse(text.as_bytes(), Path::new("/l/layout.toml"))
    }

    fn key_of(text: &str) -> Option<String> {
        match parse(text) {
            Err(Error::LayoutKey { key, .. }) => Some(key.into()),
            Err(Error::ParseLayout { .. }) => Some("(parse)".to_owned()),
            Err(e) => panic!("unexpected {e:?}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn sizes_parse_with_suffixes_or_as_bytes() {
        let check = |s: &str, want: Option<u64>| assert_eq!(parse_size(&SizeText::Text(s.into())).ok(), want, "{s}");
        check("64MiB", Some(64 * MIB));
        check("2 GiB", Some(2 * GIB));
        check("1TiB", Some(TIB));
        check("1048576", Some(MIB));
        check("64M", Some(64 * MIB));
        check("64MB", None);
        check("MiB", None);
        check("-1MiB", None);
        check("99999999999TiB", None);
        assert_eq!(parse_size(&SizeText::Bytes(7)), Ok(7));
    }

    #[test]
    fn a_minimal_layout_gets_the_defaults_and_paths_beside_it() {
        let l = parse(GOOD).expect("valid");
        assert_eq!(l.size_bytes, None);
        assert_eq!(l.threshold, 1);
        assert_eq!(l.payload, "rootfs");
        let Boot::Esp(esp) = &l.boot else { panic!("an [esp] layout: {:?}", l.boot) };
        assert_eq!(esp.size_bytes, 32 * MIB);
        assert_eq!(l.keyring, Path::new("/l/keys"));
        assert_eq!(esp.grub_efi, Path::new("/l/BOOTX64.EFI"));
        assert_eq!(esp.grub_cfg, Path::new("/l/grub.cfg"));
        assert_eq!(esp.boot_state, Path::new("/l/state"));
        assert_eq!(l.slots.a, Path::new("/l/v1.bundle"));
        assert_eq!(l.slots.b, None);
        assert_eq!(l.data.size_bytes, 64 * MIB);
        assert_eq!(l.data.seed, None);
        assert_eq!(l.data.updater_dir, None);
    }

    #[test]
    fn the_updater_dir_is_a_relative_path_without_dot_names() {
        let with = |dir: &str| GOOD.replace("size = 67108864", &format!("size = 67108864\nupdater_dir = {dir:?}"));
        let check = |dir: &str, want: Option<&str>| {
            let got = parse(&with(dir)).ok().and_then(|l| l.data.updater_dir);
            assert_eq!(got.as_deref(), want, "{dir}");
            assert_eq!(key_of(&with(dir)).as_deref(), want.is_none().then_some("data.updater_dir"), "{dir}");
        };
        check("edge-update", Some("edge-update"));
        check("var/lib/edge-update/", Some("var/lib/edge-update"));
        check("", None);
        check("/data/edge-update", None);
        check("a/../b", None);
        check("./edge-update", None);
        check("a//b", None);
        check("a\nb", None);
    }

    #[test]
    fn bad_values_name_their_key() {
        let with = |from: &str, to: &str| GOOD.replace(from, to);
        let check = |text: String, key: Option<&str>| assert_eq!(key_of(&text).as_deref(), key, "{text}");
        check(with("size = \"64MiB\"", "size = \"63.5MiB\""), Some("slots.size"));
        check(with("size = \"64MiB\"", "size = 1048577"), Some("slots.size"));
        check(with("size = \"64MiB\"", "size = \"2TiB\""), Some("slots.size"));
        check(with("size = 67108864", "size = \"4MiB\""), Some("data.size"));
        check(with("[esp]", "[esp]\nsize = \"4MiB\""), Some("esp.size"));
        check(with("compatible = \"edge-qemu-x86_64\"", "compatible = \"\""), Some("compatible"));
        check(with("keyring", "threshold = 0\nkeyring"), Some("threshold"));
        check(with("keyring", "size = \"8TiB\"\nkeyring"), Some("size"));
        check(with("grub_cfg = \"grub.cfg\"\n", ""), Some("(parse)"));
        check(with("boot_state = \"state\"\n", ""), Some("(parse)"));
        check(with("[esp]", "[esp]\ncmdline = \"quiet\""), Some("(parse)"));
        check(with("[data]", "[data]\nseeds = \"x\""), Some("(parse)"));
        check(with("keyring", "colour = 1\nkeyring"), Some("(parse)"));
        check(with("a = \"v1.bundle\"", ""), Some("(parse)"));
        check(with("size = 67108864", "size = true"), Some("(parse)"));
        check(GOOD.to_owned(), None);
    }

    #[test]
    fn extra_esp_files_are_checked() {
        let with = |dest: &str| GOOD.replace("[esp]", &format!("[esp]\nfiles = {{ {dest:?} = \"x\" }}"));
        let check = |dest: &str, ok: bool| assert_eq!(key_of(&with(dest)).is_none(), ok, "{dest}");
        check("EFI/edge/extra.txt", true);
        check("README", true);
        check("/abs", false);
        check("EFI/../x", false);
        check("EFI//x", false);
        check("dir/", false);
        check("a:b", false);
        check("EFI/edge/long-name.txt", false);
        check("EFI/edge/x.json", false);
        check("EFI/edge/a.b.c", false);
        check("EFI/edge/.x", false);
        check("EFI/edge/UPPER_1.BIN", true);
        check("efi/boot/GRUB.CFG", false);
        check("EFI/edge", false);
        check("EFI/edge/state0.env/x", false);
        let two = GOOD.replace("[esp]", "[esp]\nfiles = { \"A/b\" = \"x\", \"a/B\" = \"y\" }");
        assert!(key_of(&two).is_some());
        let l = parse(&with("EFI/edge/extra.txt")).expect("valid");
        let Boot::Esp(esp) = &l.boot else { panic!("an [esp] layout: {:?}", l.boot) };
        assert_eq!(esp.files, vec![("EFI/edge/extra.txt".to_owned(), PathBuf::from("/l/x"))]);
    }

    /// [`GOOD`] with `[uboot]` in place of `[esp]`.
    fn uboot(table: &str) -> String {
        let at = GOOD.find("[esp]").expect("[esp]");
        let end = GOOD.find("[slots]").expect("[slots]");
        format!("{}{table}\n{}", &GOOD[..at], &GOOD[end..])
    }

    const UBOOT: &str = "[uboot]\nboot_script = \"boot.cmd\"\nboot_state = \"uboot.env\"";

    #[test]
    fn a_uboot_layout_gets_its_defaults() {
        let l = parse(&uboot(UBOOT)).expect("valid");
        let Boot::Uboot(u) = &l.boot else { panic!("a [uboot] layout: {:?}", l.boot) };
        assert_eq!(u.boot_size_bytes, 4 * MIB);
        assert_eq!(u.state_size_bytes, MIB);
        assert_eq!(u.boot_script, Path::new("/l/boot.cmd"));
        assert_eq!(u.boot_state, Path::new("/l/uboot.env"));
        assert!(u.files.is_empty());
        let l = parse(&uboot(&format!("{UBOOT}\nboot_size = \"16MiB\"\nstate_size = 2097152"))).expect("valid");
        let Boot::Uboot(u) = &l.boot else { panic!("a [uboot] layout: {:?}", l.boot) };
        assert_eq!((u.boot_size_bytes, u.state_size_bytes), (16 * MIB, 2 * MIB));
    }

    #[test]
    fn a_layout_has_esp_or_uboot() {
        let esp = &GOOD[GOOD.find("[esp]").expect("[esp]")..GOOD.find("[slots]").expect("[slots]")];
        let check = |text: String, key: Option<&str>| assert_eq!(key_of(&text).as_deref(), key, "{text}");
        check(uboot(UBOOT), None);
        check(GOOD.to_owned(), None);
        check(uboot(&format!("{esp}{UBOOT}")), Some("esp, uboot"));
        check(uboot(""), Some("esp, uboot"));
    }

    #[test]
    fn bad_uboot_values_name_their_key() {
        let check = |extra: &str, key: Option<&str>| {
            let text = uboot(&format!("{UBOOT}\n{extra}"));
            assert_eq!(key_of(&text).as_deref(), key, "{extra}");
        };
        check("boot_size = \"1MiB\"", None);
        check("boot_size = \"1GiB\"", None);
        check("boot_size = \"2GiB\"", Some("uboot.boot_size"));
        check("boot_size = \"1536KiB\"", Some("uboot.boot_size"));
        check("boot_size = 0", Some("uboot.boot_size"));
        check("state_size = \"64MiB\"", None);
        check("state_size = \"65MiB\"", Some("uboot.state_size"));
        check("state_size = \"16KiB\"", Some("uboot.state_size"));
        check("grub_cfg = \"grub.cfg\"", Some("(parse)"));
        check("files = { \"BOOT.SCR\" = \"x\" }", Some("uboot.files.\"BOOT.SCR\""));
        check("files = { \"boot.scr/x\" = \"x\" }", Some("uboot.files.\"boot.scr/x\""));
        check("files = { \"overlay/long-name.dtbo\" = \"x\" }", Some("uboot.files.\"overlay/long-name.dtbo\""));
        check("files = { \"EFI/edge/state0.env\" = \"x\", \"DTB/BOARD.DTB\" = \"y\" }", None);
        assert_eq!(key_of(&uboot("[uboot]\nboot_state = \"s\"")).as_deref(), Some("(parse)"));
        assert_eq!(key_of(&uboot("[uboot]\nboot_script = \"s\"")).as_deref(), Some("(parse)"));
    }
}
