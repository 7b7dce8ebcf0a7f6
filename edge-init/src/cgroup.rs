//! Each service's cgroup v2 leaf: made before it starts, joined by the child before exec, killed whole with
//! `cgroup.kill` (docs/edge-init.md, "Services"). Without cgroup2 a service is stopped by its process group.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::error::{chain, Error, Result};

/// The directory under which each service gets its leaf.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    /// The services' cgroups under this process's own cgroup, when cgroup2 is mounted and writable.
    pub fn discover(paths: &crate::paths::Paths) -> Option<Cgroups> {
        let root = crate::boot::cgroup2_root(paths)?.join("services");
        match fs::create_dir_all(&root) {
            Ok(()) => Some(Cgroups { root }),
            Err(e) => {
                let e = Error::MakeDir { path: root, source: e };
                log::warn!("{}; services are stopped by their process group", chain(&e));
                None
            }
        }
    }

    /// Service `name`'s leaf. Checked again here, not only when the services file is read, because joining a name
    /// that is not one path component (`..`, `.`, `a/b`) would name another cgroup, which `kill` would then empty:
    /// `..` is edge-init's own.
    fn dir(&self, name: &str) -> Result<PathBuf> {
        if crate::services::check_name(name) {
            Ok(self.root.join(name))
        } else {
            Err(Error::ServiceName { name: name.to_owned() })
        }
    }

    /// Makes service `name`'s leaf (if needed) and opens its `cgroup.procs` for the child to join.
    pub fn leaf(&self, name: &str) -> Result<File> {
        let dir = self.dir(name)?;
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(Error::MakeDir { path: dir, source }),
        }
        let procs = dir.join("cgroup.procs");
        OpenOptions::new().write(true).open(&procs).map_err(|source| Error::OpenCgroupFile { path: procs, source })
    }

    /// The processes in service `name`'s leaf (none for a name that is not one).
    pub fn pids(&self, name: &str) -> Vec<u32> {
        let Ok(dir) = self.dir(name) else { return Vec::new() };
        fs::read_to_string(dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process in service `name`'s leaf (`cgroup.kill`, or each pid with SIGKILL on kernels before
    /// 5.14); how many there were.
    pub fn kill(&self, name: &str) -> Result<usize> {
        let dir = self.dir(name)?;
        let pids = self.pids(name);
        if pids.is_empty() {
            return Ok(0);
        }
        let kill = dir.join("cgroup.kill");
        match OpenOptions::new().write(true).open(&kill) {
            Ok(mut f) => f.write_all(b"1").map_err(|source| Error::WriteCgroupFile { path: kill, source })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                for pid in &pids {
                    let _ = crate::sys::kill(*pid, signal_hook::consts::signal::SIGKILL);
                }
            }
            Err(source) => return Err(Error::OpenCgroupFile { path: kill, source }),
        }
        Ok(pids.len())
    }

    /// Removes every empty leaf (at the end of a shutdown); the rest stays.
    pub fn remove_empty(&self) {
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
        let _ = fs::remove_dir(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_14_a_name_never_leaves_the_services_cgroup() {
        // A throwaway stand-in for a cgroup tree: `services/` under a directory whose `cgroup.procs` lists a live
        // process. Without a leaf check, `kill("..")` read that list and killed the process (no `cgroup.kill` here:
        // the SIGKILL fallback); `leaf(".")` opened the services directory's own `cgroup.procs`.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sleeper = std::process::Command::new("sleep").arg("60").spawn().expect("sleep");
        fs::write(dir.path().join("cgroup.procs"), format!("{}\n", sleeper.id())).expect("cgroup.procs");
        let cgroups = Cgroups { root: dir.path().join("services") };
        fs::create_dir(&cgroups.root).expect("services");
        fs::write(cgroups.root.join("cgroup.procs"), "").expect("cgroup.procs");
        for name in ["..", ".", "../..", "a/../..", ""] {
            let refused = |e: &Error| matches!(e, Error::ServiceName { name: n } if n == name);
            assert!(cgroups.kill(name).is_err_and(|e| refused(&e)), "kill {name:?}");
            assert!(cgroups.leaf(name).is_err_and(|e| refused(&e)), "leaf {name:?}");
            assert!(cgroups.pids(name).is_empty(), "{name:?}");
        }
        assert_eq!(sleeper.try_wait().expect("try_wait"), None, "the process beside the services is alive");
        sleeper.kill().expect("kill");
        sleeper.wait().expect("wait");
        // A real name still gets its leaf.
        cgroups.leaf("app").expect_err("no cgroup.procs in a plain directory");
        assert!(cgroups.root.join("app").is_dir());
    }
}
