//! Starting one service: its user and group, a minimal environment, its output pipe, and the child's setup
//! between fork and exec (`sys::child_setup`: its own session, default signals, its cgroup).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{self, Error};
use crate::paths::Paths;
use crate::services::Service;
use crate::sys;

/// The `PATH` services get unless they set their own.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A started service.
#[derive(Debug)]
pub struct Spawned {
    /// Its process (and session, and process group).
    pub pid: u32,
    /// The read end of its stdout and stderr.
    pub output: OwnedFd,
}

/// Who a service runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// The user's name, for `USER` and `LOGNAME`.
    pub name: String,
    /// The home directory, for `HOME`.
    pub home: String,
}

/// Finds `user` (a name or a number) in the text of `/etc/passwd`, and `group` (a name or a number, else the
/// user's own group) in the text of `/etc/group`.
pub fn identity(passwd: &str, group_file: &str, user: Option<&str>, group: Option<&str>) -> error::Result<Identity> {
    let entries: Vec<Vec<&str>> =
        passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 7).collect();
    let user = user.unwrap_or("0");
    let found = entries.iter().find(|f| f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user));
    let mut id = match (found, user.parse::<u32>()) {
        (Some(f), _) => Identity {
            uid: f[2].parse().map_err(|_| Error::BadUserEntry { user: user.to_owned(), field: "uid" })?,
            gid: f[3].parse().map_err(|_| Error::BadUserEntry { user: user.to_owned(), field: "gid" })?,
            name: f[0].to_owned(),
            home: f[5].to_owned(),
        },
        // A number with no entry is used as it is, as `setpriv` does.
        (None, Ok(uid)) => Identity { uid, gid: uid, name: uid.to_string(), home: "/".to_owned() },
        (None, Err(_)) => return Err(Error::UnknownUser { user: user.to_owned() }),
    };
    if let Some(g) = group {
        id.gid = match group_file.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 3 && f[0] == g)
        {
            Some(f) => f[2].parse().map_err(|_| Error::BadGroupEntry { group: g.to_owned() })?,
            None => g.parse().map_err(|_| Error::UnknownGroup { group: g.to_owned() })?,
        };
    }
    Ok(id)
}

/// [`identity`] from the passwd and group files under `paths`; a file that cannot be read counts as empty, so
/// only numeric ids are found then.
pub fn lookup(paths: &Paths, user: Option<&str>, group: Option<&str>) -> error::Result<Identity> {
    let passwd = std::fs::read_to_string(&paths.passwd).unwrap_or_default();
    let groups = std::fs::read_to_string(&paths.group).unwrap_or_default();
    identity(&passwd, &groups, user, group)
}

/// The environment a service starts with: a minimal one, `NOTIFY_SOCKET`, then its own `env` on top.
pub fn environment(svc: &Service, id: &Identity, notify: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_owned(), PATH.to_owned());
    env.insert("HOME".to_owned(), id.home.clone());
    env.insert("USER".to_owned(), id.name.clone());
    env.insert("LOGNAME".to_owned(), id.name.clone());
    env.insert("NOTIFY_SOCKET".to_owned(), notify.display().to_string());
    env.insert("EDGE_SERVICE".to_owned(), svc.name.clone());
    for (k, v) in &svc.env {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// Starts `svc`: stdin from /dev/null, stdout and stderr into one pipe, in the cgroup whose `cgroup.procs` is
/// open as `cgroup_procs`, as `id`.
pub fn spawn(svc: &Service, id: &Identity, notify: &Path, cgroup_procs: Option<File>) -> error::Result<Spawned> {
    let pipe_failed = |source| Error::OutputPipe { service: svc.name.clone(), source };
    let (read, write) = sys::output_pipe().map_err(pipe_failed)?;
    let write_too = write.try_clone().map_err(pipe_failed)?;
    let mut cmd = Command::new(&svc.argv[0]);
    cmd.args(&svc.argv[1..])
        .env_clear()
        .envs(environment(svc, id, notify))
        .current_dir(&svc.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_too))
        .stderr(Stdio::from(write));
    let ids = (id.uid != 0 || id.gid != 0).then_some((id.uid, id.gid));
    let procs: Option<OwnedFd> = cgroup_procs.map(OwnedFd::from);
    // SAFETY: the closure runs in the child between fork and exec and calls only `sys::child_setup`, which makes
    // async-signal-safe system calls (write, setsid, rt_sigaction, sigprocmask, setgroups, setgid, setuid) and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || sys::child_setup(procs.as_ref().map(|f| f.as_fd()), ids));
    }
    let child = cmd.spawn().map_err(|source| {
        let service = svc.name.clone();
        if !svc.cwd.is_dir() {
            Error::WorkingDirectory { service, path: svc.cwd.clone(), source }
        } else {
            Error::RunService { service, program: svc.argv[0].clone(), source }
        }
    })?;
    // The write ends are in the child now; dropping `cmd` closes ours, so the pipe ends when the service does.
    drop(cmd);
    Ok(Spawned { pid: child.id(), output: read })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/var/lib/app:/bin/false\nbad:x:y:0::/:/\n";
    const GROUP: &str = "root:x:0:\nvideo:x:44:app\n";

    #[test]
    fn users_and_groups() {
        let check = |user: Option<&str>, group: Option<&str>, expected: Result<(u32, u32, &str), &str>| {
            let got = identity(PASSWD, GROUP, user, group).map(|i| (i.uid, i.gid, i.home)).map_err(|e| e.to_string());
            let expected = expected.map(|(u, g, h)| (u, g, h.to_owned())).map_err(str::to_owned);
            match (&got, &expected) {
                (Err(g), Err(e)) => assert!(g.contains(e.as_str()), "{user:?} {group:?}: {g}"),
                _ => assert_eq!(got, expected, "{user:?} {group:?}"),
            }
        };
        check(None, None, Ok((0, 0, "/root")));
        check(Some("app"), None, Ok((1000, 1000, "/var/lib/app")));
        check(Some("1000"), None, Ok((1000, 1000, "/var/lib/app")));
        check(Some("app"), Some("video"), Ok((1000, 44, "/var/lib/app")));
        check(Some("app"), Some("45"), Ok((1000, 45, "/var/lib/app")));
        check(Some("4242"), None, Ok((4242, 4242, "/")));
        check(Some("nobody-here"), None, Err("not in /etc/passwd"));
        check(Some("app"), Some("nogroup-here"), Err("not in /etc/group"));
        check(Some("bad"), None, Err("bad uid"));
    }

    #[test]
    fn issue_15_users_and_groups_come_from_the_files_under_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let paths = Paths::under(root.path());
        // No files: numbers still work, names do not.
        assert!(matches!(lookup(&paths, Some("app"), None), Err(Error::UnknownUser { user }) if user == "app"));
        assert_eq!(lookup(&paths, Some("7"), None).map(|i| (i.uid, i.gid)).ok(), Some((7, 7)));
        std::fs::create_dir_all(root.path().join("etc")).expect("etc");
        std::fs::write(&paths.passwd, PASSWD).expect("passwd");
        std::fs::write(&paths.group, GROUP).expect("group");
        let id = lookup(&paths, Some("app"), Some("video")).expect("app");
        assert_eq!((id.uid, id.gid, id.name.as_str(), id.home.as_str()), (1000, 44, "app", "/var/lib/app"));
        assert!(
            matches!(lookup(&paths, Some("app"), Some("nogroup")), Err(Error::UnknownGroup { group }) if group == "nogroup")
        );
        assert!(matches!(lookup(&paths, Some("bad"), None), Err(Error::BadUserEntry { field: "uid", .. })));
    }
}
