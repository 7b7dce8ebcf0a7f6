//! Installs over HTTP from a real server on loopback, with the faults of a bad network: connections dropped at
//! random points, 500s, stalls past the timeout, an install killed and resumed, and the bundle replaced on the
//! server mid-download. Each checks the slot byte for byte and reports the bytes fetched more than once.

mod common;
#[path = "common/http_server.rs"]
mod http_server;

use std::time::Duration;

use bootctl::rules::Slot;
use common::{bundle, changed, key, payload, Spec, TestNode};
use http_server::Server;
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
    assert!(matches!(r, Err(updater::Error::Fetch { .. })), "{r:?}");
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
    let changed = matches!(&r, Err(updater::Error::Fetch { source, .. })
        if source.get_ref().and_then(|e| e.downcast_ref::<updater::http::Error>())
            .is_some_and(|e| matches!(e, updater::http::Error::Changed { .. })));
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
