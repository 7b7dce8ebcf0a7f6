//! Installs over HTTP from a real server on loopback, with the faults of a bad network: connections dropped at
//! random points, 500s, stalls past the timeout, an install killed and resumed, and the bundle replaced on the
//! server mid-download. Each checks the slot byte for byte and reports the bytes fetched more than once.
//!
//! Then `edge-update install URL` against hostile servers (issue 14): redirects elsewhere, a trickle, answers cut
//! after one byte, a refused connection, a scheme it does not speak, and servers without Range, among them Python's
//! `http.server`. Each refused or failed case must exit with its documented code, write `install-failed` to the
//! event log, release the lock (the next install completes), and leave the boot state as it was.

mod common;
use testkit::http_server;

use std::time::Duration;

use bootctl::rules::Slot;
use common::{bundle, changed, key, payload, Spec, TestNode};
use http_server::{closed_port, Server};
use image_layout::keys::Keyring;
use updater::config::Config;
use updater::device::{Access, SlotDevice, SlotFile};
use updater::http::{HttpFetch, HttpOptions};
use updater::install::{install, Options, Report};
use updater::run::Node;
use updater::slots::SlotPath;

fn options(max_retries: u32) -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(700),
        max_retries,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..HttpOptions::default()
    }
}

/// Runs an install of `url` into slot B of `n` through the library, as `edge-update install URL` does.
fn run(n: &TestNode, url: &str, http: HttpOptions, delta: bool) -> updater::Result<Report> {
    let config = Config::load(&n.path("update.toml")).expect("config");
    let mut node = Node::open(&config, Slot::A).expect("node");
    let keyring = Keyring::from_keys(vec![key().public()]);
    let mut fetch = HttpFetch::new(url, http).expect("url");
    let target = SlotPath { slot: Slot::B, path: n.path("b.img"), rdev: None };
    let mut dev = SlotFile::open(&target.path, Access::ReadWrite).expect("slot B");
    let mut old = SlotFile::open(&n.path("a.img"), Access::ReadOnly).expect("slot A");
    let mut opts = Options::at(time::OffsetDateTime::now_utc());
    opts.delta = delta;
    opts.sync_every_bytes = 256 << 10;
    let old = delta.then_some(&mut old as &mut dyn SlotDevice);
    install(&mut node, &keyring, &mut fetch, &target, &mut dev, old, &opts, &mut |_| {})
}

fn served(n: &TestNode, server: &Server, name: &str, image: &[u8], spec: &Spec) -> Vec<u8> {
    bundle(&n.path(name), image, spec);
    let bytes = std::fs::read(n.path(name)).expect("read");
    server.put(&format!("/{name}"), bytes.clone());
    bytes
}

#[test]
fn a_full_install_through_drops_500s_and_stalls() {
    let n = TestNode::new();
    let server = Server::start();
    let v2 = payload(3 << 20, 2);
    let b = served(&n, &server, "v2.bundle", &v2, &Spec::new("2", 2));
    // The three small requests (header, manifest, chunk index) use up a drop point each without reaching it;
    // then the chunk stream is cut every 90 KB, twelve times.
    for _ in 0..15 {
        server.drop_after(90_000);
    }
    let r = run(&n, &server.url("/v2.bundle"), options(4), false).expect("install");
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    let cut = server.requests().iter().filter(|q| q.body_bytes == 90_000).count();
    assert!(cut >= 10, "{cut} connections dropped");
    let needed = r.fetched_bytes;
    let twice = server.bytes_sent() - needed;
    eprintln!("{cut} drops: {} bytes sent for {needed} needed, {twice} fetched twice", server.bytes_sent());
    assert!(twice < 64 << 10, "{twice} bytes fetched twice");
    assert!(needed < b.len() as u64, "a full install does not fetch the delta section");

    // 500s and a stall past the read timeout, on a second node.
    let n = TestNode::new();
    served(&n, &server, "v2b.bundle", &v2, &Spec::new("2", 2));
    server.fail_next(3);
    run(&n, &server.url("/v2b.bundle"), options(4), false).expect("install through 500s");
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    let n = TestNode::new();
    server.stall_next(2);
    run(&n, &server.url("/v2b.bundle"), options(4), false).expect("install through stalls");
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
}

#[test]
fn an_install_killed_by_the_network_resumes_where_it_stopped() {
    let n = TestNode::new();
    let server = Server::start();
    let v2 = payload(3 << 20, 2);
    served(&n, &server, "v2.bundle", &v2, &Spec::new("2", 2));
    for _ in 0..3 {
        server.drop_after(u64::MAX);
    }
    // The link goes for good after 1 MB of chunks: no retries left.
    server.drop_after(1_000_000);
    let r = run(&n, &server.url("/v2.bundle"), options(0), false);
    assert!(matches!(r, Err(updater::Error::Http { .. })), "{r:?}");
    let s = n.status();
    assert_eq!(s["journal"]["update"]["phase"], "downloading");
    let done: u64 = s["journal"]["update"]["chunks_done"]
        .as_array()
        .expect("ranges")
        .iter()
        .map(|r| r[1].as_u64().expect("end") - r[0].as_u64().expect("start"))
        .sum();
    assert!(done > 0, "{s}");
    let r = run(&n, &server.url("/v2.bundle"), options(0), false).expect("resumed install");
    assert_eq!(r.resumed_chunks, done);
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
}

#[test]
fn a_bundle_replaced_mid_download_starts_over_cleanly() {
    let n = TestNode::new();
    let server = Server::start();
    let v2 = payload(3 << 20, 2);
    let v3 = payload(3 << 20, 3);
    served(&n, &server, "stack.bundle", &v2, &Spec::new("2", 2));
    bundle(&n.path("v3.bundle"), &v3, &Spec::new("3", 3));
    server.replace_at("/stack.bundle", 500_000, std::fs::read(n.path("v3.bundle")).expect("read"));
    for _ in 0..3 {
        server.drop_after(u64::MAX);
    }
    server.drop_after(700_000);
    let r = run(&n, &server.url("/stack.bundle"), options(3), false);
    let changed = matches!(&r, Err(updater::Error::Http { source, .. })
        if matches!(**source, updater::http::Error::Changed { .. }));
    assert!(changed, "{r:?}");
    assert!(!n.state().qualifies(Slot::B));
    // Run again: the new bundle is another manifest, so the install starts over and writes v3.
    let r = run(&n, &server.url("/stack.bundle"), options(3), false).expect("install of the new bundle");
    assert_eq!((r.resumed_chunks, r.bundle.version.as_str()), (0, "3"));
    assert_eq!(&n.slot_bytes(Slot::B)[..v3.len()], &v3[..]);
}

#[test]
fn a_delta_install_over_http_fetches_little_in_few_requests() {
    let n = TestNode::new();
    let server = Server::start();
    let v1 = n.slot_bytes(Slot::A);
    let v2 = changed(&v1[..3 << 20]);
    let b = served(&n, &server, "v2.bundle", &v2, &Spec::new("2", 2));
    let r = run(&n, &server.url("/v2.bundle"), options(2), true).expect("install");
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    let requests = server.n_requests();
    eprintln!(
        "delta: {} of {} bundle bytes in {requests} requests, {} reused",
        r.fetched_bytes,
        b.len(),
        r.reused_bytes
    );
    assert!(r.fetched_bytes < b.len() as u64 / 5, "{r:?}");
    assert_eq!(server.bytes_sent(), r.fetched_bytes);
    assert!(requests < 30, "{requests} requests");
}

#[test]
fn the_cli_installs_from_a_url() {
    let n = TestNode::new();
    let server = Server::start();
    let v2 = payload(1 << 20, 2);
    served(&n, &server, "v2.bundle", &v2, &Spec::new("2", 2));
    let out = n.ok(&["install", "--json", &server.url("/v2.bundle")]);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().expect("result")).expect("json");
    assert_eq!(last["result"], "flipped");
    assert_eq!(last["fetched_bytes"].as_u64(), Some(server.bytes_sent()));
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    assert_eq!(n.status()["journal"]["update"]["source"], server.url("/v2.bundle"));
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited, not killed by a signal")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The event log's records.
fn events(n: &TestNode) -> Vec<serde_json::Value> {
    std::fs::read_to_string(n.path("data/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event is a JSON line"))
        .collect()
}

/// Checks what every failed install must leave: its exit code, `install-failed` as the last event, slot A still the
/// active good slot, slot B unbootable; and, when the failure came before anything was written, every byte as it
/// was. Then the install runs again against `url` once `heal` has made the server behave, which shows the lock was
/// released and the journal can be resumed from.
fn check_failed(
    n: &TestNode,
    out: &std::process::Output,
    expected_code: i32,
    before: Option<&[Vec<u8>]>,
    url: &str,
    heal: &dyn Fn(),
) {
    let err = stderr(out);
    assert_eq!(code(out), expected_code, "{err}");
    let events = events(n);
    let last = events.last().expect("an event");
    assert_eq!(last["event"], "install-failed", "{events:?}");
    let state = n.state();
    assert_eq!(state.active(), Slot::A);
    assert!(state.slot(Slot::A).good);
    assert!(!state.qualifies(Slot::B));
    match before {
        Some(before) => assert!(n.snapshot() == before, "a refusal before the start changed something: {err}"),
        None => assert_eq!(n.phase().as_deref(), Some("downloading")),
    }
    heal();
    let out = n.run(&["install", "--full", url]);
    assert!(out.status.success(), "the install after the failure: {}", stderr(&out));
    assert_eq!(n.phase().as_deref(), Some("flipped"));
}

#[test]
fn issue_14_a_redirect_to_file_fails_the_install_cleanly() {
    for mid_install in [false, true] {
        let n = TestNode::new();
        let server = Server::start();
        let v2 = payload(1 << 20, 2);
        served(&n, &server, "v2.bundle", &v2, &Spec::new("2", 2));
        let url = server.url("/v2.bundle");
        let before = n.snapshot();
        let after = if mid_install {
            // Header, manifest, chunk index, then the chunk stream cut once started: its resume is redirected.
            for _ in 0..3 {
                server.drop_after(u64::MAX);
            }
            server.drop_after(300_000);
            4
        } else {
            0
        };
        server.redirect("/v2.bundle", after, 302, "file:///etc/passwd");
        let out = n.run(&["install", "--full", &url]);
        // Refused with the location named, not a panic in the HTTP client.
        assert!(stderr(&out).contains("file:///etc/passwd"), "{}", stderr(&out));
        let last = events(&n).pop().expect("an event");
        assert!(last["message"].as_str().is_some_and(|m| m.contains("file:///etc/passwd")), "{last}");
        let before = (!mid_install).then_some(&before[..]);
        check_failed(&n, &out, 1, before, &url, &|| server.clear_redirects());
        assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    }
}

#[test]
fn issue_14_a_trickle_or_one_byte_answers_fail_the_install() {
    for trickle in [true, false] {
        let n = TestNode::with_config("[http]\nmin_rate_bytes = 4096\nmin_rate_window_secs = 1");
        let server = Server::start();
        let v2 = payload(1 << 20, 2);
        served(&n, &server, "v2.bundle", &v2, &Spec::new("2", 2));
        let url = server.url("/v2.bundle");
        // The header, manifest and chunk index come fast; then the chunk stream crawls.
        if trickle {
            server.trickle(Some((3, Duration::from_millis(10))));
        } else {
            server.cut_bodies(Some((3, 1)));
        }
        let out = n.run(&["install", "--full", &url]);
        assert!(stderr(&out).contains("4096"), "the error names the minimum rate: {}", stderr(&out));
        check_failed(&n, &out, 1, None, &url, &|| {
            server.trickle(None);
            server.cut_bodies(None);
        });
        assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    }
}

#[test]
fn issue_14_a_refused_connection_is_logged_at_every_retry() {
    let n = TestNode::with_config("[http]\nmax_retries = 2");
    let server = Server::start();
    served(&n, &server, "v2.bundle", &payload(1 << 20, 2), &Spec::new("2", 2));
    let refused = format!("http://127.0.0.1:{}/v2.bundle", closed_port());
    let before = n.snapshot();
    let out = n.run(&["install", &refused]);
    let err = stderr(&out);
    let retries: Vec<_> = err.lines().filter(|l| l.starts_with("edge-update: warn:") && l.contains("retry")).collect();
    assert_eq!(retries.len(), 2, "one warning per retry: {err}");
    for (i, line) in retries.iter().enumerate() {
        assert!(line.contains(&format!("retry {}/2", i + 1)) && line.contains(" s"), "{line}");
    }
    check_failed(&n, &out, 1, Some(&before), &server.url("/v2.bundle"), &|| {});
}

#[test]
fn issue_14_other_schemes_are_usage_errors() {
    let server = Server::start();
    for source in
        ["ftp://127.0.0.1/v2.bundle", "FTP://127.0.0.1/v2.bundle", "file:///srv/v2.bundle", "http://", "http://a b/c"]
    {
        let n = TestNode::new();
        served(&n, &server, "v2.bundle", &payload(1 << 20, 2), &Spec::new("2", 2));
        let before = n.snapshot();
        let out = n.run(&["install", source]);
        check_failed(&n, &out, 2, Some(&before), &server.url("/v2.bundle"), &|| {});
    }
    // A path that only contains `://` further on is still a path.
    let n = TestNode::new();
    served(&n, &server, "v2.bundle", &payload(1 << 20, 2), &Spec::new("2", 2));
    let dir = n.path("x:");
    std::fs::create_dir_all(dir.join("y")).expect("mkdir");
    std::fs::copy(n.path("v2.bundle"), dir.join("y/v3.bundle")).expect("copy");
    let path = format!("{}//y/v3.bundle", dir.display());
    assert!(path.contains("://"));
    let out = n.run(&["install", &path]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn issue_14_a_server_without_range_installs_as_a_stream() {
    let n = TestNode::new();
    let server = Server::start();
    server.set_ignore_range(true);
    let v2 = payload(1 << 20, 2);
    served(&n, &server, "v2.bundle", &v2, &Spec::new("2", 2));
    let out = n.run(&["install", &server.url("/v2.bundle")]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    assert_eq!(n.phase().as_deref(), Some("flipped"));
    // Said once, at warn; then one stream, without Range, for everything after the first answer.
    let warned = err.lines().filter(|l| l.starts_with("edge-update: warn:") && l.contains("Range")).count();
    assert_eq!(warned, 1, "{err}");
    let ranges: Vec<_> = server.requests().into_iter().map(|r| r.range.is_some()).collect();
    assert_eq!(ranges, [true, false]);
}

/// Python's `http.server`, serving `dir` on a free loopback port; killed when dropped.
struct PythonServer {
    child: std::process::Child,
    port: u16,
}

impl PythonServer {
    fn start(dir: &std::path::Path) -> PythonServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg("0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs (Debian's python3 package)");
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("python's first line");
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in python's line {line:?}"));
        PythonServer { child, port }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn issue_14_python_http_server_installs_as_a_stream() {
    let n = TestNode::new();
    let v2 = payload(1 << 20, 2);
    std::fs::create_dir_all(n.path("www")).expect("mkdir");
    bundle(&n.path("www/v2.bundle"), &v2, &Spec::new("2", 2));
    let python = PythonServer::start(&n.path("www"));
    let url = format!("http://127.0.0.1:{}/v2.bundle", python.port);
    // The premise: it answers a range with the whole file.
    let mut probe = std::net::TcpStream::connect(("127.0.0.1", python.port)).expect("connect");
    std::io::Write::write_all(&mut probe, b"GET /v2.bundle HTTP/1.0\r\nRange: bytes=0-23\r\n\r\n").expect("send");
    let mut status = [0u8; 12];
    std::io::Read::read_exact(&mut probe, &mut status).expect("status line");
    assert_eq!(
        &status[9..12],
        b"200",
        "python's http.server now supports Range; this test needs a server that does not"
    );
    drop(probe);
    let out = n.run(&["install", &url]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.lines().any(|l| l.starts_with("edge-update: warn:") && l.contains("Range")), "{err}");
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    assert_eq!(n.phase().as_deref(), Some("flipped"));
}
