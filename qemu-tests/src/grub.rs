//! The standalone GRUB EFI binary the harness boots, built once per harness with `grub-mkstandalone`.
//!
//! The binary carries a small configuration in its memdisk that moves GRUB to the serial console, finds the disk
//! holding [`GRUB_CFG_PATH`] and runs that file with `configfile`; whatever the file does, GRUB halts afterwards, so
//! every boot ends in a power-off instead of a menu waiting for a key. Every module of the installed GRUB goes into
//! the memdisk and loads on first use, as on an installed system; the preloaded ones are those the embedded
//! configuration needs before it can search the disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::tools::{run, Tools};

/// Where the grub.cfg under test lives inside the FAT file system (no leading slash).
pub const GRUB_CFG_PATH: &str = "EFI/BOOT/grub.cfg";

/// Where the GRUB binary lives inside the FAT file system: the removable-media path OVMF boots without any boot entry.
pub const GRUB_EFI_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// The console line that starts with this is followed by the GRUB device that holds the grub.cfg, e.g. `hd0,gpt1`.
pub const MARKER_ROOT: &str = "EDGE-HARNESS root=";

/// The console line printed when the grub.cfg under test returned instead of halting or booting.
pub const MARKER_RETURNED: &str = "EDGE-HARNESS grub.cfg returned";

/// The console line printed when no disk holds [`GRUB_CFG_PATH`].
pub const MARKER_NOT_FOUND: &str = "EDGE-HARNESS grub.cfg not found";

/// Modules linked into the core image: what the embedded configuration uses before it reaches the disk.
const PRELOADED_MODULES: &str =
    "part_gpt part_msdos fat serial terminal search search_fs_file configfile echo test halt";

/// The configuration inside the memdisk, at `(memdisk)/boot/grub/grub.cfg`.
fn embedded_cfg() -> String {
    format!(
        "\
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
export timeout
if search --no-floppy --set=root --file /{GRUB_CFG_PATH}; then
    echo \"{MARKER_ROOT}$root\"
    configfile /{GRUB_CFG_PATH}
    echo \"{MARKER_RETURNED}\"
else
    echo \"{MARKER_NOT_FOUND}\"
fi
halt
"
    )
}

/// Builds the GRUB EFI binary into `dir` (created if needed) and returns its path.
///
/// The binary is written under a temporary name and renamed into place, so harnesses built concurrently in the same
/// directory never see a half-written file.
pub fn build_efi(tools: &Tools, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|source| Error::WriteFile { path: dir.to_owned(), source })?;
    let scratch = tempfile::Builder::new()
        .prefix("grub-efi.")
        .tempdir_in(dir)
        .map_err(|source| Error::WriteFile { path: dir.to_owned(), source })?;
    let cfg = scratch.path().join("embedded.cfg");
    std::fs::write(&cfg, embedded_cfg()).map_err(|source| Error::WriteFile { path: cfg.clone(), source })?;
    let built = scratch.path().join("BOOTX64.EFI");
    run(Command::new(&tools.grub_mkstandalone)
        .arg("--format=x86_64-efi")
        .arg("--directory")
        .arg(&tools.grub_modules)
        .arg(format!("--modules={PRELOADED_MODULES}"))
        .args(["--locales=", "--fonts=", "--themes="])
        .arg("--output")
        .arg(&built)
        .arg(format!("boot/grub/grub.cfg={}", cfg.display())))?;
    let efi = dir.join("BOOTX64.EFI");
    std::fs::rename(&built, &efi).map_err(|source| Error::WriteFile { path: efi.clone(), source })?;
    Ok(efi)
}
