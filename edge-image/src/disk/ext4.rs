//! The data partition's ext4 filesystem, made by e2fsprogs on a temporary file: `mke2fs -d` copies a seed directory
//! in without root, then `debugfs` sets what `mke2fs` copied from the build machine (owners, timestamps) to fixed
//! values, so the same seed gives the same bytes and the files belong to root on the node.
//!
//! It is a module of its own because it is the one place that runs host tools: e2fsprogs 1.47 takes `-U` and
//! `-E hash_seed=` for its random identities and `E2FSPROGS_FAKE_TIME` for "now", but `mke2fs -d` copies each seed
//! file's uid, gid, atime, mtime and ctime from the host (`-E root_owner` covers only the root directory), and no
//! option of 1.47.0 changes that; so a `debugfs` script rewrites them, path by path.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};
use platform::gpt::Guid;

/// The filesystem label, which `edge-init`'s default `data.format` also gives a partition it formats.
pub const LABEL: &str = "edge-data";
/// Every timestamp in the filesystem, and its creation time: 1980-01-01 00:00:00 UTC, as on the ESP.
pub const FIXED_TIME: i64 = 315_532_800;
/// Where e2fsprogs comes from, for the error when a tool is missing.
const PACKAGE: &str = "e2fsprogs";

/// What to make.
#[derive(Debug, Clone)]
pub struct Ext4 {
    /// Size of the filesystem.
    pub size_bytes: u64,
    /// The directory to copy in, if any.
    pub seed: Option<PathBuf>,
    /// The filesystem UUID.
    pub uuid: Guid,
    /// The seed of its directory hashes.
    pub hash_seed: Guid,
}

/// Runs an e2fsprogs tool found on PATH or, since a user's PATH often lacks them, in /usr/sbin or /sbin.
fn run(tool: &'static str, args: &[&OsStr], file: &Path, stdin: Option<&[u8]>) -> Result<Output> {
    let candidates = [PathBuf::from(tool), Path::new("/usr/sbin").join(tool), Path::new("/sbin").join(tool)];
    for program in candidates {
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .env("E2FSPROGS_FAKE_TIME", FIXED_TIME.to_string())
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::RunTool { tool, path: file.to_owned(), source }),
        };
        // The script goes in from another thread: debugfs echoes every command on stdout, so writing all of it
        // before reading would block both sides once the pipes fill.
        let pipe = child.stdin.take();
        let out = std::thread::scope(|s| {
            if let (Some(input), Some(mut pipe)) = (stdin, pipe) {
                // A write error means the tool stopped reading; its exit status below says why.
                s.spawn(move || pipe.write_all(input));
            }
            child.wait_with_output()
        })
        .map_err(|source| Error::RunTool { tool, path: file.to_owned(), source })?;
        if !out.status.success() {
            return Err(Error::ToolFailed {
                tool,
                path: file.to_owned(),
                detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        return Ok(out);
    }
    Err(Error::ToolMissing { tool, package: PACKAGE })
}

/// Makes the filesystem in a new file at `file` (which must not exist).
pub fn make(e: &Ext4, file: &Path) -> Result<()> {
    let extended = format!("root_owner=0:0,hash_seed={},nodiscard", e.hash_seed);
    let uuid = e.uuid.to_string();
    let size = format!("{}k", e.size_bytes / 1024);
    let fixed = ["-q", "-t", "ext4", "-L", LABEL, "-U", &uuid, "-E", &extended];
    let mut args: Vec<&OsStr> = fixed.iter().map(OsStr::new).collect();
    if let Some(seed) = &e.seed {
        args.extend([OsStr::new("-d"), seed.as_os_str()]);
    }
    args.extend([file.as_os_str(), OsStr::new(&size)]);
    run("mke2fs", &args, file, None)?;
    if let Some(seed) = &e.seed {
        let script = fixup_script(seed)?;
        let out = run(
            "debugfs",
            &[OsStr::new("-w"), OsStr::new("-f"), OsStr::new("-"), file.as_os_str()],
            file,
            Some(&script),
        )?;
        // debugfs exits 0 even when a command fails; every line on stderr but its banner is a failure.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| !l.is_empty() && !l.starts_with("debugfs ")).collect();
        if !errors.is_empty() {
            return Err(Error::ToolFailed { tool: "debugfs", path: file.to_owned(), detail: errors.join("\n") });
        }
    }
    let len = std::fs::metadata(file).map_err(|source| Error::ReadFile { path: file.to_owned(), source })?.len();
    if len != e.size_bytes {
        return Err(Error::ToolFailed {
            tool: "mke2fs",
            path: file.to_owned(),
            detail: format!("made a file of {len} bytes, expected {}", e.size_bytes),
        });
    }
    Ok(())
}

/// The `debugfs` script that gives the root and every entry under `seed` owner 0:0 and [`FIXED_TIME`] for all four
/// timestamps. Entries are visited in sorted order without following symlinks; a name with a newline is refused,
/// since a script line cannot hold it.
pub fn fixup_script(seed: &Path) -> Result<Vec<u8>> {
    let mut paths = vec![Vec::from(&b"/"[..])];
    walk(seed, b"", &mut paths)?;
    let mut script = Vec::new();
    for p in &paths {
        let mut quoted = Vec::from(&b"\""[..]);
        for &b in p {
            // debugfs's parser takes "" inside quotes as one quote.
            if b == b'"' {
                quoted.push(b'"');
            }
            quoted.push(b);
        }
        quoted.push(b'"');
        for field in ["uid 0", "gid 0"] {
            script.extend_from_slice(b"sif ");
            script.extend_from_slice(&quoted);
            script.extend_from_slice(format!(" {field}\n").as_bytes());
        }
        for field in ["atime", "mtime", "ctime", "crtime"] {
            script.extend_from_slice(b"sif ");
            script.extend_from_slice(&quoted);
            script.extend_from_slice(format!(" {field} @{FIXED_TIME}\n").as_bytes());
        }
    }
    Ok(script)
}

fn walk(dir: &Path, rel: &[u8], out: &mut Vec<Vec<u8>>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::ReadFile { path: dir.to_owned(), source })?;
    let mut entries = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| Error::ReadFile { path: dir.to_owned(), source })?;
        entries.push(entry.file_name());
    }
    entries.sort();
    for name in entries {
        let path = dir.join(&name);
        if name.as_bytes().contains(&b'\n') {
            return Err(Error::SeedName { path });
        }
        let mut r = rel.to_vec();
        r.push(b'/');
        r.extend_from_slice(name.as_bytes());
        out.push(r.clone());
        let meta = std::fs::symlink_metadata(&path).map_err(|source| Error::ReadFile { path: path.clone(), source })?;
        if meta.is_dir() {
            walk(&path, &r, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_covers_every_entry_sorted_and_quotes_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("b")).expect("mkdir");
        std::fs::write(dir.path().join("b/x y"), "1").expect("write");
        std::fs::write(dir.path().join("a\"q"), "2").expect("write");
        std::os::unix::fs::symlink("b", dir.path().join("c")).expect("symlink");
        let script = String::from_utf8(fixup_script(dir.path()).expect("script")).expect("utf-8");
        let uid_lines: Vec<&str> = script.lines().filter(|l| l.ends_with(" uid 0")).collect();
        assert_eq!(
            uid_lines,
            [
                "sif \"/\" uid 0",
                "sif \"/a\"\"q\" uid 0",
                "sif \"/b\" uid 0",
                "sif \"/b/x y\" uid 0",
                "sif \"/c\" uid 0"
            ]
        );
        assert_eq!(script.lines().count(), 5 * 6);
        assert!(script.contains("sif \"/b/x y\" crtime @315532800\n"));
    }

    #[test]
    fn a_newline_in_a_seed_name_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a\nb"), "1").expect("write");
        assert!(matches!(fixup_script(dir.path()), Err(Error::SeedName { .. })));
    }
}
