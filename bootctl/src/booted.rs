//! Which slot is running: `edge.slot=` on the kernel command line, cross-checked against the device mounted as
//! root, so that a wrong command line (a hand-edited boot entry, a copied image) cannot make an install write the
//! running slot.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::blockdev::read_small;
use crate::error::{Error, Result};
use crate::rules::Slot;

/// The longest kernel command line read; the kernel's own limit is a few KiB on every architecture.
pub const MAX_CMDLINE_BYTES: u64 = 64 * 1024;

/// The slot named by `edge.slot=` on a kernel command line (the last one wins, as the kernel's own parsing does).
pub fn slot_from_cmdline(cmdline: &str) -> Option<Slot> {
    cmdline.split_ascii_whitespace().rev().find_map(|w| w.strip_prefix("edge.slot=")).and_then(Slot::parse)
}

/// The booted slot: from the command line in `cmdline_path`, and, when `slot_device` names the slot's block device,
/// checked against the device of the filesystem mounted at `root`.
pub fn booted_slot(
    cmdline_path: &Path,
    root: &Path,
    slot_device: impl Fn(Slot) -> Option<std::path::PathBuf>,
) -> Result<Slot> {
    let bytes = read_small(cmdline_path, MAX_CMDLINE_BYTES)
        .map_err(|e| Error::small_file(cmdline_path, e, MAX_CMDLINE_BYTES))?;
    let cmdline = String::from_utf8_lossy(&bytes);
    let slot = slot_from_cmdline(&cmdline).ok_or_else(|| Error::NoBootedSlot { path: cmdline_path.to_owned() })?;
    if let Some(dev) = slot_device(slot) {
        let root_dev = std::fs::metadata(root).map_err(|source| Error::Read { path: root.to_owned(), source })?.dev();
        let slot_dev = std::fs::metadata(&dev).map_err(|source| Error::Read { path: dev.clone(), source })?.rdev();
        if root_dev != slot_dev {
            return Err(Error::BootedMismatch { slot, device: dev });
        }
    }
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_cases() {
        let check = |line: &str, expected: Option<Slot>| assert_eq!(slot_from_cmdline(line), expected, "{line}");
        check("ro quiet edge.slot=A", Some(Slot::A));
        check("edge.slot=b root=/dev/vda3\n", Some(Slot::B));
        check("edge.slot=A edge.slot=B", Some(Slot::B));
        check("edge.slot=C", None);
        check("xedge.slot=A", None);
        check("", None);
    }

    #[test]
    fn the_root_device_must_be_the_slot_device() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cmdline = dir.path().join("cmdline");
        std::fs::write(&cmdline, "edge.slot=A\n").expect("write");
        assert_eq!(booted_slot(&cmdline, dir.path(), |_| None).expect("no device to check"), Slot::A);
        // A regular file is no block device: its rdev is 0, never the root's device.
        let r = booted_slot(&cmdline, dir.path(), |_| Some(cmdline.clone()));
        assert!(matches!(r, Err(Error::BootedMismatch { slot: Slot::A, .. })), "{r:?}");
        std::fs::write(&cmdline, "quiet\n").expect("write");
        assert!(matches!(booted_slot(&cmdline, dir.path(), |_| None), Err(Error::NoBootedSlot { .. })));
    }

    /// The command line file is read only when it is a regular file, and only up to a bound.
    #[test]
    fn issue_14_the_command_line_file_is_typed_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = booted_slot(Path::new("/dev/null"), dir.path(), |_| None);
        assert!(matches!(r, Err(Error::FileType { found: "character device", .. })), "{r:?}");
        let big = dir.path().join("cmdline");
        std::fs::write(&big, format!("edge.slot=A {}", "x".repeat(MAX_CMDLINE_BYTES as usize))).expect("write");
        let r = booted_slot(&big, dir.path(), |_| None);
        assert!(matches!(r, Err(Error::FileTooLarge { .. })), "{r:?}");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        let r = booted_slot(&fifo, dir.path(), |_| None);
        assert!(matches!(r, Err(Error::FileType { found: "FIFO", .. })), "{r:?}");
    }
}
