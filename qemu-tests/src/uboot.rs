//! U-Boot on QEMU's arm64 `virt` machine: builds a small disk whose boot script U-Boot's distro boot runs, boots it
//! (software-emulated, no network) until the guest powers off, and reads back the raw state area the script wrote.
//!
//! It is a module of its own, beside the OVMF and GRUB harness, because it needs other host tools (the arm64 QEMU,
//! Debian's `u-boot-qemu` firmware and `mkimage`) and another disk: an MBR disk (U-Boot's distro boot scans its
//! partitions for `/boot.scr`) with the boot script on a FAT partition and the boot state in a raw partition.
//!
//! ```text
//! blocks (512 bytes)   partition   content
//! 2048..10240          1, FAT      /boot.scr, compiled from the script with mkimage
//! 10240..12288         2, raw      the state area: whatever UbootImage::state gives, from its first block
//! 12288..14336         3, FAT      slot A: the files UbootImage::slot_file gives it (empty and unformatted if none)
//! 14336..16384         4, FAT      slot B: the same
//! ```
//!
//! The layout matches `bootctl::ubootscript::UbootConfig::default()`: the state area starts at
//! [`STATE_FIRST_BLOCK`].

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::qemu::run_qemu;
use crate::tools::{find_program, mtools, run};
use crate::BootOptions;

/// Debian's U-Boot for QEMU's arm64 `virt` machine (package u-boot-qemu).
pub const UBOOT_FIRMWARE: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
/// Bytes of a disk block.
pub const BLOCK_BYTES: u64 = 512;
/// First block of the FAT partition holding `/boot.scr`.
pub const SCRIPT_FIRST_BLOCK: u64 = 2048;
/// First block of the raw state partition.
pub const STATE_FIRST_BLOCK: u64 = 10240;
/// Bytes of the raw state partition.
pub const STATE_BYTES: u64 = 1024 * 1024;
/// Total blocks of the disk.
const DISK_BLOCKS: u64 = 16384;
/// The partitions: (first block, blocks, MBR type).
const PARTITIONS: [(u64, u64, u8); 4] = [
    (SCRIPT_FIRST_BLOCK, STATE_FIRST_BLOCK - SCRIPT_FIRST_BLOCK, 0x0c),
    (STATE_FIRST_BLOCK, STATE_BYTES / BLOCK_BYTES, 0xda),
    (12288, 2048, 0x83),
    (14336, 2048, 0x83),
];

/// The host programs the U-Boot harness uses.
#[derive(Debug, Clone)]
pub struct UbootTools {
    /// `qemu-system-aarch64`.
    pub qemu: PathBuf,
    /// U-Boot for the `virt` machine, given to QEMU as `-bios`.
    pub firmware: PathBuf,
    /// `mkimage`, which compiles a script into a legacy image U-Boot's `source` runs.
    pub mkimage: PathBuf,
    /// `mformat`.
    pub mformat: PathBuf,
    /// `mcopy`.
    pub mcopy: PathBuf,
    /// `mmd`.
    pub mmd: PathBuf,
}

impl UbootTools {
    /// A QEMU command for the virt machine (a Cortex-A57, TCG, one CPU, `memory_mib`) booting U-Boot from the first
    /// flash bank, with no network and the console on stdio; the caller adds the disks and what else it needs.
    pub fn virt_machine(&self, memory_mib: u32) -> Command {
        let mut cmd = Command::new(&self.qemu);
        cmd.args(["-nodefaults", "-no-user-config", "-machine", "virt", "-cpu", "cortex-a57", "-smp", "1"])
            .args(["-m", &memory_mib.to_string(), "-accel", "tcg", "-display", "none", "-serial", "stdio"])
            .arg("-bios")
            .arg(&self.firmware);
        cmd
    }

    /// Finds every tool on `PATH` and the firmware; lists everything missing at once.
    pub fn find() -> Result<UbootTools> {
        let search_path = std::env::var_os("PATH").unwrap_or_default();
        let dirs: Vec<PathBuf> = std::env::split_paths(&search_path).collect();
        let mut missing = Vec::new();
        let mut program = |name: &str, package: &str| {
            find_program(&dirs, name).unwrap_or_else(|| {
                missing.push(format!("{name} (Debian package {package})"));
                PathBuf::new()
            })
        };
        let qemu = program("qemu-system-aarch64", "qemu-system-arm");
        let mkimage = program("mkimage", "u-boot-tools");
        let mformat = program("mformat", "mtools");
        let mcopy = program("mcopy", "mtools");
        let mmd = program("mmd", "mtools");
        let firmware = PathBuf::from(UBOOT_FIRMWARE);
        if !firmware.is_file() {
            missing.push(format!("{UBOOT_FIRMWARE} (Debian package u-boot-qemu)"));
        }
        if !missing.is_empty() {
            return Err(Error::MissingTools { missing });
        }
        Ok(UbootTools { qemu, firmware, mkimage, mformat, mcopy, mmd })
    }
}

/// What goes on a U-Boot disk: the boot script's source and the bytes of the state area.
#[derive(Debug, Clone)]
pub struct UbootImage {
    script: String,
    state: Vec<u8>,
    /// Files of the slot partitions: (partition number, path, bytes).
    slot_files: Vec<(u32, String, Vec<u8>)>,
}

impl UbootImage {
    /// A disk whose `/boot.scr` is `script` compiled by `mkimage`, with an all-zero state area.
    pub fn new(script: impl Into<String>) -> UbootImage {
        UbootImage { script: script.into(), state: Vec::new(), slot_files: Vec::new() }
    }

    /// Puts `bytes` at the start of the state area (at most [`STATE_BYTES`]).
    pub fn state(mut self, bytes: impl Into<Vec<u8>>) -> UbootImage {
        self.state = bytes.into();
        self
    }

    /// Puts a file at `name` (such as `boot/vmlinuz`; directories are made) in slot partition `part` (3 or 4), which is
    /// then formatted FAT.
    pub fn slot_file(mut self, part: u32, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> UbootImage {
        self.slot_files.push((part, name.into(), bytes.into()));
        self
    }

    /// Builds the disk at `path`, replacing any file there.
    pub fn build(&self, tools: &UbootTools, path: &Path) -> Result<UbootDisk> {
        if self.state.len() as u64 > STATE_BYTES {
            return Err(Error::BadName {
                name: "state area".to_owned(),
                reason: "larger than the state partition (STATE_BYTES)",
            });
        }
        let write_err = |source| Error::WriteFile { path: path.to_owned(), source };
        let file = std::fs::File::create(path).map_err(write_err)?;
        file.set_len(DISK_BLOCKS * BLOCK_BYTES).map_err(write_err)?;
        file.write_all_at(&mbr(), 0).map_err(write_err)?;
        file.write_all_at(&self.state, STATE_FIRST_BLOCK * BLOCK_BYTES).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        drop(file);

        let scratch = tempfile::Builder::new()
            .prefix("qemu-tests.uboot.")
            .tempdir()
            .map_err(|source| Error::WriteFile { path: std::env::temp_dir(), source })?;
        let cmd = scratch.path().join("boot.cmd");
        let scr = scratch.path().join("boot.scr");
        std::fs::write(&cmd, &self.script).map_err(|source| Error::WriteFile { path: cmd.clone(), source })?;
        run(Command::new(&tools.mkimage)
            .args(["-A", "arm64", "-T", "script", "-C", "none", "-d"])
            .arg(&cmd)
            .arg(&scr))?;
        let fs = format!("{}@@{}", path.display(), SCRIPT_FIRST_BLOCK * BLOCK_BYTES);
        let fat_blocks = PARTITIONS[0].1.to_string();
        run(mtools(&tools.mformat, fs.as_ref()).args(["-T", &fat_blocks, "-h", "1", "-s", &fat_blocks, "::"]))?;
        run(mtools(&tools.mcopy, fs.as_ref()).arg(&scr).arg("::boot.scr"))?;
        for part in [3, 4] {
            let files: Vec<_> = self.slot_files.iter().filter(|(p, _, _)| *p == part).collect();
            if files.is_empty() {
                continue;
            }
            let (first, n_blocks, _) = PARTITIONS[part as usize - 1];
            let fs = format!("{}@@{}", path.display(), first * BLOCK_BYTES);
            let n_blocks = n_blocks.to_string();
            run(mtools(&tools.mformat, fs.as_ref()).args(["-T", &n_blocks, "-h", "1", "-s", &n_blocks, "::"]))?;
            let mut made = Vec::new();
            for (i, (_, name, bytes)) in files.into_iter().enumerate() {
                let name = name.trim_start_matches('/');
                let components: Vec<&str> = name.split('/').collect();
                for depth in 1..components.len() {
                    let dir = components[..depth].join("/");
                    if !made.contains(&dir) {
                        run(mtools(&tools.mmd, fs.as_ref()).arg(format!("::{dir}")))?;
                        made.push(dir);
                    }
                }
                let host = scratch.path().join(format!("slot{part}.{i}"));
                std::fs::write(&host, bytes).map_err(|source| Error::WriteFile { path: host.clone(), source })?;
                run(mtools(&tools.mcopy, fs.as_ref()).arg(&host).arg(format!("::{name}")))?;
            }
        }
        Ok(UbootDisk { path: path.to_owned(), read_only: false })
    }
}

/// A master boot record with [`PARTITIONS`], the first one marked bootable.
fn mbr() -> [u8; 512] {
    let mut b = [0u8; 512];
    for (i, (first, n_blocks, kind)) in PARTITIONS.iter().enumerate() {
        let e = &mut b[446 + 16 * i..446 + 16 * (i + 1)];
        e[0] = if i == 0 { 0x80 } else { 0 };
        e[4] = *kind;
        e[8..12].copy_from_slice(&u32::try_from(*first).expect("the disk is small").to_le_bytes());
        e[12..16].copy_from_slice(&u32::try_from(*n_blocks).expect("the disk is small").to_le_bytes());
    }
    b[510] = 0x55;
    b[511] = 0xaa;
    b
}

/// A built U-Boot disk image.
#[derive(Debug, Clone)]
pub struct UbootDisk {
    path: PathBuf,
    read_only: bool,
}

impl UbootDisk {
    /// The same disk, attached read-only: every write by U-Boot fails (a write-protected boot partition).
    pub fn read_only(self) -> UbootDisk {
        UbootDisk { read_only: true, ..self }
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first `len` bytes of the state area, as the last boot left them.
    pub fn read_state(&self, len: usize) -> Result<Vec<u8>> {
        let read_err = |source| Error::ReadFile { path: self.path.clone(), source };
        let file = std::fs::File::open(&self.path).map_err(read_err)?;
        let mut b = vec![0; len];
        file.read_exact_at(&mut b, STATE_FIRST_BLOCK * BLOCK_BYTES).map_err(read_err)?;
        Ok(b)
    }
}

/// What one U-Boot boot left: the same record as an x86 boot's.
pub type UbootLog = crate::BootLog;

/// Boots `disk` under U-Boot until the guest powers off (or resets); fails with [`Error::BootTimeout`] after
/// `timeout`. At most [`crate::max_parallel_boots`] boots of any kind run at once in the process.
pub fn boot(tools: &UbootTools, disk: &UbootDisk, timeout: Duration) -> Result<UbootLog> {
    let mut cmd = tools.virt_machine(512);
    cmd.args(["-nic", "none", "-no-reboot"])
        .arg("-drive")
        .arg(format!(
            "if=none,id=disk0,format=raw,file={}{}",
            disk.path.to_string_lossy().replace(',', ",,"),
            if disk.read_only { ",readonly=on" } else { "" }
        ))
        .args(["-device", "virtio-blk-device,drive=disk0"]);
    run_qemu(cmd, &BootOptions::new(timeout))
}

/// Bytes of a flash bank of the virt machine, as QEMU requires of a `-drive if=pflash` image.
pub const FLASH_BYTES: u64 = 64 << 20;

/// Makes `flash`, an image of the virt machine's second flash bank where Debian's `qemu_arm64` U-Boot keeps its
/// environment, holding U-Boot's built-in environment changed by `commands` (such as `setenv bootdelay 0`): boots
/// U-Boot with an empty bank and no disk, stops its autoboot at the prompt, runs the commands and `saveenv`, and
/// powers off. It is what an operator does once at a board's console; U-Boot writes the environment itself.
pub fn save_env(tools: &UbootTools, flash: &Path, commands: &str) -> Result<()> {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let write_err = |source| Error::WriteFile { path: flash.to_owned(), source };
    let file = std::fs::File::create(flash).map_err(write_err)?;
    file.set_len(FLASH_BYTES).map_err(write_err)?;
    drop(file);
    let mut cmd = tools.virt_machine(128);
    cmd.args(["-nic", "none", "-no-reboot"])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=1,file={}", crate::qemu::option_path(flash)));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let command = crate::tools::describe(&cmd);
    let _cpu = crate::qemu::CpuSlot::acquire();
    let mut child = cmd.spawn().map_err(|source| Error::Spawn { command, source })?;
    let mut stdin = child.stdin.take().expect("stdin was set to piped");
    let mut stdout = child.stdout.take().expect("stdout was set to piped");
    // The console is read on a thread, so that a U-Boot that never prompts ends in a timeout, not a hang.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 || tx.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let timeout = Duration::from_secs(120);
    let deadline = std::time::Instant::now() + timeout;
    let mut console = Vec::new();
    // Each text is looked for after the one before it.
    let mut matched = 0;
    let mut wait_for = |text: &str, console: &mut Vec<u8>| -> Result<()> {
        loop {
            if let Some(at) = console[matched..].windows(text.len()).position(|w| w == text.as_bytes()) {
                matched += at + text.len();
                return Ok(());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => console.extend_from_slice(&bytes),
                Err(why) => {
                    // Disconnected: QEMU closed its console, it has exited.
                    return Err(Error::ConsoleTimeout {
                        waiting_for: format!("{text:?}"),
                        timeout,
                        ended: why == std::sync::mpsc::RecvTimeoutError::Disconnected,
                        console_tail: crate::console::tail(&crate::console::clean(console), 40),
                    });
                }
            }
        }
    };
    let talk = (|| -> Result<()> {
        wait_for("Hit any key to stop autoboot", &mut console)?;
        let _ = stdin.write_all(b"\n");
        wait_for("=> ", &mut console)?;
        let _ = stdin.write_all(format!("{commands}; saveenv; poweroff\n").as_bytes());
        wait_for("Saving Environment to Flash", &mut console)?;
        wait_for("OK", &mut console)
    })();
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    let _ = reader.join();
    talk
}

/// Boots every disk, each until it powers off or `timeout`, at most one per CPU at a time; results come back in the
/// order of `disks`. Each disk must be a different file (QEMU locks the file it boots).
pub fn boot_all(tools: &UbootTools, disks: &[UbootDisk], timeout: Duration) -> Vec<Result<UbootLog>> {
    thread::scope(|scope| {
        let handles: Vec<_> = disks.iter().map(|disk| scope.spawn(move || boot(tools, disk, timeout))).collect();
        handles.into_iter().map(|handle| handle.join().expect("a boot thread does not panic")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_in_order_and_fit() {
        let mut end = 1;
        for (first, n_blocks, _) in PARTITIONS {
            assert!(first >= end);
            end = first + n_blocks;
        }
        assert!(end <= DISK_BLOCKS);
        let b = mbr();
        assert_eq!(b[446], 0x80);
        assert_eq!(b[446 + 16 + 8..446 + 16 + 12], u32::try_from(STATE_FIRST_BLOCK).expect("small").to_le_bytes());
    }
}
