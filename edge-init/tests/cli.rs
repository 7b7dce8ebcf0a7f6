//! `edge-init`'s client forms as an operator or an image builder meets them: `--version`, `--help` on each verb, and
//! `check --config FILE`, with their exit codes and what they print.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-init")).args(args).output().expect("run edge-init")
}

#[test]
fn issue_14_version_and_help_exit_0() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("edge-init {}\n", env!("CARGO_PKG_VERSION")));
    for args in [
        &["--help"][..],
        &["-h"],
        &["--config", "x", "--help"],
        &["ctl", "--help"],
        &["ctl", "-h"],
        &["ctl", "status", "--help"],
        &["notify", "--help"],
        &["check", "--help"],
        &["check", "-h"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(out.stdout.starts_with(b"usage: edge-init"), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    }
    // Bad usage is still bad usage.
    for args in [&["ctl"][..], &["ctl", "dance"], &["check", "--config"], &["check", "x"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

/// `notify` checks its words before it looks for `NOTIFY_SOCKET`: bad usage is exit 2 wherever it is run, and only
/// good words without a socket are exit 1.
#[test]
fn issue_14_notify_usage_is_checked_before_the_socket() {
    let notify = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_edge-init"))
            .arg("notify")
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .expect("run edge-init notify");
        out.status.code()
    };
    assert_eq!(notify(&["READY"]), Some(2));
    assert_eq!(notify(&[]), Some(2));
    assert_eq!(notify(&["READY=1", "STATUS"]), Some(2));
    assert_eq!(notify(&["READY=1"]), Some(1));
}

#[test]
fn issue_14_check_validates_a_services_file_as_boot_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The exit code, and the words stderr must name (the file, the service, the key) for each file.
    let check = |name: &str, text: &str, code: i32, named: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let path = path.display().to_string();
        let out = run(&["check", "--config", &path]);
        assert_eq!(out.status.code(), Some(code), "{name}: {out:?}");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if code == 0 {
            assert_eq!(stdout.lines().count(), 1, "{name}: one line: {stdout}");
            assert!(stdout.contains(&path) && stderr.is_empty(), "{name}: {out:?}");
        } else {
            assert!(stdout.is_empty(), "{name}: {out:?}");
            for word in [path.as_str()].iter().chain(named) {
                assert!(stderr.contains(word), "{name}: {word} not named in {stderr}");
            }
        }
    };
    let svc = |name: &str, extra: &str| format!("[[service]]\nname = \"{name}\"\nargv = [\"/bin/true\"]\n{extra}\n");
    check("empty.toml", "", 0, &[]);
    check(
        "good.toml",
        &format!("{}{}", svc("app", "env = { A = \"b=c\" }"), svc("getty@tty1", "after = [\"app\"]")),
        0,
        &[],
    );
    check("dotdot.toml", &svc("..", "restart = \"never\""), 1, &["\"..\"", "name"]);
    check("dot.toml", &svc(".", ""), 1, &["\".\"", "name"]);
    check("slash.toml", &svc("a/b", ""), 1, &["\"a/b\"", "name"]);
    check("backoff.toml", &svc("app", "backoff_secs = 9223372036854775807"), 1, &["service app", "backoff_secs"]);
    check("grace.toml", &svc("app", "grace_secs = 86401"), 1, &["service app", "grace_secs"]);
    check("timeout.toml", &svc("app", "start_timeout_secs = 0"), 1, &["service app", "start_timeout_secs"]);
    check("wait.toml", "[data]\nwait_secs = 9223372036854775807\n", 1, &["data.wait_secs"]);
    check("env.toml", &svc("app", "env = { \"A=B\" = \"x\" }"), 1, &["service app", "env", "A=B"]);
    check("env-empty.toml", &svc("app", "env = { \"\" = \"x\" }"), 1, &["service app", "env"]);
    check("syntax.toml", &svc("app", "restart = 3"), 1, &["restart"]);
    check("unknown.toml", &svc("app", "surprise = true"), 1, &["surprise"]);
    // A file that cannot be read is not a bad file: a wrong path in the image builder.
    let missing = dir.path().join("missing.toml").display().to_string();
    let out = run(&["check", "--config", &missing]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&missing), "{out:?}");
    // Nor is a FIFO (which would block boot), a device that never ends, or a file too large to be a services file.
    let fifo = dir.path().join("fifo.toml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; (edge_init::services::MAX_FILE_BYTES + 1) as usize]).expect("write");
    for path in [fifo.display().to_string(), "/dev/zero".to_owned(), big.display().to_string()] {
        let out = run(&["check", "--config", &path]);
        assert_eq!(out.status.code(), Some(3), "{path}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&path), "{path}: {out:?}");
    }
}
