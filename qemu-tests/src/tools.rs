//! The host programs and firmware files the harness drives, found once, and the one helper that runs them.
//!
//! A missing tool is an error that lists every missing item with its package, never a skipped test: a machine that
//! cannot boot GRUB must not report the GRUB checks as passed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// Firmware pairs tried in order: the read-only code and the variable store template that belongs with it.
const OVMF_PAIRS: &[(&str, &str)] = &[
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
];

/// Where `grub-mkstandalone` finds the x86_64 EFI modules (Debian package grub-efi-amd64-bin).
const GRUB_EFI_MODULES: &str = "/usr/lib/grub/x86_64-efi";

/// Paths of every host program and firmware file the harness uses.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// OVMF firmware code, attached read-only.
    pub ovmf_code: PathBuf,
    /// OVMF variable store template, copied for every boot.
    pub ovmf_vars: PathBuf,
    /// `grub-mkstandalone`.
    pub grub_mkstandalone: PathBuf,
    /// `grub-editenv`.
    pub grub_editenv: PathBuf,
    /// The GRUB x86_64-efi module directory.
    pub grub_modules: PathBuf,
    /// `mformat`.
    pub mformat: PathBuf,
    /// `mcopy`.
    pub mcopy: PathBuf,
    /// `mmd`.
    pub mmd: PathBuf,
    /// `mdel`.
    pub mdel: PathBuf,
    /// `mdir`.
    pub mdir: PathBuf,
    /// `mshowfat`, which lists the clusters of a file.
    pub mshowfat: PathBuf,
}

impl Tools {
    /// Finds every tool on `PATH` and the firmware in its usual places; lists everything missing at once.
    pub fn find() -> Result<Tools> {
        let search_path = std::env::var_os("PATH").unwrap_or_default();
        let dirs: Vec<PathBuf> = std::env::split_paths(&search_path).collect();
        let mut missing = Vec::new();
        let mut program = |name: &str, package: &str| match find_program(&dirs, name) {
            Some(path) => path,
            None => {
                missing.push(format!("{name} (Debian package {package})"));
                PathBuf::new()
            }
        };
        let qemu = program("qemu-system-x86_64", "qemu-system-x86");
        let grub_mkstandalone = program("grub-mkstandalone", "grub-common");
        let grub_editenv = program("grub-editenv", "grub-common");
        let mformat = program("mformat", "mtools");
        let mcopy = program("mcopy", "mtools");
        let mmd = program("mmd", "mtools");
        let mdel = program("mdel", "mtools");
        let mdir = program("mdir", "mtools");
        let mshowfat = program("mshowfat", "mtools");
        let (ovmf_code, ovmf_vars) =
            match OVMF_PAIRS.iter().find(|(code, vars)| Path::new(code).is_file() && Path::new(vars).is_file()) {
                Some((code, vars)) => (PathBuf::from(code), PathBuf::from(vars)),
                None => {
                    missing.push(format!("{} (Debian package ovmf)", OVMF_PAIRS[0].0));
                    (PathBuf::new(), PathBuf::new())
                }
            };
        let grub_modules = PathBuf::from(GRUB_EFI_MODULES);
        if !grub_modules.join("loadenv.mod").is_file() {
            missing.push(format!("{GRUB_EFI_MODULES}/loadenv.mod (Debian package grub-efi-amd64-bin)"));
        }
        if !missing.is_empty() {
            return Err(Error::MissingTools { missing });
        }
        Ok(Tools {
            qemu,
            ovmf_code,
            ovmf_vars,
            grub_mkstandalone,
            grub_editenv,
            grub_modules,
            mformat,
            mcopy,
            mmd,
            mdel,
            mdir,
            mshowfat,
        })
    }
}

/// The first executable file called `name` in `dirs`.
pub(crate) fn find_program(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0))
}

/// The command line of `cmd`, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` to completion with no stdin and returns its output; a failure status is an error carrying stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let command = describe(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| Error::Spawn { command: command.clone(), source })?;
    if !output.status.success() {
        return Err(Error::Command {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output)
}

/// An mtools command on the file system `image_arg` (a path, with `@@offset` for a partition), without the geometry
/// sanity check that disk images fail (they are not floppies).
pub(crate) fn mtools(program: &Path, image_arg: &OsStr) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(image_arg);
    cmd
}
