//! `edge-init` as PID 1 of new namespaces, without QEMU (docs/edge-init.md, "PID 1"): reaping, restarts and the
//! crash budget, ordering and readiness, a service stopped whole, each signal's meaning, signal state not passed
//! on, the control socket, a PID 1 that survives crashing services and floods of children, the data partition
//! through a reboot, and initramfs mode switching into a slot root.
//! Reboot and poweroff are the real reboot(2): in a PID namespace other than the first, the kernel ends the
//! namespace's PID 1 with SIGHUP (restart) or SIGINT (power off, halt), and `unshare` dies of the same signal.

mod node;

use node::{end_signal, wait_gone, Inherited, Node};

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGUSR1: i32 = 10;
const SIGUSR2: i32 = 12;
const SIGALRM: i32 = 14;
const SIGTERM: i32 = 15;
const SIGWINCH: i32 = 28;
const SIGPWR: i32 = 30;

/// A service that stays up until stopped.
const IDLE: &str = "[[service]]\nname = \"idle\"\nargv = [\"sleep\", \"1000\"]\n";

#[test]
fn orphans_and_zombies_are_reaped() {
    // 300 double forks: each inner process is orphaned at once and re-parented to PID 1. The service then waits
    // until only PID 1 and itself are left in the namespace's /proc: every orphan ended and was reaped.
    let script = r#"
        i=0
        while [ $i -lt 300 ]; do ( sleep 0.0$((i % 5)) & ); ( setsid true & ); i=$((i + 1)); done
        tries=0
        while :; do
            n=0; for p in /proc/[0-9]*; do [ -d "$p" ] && n=$((n + 1)); done
            if [ $n -le 2 ] || [ $tries -ge 3000 ]; then break; fi
            tries=$((tries + 1)); sleep 0.01
        done
        echo "processes left: $n"
    "#;
    let mut node = Node::start(&format!(
        "[[service]]\nname = \"reaper\"\nargv = [\"sh\", \"-c\", '''{script}''']\nrestart = \"never\"\nready = \"exited\"\n"
    ));
    let line = node.wait_log("reaper: processes left:");
    assert!(line.ends_with("processes left: 2"), "{line}");
    node.wait_log("reaper: exited 0");
    assert!(node.ctl(&["poweroff"]).0 == 0);
    assert_eq!(end_signal(node.wait_end()), Some(SIGINT));
}

#[test]
fn restarts_back_off_and_the_crash_budget_gives_up() {
    let mut node = Node::start(
        "[[service]]\nname = \"crash\"\nargv = [\"sh\", \"-c\", \"echo run; exit 1\"]\nbackoff_secs = 1\n\
         crash_budget = 2\n",
    );
    node.wait_log("crash: exited 1; restarting in 1 s");
    node.wait_log("crash: exited 1; restarting in 2 s");
    node.wait_log("crash: crashed 3 times within 300 s; given up");
    assert_eq!(node.count_log("crash: run"), 3);
    let status = node.status();
    assert!(status.contains("crash            failed: crashed 3 times within 300 s, 2 restarts"), "{status}");
    let (code, _, err) = node.ctl(&["health"]);
    assert_eq!((code, err.contains("not ready: crash failed")), (1, true), "{err}");
    // `ctl start` gives a failed service a fresh budget.
    assert_eq!(node.ctl(&["start", "crash"]).0, 0);
    node.wait_new_log("crash: run");
    node.wait_new_log("crash: exited 1; restarting in 1 s");
    assert_eq!(node.ctl(&["poweroff"]).0, 0);
    assert_eq!(end_signal(node.wait_end()), Some(SIGINT));
}

#[test]
fn services_start_in_order_once_ready() {
    let mut node = Node::start(
        r#"
        [[service]]
        name = "app"
        argv = ["sh", "-c", "echo app starts; exec sleep 1000"]
        after = ["db"]

        [[service]]
        name = "db"
        argv = ["sh", "-c", "mkfifo {dir}/go; echo waiting; read x < {dir}/go; {exe} notify READY=1 STATUS=serving; exec sleep 1000"]
        ready = "notify"
        start_timeout_secs = 600

        [[service]]
        name = "mute"
        argv = ["sleep", "1000"]
        ready = "notify"
        start_timeout_secs = 1
        restart = "never"
        "#,
    );
    node.wait_log("db: waiting");
    // db is started and not ready: app waits for it.
    let status = node.status();
    assert!(status.contains("db               starting"), "{status}");
    assert!(status.contains("app              waiting"), "{status}");
    assert_eq!(node.count_log("app: app starts"), 0);
    std::fs::write(node.path("go"), "go\n").expect("tell db to get ready");
    node.wait_log("app: app starts");
    let status = node.status();
    assert!(status.contains("db               up (pid") && status.contains("(serving)"), "{status}");
    // A service that never says READY=1 is stopped at its start timeout.
    node.wait_log("mute: not ready after 1 s; stopping it");
    node.wait_log("mute: stopped");
    assert_eq!(node.ctl(&["poweroff"]).0, 0);
    assert_eq!(end_signal(node.wait_end()), Some(SIGINT));
}

#[test]
fn a_stubborn_service_is_stopped_whole() {
    // It ignores SIGTERM, and so does a grandchild in a session of its own (out of the service's process group).
    let mut node = Node::start(
        r#"
        [[service]]
        name = "stubborn"
        argv = ["sh", "-c", "trap '' TERM; setsid sh -c 'echo grandchild; exec sleep 1001' & echo main; exec sleep 1002"]
        grace_secs = 1
        "#,
    );
    node.wait_log("stubborn: grandchild");
    node.wait_log("stubborn: main");
    let pids = node.service_pids("stubborn");
    assert!(pids.len() >= 2, "{pids:?}");
    assert_eq!(node.ctl(&["stop", "stubborn"]).0, 0);
    node.wait_log("stubborn: still running after its grace period; killed");
    node.wait_log("stubborn: stopped (killed by signal 9)");
    for pid in pids {
        assert!(wait_gone(pid), "process {pid} of the service is still there");
    }
    assert!(node.status().contains("stubborn         killed by signal 9"));
    assert_eq!(node.ctl(&["reboot"]).0, 0);
    assert_eq!(end_signal(node.wait_end()), Some(SIGHUP));
}

#[test]
fn issue_6_review_a_restart_does_not_kill_the_new_instance() {
    let mut node = Node::start(IDLE);
    let first = node.wait_log("idle: started (pid");
    assert_eq!(node.ctl(&["restart", "idle"]).0, 0);
    node.wait_log("idle: stopped (killed by signal 15)");
    let second = node.wait_new_log("idle: started (pid");
    assert_ne!(first, second);
    // A later event in the same log: whatever the restart did is logged before it.
    assert_eq!(node.ctl(&["stop", "idle"]).0, 0);
    node.wait_new_log("idle: stopped (killed by signal 15)");
    assert_eq!(node.count_log("left behind"), 0, "{}", node.seen.join("\n"));
    assert_eq!(node.count_log("killed by signal 9"), 0, "{}", node.seen.join("\n"));
    node.signal(SIGTERM);
    assert_eq!(end_signal(node.wait_end()), Some(SIGHUP));
}

#[test]
fn each_signal_keeps_its_busybox_meaning() {
    // TERM reboots (busybox `reboot`), USR2 powers off (`poweroff`), USR1 halts (`halt`), INT is ctrl-alt-del.
    let check = |signal: i32, line: &str, ended_by: i32| {
        let mut node = Node::start(IDLE);
        node.signal(signal);
        assert_eq!(end_signal(node.wait_end()), Some(ended_by), "signal {signal}");
        assert_eq!(node.count_log(line), 1, "signal {signal}: {line}\n{}", node.seen.join("\n"));
        assert_eq!(node.count_log("idle: stopped (killed by signal 15)"), 1, "signal {signal}");
    };
    check(SIGTERM, "edge-init: info: rebooting", SIGHUP);
    check(SIGINT, "edge-init: info: ctrl-alt-del", SIGHUP);
    check(SIGUSR2, "edge-init: info: powering off", SIGINT);
    check(SIGUSR1, "edge-init: info: halting", SIGINT);
    // SIGPWR syncs and carries on: powering off is the UPS daemon's decision (it sends USR2).
    let mut node = Node::start(IDLE);
    node.signal(SIGPWR);
    node.wait_log("power failure signalled; syncing filesystems");
    assert!(node.status().contains("idle             up"));
    node.signal(SIGTERM);
    assert_eq!(end_signal(node.wait_end()), Some(SIGHUP));
}

#[test]
fn inherited_signal_state_is_not_passed_on() {
    // edge-init is started with signals ignored and blocked; its services start with none of either.
    let inherited = Inherited { ignore: &[SIGINT, SIGWINCH, SIGALRM], block: &[SIGUSR2, SIGALRM] };
    let mut node = Node::start_with(
        "[[service]]\nname = \"show\"\nargv = [\"grep\", \"-E\", \"^Sig(Blk|Ign)\", \"/proc/self/status\"]\n\
         restart = \"never\"\n",
        inherited,
    );
    assert_eq!(node.wait_log("show: SigBlk:"), "show: SigBlk:\t0000000000000000");
    assert_eq!(node.wait_log("show: SigIgn:"), "show: SigIgn:\t0000000000000000");
    node.signal(SIGTERM);
    assert_eq!(end_signal(node.wait_end()), Some(SIGHUP));
    // The check can fail: the same command under a plain shell keeps what it inherited.
    let out = std::process::Command::new("sh")
        .args(["-c", "trap '' INT; exec grep -E '^SigIgn' /proc/self/status"])
        .output()
        .expect("sh");
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "SigIgn:\t0000000000000000");
}

#[test]
fn the_control_socket_answers_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let mut node = Node::start(IDLE);
    let sock = node.path("run/control.sock");
    let mode = std::fs::metadata(&sock).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Even with the file opened to everyone, the peer's credentials are checked.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, out, err) = node.ctl_as(&["status"], Some(65534));
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("refused: only root may use the control socket"), "{err}");
    node.wait_log("control socket: refused pid");
    let (code, out, _) = node.ctl_as(&["status", "--json"], None);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("{\"schema\":\"edge-init.status/1\",\"services\":[{\"name\":\"idle\",\"state\":\"up\","),
        "{out}"
    );
    let (code, _, err) = node.ctl(&["stop", "nosuch"]);
    assert_eq!((code, err.trim_end()), (1, "edge-init ctl stop nosuch: no service nosuch"));
    assert_eq!(node.ctl(&["health"]).0, 0);
    node.signal(SIGTERM);
    assert_eq!(end_signal(node.wait_end()), Some(SIGHUP));
}

/// `ctl status --json` starts with its schema and uses the names of docs/edge-init.md in the words of docs/json.md:
/// a state is one kebab-case word, with the pid, exit code, signal or reason beside it, and counts start with `n_`.
#[test]
fn issue_14_status_json_starts_with_its_schema_and_uses_the_documented_names() {
    let mut node = Node::start(
        r#"
        [[service]]
        name = "idle"
        argv = ["sleep", "1000"]

        [[service]]
        name = "once"
        argv = ["sh", "-c", "exit 3"]
        restart = "never"

        [[service]]
        name = "crash"
        argv = ["sh", "-c", "exit 1"]
        backoff_secs = 1
        crash_budget = 1
        "#,
    );
    node.wait_log("once: ended (exited 3); not restarted");
    node.wait_log("crash: crashed 2 times within 300 s; given up");
    let (code, out, err) = node.ctl(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("{\"schema\":\"edge-init.status/1\","), "{out}");
    let s: serde_json::Value = serde_json::from_str(&out).expect("status --json prints JSON");
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort_unstable();
        k
    };
    assert_eq!(keys(&s), ["data", "health", "schema", "services", "watchdog", "watchdog_reset"]);
    assert_eq!(s["watchdog_reset"], false);
    let services = s["services"].as_array().expect("services");
    let fields = ["crash_budget_left", "exit_code", "n_restarts", "name", "pid", "reason", "signal", "state", "status"];
    for svc in services {
        assert_eq!(keys(svc), fields, "{svc}");
    }
    let by_name = |name: &str| services.iter().find(|v| v["name"] == name).expect("listed").clone();
    let idle = by_name("idle");
    assert_eq!(idle["state"], "up");
    assert!(idle["pid"].as_u64().is_some_and(|p| p > 1), "{idle}");
    let once = by_name("once");
    assert_eq!(
        (once["state"].as_str(), once["exit_code"].as_i64(), once["pid"].is_null()),
        (Some("exited"), Some(3), true)
    );
    let crash = by_name("crash");
    assert_eq!((crash["state"].as_str(), crash["n_restarts"].as_u64()), (Some("failed"), Some(1)));
    assert!(crash["reason"].as_str().is_some_and(|r| r.contains("crashed 2 times")), "{crash}");
    assert_eq!(crash["crash_budget_left"], 0, "a failed service has none left");
    assert_eq!(idle["crash_budget_left"], 5, "the default budget, untouched");
    assert_eq!(node.ctl(&["poweroff"]).0, 0);
    assert_eq!(end_signal(node.wait_end()), Some(SIGINT));
}

/// As PID 1, the words the kernel passes on are not verbs: with a stray `ctl`, `notify`, `check`, `--help`, `-h` or
/// `--version` first on its command line, `edge-init` boots and supervises its services rather than running that
/// verb and exiting (PID 1 exiting panics the kernel).
#[test]
fn issue_14_stray_verbs_as_pid1_do_not_end_it() {
    for word in ["ctl", "notify", "check", "--help", "-h", "--version"] {
        let mut node = Node::start_words(IDLE, &[word]);
        node.wait_log("idle: started");
        let status = node.status();
        assert!(status.contains("idle             up (pid"), "{word}: {status}");
        assert_eq!(node.ctl(&["poweroff"]).0, 0, "{word}");
        assert_eq!(end_signal(node.wait_end()), Some(SIGINT), "{word}");
    }
}

/// A usage error on PID 1's command line is logged, naming the argument, and PID 1 boots with the default.
#[test]
fn issue_15_a_usage_error_as_pid1_is_logged_and_it_boots() {
    let mut node = Node::start_words(IDLE, &["--log", "serial"]);
    let line = node.wait_log("command line: --log serial: kmsg or stderr");
    assert!(line.contains("going on with the default"), "{line}");
    node.wait_log("idle: started");
    assert!(node.status().contains("idle             up (pid"));
    assert_eq!(node.ctl(&["poweroff"]).0, 0);
    assert_eq!(end_signal(node.wait_end()), Some(SIGINT));
}

#[test]
fn pid1_survives_crashing_services_and_a_flood_of_children() {
    let mut node = Node::start(
        r#"
        [[service]]
        name = "segv"
        argv = ["sh", "-c", "kill -SEGV $$"]
        restart = "always"
        crash_budget = 1000
        backoff_secs = 1
        backoff_max_secs = 1

        [[service]]
        name = "flood"
        argv = ["sh", "-c", "i=0; while [ $i -lt 2000 ]; do ( true & ); true & i=$((i + 1)); done; wait; echo flood done"]
        restart = "never"

        [[service]]
        name = "chatty"
        argv = ["yes", "a line that never ends"]
        output = { file = "{dir}/chatty.log", max_bytes = 65536 }
        "#,
    );
    node.wait_log("flood: flood done");
    node.wait_log("flood: exited 0");
    for _ in 0..3 {
        node.wait_new_log("segv: killed by signal 11; restarting in 1 s");
    }
    // A service that writes without pause does not hold the loop: the control socket still answers.
    let status = node.status();
    assert!(status.contains("flood            exited 0"), "{status}");
    assert!(status.contains("chatty           up"), "{status}");
    // Still PID 1, still answering, and nothing it should have reaped is left a zombie.
    let init = node.init_pid();
    let zombies: Vec<u32> = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .expect("children")
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
        })
        .collect();
    // A child that ended a moment ago may not be reaped yet; the orphans of 2000 are long gone.
    assert!(zombies.len() <= 1, "{zombies:?}");
    node.signal(SIGUSR2);
    assert_eq!(end_signal(node.wait_end()), Some(SIGINT));
}

/// A loop device over an image file, detached when dropped.
struct Loop {
    dev: String,
    _dir: tempfile::TempDir,
}

impl Loop {
    fn ext4() -> Loop {
        let dir = tempfile::Builder::new().prefix("disk-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let img = dir.path().join("data.img");
        std::fs::File::create(&img).and_then(|f| f.set_len(64 << 20)).expect("image");
        let ok = std::process::Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img).status().expect("mkfs.ext4");
        assert!(ok.success());
        let out = std::process::Command::new("losetup").args(["--find", "--show"]).arg(&img).output().expect("losetup");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Loop { dev: String::from_utf8_lossy(&out.stdout).trim().to_owned(), _dir: dir }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
fn what_was_written_to_the_data_partition_before_a_reboot_survives_it() {
    let disk = Loop::ext4();
    let data = format!("[data]\ndevice = \"{}\"\nmount = \"{{dir}}/data\"\nwait_secs = 5\nformat = []\n", disk.dev);
    // 8 MiB and a note, written without fsync: only the shutdown's sync and unmount can get them to the disk.
    let mut node = Node::start_full(
        "[[service]]\nname = \"writer\"\nargv = [\"sh\", \"-c\", \"head -c 8388608 /dev/urandom > {dir}/data/blob && \
         cksum < {dir}/data/blob > {dir}/data/sum && echo written; exec sleep 1000\"]\n",
        Some(&data),
        Inherited::default(),
    );
    node.wait_log("writer: written");
    let status = node.status();
    assert!(status.contains(&format!("data: mounted {} on {}", disk.dev, node.path("data").display())), "{status}");
    assert_eq!(node.ctl(&["reboot"]).0, 0);
    assert_eq!(end_signal(node.wait_end()), Some(SIGHUP));
    node.wait_log(&format!("unmounted {}", node.path("data").display()));
    // The filesystem was unmounted cleanly, and what the service wrote is there.
    let fsck = std::process::Command::new("e2fsck").args(["-fn", &disk.dev]).output().expect("e2fsck");
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    let script = "mkdir -p \"$2\" && mount -o ro \"$1\" \"$2\" && cksum < \"$2/blob\" | cmp - \"$2/sum\" && echo same";
    let mnt = tempfile::Builder::new().prefix("mnt-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh", &disk.dev])
        .arg(mnt.path())
        .output()
        .expect("unshare");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "same\n", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_service_runs_as_its_user_with_its_environment_and_its_capped_log_file() {
    let mut node = Node::start(
        r#"
        [[service]]
        name = "who"
        argv = ["sh", "-c", "echo $(id -u) $(id -g) $(id -G) $(pwd) $GREETING $USER $EDGE_SERVICE $PATH"]
        user = "65534"
        group = "65534"
        cwd = "/proc"
        env = { GREETING = "hello" }
        restart = "never"

        [[service]]
        name = "chatty"
        argv = ["sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line-$i-..............................; i=$((i + 1)); done"]
        output = { file = "{dir}/log/chatty.log", max_bytes = 4096 }
        restart = "never"
        "#,
    );
    let line = node.wait_log(" hello ");
    assert_eq!(
        line,
        "who: 65534 65534 65534 /proc hello nobody who /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    node.wait_log("chatty: exited 0");
    // 200 lines of about 40 bytes with a cap of 4096: the file holds the last lines whole, `.1` the ones before.
    let now = std::fs::read_to_string(node.path("log/chatty.log")).expect("log");
    let before = std::fs::read_to_string(node.path("log/chatty.log.1")).expect("log.1");
    assert!(now.len() <= 4096 && before.len() <= 4096, "{} {}", now.len(), before.len());
    assert!(now.ends_with("line-199-..............................\n"), "{now}");
    let all: Vec<&str> = before.lines().chain(now.lines()).collect();
    let first: usize = all[0].split('-').nth(1).and_then(|n| n.parse().ok()).expect("numbered");
    let expected: Vec<String> = (first..200).map(|i| format!("line-{i}-..............................")).collect();
    assert_eq!(all, expected, "the lines kept are the last ones, in order, none lost between the files");
    assert_eq!(node.count_log("chatty: line-"), 0, "a file service's output does not go to the log");
    node.signal(SIGTERM);
    assert_eq!(end_signal(node.wait_end()), Some(SIGHUP));
}

#[test]
fn initramfs_mode_switches_into_the_slot_root() {
    // An "initramfs": a tmpfs holding edge-init as /init, made `/` with chroot inside new PID and mount namespaces.
    // The slot root: an ext4 loop device holding edge-init as /sbin/edge-init and a services file whose one
    // service asks for a poweroff. edge-init must find the root, mount it, move /dev, /proc, /sys and /run into
    // it, clear the tmpfs, make the root `/`, and exec the root's edge-init, which runs the service.
    let work = tempfile::Builder::new().prefix("edge-init-initramfs-").tempdir_in("/var/tmp").expect("tempdir");
    let root = work.path().join("root");
    // The test binary is dynamically linked: each tree gets the libraries it needs (`ldd` lists them).
    let ldd = std::process::Command::new("ldd").arg(node::EXE).output().expect("ldd");
    let needed: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(str::to_owned)
        .collect();
    assert!(!needed.is_empty(), "{}", String::from_utf8_lossy(&ldd.stdout));
    let populate = |tree: &std::path::Path, init: &str| {
        for lib in &needed {
            let to = tree.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().expect("dir")).expect("lib dir");
            std::fs::copy(lib, &to).expect("copy lib");
        }
        let to = tree.join(init);
        std::fs::create_dir_all(to.parent().expect("dir")).expect("init dir");
        std::fs::copy(node::EXE, &to).expect("copy edge-init");
        for d in ["proc", "sys", "dev", "run", "tmp", "data", "etc/edge"] {
            std::fs::create_dir_all(tree.join(d)).expect("dir");
        }
    };
    populate(&root, "sbin/edge-init");
    std::fs::write(
        root.join("etc/edge/services.toml"),
        "[data]\ndevice = \"/nonexistent\"\nwait_secs = 0\nformat = []\n\
         [[service]]\nname = \"done\"\nargv = [\"/sbin/edge-init\", \"ctl\", \"poweroff\"]\nrestart = \"never\"\n",
    )
    .expect("services");
    let img = work.path().join("root.img");
    std::fs::File::create(&img).and_then(|f| f.set_len(64 << 20)).expect("image");
    let ok =
        std::process::Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(&root).arg(&img).status().expect("mkfs");
    assert!(ok.success());
    let out = std::process::Command::new("losetup").args(["--find", "--show"]).arg(&img).output().expect("losetup");
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let disk = Loop { dev: dev.clone(), _dir: tempfile::tempdir_in("/var/tmp").expect("tempdir") };
    let script = r#"
        set -e
        mount -t tmpfs initramfs "$1"
        cp -a "$2/." "$1/"
        rm -rf "$1/etc/edge"
        mv "$1/sbin/edge-init" "$1/init"
        exec chroot "$1" /init --cmdline "edge.root=$3 edge.debug" --log stderr
    "#;
    let initramfs = work.path().join("initramfs");
    std::fs::create_dir_all(&initramfs).expect("mount point");
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--pid", "--fork", "--uts", "--net", "sh", "-c", script, "sh"])
        .arg(&initramfs)
        .arg(&root)
        .arg(&disk.dev)
        .output()
        .expect("unshare");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(SIGINT), "{log}");
    let line = |needle: &str| {
        log.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in\n{log}"))
    };
    let switched = line(&format!("switched root to {dev}"));
    let started = line("started with 1 services from /etc/edge/services.toml");
    assert!(switched < started, "{log}");
    line("powering off");
}
