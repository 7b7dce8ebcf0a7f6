//! A private certificate authority for tests and demos, made by Debian's `openssl` command: a CA certificate (what a
//! node bakes into its image) and a server certificate it signed (what `edge-cloud serve` presents), for the names
//! a test reaches the endpoint by: `localhost`, 127.0.0.1 and the address QEMU's guest forward listens on.
//!
//! A module of its own so that the endpoint's tests, the agent's tests, the QEMU scenario and the demo use one CA
//! recipe; the keys are ECDSA P-256, which every TLS stack verifies.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of one CA and one server certificate, in PEM.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA's certificate: the trust anchor a node is given.
    pub ca_cert: PathBuf,
    /// The server's certificate chain (its certificate, then the CA's).
    pub server_cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub server_key: PathBuf,
}

/// The names the server certificate is valid for.
pub const SERVER_NAMES: &str = "DNS:localhost,DNS:fleet.test,IP:127.0.0.1,IP:10.0.2.100";

impl TestCa {
    /// The CA kept in `dir` by an earlier [`TestCa::create`], or a new one made there when any file is missing: for
    /// a CA baked into images that are built once and kept.
    pub fn open_or_create(dir: &Path, name: &str) -> TestCa {
        let ca = TestCa {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        if [&ca.ca_cert, &ca.server_cert, &ca.server_key].iter().all(|p| p.is_file()) {
            return ca;
        }
        TestCa::create(dir, name)
    }

    /// Makes a CA named `name` and a server certificate for [`SERVER_NAMES`] in `dir` (created if missing); panics
    /// with `openssl`'s words when it fails (a fixture).
    pub fn create(dir: &Path, name: &str) -> TestCa {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let p = |f: &str| dir.join(f);
        let ca = TestCa { ca_cert: p("ca.pem"), server_cert: p("server.pem"), server_key: p("server.key") };
        let openssl = || {
            let mut c = Command::new("openssl");
            c.current_dir(dir);
            c
        };
        // Both keys are ECDSA P-256.
        let genkey = |out: &str| {
            crate::host::run(openssl().args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                out,
            ]))
        };
        genkey("ca.key");
        crate::host::run(
            openssl()
                .args(["req", "-x509", "-new", "-key", "ca.key", "-days", "3650", "-out", "ca.pem", "-subj"])
                .arg(format!("/CN={name} test CA"))
                .args([
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ]),
        );
        genkey("server.key");
        crate::host::run(openssl().args([
            "req",
            "-new",
            "-key",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=fleet.test",
        ]));
        let ext = p("server.ext");
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={SERVER_NAMES}\n"
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", ext.display()));
        crate::host::run(openssl().args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
            "-out",
            "server-only.pem",
        ]));
        let chain = [std::fs::read(p("server-only.pem")), std::fs::read(p("ca.pem"))];
        let chain: Vec<u8> = chain.into_iter().flat_map(|r| r.expect("read a certificate just written")).collect();
        std::fs::write(&ca.server_cert, chain).unwrap_or_else(|e| panic!("write {}: {e}", ca.server_cert.display()));
        ca
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openssl itself verifies the server certificate against the CA, for every name, and refuses it without.
    #[test]
    fn the_server_certificate_chains_to_the_ca() {
        let dir = std::env::temp_dir().join(format!("edge-tls-{}", std::process::id()));
        let ca = TestCa::create(&dir, "testkit");
        let out = crate::host::run(
            Command::new("openssl").arg("verify").arg("-CAfile").arg(&ca.ca_cert).arg(dir.join("server-only.pem")),
        );
        assert!(out.contains(": OK"), "{out}");
        for (flag, name) in
            [("-verify_hostname", "fleet.test"), ("-verify_ip", "10.0.2.100"), ("-verify_ip", "127.0.0.1")]
        {
            crate::host::run(
                Command::new("openssl")
                    .arg("verify")
                    .arg("-CAfile")
                    .arg(&ca.ca_cert)
                    .args([flag, name])
                    .arg(dir.join("server-only.pem")),
            );
        }
        let other = Command::new("openssl")
            .arg("verify")
            .args(["-verify_hostname", "elsewhere.test", "-CAfile"])
            .arg(&ca.ca_cert)
            .arg(dir.join("server-only.pem"))
            .output()
            .expect("run openssl");
        assert!(!other.status.success(), "a name the certificate does not carry verified");
        // Kept: opened again, the same CA; with a file gone, a new one.
        let pem = std::fs::read(&ca.ca_cert).expect("the CA");
        let again = TestCa::open_or_create(&dir, "testkit");
        assert_eq!(std::fs::read(&again.ca_cert).expect("the CA"), pem);
        std::fs::remove_file(&again.server_key).expect("remove the key");
        let renewed = TestCa::open_or_create(&dir, "testkit");
        assert!(renewed.server_key.is_file());
        assert_ne!(std::fs::read(&renewed.ca_cert).expect("the CA"), pem);
        std::fs::remove_dir_all(&dir).expect("remove the test CA");
    }
}
