//! A whole node in QEMU: its firmware (OVMF on an x86_64 q35 machine, U-Boot on an arm64 virt machine), the node's
//! GPT disk, the i6300esb watchdog, a restricted user network, a command shell on a virtio serial port and QMP; it
//! runs across the guest's reboots until the test ends it.
//!
//! Unlike [`crate::Harness::boot`], which runs one boot to its end, a [`Vm`] stays up while the test drives it:
//! it waits for console text ([`Vm::expect`]), runs commands in the guest ([`Vm::sh`]), cuts the power (a SIGKILL of
//! QEMU, [`Vm::power_cut`]) and powers on again with the same disk and firmware variables ([`Vm::power_on`]).
//! Every console byte also goes to a log file under [`log_dir`]; the file is removed when the `Vm` is dropped
//! outside a panic, and kept when its test failed, so `.ci/run` can print it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::console;
use crate::error::{Error, Result};
use crate::qemu::{option_path, CpuSlot};
use crate::tools::{describe, Tools};
use crate::uboot::UbootTools;

/// The guest address the host's test server is forwarded to (`http://10.0.2.100/` and `https://10.0.2.100/` in the
/// guest: ports 80 and 443 both reach it).
pub const HOST_SERVER_ADDR: &str = "10.0.2.100";

/// How many console lines an error carries.
const TAIL_LINES: usize = 60;

/// The folder where console logs are written, and kept when a test fails: `target/qemu-logs`.
pub fn log_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/qemu-logs")
}

/// Where the line holding byte `at` of `raw` starts, and where it ends (its newline; `None` while it has none yet).
fn line_bounds(raw: &[u8], at: usize) -> (usize, Option<usize>) {
    let start = raw[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    (start, raw[at..].iter().position(|&b| b == b'\n').map(|p| at + p))
}

/// The architecture of a node, and with it the machine QEMU emulates and the firmware that boots it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86_64: QEMU's q35 machine, OVMF, and the node's GRUB on its ESP.
    X86_64,
    /// arm64: QEMU's virt machine with a Cortex-A57 (far faster under TCG than `-cpu max`), and Debian's U-Boot for
    /// it, which runs the node's boot script.
    Aarch64,
}

impl Arch {
    /// Its name as the kernel and Rust say it: `x86_64`, `aarch64`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl Arch {
    /// The architecture named `name` ([`Arch::name`]).
    pub fn from_name(name: &str) -> Option<Arch> {
        [Arch::X86_64, Arch::Aarch64].into_iter().find(|a| a.name() == name)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The node's architecture.
    pub arch: Arch,
    /// aarch64: U-Boot's environment as the board keeps it, a 64 MiB image of the virt machine's second flash bank
    /// (copied for every node, as OVMF's variable store is); `None` boots U-Boot with its built-in environment.
    pub uboot_env: Option<PathBuf>,
    /// The node's disk (booted, and written by the guest).
    pub disk: PathBuf,
    /// More disks, attached after the boot disk (a USB stick stand-in), read-write.
    pub extra_disks: Vec<PathBuf>,
    /// The host port on 127.0.0.1 the guest reaches as `10.0.2.100`, ports 80 and 443; no forward when `None`.
    pub http_port: Option<u16>,
    /// A program the forward runs per guest connection to reach the host port: `busybox nc` (see `build.sh`).
    pub relay: Option<PathBuf>,
    /// Guest memory.
    pub memory_mib: u32,
    /// The console log's name (a test's name), unique among the tests of a run.
    pub name: String,
}

impl VmOptions {
    /// An x86_64 node booting `disk`, with 512 MiB and no network forward.
    pub fn new(name: impl Into<String>, disk: impl Into<PathBuf>) -> VmOptions {
        VmOptions {
            arch: Arch::X86_64,
            uboot_env: None,
            disk: disk.into(),
            extra_disks: Vec::new(),
            http_port: None,
            relay: None,
            memory_mib: 512,
            name: name.into(),
        }
    }
}

/// The console as received so far, shared with the thread reading QEMU's stdout.
#[derive(Default)]
struct ConsoleBuf {
    state: Mutex<ConsoleState>,
    grew: Condvar,
}

#[derive(Default)]
struct ConsoleState {
    raw: Vec<u8>,
    /// Whether the current QEMU process has exited (its stdout reached end of file).
    ended: bool,
}

/// What a command run with [`Vm::sh`] printed and how it exited.
#[derive(Debug, Clone)]
pub struct ShellOutput {
    /// The exit status of the command.
    pub code: i32,
    /// Its stdout and stderr, interleaved as written.
    pub output: String,
}

/// A running node; QEMU is killed when it is dropped.
pub struct Vm {
    tools: Arc<Tools>,
    /// aarch64: the arm64 QEMU and U-Boot.
    uboot: Option<UbootTools>,
    options: VmOptions,
    dir: tempfile::TempDir,
    /// The firmware's writable store, this node's copy: OVMF's variables, or U-Boot's environment flash.
    vars: PathBuf,
    child: Option<Child>,
    console: Arc<ConsoleBuf>,
    /// Where [`Vm::expect`] searches from: a byte offset into the raw console.
    cursor: usize,
    shell: Option<UnixStream>,
    shell_seq: u64,
    log_path: PathBuf,
    log: Arc<Mutex<File>>,
    reader: Option<thread::JoinHandle<()>>,
    started: Instant,
    _cpu: CpuSlot,
}

impl Vm {
    /// Starts QEMU with a fresh copy of the firmware's store; holds one of the process's CPU slots until dropped.
    pub fn start(tools: Arc<Tools>, options: VmOptions) -> Result<Vm> {
        let uboot = match options.arch {
            Arch::X86_64 => None,
            Arch::Aarch64 => Some(UbootTools::find()?),
        };
        let cpu = CpuSlot::acquire();
        let parent = options.disk.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = tempfile::Builder::new()
            .prefix("vm.")
            .tempdir_in(parent)
            .map_err(|source| Error::WriteFile { path: parent.to_owned(), source })?;
        let (store, vars) = match (options.arch, &options.uboot_env) {
            (Arch::X86_64, _) => (Some(&tools.ovmf_vars), dir.path().join("OVMF_VARS.fd")),
            (Arch::Aarch64, env) => (env.as_ref(), dir.path().join("uboot-env.img")),
        };
        if let Some(store) = store {
            std::fs::copy(store, &vars).map_err(|source| Error::WriteFile { path: vars.clone(), source })?;
        }
        let logs = log_dir();
        std::fs::create_dir_all(&logs).map_err(|source| Error::WriteFile { path: logs.clone(), source })?;
        let log_path = logs.join(format!("{}.log", options.name));
        let log = File::create(&log_path).map_err(|source| Error::WriteFile { path: log_path.clone(), source })?;
        let mut vm = Vm {
            tools,
            uboot,
            options,
            dir,
            vars,
            child: None,
            console: Arc::new(ConsoleBuf::default()),
            cursor: 0,
            shell: None,
            shell_seq: 0,
            log_path,
            log: Arc::new(Mutex::new(log)),
            reader: None,
            started: Instant::now(),
            _cpu: cpu,
        };
        vm.power_on()?;
        Ok(vm)
    }

    /// The path of the console log (kept when the test fails).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Time since the first power-on, for reports (never for assertions).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Powers the machine on: starts QEMU with the same disks and firmware variables (after [`Vm::power_cut`]).
    pub fn power_on(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let shell_sock = self.dir.path().join("shell.sock");
        let qmp_sock = self.dir.path().join("qmp.sock");
        for sock in [&shell_sock, &qmp_sock] {
            let _ = std::fs::remove_file(sock);
        }
        let mut cmd = match &self.uboot {
            None => {
                let mut cmd = Command::new(&self.tools.qemu);
                cmd.args(["-nodefaults", "-no-user-config", "-machine", "q35", "-accel", "tcg", "-smp", "1"])
                    .args(["-m", &self.options.memory_mib.to_string(), "-display", "none", "-serial", "stdio"])
                    .arg("-drive")
                    .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", option_path(&self.tools.ovmf_code)))
                    .arg("-drive")
                    .arg(format!("if=pflash,format=raw,unit=1,file={}", option_path(&self.vars)));
                cmd
            }
            Some(uboot) => {
                // U-Boot runs from the first flash bank (-bios); its environment lives in the second.
                let mut cmd = uboot.virt_machine(self.options.memory_mib);
                if self.vars.exists() {
                    cmd.arg("-drive").arg(format!("if=pflash,format=raw,unit=1,file={}", option_path(&self.vars)));
                }
                cmd
            }
        };
        cmd.arg("-chardev")
            .arg(format!("socket,id=shell,path={},server=on,wait=off", option_path(&shell_sock)))
            .args(["-device", "virtio-serial-pci", "-device", "virtserialport,chardev=shell,name=edge.shell"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", option_path(&qmp_sock)))
            .arg("-drive")
            .arg(format!("if=none,id=disk0,format=raw,file={}", option_path(&self.options.disk)))
            .args(["-device", "virtio-blk-pci,drive=disk0,bootindex=1"]);
        for (i, extra) in self.options.extra_disks.iter().enumerate() {
            let id = i + 1;
            cmd.arg("-drive")
                .arg(format!("if=none,id=disk{id},format=raw,file={}", option_path(extra)))
                .args(["-device", &format!("virtio-blk-pci,drive=disk{id}")]);
        }
        // The watchdog resets the machine when it fires (QEMU's default for i6300esb, said explicitly); on the virt
        // machine it sits on the PCIe bus like the other devices.
        cmd.args(["-device", "i6300esb", "-action", "watchdog=reset"]);
        // The guest reaches nothing but the forward: restrict=on cuts every other route to the host and beyond.
        let mut netdev = "user,id=net0,restrict=on".to_owned();
        if let (Some(port), Some(relay)) = (self.options.http_port, &self.options.relay) {
            // Ports 80 and 443 both reach the one host port: plain HTTP for the updater's sources, TLS for the
            // fleet endpoint (which serves whichever the test started).
            for guest_port in [80, 443] {
                netdev.push_str(&format!(
                    ",guestfwd=tcp:{HOST_SERVER_ADDR}:{guest_port}-cmd:{} nc 127.0.0.1 {port}",
                    option_path(relay)
                ));
            }
        }
        // No option ROM: the node never boots from the network, and OVMF would spend a second of TCG time starting
        // iPXE's driver on every boot.
        cmd.arg("-netdev").arg(netdev).args(["-device", "virtio-net-pci,netdev=net0,romfile="]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let command = describe(&cmd);
        let mut child = cmd.spawn().map_err(|source| Error::Spawn { command, source })?;
        let stdout = child.stdout.take().expect("stdout was set to piped");
        let mut stderr = child.stderr.take().expect("stderr was set to piped");
        {
            let mut state = self.console.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.ended = false;
        }
        let (console, log) = (Arc::clone(&self.console), Arc::clone(&self.log));
        self.reader = Some(thread::spawn(move || {
            read_console(stdout, &console, &log);
            // QEMU's own complaints (a disk it cannot open) go to the log after the console.
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            if !text.is_empty() {
                let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = writeln!(log, "\n[qemu stderr] {}", text.trim_end());
            }
        }));
        self.child = Some(child);
        self.shell = None;
        self.shell = Some(connect(&shell_sock)?);
        Ok(())
    }

    /// Cuts the power: QEMU is killed at once (SIGKILL), as a pulled plug. What the guest had not yet handed to the
    /// virtual disk is lost; what it had is in the disk file.
    pub fn power_cut(&mut self) {
        self.shell = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.note("power cut");
    }

    /// Writes a harness note into the console log (not into the searchable console).
    pub fn note(&self, text: &str) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(log, "\n===== [harness {:>7.1}s] {text} =====", self.started.elapsed().as_secs_f64());
    }

    /// Waits until the console, after what earlier calls matched, shows `text`; returns the line holding it (plain
    /// text) and moves past that line.
    pub fn expect(&mut self, text: &str, timeout: Duration) -> Result<String> {
        self.expect_any(&[text], timeout).map(|(_, line)| line)
    }

    /// Waits for whichever of `texts` the console shows first (after what earlier calls matched); returns its index
    /// and the line holding it, and moves past that line.
    pub fn expect_any(&mut self, texts: &[&str], timeout: Duration) -> Result<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let mut state = self.console.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let hay = &state.raw[self.cursor.min(state.raw.len())..];
            let found =
                texts.iter().enumerate().filter_map(|(i, text)| find(hay, text.as_bytes()).map(|at| (at, i))).min();
            let now = Instant::now();
            if let Some((at, i)) = found {
                let (line_start, line_end) = line_bounds(&state.raw, self.cursor + at);
                // The line is returned whole: its end is awaited unless QEMU ended or time ran out.
                if line_end.is_some() || state.ended || now >= deadline {
                    let line_end = line_end.unwrap_or(state.raw.len());
                    let line = console::clean(&state.raw[line_start..line_end]).trim().to_owned();
                    self.cursor = line_end;
                    return Ok((i, line));
                }
            } else if state.ended || now >= deadline {
                let tail = console::tail(&console::clean(&state.raw), TAIL_LINES);
                let waiting_for = texts.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(" or ");
                return Err(Error::ConsoleTimeout { waiting_for, timeout, ended: state.ended, console_tail: tail });
            }
            state = self.console.grew.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Whether the console, after what earlier calls matched, already shows `text` on a whole line: returns that line
    /// and moves past it, without waiting.
    pub fn seen(&mut self, text: &str) -> Option<String> {
        let state = self.console.state.lock().unwrap_or_else(PoisonError::into_inner);
        let start = self.cursor + find(&state.raw[self.cursor.min(state.raw.len())..], text.as_bytes())?;
        let (line_start, line_end) = line_bounds(&state.raw, start);
        let line_end = line_end?;
        let line = console::clean(&state.raw[line_start..line_end]).trim().to_owned();
        self.cursor = line_end;
        Some(line)
    }

    /// The whole console so far as plain text.
    pub fn console(&self) -> String {
        console::clean(&self.console.state.lock().unwrap_or_else(PoisonError::into_inner).raw)
    }

    /// Runs `command` in the guest's shell (`/bin/sh` on the virtio serial port `edge.shell`) and waits up to `timeout` for it
    /// to end. First waits for the shell to answer, so it can be called right after a boot began.
    pub fn sh(&mut self, command: &str, timeout: Duration) -> Result<ShellOutput> {
        let deadline = Instant::now() + timeout;
        self.sync_shell(deadline, command)?;
        self.shell_seq += 1;
        let marker = format!("EDGE-RC-{}=", self.shell_seq);
        // The marker is printed by the shell, never typed: the typed line has it split by an empty string.
        let typed = format!("{{ {command}\n}} 2>&1; echo \"EDGE-RC-\"\"{}=$?\"\n", self.shell_seq);
        let text = self.shell_exchange(typed.as_bytes(), &marker, deadline, command)?;
        let (output, rest) = text.split_once(&marker).expect("shell_exchange returns text holding the marker");
        let code = rest.trim().parse().unwrap_or(-1);
        Ok(ShellOutput { code, output: output.to_owned() })
    }

    /// Types `command` into the guest's shell without waiting for it (a command that reboots the node).
    pub fn sh_detached(&mut self, command: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        self.sync_shell(deadline, command)?;
        let line = format!("{command}\n");
        match self.shell.as_mut().map(|shell| shell.write_all(line.as_bytes())) {
            Some(Ok(())) => Ok(()),
            _ => Err(Error::ShellTimeout {
                command: command.to_owned(),
                output: String::new(),
                console_tail: console::tail(&self.console(), TAIL_LINES),
            }),
        }
    }

    /// Like [`Vm::sh`], but a non-zero exit is an error that carries the output.
    pub fn sh_ok(&mut self, command: &str, timeout: Duration) -> Result<String> {
        let out = self.sh(command, timeout)?;
        if out.code != 0 {
            return Err(Error::GuestCommand { command: command.to_owned(), code: out.code, output: out.output });
        }
        Ok(out.output)
    }

    /// Sends `echo` probes, one a second, until the shell answers one.
    fn sync_shell(&mut self, deadline: Instant, command: &str) -> Result<()> {
        loop {
            self.shell_seq += 1;
            let marker = format!("EDGE-SYNC-{}", self.shell_seq);
            let probe = format!("echo \"EDGE-SYNC-\"\"{}\"\n", self.shell_seq);
            let step = (Instant::now() + Duration::from_secs(1)).min(deadline);
            match self.shell_exchange(probe.as_bytes(), &marker, step, command) {
                Ok(_) => return Ok(()),
                Err(Error::ShellTimeout { .. }) if Instant::now() < deadline => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Writes `input` to the shell and reads until the output holds `marker` followed by a newline; returns all of
    /// it from after what was pending before the write.
    fn shell_exchange(&mut self, input: &[u8], marker: &str, deadline: Instant, command: &str) -> Result<String> {
        let timeout_err = |got: &[u8], vm: &Vm| Error::ShellTimeout {
            command: command.to_owned(),
            output: String::from_utf8_lossy(got).into_owned(),
            console_tail: console::tail(&vm.console(), TAIL_LINES),
        };
        let Some(shell) = self.shell.as_mut() else {
            return Err(timeout_err(b"", self));
        };
        // Whatever an earlier, abandoned command left behind is dropped.
        drain(shell);
        if shell.write_all(input).is_err() {
            return Err(timeout_err(b"", self));
        }
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(timeout_err(&got, self));
            }
            let shell = self.shell.as_mut().expect("checked above");
            let _ = shell.set_read_timeout(Some((deadline - now).min(Duration::from_millis(200))));
            match shell.read(&mut chunk) {
                Ok(0) => return Err(timeout_err(&got, self)),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(timeout_err(&got, self)),
            }
            if let Some(at) = find(&got, marker.as_bytes()) {
                if got[at..].contains(&b'\n') {
                    return Ok(String::from_utf8_lossy(&got).into_owned());
                }
            }
        }
    }

    /// Runs one QMP command (`{"execute": ...}` as JSON text) and returns QEMU's answer line, such as
    /// `{"return": {}}`; an `{"error": ...}` answer is an error.
    pub fn qmp(&mut self, command: &str) -> Result<String> {
        let path = self.dir.path().join("qmp.sock");
        let fail = |what: String| Error::Qmp { command: command.to_owned(), what };
        let mut stream = connect(&path)?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut lines = io::BufReader::new(stream.try_clone().map_err(|e| fail(e.to_string()))?);
        let mut line = String::new();
        let mut read_line = |line: &mut String| -> Result<()> {
            line.clear();
            // Events can come before the answer; they are skipped.
            loop {
                io::BufRead::read_line(&mut lines, line).map_err(|e| fail(e.to_string()))?;
                if line.is_empty() {
                    return Err(fail("QEMU closed the QMP socket".to_owned()));
                }
                if !line.contains("\"event\"") {
                    return Ok(());
                }
                line.clear();
            }
        };
        read_line(&mut line)?; // the greeting
        for request in ["{\"execute\": \"qmp_capabilities\"}", command] {
            stream.write_all(format!("{request}\n").as_bytes()).map_err(|e| fail(e.to_string()))?;
            read_line(&mut line)?;
            if line.contains("\"error\"") {
                return Err(fail(line.trim().to_owned()));
            }
        }
        Ok(line.trim().to_owned())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.power_cut();
        if !thread::panicking() {
            let _ = std::fs::remove_file(&self.log_path);
        } else {
            eprintln!("console log kept: {}", self.log_path.display());
        }
    }
}

/// Reads QEMU's stdout into `console` and the log until end of file.
fn read_console(mut stdout: impl Read, console: &ConsoleBuf, log: &Mutex<File>) {
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stdout.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = log.write_all(&chunk[..n]);
        }
        let mut state = console.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.raw.extend_from_slice(&chunk[..n]);
        console.grew.notify_all();
    }
    let mut state = console.state.lock().unwrap_or_else(PoisonError::into_inner);
    state.ended = true;
    console.grew.notify_all();
}

/// Connects to QEMU's shell socket, which appears shortly after QEMU starts.
fn connect(path: &Path) -> Result<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return Ok(stream),
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Err(source) => return Err(Error::Connect { path: path.to_owned(), source }),
        }
    }
}

/// Reads and drops whatever is waiting on the shell socket.
fn drain(shell: &mut UnixStream) {
    let _ = shell.set_nonblocking(true);
    let mut chunk = [0u8; 4096];
    while matches!(shell.read(&mut chunk), Ok(n) if n > 0) {}
    let _ = shell.set_nonblocking(false);
}

/// The first position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_locates_the_first_match() {
        assert_eq!(find(b"abcabc", b"bc"), Some(1));
        assert_eq!(find(b"abc", b"x"), None);
        assert_eq!(find(b"", b"x"), None);
    }
}
