//! `edge-init -- CMD` as a container runtime meets it: the command's status comes back (128 + N for a signal),
//! signals reach the command, and orphans the command leaves behind are reaped, not left as zombies.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// `edge-init` started with every signal at its default and none blocked, whatever this test process inherited
/// (under `nohup`, SIGHUP arrives ignored, and a wrapper passes that on, as it should).
fn edge_init() -> Command {
    edge_init_with(0, 0)
}

/// `edge-init` started with the signals of the bit set `ignored` ignored, the others at their default, and the
/// mask `blocked` (bit N-1 for signal N).
fn edge_init_with(ignored: u64, blocked: u64) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-init"));
    // SAFETY: between fork and exec the closure only makes the raw rt_sigaction and rt_sigprocmask calls, on live
    // locals of the kernel's sizes: async-signal-safe, no allocation. Raw calls, because this test process may
    // itself have inherited the C library's signal 32 ignored (glibc's posix_spawn leaves it so), and the C
    // library's signal(3) refuses to touch it.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            for s in (1..=64).filter(|s| ![libc::SIGKILL, libc::SIGSTOP].contains(s)) {
                let handler = if ignored & 1 << (s - 1) != 0 { libc::SIG_IGN } else { libc::SIG_DFL };
                let action = [handler as u64, 0, 0, 0];
                libc::syscall(libc::SYS_rt_sigaction, s, action.as_ptr(), std::ptr::null_mut::<u64>(), 8usize);
            }
            libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &blocked, std::ptr::null_mut::<u64>(), 8usize);
            Ok(())
        });
    }
    cmd
}

fn status(args: &[&str]) -> i32 {
    edge_init().args(args).status().expect("run edge-init").code().expect("exited")
}

#[test]
fn the_command_status_comes_back() {
    let check = |script: &str, expected: i32| assert_eq!(status(&["--", "sh", "-c", script]), expected, "{script}");
    for code in 0..=255 {
        check(&format!("exit {code}"), code);
    }
    for (name, n) in [("HUP", 1), ("INT", 2), ("QUIT", 3), ("ABRT", 6), ("KILL", 9), ("SEGV", 11), ("TERM", 15)] {
        check(&format!("trap - {name}; kill -{name} $$"), 128 + n);
    }
    assert_eq!(status(&["--", "/nonexistent/command"]), 127);
    assert_eq!(status(&["--"]), 2);
    assert_eq!(status(&[]), 2);
}

#[test]
fn signals_reach_the_command() {
    for (signal, name, code) in [(15, "TERM", 42), (1, "HUP", 43), (10, "USR1", 44)] {
        let script = format!("trap 'exit {code}' {name}; echo ready; while :; do sleep 0.05; done");
        let mut child =
            edge_init().args(["--", "sh", "-c", &script]).stdout(Stdio::piped()).spawn().expect("spawn edge-init");
        // The trap is set once the command says so.
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("read");
        assert_eq!(line, "ready\n");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(sent.success());
        assert_eq!(child.wait().expect("wait").code(), Some(code), "SIG{name}");
    }
}

/// The signal state a parent can leave: signals ignored, signals blocked.
fn bits(signals: &[i32]) -> u64 {
    signals.iter().fold(0, |m, s| m | 1 << (s - 1))
}

#[test]
fn issue_14_the_command_starts_with_the_signal_state_edge_init_inherited() {
    // A wrapper is invisible: what the parent left ignored or blocked, the command finds ignored or blocked, and
    // nothing edge-init set for itself (Rust's ignored SIGPIPE, its own mask) leaks through.
    let check = |ignore: &[i32], block: &[i32]| {
        let (ignored, blocked) = (bits(ignore), bits(block));
        let mut cmd = edge_init_with(ignored, blocked);
        cmd.args(["--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
        let out = cmd.output().expect("edge-init");
        let expected = format!("SigBlk:\t{blocked:016x}\nSigIgn:\t{ignored:016x}\n");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "ignored {ignore:?}, blocked {block:?}");
    };
    // SIGPIPE stays at its default when the parent left it there, though Rust ignores it in edge-init.
    check(&[], &[]);
    check(&[libc::SIGINT, libc::SIGTTOU], &[libc::SIGTERM]);
    check(&[libc::SIGPIPE, libc::SIGHUP], &[libc::SIGUSR1, libc::SIGCHLD]);
    check(&[], &[libc::SIGSEGV, libc::SIGRTMIN() + 2]);
}

/// A command that prints `ready`, then the number of every signal it gets, one a line, and exits 0 when its stdin
/// ends. Python refuses handlers only for the C library's own signals (32 and 33). Python runs a handler between
/// two bytecodes, so a signal that lands after one handler ran but before the main loop blocks again would wait in
/// Python until the next one: the numbers come from the wakeup pipe instead, where Python's C-level handler writes
/// each signal's number as it arrives, and the loop waits on that pipe and stdin at once.
const HANDLER: &str = r#"
import os, select, signal
r, w = os.pipe()
os.set_blocking(w, False)
signal.set_wakeup_fd(w)
for n in range(1, signal.SIGRTMAX + 1):
    if n not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        try:
            signal.signal(n, lambda n, frame: None)
        except (OSError, ValueError):
            pass
os.write(1, b"ready\n")
while True:
    ready = select.select([0, r], [], [])[0]
    if r in ready:
        for n in os.read(r, 256):
            os.write(1, b"%d\n" % n)
    if 0 in ready and not os.read(0, 4096):
        break
"#;

/// Reads lines from `child`'s stdout on a thread of its own, so that a test can fail when edge-init dies instead of
/// waiting forever for a line that will never come (its command outlives it and keeps the pipe open).
fn lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.expect("read")).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line, or a failure naming `what` once edge-init has ended (or after a minute, a bound against hangs).
fn next_line(rx: &std::sync::mpsc::Receiver<String>, child: &mut std::process::Child, what: &str) -> String {
    for _ in 0..600 {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(line) => return line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    panic!("{what}: edge-init ended ({status}) and the command did not answer");
                }
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
    panic!("{what}: no answer within a minute")
}

#[test]
fn issue_14_every_catchable_signal_but_chld_reaches_the_command() {
    let mut child = edge_init()
        .args(["--", "python3", "-c", HANDLER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn edge-init");
    let rx = lines(&mut child);
    assert_eq!(next_line(&rx, &mut child, "start"), "ready");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    let skipped = [libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD];
    let signals = (1..=31).filter(|s| !skipped.contains(s)).chain(libc::SIGRTMIN()..=libc::SIGRTMAX());
    for s in signals {
        // SAFETY: kill(2) takes two integers.
        assert_eq!(unsafe { libc::kill(pid.as_raw_nonzero().get(), s) }, 0, "kill {s}");
        assert_eq!(next_line(&rx, &mut child, &format!("signal {s}")), s.to_string(), "signal {s}");
    }
    // edge-init survived them all: it is still there to pass on the command's own exit.
    drop(child.stdin.take());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn issue_14_the_command_has_a_process_group_of_its_own() {
    let script = "import os; print(os.getpid(), os.getpgrp(), os.getpgid(os.getppid()))";
    let out = edge_init().args(["--", "python3", "-c", script]).output().expect("edge-init");
    assert!(out.status.success(), "{out:?}");
    let ids: Vec<u32> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(|w| w.parse().expect("number")).collect();
    let [pid, group, init_group] = ids[..] else { panic!("{ids:?}") };
    assert_eq!(group, pid, "the command leads its own process group");
    assert_ne!(group, init_group, "signalling the command's group does not reach edge-init");
}

/// Starts `edge-init -- python3 ...` on a new terminal (pty.fork: a session of its own with the terminal as its
/// controlling one) from a shell-like parent without job control, in the terminal's foreground process group or,
/// with `background`, from a group of its own beside it; prints what the command finds, then what the parent finds
/// once edge-init has ended.
const ON_A_TERMINAL: &str = r#"
import os, pty, subprocess, sys
exe, background = sys.argv[1], sys.argv[2] == "background"
report = "import os; fg = os.tcgetpgrp(0); print('foreground' if fg == os.getpgrp() == os.getpid() else 'not foreground')"
pid, fd = pty.fork()
if pid == 0:
    if background:
        if os.fork() != 0:
            os._exit(os.waitstatus_to_exitcode(os.wait()[1]))
        os.setpgid(0, 0)
    code = subprocess.run([exe, "--", sys.executable, "-c", report]).returncode
    print("after:", "foreground" if os.tcgetpgrp(0) == os.getpgrp() else "not foreground", flush=True)
    os._exit(code)
out = b""
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
status = os.waitpid(pid, 0)[1]
sys.stdout.write(out.decode().replace("\r", ""))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn issue_14_the_command_gets_the_terminal_edge_init_had() {
    let check = |place: &str, expected: &str| {
        let out = Command::new("python3")
            .args(["-c", ON_A_TERMINAL, env!("CARGO_BIN_EXE_edge-init"), place])
            .output()
            .expect("python3");
        assert!(out.status.success(), "{place}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{place}");
    };
    // Handed over as tini does, so an interactive command can read its terminal, and handed back once it ends.
    check("foreground", "foreground\nafter: foreground\n");
    // Never taken from a shell that runs edge-init in the background.
    check("background", "not foreground\nafter: not foreground\n");
}

#[test]
fn orphans_are_reparented_and_reaped() {
    // The command leaves five orphans waiting for a go file. They must be re-parented to edge-init (a child
    // subreaper); once they end, edge-init must reap them. The command counts edge-init's other children by state
    // in /proc and exits 0 only when both held.
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
        go="$1/go"
        for i in 1 2 3 4 5; do
            (sh -c 'i=0; while [ ! -e "$1" ] && [ $i -lt 500 ]; do i=$((i + 1)); sleep 0.02; done' sh "$go" &)
        done
        count() { # $want R: live children of edge-init other than this shell; Z: zombies
            sed 's/^\([0-9]*\) (.*) /\1 /' /proc/[0-9]*/stat 2>/dev/null |
                awk -v pp="$PPID" -v me=$$ -v want="$want" \
                    '$3 == pp && $1 != me && (($2 == "Z") == (want == "Z")) { n++ } END { print n + 0 }'
        }
        i=0; want=R
        until [ "$(count)" = 5 ]; do i=$((i + 1)); [ $i -gt 200 ] && exit 3; sleep 0.02; done
        touch "$go"
        i=0
        until [ "$(want=R count)" = 0 ] && [ "$(want=Z count)" = 0 ]; do
            i=$((i + 1)); [ $i -gt 200 ] && exit 4; sleep 0.02
        done
        exit 0
    "#;
    let dir = dir.path().to_str().expect("utf8");
    assert_eq!(status(&["--", "sh", "-c", script, "sh", dir]), 0, "3: not re-parented, 4: not reaped");
}
