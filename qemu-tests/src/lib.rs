//! The QEMU boot harness: boots OVMF and a real GRUB on small disk images and reads back what GRUB wrote.
//!
//! A [`Harness`] finds the host tools once and builds one standalone GRUB EFI binary. A [`GrubImage`] describes a
//! disk (a grub.cfg and other files, such as GRUB environment blocks) and builds it into a [`DiskImage`] with mtools.
//! [`Harness::boot`] runs the image in QEMU until GRUB halts and returns the serial console as a [`BootLog`];
//! [`DiskImage::read_file`] then reads back the files GRUB's `save_env` rewrote in place.
//!
//! ```no_run
//! # fn main() -> qemu_tests::Result<()> {
//! use std::time::Duration;
//! use qemu_tests::{GrubImage, Harness};
//!
//! let harness = Harness::new(std::path::Path::new("target/tmp"))?;
//! let env = harness.editenv_create(&[("x", "1")])?;
//! let cfg = "load_env -f ($root)/env/a.env\necho \"EDGE-RESULT x=$x\"\nhalt\n";
//! let image = GrubImage::new(cfg).file("env/a.env", env).build(&harness, "target/tmp/a.img".as_ref())?;
//! let log = harness.boot(&image, Duration::from_secs(120))?;
//! assert!(log.has_line("EDGE-RESULT x=1"));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod console;
mod error;
mod grub;
mod image;
pub mod node;
mod qemu;
mod tools;
pub mod uboot;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

pub use error::{report, Error, Result};
pub use grub::{GRUB_CFG_PATH, GRUB_EFI_PATH, MARKER_NOT_FOUND, MARKER_RETURNED, MARKER_ROOT};
pub use image::{DiskImage, GrubImage, Layout, MAX_SIZE_MIB, MIN_SIZE_MIB};
pub use qemu::{max_parallel_boots, BootEnd, BootLog, BootOptions};
pub use tools::Tools;
pub use vm::{log_dir, Arch, ShellOutput, Vm, VmOptions, HOST_SERVER_ADDR};

/// The host tools and the GRUB binary every image of a test run boots.
#[derive(Debug, Clone)]
pub struct Harness {
    tools: Arc<Tools>,
    efi: PathBuf,
}

impl Harness {
    /// Finds the tools (failing with [`Error::MissingTools`] if any is absent) and builds the GRUB EFI binary into
    /// `work_dir/grub-efi/`; tests pass `env!("CARGO_TARGET_TMPDIR")`.
    pub fn new(work_dir: &Path) -> Result<Harness> {
        let tools = Tools::find()?;
        let efi = grub::build_efi(&tools, &work_dir.join("grub-efi"))?;
        Ok(Harness { tools: Arc::new(tools), efi })
    }

    /// The tools in use.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    pub(crate) fn tools_arc(&self) -> Arc<Tools> {
        Arc::clone(&self.tools)
    }

    /// The GRUB EFI binary every image gets as [`GRUB_EFI_PATH`].
    pub fn efi_path(&self) -> &Path {
        &self.efi
    }

    /// Boots `image` until the guest powers off; fails with [`Error::BootTimeout`] after `timeout`.
    pub fn boot(&self, image: &DiskImage, timeout: Duration) -> Result<BootLog> {
        qemu::boot(&self.tools, image, &BootOptions::new(timeout))
    }

    /// Boots `image` with explicit [`BootOptions`].
    pub fn boot_with(&self, image: &DiskImage, options: &BootOptions) -> Result<BootLog> {
        qemu::boot(&self.tools, image, options)
    }

    /// Boots every image, [`max_parallel_boots`] at a time, each until it powers off or `timeout`; results come back
    /// in the order of `images`. Each image must be a different file (QEMU locks the file it boots).
    pub fn boot_all(&self, images: &[DiskImage], timeout: Duration) -> Vec<Result<BootLog>> {
        qemu::boot_all(&self.tools, images, &BootOptions::new(timeout))
    }

    /// A GRUB environment block made by the real `grub-editenv`: `create`, then `set` for each variable in order.
    pub fn editenv_create(&self, vars: &[(&str, &str)]) -> Result<Vec<u8>> {
        let scratch = scratch_dir()?;
        let file = scratch.path().join("grubenv");
        tools::run(Command::new(&self.tools.grub_editenv).arg(&file).arg("create"))?;
        if !vars.is_empty() {
            tools::run(
                Command::new(&self.tools.grub_editenv)
                    .arg(&file)
                    .arg("set")
                    .args(vars.iter().map(|(name, value)| format!("{name}={value}"))),
            )?;
        }
        std::fs::read(&file).map_err(|source| Error::ReadFile { path: file, source })
    }

    /// The variables of an environment block as the real `grub-editenv list` prints them, in file order.
    pub fn editenv_list(&self, block: &[u8]) -> Result<Vec<(String, String)>> {
        let scratch = scratch_dir()?;
        let file = scratch.path().join("grubenv");
        std::fs::write(&file, block).map_err(|source| Error::WriteFile { path: file.clone(), source })?;
        let output = tools::run(Command::new(&self.tools.grub_editenv).arg(&file).arg("list"))?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| match line.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (line.to_owned(), String::new()),
            })
            .collect())
    }
}

/// A temporary directory for a tool's input or output files.
fn scratch_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("qemu-tests.")
        .tempdir()
        .map_err(|source| Error::WriteFile { path: std::env::temp_dir(), source })
}

/// Reads the file at `name` from `image`: shorthand for [`DiskImage::read_file`].
pub fn read_file(image: &DiskImage, name: &str) -> Result<Vec<u8>> {
    image.read_file(name)
}

/// Runs a host command to completion and returns its stdout; a failure status is an error naming the command and
/// carrying its stderr.
pub fn host_command(cmd: &mut std::process::Command) -> Result<String> {
    tools::run(cmd).map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A result a test cannot go on without: its value, or a panic with the whole report of the error.
pub fn ok<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{}", report(&err)))
}

/// Polls `what` once a second until it gives a value, for at most `limit`; panics naming `doing` after that.
pub fn wait_for<T>(limit: std::time::Duration, doing: &str, mut what: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(start.elapsed() < limit, "{doing}: not within {} s", limit.as_secs());
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
