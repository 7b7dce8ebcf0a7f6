//! The bundle store: an upload verified against the fleet keyring before it is kept, one signed by another key
//! refused leaving nothing, the bundle named in a node's desired state, and fetched back with Range by the
//! updater's own HTTP source (`updater::http`), which proves the two compatible.

mod support;

use std::io::Read as _;
use std::sync::Arc;

use fleet_wire::admin::{BundleInfo, Role};
use fleet_wire::node::DesiredState;
use image_layout::keys::{Keyring, SecretKey};
use support::{Backend, Env};
use updater::fetch::Fetch as _;

both!(an_upload_is_verified_kept_named_and_served_with_range);

/// A bundle of several MiB, read by the endpoint a chunk ahead of the socket: the whole and ranges across the
/// chunks' edges come back byte for byte, and a client that goes away mid-download leaves the others served.
#[test]
fn a_large_bundle_is_served_whole_and_in_ranges_across_chunks() {
    let fleet = SecretKey::from_seed([5; 32]);
    let keyring = Arc::new(Keyring::from_keys(vec![fleet.public()]));
    let env = Env::with_config(Backend::Sqlite, |c| c.keyring = Some(keyring.clone()));
    let work = tempfile::tempdir().expect("temp");
    let good = std::fs::read(support::build_noise_bundle(work.path(), &fleet, "3.0.0", support::NOW - 3600, 3 << 20))
        .expect("the bundle");
    assert!(good.len() > 5 << 20, "several chunks: {} bytes", good.len());
    let admin = env.admin(Role::Operator);
    let headers = vec![("authorization".to_owned(), format!("Bearer {}", admin.secret))];
    let reply = support::send("POST", &format!("{}/v1/admin/bundles", env.url), &headers, Some(&good));
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    let info: BundleInfo = reply.json();
    let bundle_url = format!("{}/v1/bundles/{}.bundle", env.url, info.manifest_hash);

    // A client that reads the head of the whole and hangs up.
    {
        use std::io::Write as _;
        let addr = env.url.strip_prefix("http://").expect("http");
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        let path = format!("/v1/bundles/{}.bundle", info.manifest_hash);
        write!(conn, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
        let mut head = [0u8; 4096];
        let n = conn.read(&mut head).expect("read");
        assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
    }

    let reply = support::send("GET", &bundle_url, &[], None);
    assert_eq!(reply.status, 200);
    assert!(reply.body == good, "the whole bundle, byte for byte ({} of {} bytes)", reply.body.len(), good.len());
    let mib = 1usize << 20;
    let total = good.len();
    for (range, want) in [
        (format!("bytes={}-{}", mib - 1, mib), mib - 1..mib + 1),
        (format!("bytes={}-{}", mib, 3 * mib - 1), mib..3 * mib),
        (format!("bytes={}-", 2 * mib + 7), 2 * mib + 7..total),
        ("bytes=-1".to_owned(), total - 1..total),
    ] {
        let reply = support::send("GET", &bundle_url, &[("range".into(), range.clone())], None);
        assert_eq!(reply.status, 206, "{range}");
        let end = want.end - 1;
        assert_eq!(reply.header("content-range"), Some(format!("bytes {}-{end}/{total}", want.start)), "{range}");
        assert!(reply.body == good[want.clone()], "{range}: {} bytes back", reply.body.len());
    }
}

fn an_upload_is_verified_kept_named_and_served_with_range(backend: Backend) {
    let fleet = SecretKey::from_seed([5; 32]);
    let keyring = Arc::new(Keyring::from_keys(vec![fleet.public()]));
    let env = Env::with_config(backend, |c| c.keyring = Some(keyring.clone()));
    let url = env.url.clone();
    let work = tempfile::tempdir().expect("temp");
    let built = |key: &SecretKey, version| {
        std::fs::read(support::build_bundle(work.path(), key, version, support::NOW - 3600)).expect("the bundle")
    };
    let good = built(&fleet, "2.0.0");
    let stranger = built(&SecretKey::from_seed([6; 32]), "6.6.6");
    let admin = env.admin(Role::Operator);
    let headers = vec![("authorization".to_owned(), format!("Bearer {}", admin.secret))];

    let before = env.dump();
    let reply = support::send("POST", &format!("{url}/v1/admin/bundles"), &headers, Some(&stranger));
    assert_eq!(reply.refusal(), (422, "bundle-refused".into()));
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 10);
    let reply = support::send("POST", &format!("{url}/v1/admin/bundles"), &headers, Some(&truncated));
    assert_eq!(reply.refusal(), (422, "bundle-refused".into()));
    assert_eq!(env.dump(), before);
    let left: Vec<_> = std::fs::read_dir(env.data_dir().join("bundles")).expect("store").collect();
    assert!(left.is_empty(), "a refused upload leaves nothing: {left:?}");

    let reply = support::send("POST", &format!("{url}/v1/admin/bundles"), &headers, Some(&good));
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    let info: BundleInfo = reply.json();
    assert_eq!((info.version.as_str(), info.size_bytes, info.stored), ("2.0.0", good.len() as u64, true));
    let stored = env.data_dir().join("bundles").join(format!("{}.bundle", info.manifest_hash));
    assert_eq!(std::fs::read(&stored).expect("stored file"), good);

    // The updater's HTTP source reads it: its length, a range, and the whole.
    let bundle_url = format!("{url}/v1/bundles/{}.bundle", info.manifest_hash);
    let mut fetch = updater::http::HttpFetch::new(&bundle_url, updater::http::HttpOptions::default()).expect("url");
    assert_eq!(fetch.len().expect("len"), Some(good.len() as u64));
    let mut part = Vec::new();
    fetch.open(1000, Some(5000)).expect("range").read_to_end(&mut part).expect("read");
    assert_eq!(part, &good[1000..5000]);
    let mut whole = Vec::new();
    fetch.open(0, None).expect("whole").read_to_end(&mut whole).expect("read");
    assert_eq!(whole, good);
    assert!(fetch.seekable(), "the store answers Range");

    // Range edges by hand: 416 past the end, If-Range with another tag gives the whole.
    let reply = support::send("GET", &bundle_url, &[("range".into(), format!("bytes={}-", good.len()))], None);
    assert_eq!((reply.status, reply.header("content-range")), (416, Some(format!("bytes */{}", good.len()))));
    let range = [("range".into(), "bytes=0-9".into()), ("if-range".into(), "\"other\"".into())];
    let reply = support::send("GET", &bundle_url, &range, None);
    assert_eq!((reply.status, reply.body.len()), (200, good.len()));
    let range = [("range".into(), "bytes=0-9".into()), ("if-range".into(), format!("\"{}\"", info.manifest_hash))];
    let reply = support::send("GET", &bundle_url, &range, None);
    assert_eq!((reply.status, reply.body.as_slice()), (206, &good[..10]));

    // A node in a group with it is told where to fetch it: the store's URL, as --public-url names it, on a
    // second endpoint over the same database (the first one's URL is known only once it listens).
    let (url2, _store, _server) = {
        let mut config = env.app.config.clone();
        config.public_url = Some(url.clone());
        let app = Arc::new(edge_cloud::api::App::new(env.store.clone(), env.app.clock.clone(), config));
        let (addr, server) =
            env.rt.block_on(edge_cloud::server::start_loopback(edge_cloud::api::router(app))).expect("serve");
        (format!("http://{addr}"), (), server)
    };
    let token = admin.enrollment_token("accept");
    let node = env.node(110).at(&url2);
    assert_eq!(node.enroll(&token).status, 201);
    let _: fleet_wire::admin::NodeSummary =
        admin.ok("PUT", &format!("/v1/admin/nodes/{}/group", node.id), Some(serde_json::json!({ "group": "tills" })));
    let _: fleet_wire::admin::GroupInfo =
        admin.ok("PUT", "/v1/admin/groups/tills", Some(serde_json::json!({ "bundle": info.manifest_hash })));
    let desired: DesiredState = node.desired().json();
    let bundle = desired.bundle.expect("a bundle");
    assert_eq!(bundle.urls, [bundle_url]);
    assert_eq!((bundle.manifest_hash, bundle.size_bytes), (info.manifest_hash.clone(), good.len() as u64));
}
