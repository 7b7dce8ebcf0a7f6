//! `edge-cloud serve` as an operator runs it, every part a process: the endpoint serving TLS with a certificate
//! from a private CA over a SQLite file, its first admin token made offline, bundles uploaded with `edge-cloud
//! bundles upload` (streamed from the file) and checked against the fleet keyring, the admin client trusting the
//! endpoint only through the CA it is given, and the updater's own HTTP source fetching the stored bundle over
//! that TLS with Range.

mod support;

use std::io::Read as _;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleet_wire::admin::{BundleInfo, BundleList, CreatedToken};
use image_layout::keys::SecretKey;
use support::edge_cloud;
use updater::fetch::Fetch as _;

/// `edge-cloud serve`, killed when dropped.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The environment naming `ca` as the client's CA.
fn with(ca: &Path) -> [(&'static str, &str); 1] {
    [("EDGE_CLOUD_CA", ca.to_str().expect("a UTF-8 path"))]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

#[test]
fn serve_over_tls_with_a_private_ca_and_upload_bundles_from_the_cli() {
    let work = tempfile::tempdir().expect("temp");
    let dir = work.path();
    let ca = testkit::tls::TestCa::create(&dir.join("ca"), "serve-test");
    let other_ca = testkit::tls::TestCa::create(&dir.join("other-ca"), "another");
    let fleet = SecretKey::from_seed([7; 32]);
    let (_, keyring) = fleet.write_pair(&dir.join("fleet")).expect("the fleet key pair");
    let data = dir.join("data");
    let data = data.to_str().expect("utf-8 path");

    let run =
        edge_cloud(&["admin-token", "create", "--data", data, "--name", "root", "--role", "admin", "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let created: CreatedToken<fleet_wire::admin::AdminTokenInfo> = serde_json::from_str(&run.stdout).expect("json");
    let token = created.secret;

    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let log = dir.join("serve.log");
    let mut served = Served(
        Command::new(env!("CARGO_BIN_EXE_edge-cloud"))
            .args(["serve", "--data", data, "--listen", &format!("127.0.0.1:{port}"), "--public-url", &url])
            .arg("--tls-cert")
            .arg(&ca.server_cert)
            .arg("--tls-key")
            .arg(&ca.server_key)
            .arg("--keyring")
            .arg(&keyring)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log"))
            .spawn()
            .expect("start edge-cloud serve"),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = served.0.try_wait().expect("wait") {
            panic!("edge-cloud serve exited {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(start.elapsed() < Duration::from_secs(60), "edge-cloud serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The client trusts the endpoint only through the CA it is given: the built-in public roots do not know this
    // one, and another private CA is not it. Neither reaches the endpoint (exit 4); a CA file that is not PEM is a
    // usage error naming the flag (exit 2).
    let list = ["bundles", "list", "--url", &url, "--token", &token];
    let run = edge_cloud(&list, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("certificate"), "{}", run.stderr);
    let run = edge_cloud(&list, &with(&other_ca.ca_cert));
    assert_eq!(run.code, 4, "{}", run.stderr);
    let run = edge_cloud(&list, &with(&ca.server_key));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--ca-file") && run.stderr.contains("no PEM certificate"), "{}", run.stderr);
    let run = edge_cloud(&[&list[..], &["--ca-file", ca.ca_cert.to_str().expect("utf-8")]].concat(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Plain HTTP to a TLS port is no answer either.
    let run = edge_cloud(&["bundles", "list", "--url", &format!("http://127.0.0.1:{port}"), "--token", &token], &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);

    // A bundle signed by a key the keyring does not hold is refused and leaves nothing; a good one is kept whole.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let stranger = support::build_bundle(dir, &SecretKey::from_seed([8; 32]), "6.6.6", now);
    let good = support::build_bundle(dir, &fleet, "2.0.0", now);
    let ca_env = with(&ca.ca_cert);
    let upload = |file: &Path| {
        edge_cloud(&["bundles", "upload", file.to_str().expect("utf-8"), "--url", &url, "--token", &token], &ca_env)
    };
    let run = upload(&stranger);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("bundle-refused"), "{}", run.stderr);
    let left = std::fs::read_dir(dir.join("data/bundles")).expect("the store").count();
    assert_eq!(left, 0, "a refused upload leaves nothing");
    let run = upload(&good);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("2.0.0"), "{}", run.stdout);
    let run = edge_cloud(&["bundles", "list", "--json", "--url", &url, "--token", &token], &ca_env);
    let list: BundleList = serde_json::from_str(&run.stdout).expect("json");
    let info: &BundleInfo = list.bundles.first().expect("the bundle");
    let bytes = std::fs::read(&good).expect("the bundle");
    assert_eq!((info.version.as_str(), info.size_bytes, list.bundles.len()), ("2.0.0", bytes.len() as u64, 1));
    let kept = dir.join("data/bundles").join(format!("{}.bundle", info.manifest_hash));
    assert_eq!(std::fs::read(kept).expect("the stored bundle"), bytes);

    // The updater fetches it over the endpoint's TLS, trusting the same CA and nothing else, with Range.
    let bundle_url = format!("{url}/v1/bundles/{}.bundle", info.manifest_hash);
    let der = |pem: &Path| {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::CertificateDer::from_pem_file(pem).expect("the CA").to_vec()
    };
    let options = updater::http::HttpOptions {
        roots: Some(std::sync::Arc::new(vec![der(&ca.ca_cert)])),
        max_retries: 0,
        ..updater::http::HttpOptions::default()
    };
    let mut fetch = updater::http::HttpFetch::new(&bundle_url, options).expect("url");
    assert_eq!(fetch.len().expect("len"), Some(bytes.len() as u64));
    let mut part = Vec::new();
    fetch.open(100, Some(4196)).expect("range").read_to_end(&mut part).expect("read");
    assert_eq!(part, &bytes[100..4196]);
    let options = updater::http::HttpOptions {
        roots: Some(std::sync::Arc::new(vec![der(&other_ca.ca_cert)])),
        max_retries: 0,
        ..updater::http::HttpOptions::default()
    };
    let mut stranger_fetch = updater::http::HttpFetch::new(&bundle_url, options).expect("url");
    assert!(stranger_fetch.len().is_err(), "a fetch trusting another CA got an answer");
}
