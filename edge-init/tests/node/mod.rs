//! A node without QEMU: `edge-init` as PID 1 of new PID, mount, UTS and network namespaces (`unshare`), in a cgroup
//! of its own, with a services file written by the test. Its log (stderr) comes back line by line, so tests wait
//! for what it says rather than for time to pass.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// How long a test waits for a line before it fails (a bound against hangs, not a measure).
const PATIENCE: Duration = Duration::from_secs(60);

pub const EXE: &str = env!("CARGO_BIN_EXE_edge-init");

pub struct Node {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    log: Receiver<String>,
    pub seen: Vec<String>,
    pub cgroup: Option<PathBuf>,
}

/// The cgroup2 directory this test process is in, if cgroup2 is mounted.
fn own_cgroup() -> Option<PathBuf> {
    edge_init::boot::cgroup2_root(&edge_init::paths::Paths::default())
}

/// Signals to leave ignored and blocked in the process that starts `edge-init` (see `Node::start_with`).
#[derive(Default, Clone, Copy)]
pub struct Inherited {
    pub ignore: &'static [i32],
    pub block: &'static [i32],
}

impl Node {
    /// Starts a node whose services file is `services` (`{dir}` in it is replaced by the node's directory).
    pub fn start(services: &str) -> Node {
        Node::start_with(services, Inherited::default())
    }

    pub fn start_with(services: &str, inherited: Inherited) -> Node {
        Node::start_full(services, None, inherited)
    }

    /// Starts a node whose `edge-init` gets `words` first on its command line, as the kernel passes PID 1 the words
    /// of its command line it does not know.
    pub fn start_words(services: &str, words: &[&str]) -> Node {
        Node::start_inner(services, None, Inherited::default(), words)
    }

    /// Starts a node with `data` as its `[data]` table (`{dir}` replaced), instead of one with no data partition.
    pub fn start_full(services: &str, data: Option<&str>, inherited: Inherited) -> Node {
        Node::start_inner(services, data, inherited, &[])
    }

    fn start_inner(services: &str, data: Option<&str>, inherited: Inherited, words: &[&str]) -> Node {
        // Under /var/tmp, not the target directory: as PID 1, edge-init mounts a fresh tmpfs on /tmp (and on /run
        // where it is no mount) in the node's mount namespace, which would hide a checkout under /tmp. For the same
        // reason the node runs a copy of the binary from its own directory.
        let dir = tempfile::Builder::new().prefix("edge-init-node-").tempdir_in("/var/tmp").expect("tempdir");
        let d = dir.path().display().to_string();
        let exe = dir.path().join("edge-init");
        std::fs::copy(EXE, &exe).expect("copy edge-init");
        let exe = exe.display().to_string();
        let data = data.map(|t| t.replace("{dir}", &d)).unwrap_or_else(|| {
            format!("[data]\ndevice = \"/nonexistent/data\"\nmount = \"{d}/data\"\nwait_secs = 0\nformat = []\n")
        });
        let text = format!("{data}\n{}", services.replace("{dir}", &d).replace("{exe}", &exe));
        std::fs::write(dir.path().join("services.toml"), text).expect("services file");
        let cgroup = own_cgroup()
            .map(|c| c.join(format!("edge-init-test-{}", dir.path().file_name().expect("name").to_string_lossy())));
        if let Some(c) = &cgroup {
            std::fs::create_dir(c).expect("test cgroup");
        }
        // The shell joins the cgroup, then becomes `unshare`, whose child is PID 1 of the new namespaces.
        let script = r#"if [ -n "$1" ]; then echo $$ > "$1/cgroup.procs" || exit 99; fi; shift; exec "$@""#;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script, "sh"])
            .arg(cgroup.as_deref().unwrap_or(Path::new("")))
            .args(["unshare", "--pid", "--fork", "--mount", "--uts", "--net", "--mount-proc", &exe])
            .args(words)
            .args(["--config", &format!("{d}/services.toml"), "--run", &format!("{d}/run")])
            .args(["--log", "stderr", "--cmdline", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let Inherited { ignore, block } = inherited;
        // SAFETY: between fork and exec the closure only calls signal(2), sigemptyset, sigaddset and sigprocmask
        // on a local set: async-signal-safe, no allocation.
        unsafe {
            cmd.pre_exec(move || {
                for &s in ignore {
                    libc::signal(s, libc::SIG_IGN);
                }
                let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
                libc::sigemptyset(set.as_mut_ptr());
                for &s in block {
                    libc::sigaddset(set.as_mut_ptr(), s);
                }
                libc::sigprocmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start edge-init under unshare");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node { dir, child: Some(child), log, seen: Vec::new(), cgroup };
        node.wait_log("edge-init: info: started with");
        node
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Waits for a log line containing `needle` (lines already seen count) and returns it.
    pub fn wait_log(&mut self, needle: &str) -> String {
        match self.seen.iter().find(|l| l.contains(needle)) {
            Some(l) => l.clone(),
            None => self.wait_new_log(needle),
        }
    }

    /// Waits for a log line with `needle` after those already seen.
    pub fn wait_new_log(&mut self, needle: &str) -> String {
        loop {
            match self.log.recv_timeout(PATIENCE) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no new log line with {needle:?}; the log:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// How many log lines so far contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// `edge-init ctl ARGS` as root: exit code, stdout, stderr.
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        self.ctl_as(args, None)
    }

    pub fn ctl_as(&self, args: &[&str], uid: Option<u32>) -> (i32, String, String) {
        let mut cmd = Command::new(EXE);
        cmd.arg("ctl").arg("--socket").arg(self.path("run/control.sock")).args(args);
        if let Some(u) = uid {
            cmd.uid(u).gid(u);
        }
        let out = cmd.output().expect("edge-init ctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `ctl status` text, which must succeed.
    pub fn status(&self) -> String {
        let (code, out, err) = self.ctl(&["status"]);
        assert_eq!(code, 0, "ctl status: {err}");
        out
    }

    /// The host pid of `edge-init` (the child of `unshare`).
    pub fn init_pid(&self) -> u32 {
        let unshare = self.child.as_ref().expect("running").id();
        let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).expect("children");
        children.split_whitespace().next().expect("edge-init runs").parse().expect("pid")
    }

    /// Sends `signal` to `edge-init`.
    pub fn signal(&self, signal: i32) {
        let pid = rustix::process::Pid::from_raw(self.init_pid() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::from_named_raw(signal).expect("signal"))
            .expect("kill");
    }

    /// Waits for the namespace to end and returns how: `unshare` dies of the signal that ended its PID 1.
    pub fn wait_end(&mut self) -> ExitStatus {
        let status = self.child.take().expect("running").wait().expect("wait");
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        status
    }

    /// The host pids in service `name`'s cgroup.
    pub fn service_pids(&self, name: &str) -> Vec<u32> {
        let cg = self.cgroup.as_ref().expect("cgroup2 is mounted here");
        std::fs::read_to_string(cg.join("services").join(name).join("cgroup.procs"))
            .expect("service cgroup")
            .lines()
            .map(|l| l.parse().expect("pid"))
            .collect()
    }
}

/// The signal `unshare` ended with, if any.
pub fn end_signal(status: ExitStatus) -> Option<i32> {
    status.signal()
}

/// Waits until process `pid` (not necessarily a child) has ended; false if it has not within the patience.
pub fn wait_gone(pid: u32) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else { return true };
    let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(_) => return true,
    };
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let t = rustix::event::Timespec { tv_sec: PATIENCE.as_secs() as i64, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&t)), Ok(n) if n > 0)
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.cgroup {
            // Everything the node started, edge-init included, is in this cgroup.
            let _ = std::fs::write(c.join("cgroup.kill"), "1");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(c) = &self.cgroup {
            let remove = |p: &Path| {
                for _ in 0..100 {
                    if std::fs::remove_dir(p).is_ok() || !p.exists() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            if let Ok(entries) = std::fs::read_dir(c.join("services")) {
                for e in entries.flatten() {
                    remove(&e.path());
                }
            }
            remove(&c.join("services"));
            remove(c);
        }
    }
}
