//! The crate's one error type.
//!
//! Each variant names what the harness was attempting; I/O errors carry the path they concern, failed tools carry
//! their command line and stderr, and failed boots carry the tail of the guest console, so a failing test explains
//! itself without a rerun.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong while building, booting or reading back a disk image.
#[derive(Debug)]
pub enum Error {
    /// Programs or firmware files the harness needs are not installed; each entry names the file and its package.
    MissingTools {
        /// One line per missing item, such as `qemu-system-x86_64 (Debian package qemu-system-x86)`.
        missing: Vec<String>,
    },
    /// A program could not be started.
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        source: io::Error,
    },
    /// A program ran and exited with a failure status.
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// A host file or directory could not be created or written.
    WriteFile {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A host file could not be read.
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A name given for a file inside the disk image is not usable.
    BadName {
        /// The name as given.
        name: String,
        /// What was expected instead.
        reason: &'static str,
    },
    /// The requested disk image size is out of range.
    ImageSize {
        /// The size asked for.
        size_mib: u32,
    },
    /// QEMU's console output could not be read.
    ReadConsole {
        /// The underlying error.
        source: io::Error,
    },
    /// Waiting for QEMU to exit failed.
    WaitQemu {
        /// The underlying error.
        source: io::Error,
    },
    /// QEMU exited with a failure status (bad arguments, an image it could not open or lock).
    QemuFailed {
        /// How QEMU exited.
        status: ExitStatus,
        /// What QEMU wrote to stderr.
        stderr: String,
        /// The last lines of the guest console.
        console_tail: String,
    },
    /// The guest neither powered off nor printed the awaited text before the timeout; QEMU was killed.
    BootTimeout {
        /// The timeout that expired.
        timeout: Duration,
        /// The last lines of the guest console.
        console_tail: String,
    },
    /// The console of a running node did not show the awaited text in time (or QEMU ended first).
    ConsoleTimeout {
        /// The text or texts awaited.
        waiting_for: String,
        /// How long it waited.
        timeout: Duration,
        /// Whether QEMU had exited.
        ended: bool,
        /// The last lines of the guest console.
        console_tail: String,
    },
    /// A command in the guest's shell did not finish in time, or the shell went away (a reboot).
    ShellTimeout {
        /// The command.
        command: String,
        /// What the shell printed so far.
        output: String,
        /// The last lines of the guest console.
        console_tail: String,
    },
    /// A command in the guest's shell exited with a failure status.
    GuestCommand {
        /// The command.
        command: String,
        /// Its exit status.
        code: i32,
        /// What it printed.
        output: String,
    },
    /// QEMU's shell or QMP socket did not accept a connection within 30 s of QEMU's start.
    Connect {
        /// The socket.
        path: PathBuf,
        /// The last connection error.
        source: io::Error,
    },
    /// A QMP command failed.
    Qmp {
        /// The command.
        command: String,
        /// What went wrong.
        what: String,
    },
    /// The node's assets (kernel, initramfs, root images, bundles, disks) could not be built.
    Assets {
        /// What was being built.
        what: String,
        /// Why it failed.
        why: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingTools { missing } => {
                write!(f, "the QEMU boot harness needs tools that are not installed (run scripts/deps.sh): ")?;
                write!(f, "{}", missing.join(", "))
            }
            Error::Spawn { command, .. } => write!(f, "cannot start `{command}`"),
            Error::Command { command, status, stderr } => {
                write!(f, "`{command}` failed ({status}): {}", stderr.trim_end())
            }
            Error::WriteFile { path, .. } => write!(f, "cannot write {}", path.display()),
            Error::ReadFile { path, .. } => write!(f, "cannot read {}", path.display()),
            Error::BadName { name, reason } => {
                write!(f, "bad file name {name:?} for the disk image: expected {reason}")
            }
            Error::ImageSize { size_mib } => {
                write!(
                    f,
                    "disk image size {size_mib} MiB out of range {}..={}",
                    crate::MIN_SIZE_MIB,
                    crate::MAX_SIZE_MIB
                )
            }
            Error::ReadConsole { .. } => write!(f, "cannot read the guest console from qemu"),
            Error::WaitQemu { .. } => write!(f, "cannot wait for qemu to exit"),
            Error::QemuFailed { status, stderr, console_tail } => {
                write!(f, "qemu failed ({status}): {}\nconsole tail:\n{console_tail}", stderr.trim_end())
            }
            Error::BootTimeout { timeout, console_tail } => {
                write!(f, "the guest did not finish within {timeout:?}, qemu killed\nconsole tail:\n{console_tail}")
            }
            Error::ConsoleTimeout { waiting_for, timeout, ended, console_tail } => {
                let how = if *ended { "qemu exited" } else { "timed out" };
                write!(f, "waited {timeout:?} for {waiting_for} on the console: {how}\nconsole tail:\n{console_tail}")
            }
            Error::ShellTimeout { command, output, console_tail } => write!(
                f,
                "the guest shell did not finish `{command}`; its output so far:\n{}\nconsole tail:\n{console_tail}",
                output.trim_end()
            ),
            Error::GuestCommand { command, code, output } => {
                write!(f, "`{command}` in the guest exited {code}:\n{}", output.trim_end())
            }
            Error::Connect { path, .. } => write!(f, "cannot connect to QEMU's socket {}", path.display()),
            Error::Qmp { command, what } => write!(f, "QMP `{command}` failed: {what}"),
            Error::Assets { what, why } => write!(f, "cannot build {what}: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn { source, .. }
            | Error::WriteFile { source, .. }
            | Error::ReadFile { source, .. }
            | Error::Connect { source, .. }
            | Error::ReadConsole { source }
            | Error::WaitQemu { source } => Some(source),
            _ => None,
        }
    }
}

/// The error and each `caused by:` line of its source chain, the way the binaries print errors; for test panics.
pub fn report(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(&format!("\ncaused by: {cause}"));
        source = cause.source();
    }
    out
}
