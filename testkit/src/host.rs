//! The host's own tools in tests (`sgdisk`, `sfdisk`, `fsck.fat`, `e2fsck`, ...), which check what our encoders
//! write: found where a non-root `PATH` may not look, and run so that a failure shows everything the tool said.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A host tool, from `/usr/sbin` (where a non-root `PATH` may not look) or else from `PATH`.
pub fn tool(name: &str) -> Command {
    let sbin = Path::new("/usr/sbin").join(name);
    Command::new(if sbin.exists() { sbin } else { PathBuf::from(name) })
}

/// Runs `cmd`, requires it to succeed (panicking with its status, stdout and stderr otherwise), and returns its
/// stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
