//! Each service's cgroup v2 leaf: made before it starts, joined by the child before exec, killed whole with
//! `cgroup.kill` (docs/edge-init.md, "Services"). Without cgroup2 a service is stopped by its process group.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// The directory under which each service gets its leaf.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    /// The services' cgroups under this process's own cgroup, when cgroup2 is mounted and writable.
    pub fn discover() -> Option<Cgroups> {
        let root = crate::boot::cgroup2_root()?.join("services");
        match fs::create_dir_all(&root) {
            Ok(()) => Some(Cgroups { root }),
            Err(e) => {
                log::warn!("cannot make {}: {e}; services are stopped by their process group", root.display());
                None
            }
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Makes service `name`'s leaf (if needed) and opens its `cgroup.procs` for the child to join.
    pub fn leaf(&self, name: &str) -> io::Result<File> {
        let dir = self.dir(name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot make {}: {e}", dir.display()))),
        }
        let procs = dir.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&procs)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", procs.display())))
    }

    /// The processes in service `name`'s leaf.
    pub fn pids(&self, name: &str) -> Vec<u32> {
        fs::read_to_string(self.dir(name).join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process in service `name`'s leaf (`cgroup.kill`, or each pid with SIGKILL on kernels before
    /// 5.14); how many there were.
    pub fn kill(&self, name: &str) -> io::Result<usize> {
        let pids = self.pids(name);
        if pids.is_empty() {
            return Ok(0);
        }
        let kill = self.dir(name).join("cgroup.kill");
        match OpenOptions::new().write(true).open(&kill) {
            Ok(mut f) => f
                .write_all(b"1")
                .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", kill.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                for pid in &pids {
                    let _ = crate::sys::kill(*pid, signal_hook::consts::signal::SIGKILL);
                }
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot open {}: {e}", kill.display()))),
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
