//! Fuzz target: what a node sends the fleet endpoint to prove who it is (docs/fleet-protocol.md, "Request
//! signatures"): the `Signature-Input`, `Signature` and `Content-Digest` fields (`fleet_wire::sfv`, `digest`) and the
//! whole verification of a request (`fleet_wire::signature::verify`, `verify_node_request`).
//!
//! The first byte picks the mode; the rest is UTF-8 text. Mode 0: a dictionary field value; whatever is read writes
//! out canonically, and reading that gives the same value and the same text again. Mode 1: a `Content-Digest` value
//! and, after the first newline, the body; a field that verifies holds only digests of that body, and the field
//! `content_digest` makes for the body verifies. Mode 2: a request: the method, the path (with `?query`), the header
//! lines `name: value` (the authority is `Host`'s), an empty line, the body. The endpoint's keys are the node
//! `node-0001`'s (seed `[7; 32]`) and RFC 9421's `test-key-ed25519`; no input verifies unless its signature is exactly
//! the one that key makes over the base rebuilt from the request and the verified parameters (ed25519 is
//! deterministic; the seeds' parameters are in the order `sign` writes them, and any other order changes the base),
//! and its replay id is that base's SHA-256.
#![no_main]

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use fleet_wire::digest::{content_digest, parse_content_digest, verify_content_digest};
use fleet_wire::sfv::{self, BareItem, Member};
use fleet_wire::signature::{self, Request, VerifyOptions, Window};
use libfuzzer_sys::fuzz_target;
use sha2::Digest as _;

/// RFC 9421, appendix B.1.4: the seed of test-key-ed25519 (the last 32 bytes of its PKCS#8 form).
const RFC_TEST_KEY: &str = "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";

fn key_of(keyid: &str) -> Option<SigningKey> {
    match keyid {
        "node-0001" => Some(SigningKey::from_bytes(&[7; 32])),
        "test-key-ed25519" => {
            let der = base64::engine::general_purpose::STANDARD.decode(RFC_TEST_KEY).expect("a constant");
            Some(SigningKey::from_bytes(der[16..].try_into().expect("a constant")))
        }
        _ => None,
    }
}

fn dictionary(text: &str) {
    let Ok(dict) = sfv::parse_dictionary(text) else { return };
    let canonical = dict.serialize();
    let again = sfv::parse_dictionary(&canonical).unwrap_or_else(|e| panic!("{canonical:?} from {text:?}: {e}"));
    assert_eq!(again, dict, "{text:?}");
    assert_eq!(again.serialize(), canonical, "{text:?}");
}

fn digest(text: &str) {
    let (field, body) = text.split_once('\n').unwrap_or((text, ""));
    if verify_content_digest(field, body.as_bytes()).is_ok() {
        for (algorithm, digest) in parse_content_digest(field).expect("a field that verifies parses") {
            assert_eq!(digest, algorithm.digest(body.as_bytes()), "{field:?}");
        }
    }
    let made = content_digest(body.as_bytes());
    assert!(verify_content_digest(&made, body.as_bytes()).is_ok(), "{made:?}");
}

fn request(text: &str) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.split('\n');
    let method = lines.next().unwrap_or("");
    let target = lines.next().unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let headers: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(": ")).collect();
    let host = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("host"));
    let authority = host.map_or("fleet.example:8443", |(_, v)| v);
    let req = Request { method, scheme: "https", authority, path, query, headers: &headers };
    // Every time is inside this window, so the fuzzer reaches the signature whatever `created` says.
    let window = Window { max_age_secs: u64::MAX, max_future_secs: u64::MAX };
    let options = VerifyOptions { label: None, now: 1_800_000_000, window };
    let lookup = |id: &str| key_of(id).map(|k| k.verifying_key());
    for verified in [
        signature::verify(&req, &options, lookup),
        signature::verify_node_request(&req, body.as_bytes(), &options, lookup),
    ] {
        let Ok(verified) = verified else { continue };
        let key = key_of(&verified.keyid).expect("a signature verified with a key the lookup gave");
        let components: Vec<&str> = verified.components.iter().map(String::as_str).collect();
        let base = signature::signature_base(&req, &components, &verified.params).expect("a verified base rebuilds");
        let signatures = sfv::parse_dictionary(&req.header("signature").expect("verified")).expect("verified");
        let Some(Member::Item(item)) = signatures.get(&verified.label) else { panic!("no signature {}", verified.label) };
        let BareItem::Bytes(bytes) = &item.value else { panic!("signature {} is not bytes", verified.label) };
        assert_eq!(bytes.as_slice(), key.sign(base.as_bytes()).to_bytes(), "a signature the key did not make");
        assert_eq!(verified.replay_id.0, <[u8; 32]>::from(sha2::Sha256::digest(base.as_bytes())));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match mode % 3 {
        0 => dictionary(text),
        1 => digest(text),
        _ => request(text),
    }
});
