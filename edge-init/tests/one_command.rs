//! `edge-init -- CMD` as a container runtime meets it: the command's status comes back (128 + N for a signal),
//! signals reach the command, and orphans the command leaves behind are reaped, not left as zombies.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn edge_init() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-init"))
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

#[test]
fn inherited_signal_state_is_not_passed_on() {
    // edge-init is started with SIGINT and SIGALRM ignored and SIGUSR2 blocked; its command starts with neither.
    let mut cmd = edge_init();
    cmd.args(["--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    // SAFETY: between fork and exec the closure only calls signal(2), sigemptyset, sigaddset and sigprocmask on a
    // local set: async-signal-safe, no allocation.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGALRM, libc::SIG_IGN);
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigaddset(set.as_mut_ptr(), libc::SIGUSR2);
            libc::sigprocmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
            Ok(())
        });
    }
    let out = cmd.output().expect("edge-init");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
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
