//! `edge-init`'s one error type (STYLE.md, "Errors"): each variant is named for what was being attempted and
//! carries the path, device, program or service it concerns, with the I/O error as its `source`, never in its
//! message. There is no `From<io::Error>`, so every fallible call says what it was doing.
//! PID 1 handles nearly every error by logging it and carrying on, so the error is written once, where it is
//! handled, with its whole cause chain on one line ([`chain`]).
//! The services file keeps its own error (`services::Error`, with the file, service, key and one `Problem` per
//! check), since `edge-init check` maps it to its exit codes.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;

/// Everything that can go wrong in `edge-init` outside the services file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name that is not a service name reached a place where it would become a path (a cgroup leaf).
    #[error("{name:?} is not a service name")]
    ServiceName {
        /// The name.
        name: String,
    },
    /// mkdir(2) of a directory `edge-init` needs (a cgroup leaf, a log file's directory, a mount point).
    #[error("cannot make directory {path}")]
    MakeDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// open(2) of a cgroup's control file (`cgroup.procs`, `cgroup.kill`).
    #[error("cannot open {path}")]
    OpenCgroupFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// write(2) to a cgroup's control file.
    #[error("cannot write {path}")]
    WriteCgroupFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Opening (or creating) a service's capped log file.
    #[error("cannot open log file {path}")]
    OpenLogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Moving a full log file to `.1`.
    #[error("cannot rotate log file {path} to .1")]
    RotateLogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Appending a line to a service's log file.
    #[error("cannot append to log file {path}")]
    AppendLogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A service's `user` is neither a name in the passwd file nor a number.
    #[error("user {user} is not in /etc/passwd")]
    UnknownUser {
        /// The user as the services file gives it.
        user: String,
    },
    /// The passwd entry of a service's `user` holds a field that is no number.
    #[error("user {user}: bad {field} in /etc/passwd")]
    BadUserEntry {
        /// The user.
        user: String,
        /// `uid` or `gid`.
        field: &'static str,
    },
    /// A service's `group` is neither a name in the group file nor a number.
    #[error("group {group} is not in /etc/group")]
    UnknownGroup {
        /// The group as the services file gives it.
        group: String,
    },
    /// The group file's entry of a service's `group` holds a gid that is no number.
    #[error("group {group}: bad gid in /etc/group")]
    BadGroupEntry {
        /// The group.
        group: String,
    },
    /// pipe2(2) for a service's output.
    #[error("service {service}: cannot make its output pipe")]
    OutputPipe {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A service's `cwd` does not exist, so it cannot be started.
    #[error("service {service}: working directory {path} does not exist")]
    WorkingDirectory {
        /// The service.
        service: String,
        /// Its working directory.
        path: PathBuf,
        /// What fork and exec said.
        #[source]
        source: io::Error,
    },
    /// fork and exec of a service's program.
    #[error("service {service}: cannot run {program}")]
    RunService {
        /// The service.
        service: String,
        /// Its program (`argv[0]`).
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Starting a program `edge-init` runs to completion (the data partition's `format` or `fsck`).
    #[error("cannot start {program}")]
    StartProgram {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Such a program ran and failed.
    #[error("{program} ended with {status}")]
    ProgramFailed {
        /// The program.
        program: String,
        /// How it ended.
        status: ExitStatus,
    },
    /// Reading the start of a partition, to tell whether it is blank.
    #[error("cannot read the start of {device}")]
    ReadDevice {
        /// The partition.
        device: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading `modules.dep`; shared by every module it kept from being loaded.
    #[error("cannot read {path}")]
    ReadModuleDeps {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<io::Error>,
    },
    /// open(2) of a kernel module's file.
    #[error("cannot open module {path}")]
    OpenModule {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// finit_module(2) refused a module.
    #[error("the kernel refused module {path}")]
    LoadModule {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// finit_module(2) refused a compressed module, which kernels before 5.17 cannot decompress.
    #[error(
        "the kernel refused the compressed {path}: it decompresses modules only from Linux 5.17 on, with \
         CONFIG_MODULE_DECOMPRESS; ship the module uncompressed"
    )]
    LoadCompressedModule {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// open(2) of the chosen watchdog device.
    #[error("cannot open watchdog device {path}")]
    OpenWatchdog {
        /// The device node.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A pet (`WDIOC_KEEPALIVE` or a write) of the watchdog.
    #[error("cannot pet watchdog {path}")]
    PetWatchdog {
        /// The device node.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Installing PID 1's signal handlers.
    #[error("cannot install signal handlers")]
    InstallSignals {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading the kernel command line.
    #[error("cannot read {path}")]
    ReadCmdline {
        /// The file (`/proc/cmdline`).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing a kernel setting under `/proc/sys`.
    #[error("cannot write {path}")]
    WriteKernelSetting {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// mount(2) of an API filesystem in early boot.
    #[error("cannot mount {fstype} on {target}")]
    MountApi {
        /// The filesystem type (`proc`, `sysfs`...).
        fstype: &'static str,
        /// The mount point.
        target: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// symlink(2) of one of the links a fresh `/dev` lacks (`fd`, `stdin`...).
    #[error("cannot make link {link} -> {target}")]
    MakeLink {
        /// The link.
        link: PathBuf,
        /// What it points to.
        target: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// sethostname(2).
    #[error("cannot set the hostname to {name:?}")]
    SetHostname {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Bringing a network interface up (`lo`).
    #[error("cannot bring up {interface}")]
    InterfaceUp {
        /// The interface.
        interface: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Switching root from an initramfs, by a process that is not PID 1.
    #[error("only PID 1 may switch root")]
    SwitchRootNotPid1,
    /// statfs(2) of a filesystem's root, to learn its type.
    #[error("cannot statfs {path}")]
    StatFilesystem {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Switching root when the root filesystem is no initramfs (a ramfs or a tmpfs).
    #[error("the root filesystem is not an initramfs (statfs type {magic:#x})")]
    NotInitramfs {
        /// Its `f_type`.
        magic: u32,
    },
    /// The slot's root partition did not appear within the wait.
    #[error("root {root} not found within {wait_ms} ms")]
    FindRoot {
        /// What was looked for (`edge.root=`), such as `PARTLABEL=edge-slot-a`.
        root: String,
        /// How long it was waited for.
        wait_ms: u128,
    },
    /// mount(2) of the slot's root before it becomes `/`.
    #[error("cannot mount {device} ({fstype}) on {target}")]
    MountRoot {
        /// The partition.
        device: PathBuf,
        /// Its filesystem type.
        fstype: String,
        /// The mount point.
        target: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The slot's root has no `edge-init` to execute after the switch.
    #[error("{device} has no {init}")]
    RootHasNoInit {
        /// The partition.
        device: PathBuf,
        /// The program looked for, as the new root names it.
        init: PathBuf,
    },
    /// Moving a mount (`MS_MOVE`).
    #[error("cannot move the mount on {from} to {to}")]
    MoveMount {
        /// Where it is.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// chdir(2).
    #[error("cannot change directory to {path}")]
    ChangeDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// chroot(2) into the slot's root.
    #[error("cannot chroot to {path}")]
    ChangeRoot {
        /// The new root, as it was named before the call.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// execve(2) of `edge-init` in the slot's root.
    #[error("cannot execute {path}")]
    ExecInit {
        /// The program.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `SO_PEERCRED` of a control socket connection, which tells whether the peer is root.
    #[error("cannot read the credentials of a control socket peer")]
    PeerCredentials {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Sending a readiness datagram (`edge-init notify`).
    #[error("cannot send to notify socket {socket}")]
    Notify {
        /// `$NOTIFY_SOCKET`.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// bind(2) of the control or the notify socket.
    #[error("cannot bind socket {path}")]
    BindSocket {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// chmod(2) of a socket.
    #[error("cannot set the mode of socket {path}")]
    SocketMode {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// An error and each of its causes on one line, joined by `: `: how `edge-init` logs an error where it handles
/// it (one kernel log record per event).
pub struct Chain<'a, E: ?Sized>(&'a E);

/// The one-line cause chain of `e`, to log. Generic rather than over `dyn Error`, so that an error type that is
/// only ever logged needs no `Debug` code in the binary (a trait object's vtable would keep it).
pub fn chain<E: std::error::Error + ?Sized>(e: &E) -> Chain<'_, E> {
    Chain(e)
}

impl<E: std::error::Error + ?Sized> fmt::Display for Chain<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_15_a_chain_is_every_cause_once_on_one_line() {
        let check = |e: &(dyn std::error::Error + 'static), expected: &str| assert_eq!(chain(e).to_string(), expected);
        let enoent = || io::Error::from_raw_os_error(2);
        check(
            &Error::OpenWatchdog { path: "/dev/watchdog0".into(), source: enoent() },
            "cannot open watchdog device /dev/watchdog0: No such file or directory (os error 2)",
        );
        check(&Error::UnknownUser { user: "app".into() }, "user app is not in /etc/passwd");
        let shared = Arc::new(enoent());
        check(
            &Error::ReadModuleDeps { path: "/lib/modules/6.6/modules.dep".into(), source: shared },
            "cannot read /lib/modules/6.6/modules.dep: No such file or directory (os error 2)",
        );
    }
}
