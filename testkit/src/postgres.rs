//! A real PostgreSQL for tests and benchmarks, from Debian's packages, started here and stopped on drop: `initdb`
//! in a temporary directory, the server on a loopback port, as an unprivileged user when the test runs as root
//! (PostgreSQL refuses to run as root). Nothing on the machine is assumed to run already, and nothing the test
//! starts outlives it.
//!
//! It is a module of its own because every crate that tests a PostgreSQL store needs the same server, and a second
//! copy would drift from the first.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unprivileged user and group the server runs as when the test runs as root (Debian's `nobody`).
const NOBODY: u32 = 65534;

/// How a server is tuned: for tests, durability is not under test and is traded for speed; a benchmark keeps
/// PostgreSQL's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`.
    Off,
    /// PostgreSQL's defaults.
    Default,
}

/// A running PostgreSQL; stopped (fast shutdown) and its directory removed on drop.
#[derive(Debug)]
pub struct Postgres {
    /// The cluster's directory (data, socket, log), removed on drop.
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_nobody: bool,
    /// The server, our child, so that it is reaped and never outlives the test.
    server: Option<std::process::Child>,
}

/// The directory of the newest PostgreSQL Debian has installed (`/usr/lib/postgresql/<major>/bin`), where `initdb`
/// and `postgres` are (neither is on `PATH` in Debian's layout).
pub fn bin_dir() -> Option<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin)
}

impl Postgres {
    /// Starts a server with [`Durability::Off`]; panics with what went wrong (it is a test's fixture).
    pub fn start() -> Postgres {
        Postgres::start_with(Durability::Off)
    }

    /// Starts a server tuned as `durability` says.
    pub fn start_with(durability: Durability) -> Postgres {
        let bin = bin_dir().expect("PostgreSQL is not installed: scripts/deps.sh installs Debian's postgresql");
        let as_nobody = is_root();
        let dir = std::env::temp_dir().join(format!("edge-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod the cluster directory");
        if as_nobody {
            std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown the cluster directory");
        }
        let mut pg = Postgres { dir, bin, port: 0, as_nobody, server: None };
        let data = pg.dir.join("data");
        crate::host::run(pg.command("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]));
        let mut conf = String::from("listen_addresses = '127.0.0.1'\nmax_connections = 200\n");
        conf.push_str(&format!("unix_socket_directories = '{}'\n", pg.dir.display()));
        if durability == Durability::Off {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf_path = data.join("postgresql.auto.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("write {}: {e}", conf_path.display()));
        // A port that was free a moment ago may be taken by the time the server binds it; try a few.
        for _ in 0..5 {
            pg.port = free_port();
            let log = std::fs::File::create(pg.dir.join("server.log")).expect("create the server's log");
            let err = log.try_clone().expect("clone the log's handle");
            let child = pg
                .command("postgres")
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(pg.port.to_string())
                .stdout(log)
                .stderr(err)
                .spawn()
                .expect("run postgres");
            pg.server = Some(child);
            if pg.wait_ready(&data.join("postmaster.pid")) {
                return pg;
            }
        }
        panic!("PostgreSQL did not start; its log:\n{}", pg.log());
    }

    /// Waits until the server says it is ready (the status line of `postmaster.pid`), or has exited, for at most
    /// a minute.
    fn wait_ready(&mut self, pid_file: &Path) -> bool {
        let child = self.server.as_mut().expect("a server was spawned");
        for _ in 0..600 {
            if let Ok(Some(_)) = child.try_wait() {
                self.server = None;
                return false;
            }
            let status = std::fs::read_to_string(pid_file).unwrap_or_default();
            if status.lines().nth(7).is_some_and(|l| l.trim() == "ready") {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("PostgreSQL did not become ready in a minute; its log:\n{}", self.log());
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` as the superuser `postgres` (trust authentication on loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database named `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        crate::host::run(
            self.command("createdb")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .arg(name),
        );
        self.url(name)
    }

    /// The server's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// One of the server's programs, run as the server's user.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if self.as_nobody {
            cmd.uid(NOBODY).gid(NOBODY).env("HOME", &self.dir);
        }
        cmd.current_dir(&self.dir);
        cmd
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SIGINT is PostgreSQL's fast shutdown: clients are cut, the server exits cleanly; it is reaped here.
            let _ = Command::new("kill").arg("-INT").arg(server.id().to_string()).status();
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Whether the test runs as root, read from `/proc/self/status` so this dev-only crate needs no system-call crate.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server starts, a database is created and answers, and the drop stops it and removes its directory.
    #[test]
    fn starts_answers_and_stops() {
        let pg = Postgres::start();
        let url = pg.create_database("probe");
        assert!(url.ends_with("/probe"), "{url}");
        let psql = pg.bin.join("psql");
        let out = crate::host::run(
            pg.command("psql").args(["-h", "127.0.0.1", "-U", "postgres", "-p"]).arg(pg.port().to_string()).args([
                "-d",
                "probe",
                "-At",
                "-c",
                "select 40 + 2",
            ]),
        );
        assert_eq!(out.trim(), "42", "{}", psql.display());
        let dir = pg.dir.clone();
        let pid_file = dir.join("data/postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
        let pid = pid.lines().next().expect("pid line").to_owned();
        drop(pg);
        assert!(!dir.exists(), "{} is left behind", dir.display());
        assert!(!Path::new("/proc").join(&pid).exists(), "postgres {pid} still runs");
    }
}
