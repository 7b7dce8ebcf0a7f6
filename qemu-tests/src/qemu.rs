//! Booting a disk image under OVMF in QEMU and collecting its serial console.
//!
//! Every boot is software-emulated (`-accel tcg`; KVM is not to be relied on), has no network and no display, gets a
//! fresh copy of the OVMF variable store (so no boot entry from an earlier boot points at a stale device) and ends
//! when the guest powers off, when the console shows an awaited text, or at the timeout. A guest reset also ends the
//! run (`-no-reboot`), so a GRUB that falls through to `reboot` cannot loop. A process-wide limit keeps at most one
//! boot per CPU running, however many tests and threads ask for boots.

use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::console;
use crate::error::{Error, Result};
use crate::grub::MARKER_ROOT;
use crate::image::DiskImage;
use crate::tools::{describe, Tools};

/// How many console lines an error carries.
const TAIL_LINES: usize = 40;

/// When a boot ends.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// QEMU is killed and the boot fails with [`Error::BootTimeout`] if it has not ended by then; the clock starts
    /// when QEMU starts, not while the boot waits for a free CPU.
    pub timeout: Duration,
    /// When set, QEMU is killed as soon as the raw console contains this text, and the boot ends with
    /// [`BootEnd::Stopped`]: the way to cut the power at a chosen point.
    pub stop_at: Option<String>,
}

impl BootOptions {
    /// Waits for the guest to power off, at most `timeout`.
    pub fn new(timeout: Duration) -> BootOptions {
        BootOptions { timeout, stop_at: None }
    }

    /// Kills QEMU as soon as the console shows `text` (which must not span an escape sequence).
    pub fn stop_at(mut self, text: impl Into<String>) -> BootOptions {
        self.stop_at = Some(text.into());
        self
    }
}

/// How a boot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootEnd {
    /// The guest powered off (GRUB's `halt`) or reset, and QEMU exited by itself.
    PoweredOff,
    /// The console showed [`BootOptions::stop_at`] and QEMU was killed.
    Stopped,
}

/// The serial console of one boot, as plain text.
#[derive(Debug, Clone)]
pub struct BootLog {
    console: String,
    end: BootEnd,
    elapsed: Duration,
}

impl BootLog {
    /// Everything the guest wrote to the serial port, with terminal control sequences removed.
    pub fn console(&self) -> &str {
        &self.console
    }

    /// The console lines, without trailing white space.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.console.lines().map(str::trim_end)
    }

    /// Whether some console line is exactly `line` (trailing white space ignored).
    pub fn has_line(&self, line: &str) -> bool {
        self.lines().any(|l| l == line)
    }

    /// The rest of every console line that starts with `prefix`, in order.
    pub fn after(&self, prefix: &str) -> Vec<&str> {
        self.lines().filter_map(|l| l.strip_prefix(prefix)).collect()
    }

    /// The GRUB device that held the grub.cfg under test (`hd0,gpt1`, `hd0`), if the harness configuration found it.
    pub fn grub_root(&self) -> Option<&str> {
        self.after(MARKER_ROOT).into_iter().next()
    }

    /// The last `n_lines` console lines, for assertion messages.
    pub fn tail(&self, n_lines: usize) -> String {
        console::tail(&self.console, n_lines)
    }

    /// How the boot ended.
    pub fn end(&self) -> BootEnd {
        self.end
    }

    /// Wall time from QEMU's start to its exit, for reports (never assert on it).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// The most boots that run at once in this process: one per CPU.
pub fn max_parallel_boots() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// Boots `image` once with `tools`' QEMU and OVMF.
pub(crate) fn boot(tools: &Tools, image: &DiskImage, options: &BootOptions) -> Result<BootLog> {
    // The variable store copy lives beside the image and goes away with this boot.
    let dir = image.path().parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let vars = tempfile::Builder::new()
        .prefix(".OVMF_VARS.")
        .tempfile_in(dir)
        .map_err(|source| Error::WriteFile { path: dir.to_owned(), source })?;
    std::fs::copy(&tools.ovmf_vars, vars.path())
        .map_err(|source| Error::WriteFile { path: vars.path().to_owned(), source })?;

    let mut cmd = Command::new(&tools.qemu);
    cmd.args(["-nodefaults", "-no-user-config", "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "1"])
        .args(["-nic", "none", "-display", "none", "-no-reboot", "-serial", "stdio"])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", option_path(&tools.ovmf_code)))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=1,file={}", option_path(vars.path())))
        .arg("-drive")
        .arg(format!("if=none,id=disk0,format=raw,file={}", option_path(image.path())))
        .args(["-device", "virtio-blk-pci,drive=disk0"]);
    run_qemu(cmd, options)
}

/// Runs one QEMU command line to its end, for every kind of guest: holds a CPU slot, captures the serial console
/// (stdout) and stderr, stops at `options.stop_at` or kills QEMU at the timeout (a power cut), and turns a failed
/// exit or a timeout into an error that carries the console's tail.
pub(crate) fn run_qemu(mut cmd: Command, options: &BootOptions) -> Result<BootLog> {
    let _cpu = CpuSlot::acquire();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let command = describe(&cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| Error::Spawn { command, source })?;

    let (matched_tx, matched_rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout was set to piped");
    let stop_at = options.stop_at.clone();
    let console_reader = thread::spawn(move || read_console(stdout, stop_at.as_deref(), matched_tx));
    let mut stderr = child.stderr.take().expect("stderr was set to piped");
    let stderr_reader = thread::spawn(move || {
        let mut text = Vec::new();
        // A read error only shortens the diagnostics; the console decides the outcome.
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });

    // The console reader sends once when it sees `stop_at`, and hangs up at end of file, which is when QEMU exits.
    let (end, timed_out) = match matched_rx.recv_timeout(options.timeout) {
        Ok(()) => {
            kill(&mut child);
            (BootEnd::Stopped, false)
        }
        Err(RecvTimeoutError::Disconnected) => (BootEnd::PoweredOff, false),
        Err(RecvTimeoutError::Timeout) => {
            kill(&mut child);
            (BootEnd::PoweredOff, true)
        }
    };
    let status = child.wait();
    let elapsed = started.elapsed();
    let raw = console_reader.join().expect("the console reader does not panic");
    let stderr = stderr_reader.join().expect("the stderr reader does not panic");
    let status = status.map_err(|source| Error::WaitQemu { source })?;
    let raw = raw.map_err(|source| Error::ReadConsole { source })?;
    let console = console::clean(&raw);
    if timed_out {
        return Err(Error::BootTimeout { timeout: options.timeout, console_tail: console::tail(&console, TAIL_LINES) });
    }
    if end == BootEnd::PoweredOff && !status.success() {
        return Err(Error::QemuFailed { status, stderr, console_tail: console::tail(&console, TAIL_LINES) });
    }
    Ok(BootLog { console, end, elapsed })
}

/// Boots each image, at most [`max_parallel_boots`] at a time, and returns the results in the order given.
pub(crate) fn boot_all(tools: &Tools, images: &[DiskImage], options: &BootOptions) -> Vec<Result<BootLog>> {
    thread::scope(|scope| {
        let handles: Vec<_> = images.iter().map(|image| scope.spawn(move || boot(tools, image, options))).collect();
        handles.into_iter().map(|handle| handle.join().expect("a boot thread does not panic")).collect()
    })
}

/// Reads QEMU's stdout to its end; sends one message on `matched` the first time the bytes contain `stop_at`.
fn read_console(mut stdout: impl Read, stop_at: Option<&str>, matched: mpsc::Sender<()>) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut waiting_for = stop_at.map(str::as_bytes).filter(|text| !text.is_empty());
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stdout.read(&mut chunk) {
            Ok(0) => return Ok(raw),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        // Only the new bytes and the few before them can complete a match.
        let from = raw.len().saturating_sub(waiting_for.map_or(0, <[u8]>::len));
        raw.extend_from_slice(&chunk[..n]);
        if let Some(text) = waiting_for {
            if raw[from..].windows(text.len()).any(|window| window == text) {
                waiting_for = None;
                // The boot may already have ended by timeout and dropped the receiver; nothing is lost then.
                let _ = matched.send(());
            }
        }
    }
}

/// Kills QEMU, as a power cut would; it may have exited already, which is just as good.
fn kill(child: &mut Child) {
    let _ = child.kill();
}

/// A path inside a QEMU `-drive` option, where a comma must be doubled.
pub(crate) fn option_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// One of the [`max_parallel_boots`] CPUs, held for the length of a boot of any kind (x86 GRUB or arm64 U-Boot), so
/// that every QEMU in the process shares one limit.
pub(crate) struct CpuSlot;

/// How many boots hold a CPU now.
static BUSY: Mutex<usize> = Mutex::new(0);
/// Signalled whenever a boot gives its CPU back.
static FREED: Condvar = Condvar::new();

impl CpuSlot {
    /// Waits for a free CPU.
    pub(crate) fn acquire() -> CpuSlot {
        let limit = max_parallel_boots();
        // The counter stays right even if a holder panicked, so a poisoned lock is used as is.
        let mut busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy >= limit {
            busy = FREED.wait(busy).unwrap_or_else(PoisonError::into_inner);
        }
        *busy += 1;
        CpuSlot
    }
}

impl Drop for CpuSlot {
    fn drop(&mut self) {
        let mut busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
        *busy -= 1;
        FREED.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched(chunks: &[&[u8]], stop_at: &str) -> bool {
        struct Chunks<'a>(std::slice::Iter<'a, &'a [u8]>);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some(chunk) = self.0.next() else { return Ok(0) };
                buf[..chunk.len()].copy_from_slice(chunk);
                Ok(chunk.len())
            }
        }
        let (tx, rx) = mpsc::channel();
        let raw = read_console(Chunks(chunks.iter()), Some(stop_at), tx).expect("reading from memory");
        assert_eq!(raw, chunks.concat());
        rx.try_iter().count() == 1
    }

    #[test]
    fn stop_text_is_found_across_reads() {
        assert!(matched(&[b"abc EDGE-", b"HANG def"], "EDGE-HANG"));
        assert!(matched(&[b"EDGE-HANG", b"EDGE-HANG"], "EDGE-HANG"));
        assert!(!matched(&[b"EDGE-", b"HAN", b"g"], "EDGE-HANG"));
        assert!(!matched(&[], "EDGE-HANG"));
    }

    #[test]
    fn commas_are_doubled() {
        assert_eq!(option_path(Path::new("/tmp/a,b/disk.img")), "/tmp/a,,b/disk.img");
    }
}
