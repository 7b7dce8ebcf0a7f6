//! The agent trusts the endpoint through its configured CA and nothing else: over TLS with a certificate that
//! chains to that CA it enrolls; with one that chains to another CA it does not, and only retries.

mod support;

use std::path::Path;
use std::process::Command;

use fleet_wire::node::NodeStatus;

/// openssl(1) in `dir`, failing the test when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA named `name` (`name.pem`, `name.key`) and, when `server`, a certificate for 127.0.0.1 it signed
/// (`name-server.pem`, `name-server.key`).
fn ca(dir: &Path, name: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} fleet CA"),
            "-keyout",
            &key,
            "-out",
            &pem,
        ],
    );
    let (skey, csr, spem) = (format!("{name}-server.key"), format!("{name}-server.csr"), format!("{name}-server.pem"));
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &skey,
            "-out",
            &csr,
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &pem,
            "-CAkey",
            &key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            &spem,
        ],
    );
}

fn with_ca(node: &support::Node, endpoint: &str, ca_file: &Path) {
    let text = std::fs::read_to_string(&node.config).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !["endpoint", "allow_http", "ca_file"].iter().any(|k| l.starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    let ca = ca_file.display().to_string();
    std::fs::write(&node.config, format!("endpoint = {endpoint:?}\nca_file = {ca:?}\n{text}")).expect("config");
}

#[test]
fn the_endpoint_is_trusted_through_the_configured_ca_alone() {
    let certs = tempfile::tempdir().expect("tempdir");
    ca(certs.path(), "fleet");
    ca(certs.path(), "other");
    let read = |n: &str| std::fs::read(certs.path().join(n)).expect("pem");
    let ep = support::Endpoint::start_tls(NodeStatus::Pending, &read("fleet-server.pem"), &read("fleet-server.key"));
    let url = format!("https://127.0.0.1:{}", ep.port);

    // Another CA: the handshake fails, nothing reaches the endpoint, and the agent backs off.
    let node = support::Node::new("http://unused");
    with_ca(&node, &url, &certs.path().join("other.pem"));
    let mut a = support::agent(&node);
    assert_eq!(a.round().as_secs(), 2, "the first backoff");
    assert_eq!(a.state().status, None);
    assert!(ep.seen().is_empty(), "{:?}", ep.seen());

    // The fleet's CA: enrolled, every request signed.
    let node = support::Node::new("http://unused");
    with_ca(&node, &url, &certs.path().join("fleet.pem"));
    let mut a = support::agent(&node);
    a.round();
    assert_eq!(a.state().status, Some(NodeStatus::Pending));
    let seen = ep.seen();
    assert!(!seen.is_empty() && seen.iter().all(|s| s.verified), "{seen:?}");

    // The desired bundle in the endpoint's own store, over https: fetched trusting the endpoint's CA, installed.
    let (bytes, hash) = support::bundle(&support::bundle_key(), "2.0.0");
    ep.lock().files.insert("/bundles/b1".into(), bytes.clone());
    ep.lock().desired = Some(fleet_wire::node::DesiredState {
        status: NodeStatus::Accepted,
        poll_interval_secs: 1,
        bundle: Some(fleet_wire::node::BundleRef {
            name: "edge-stack".into(),
            version: "2.0.0".into(),
            security_version: 1,
            manifest_hash: hash.clone(),
            size_bytes: bytes.len() as u64,
            urls: vec![format!("{url}/bundles/b1")],
            flip: None,
        }),
        actions: vec![],
    });
    a.round();
    assert_eq!(a.state().settled_bundle.as_deref(), Some(hash.as_str()));
    a.round();
    let kinds: Vec<_> = ep.reports().iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&fleet_wire::node::ReportKind::Flipped), "{kinds:?}");

    // A CA file with no certificate in it is a config error that names it.
    let empty = certs.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    with_ca(&node, &url, &empty);
    let config = edge_agent::config::Config::load(&node.config).expect("config");
    let r = edge_agent::agent::Agent::open(config, edge_agent::paths::Paths::under(node.root()), support::TestClock);
    assert!(matches!(r, Err(edge_agent::Error::ParseCa { .. })), "{:?}", r.err());
}
