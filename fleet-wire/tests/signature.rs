//! Request signatures end to end through the public API: RFC 9421's ed25519 example byte for byte, then a node's
//! request under the node policy, and every way a request is refused, each built here and matched to one variant.

use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use fleet_wire::digest::content_digest;
use fleet_wire::signature::{
    sign, sign_node_request, signature_base, verify, verify_node_request, Request, SignatureParams, Verified,
    VerifyOptions, Window, NODE_WINDOW,
};
use fleet_wire::{Error, FieldErrorKind};
use sha2::Digest as _;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// RFC 9421, appendix B.1.4: test-key-ed25519, as PKCS#8 and SubjectPublicKeyInfo DER; the key is the last 32 bytes.
const TEST_KEY_PRIVATE_DER: &str = "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";
const TEST_KEY_PUBLIC_DER: &str = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";

// RFC 9421, appendix B.2.6: the signature base and the headers for the test request under the label sig-b26.
const B26_BASE: &str = concat!(
    "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n",
    "\"@method\": POST\n",
    "\"@path\": /foo\n",
    "\"@authority\": example.com\n",
    "\"content-type\": application/json\n",
    "\"content-length\": 18\n",
    "\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");",
    "created=1618884473;keyid=\"test-key-ed25519\"",
);
const B26_INPUT: &str = concat!(
    "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");",
    "created=1618884473;keyid=\"test-key-ed25519\"",
);
const B26_SIGNATURE: &str =
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";
const B26_COMPONENTS: [&str; 6] = ["date", "@method", "@path", "@authority", "content-type", "content-length"];

fn test_key() -> SigningKey {
    let der = B64.decode(TEST_KEY_PRIVATE_DER).expect("the RFC's key is base64");
    SigningKey::from_bytes(der[16..].try_into().expect("a PKCS#8 ed25519 key ends with the 32-byte seed"))
}

fn test_key_public() -> VerifyingKey {
    let der = B64.decode(TEST_KEY_PUBLIC_DER).expect("the RFC's key is base64");
    VerifyingKey::from_bytes(der[12..].try_into().expect("an ed25519 SPKI ends with the 32-byte key"))
        .expect("the RFC's key is a point")
}

/// RFC 9421's test request (appendix B.2), with the headers given.
fn rfc_request<'a>(headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
    Request {
        method: "POST",
        scheme: "https",
        authority: "example.com",
        path: "/foo",
        query: Some("param=Value&Pet=dog"),
        headers,
    }
}

const RFC_HEADERS: [(&str, &str); 5] = [
    ("Host", "example.com"),
    ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
    ("Content-Type", "application/json"),
    (
        "Content-Digest",
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    ),
    ("Content-Length", "18"),
];

#[test]
fn rfc_9421_b_2_6_ed25519() {
    assert_eq!(test_key().verifying_key(), test_key_public());
    let params = SignatureParams {
        created: Some(1618884473),
        keyid: Some("test-key-ed25519".to_owned()),
        ..SignatureParams::default()
    };
    let req = rfc_request(&RFC_HEADERS);
    assert_eq!(signature_base(&req, &B26_COMPONENTS, &params).expect("the base"), B26_BASE);
    let headers = sign(&req, "sig-b26", &B26_COMPONENTS, &params, &test_key()).expect("signed");
    assert_eq!(headers.signature_input, B26_INPUT);
    assert_eq!(headers.signature, B26_SIGNATURE);

    let mut all = RFC_HEADERS.to_vec();
    all.extend([("Signature-Input", B26_INPUT), ("Signature", B26_SIGNATURE)]);
    let options = VerifyOptions { label: Some("sig-b26"), now: 1618884473, window: NODE_WINDOW };
    let lookup = |id: &str| (id == "test-key-ed25519").then(test_key_public);
    let verified = verify(&rfc_request(&all), &options, lookup).expect("the RFC's signature verifies");
    assert_eq!(verified.keyid, "test-key-ed25519");
    assert_eq!(verified.created, 1618884473);
    assert_eq!(verified.components, B26_COMPONENTS);
    assert_eq!(verified.params, params);
    // The replay id is the SHA-256 of the signature base.
    let base_hash: [u8; 32] = sha2::Sha256::digest(B26_BASE.as_bytes()).into();
    assert_eq!(verified.replay_id.0, base_hash);
    // Taken as the only signature when no label is asked for.
    let options = VerifyOptions { label: None, ..options };
    assert_eq!(verify(&rfc_request(&all), &options, lookup).map(|v| v.label), Ok("sig-b26".to_owned()));
    // The node policy asks for more than the RFC's example covers.
    let body = br#"{"hello": "world"}"#;
    let options = VerifyOptions { label: Some("sig-b26"), ..options };
    assert_eq!(
        verify_node_request(&rfc_request(&all), body, &options, lookup),
        Err(Error::InsufficientCoverage { missing: "@query" })
    );
}

const NODE_ID: &str = "node-0001";
const CREATED: u64 = 1_800_000_000;
const NONCE: &str = "3f2a9c41d07b5e86";
const BODY: &[u8] = br#"{"seq": 7, "phase": "committed"}"#;

fn node_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// A node's request as the endpoint receives it, owned so that each test can change one part of it.
#[derive(Clone)]
struct Case {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    now: u64,
    label: Option<&'static str>,
}

impl Case {
    /// A report the node signed at `CREATED` with its key, as `sign_node_request` signs it.
    fn signed() -> Case {
        Case::signed_with(|req| sign_node_request(req, NODE_ID, CREATED, NONCE, &node_key()).expect("signed"))
    }

    /// The report signed by `signer`, which gets the request with its `Content-Digest`.
    fn signed_with(signer: impl FnOnce(&Request<'_>) -> fleet_wire::signature::SignatureHeaders) -> Case {
        let mut case = Case {
            method: "POST".to_owned(),
            path: "/v1/nodes/node-0001/reports".to_owned(),
            query: None,
            headers: vec![
                ("Host".to_owned(), "fleet.example:8443".to_owned()),
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Content-Digest".to_owned(), content_digest(BODY)),
            ],
            body: BODY.to_vec(),
            now: CREATED + 2,
            label: Some("sig1"),
        };
        let headers = case.with_request(|req| signer(req));
        case.headers.push(("Signature-Input".to_owned(), headers.signature_input));
        case.headers.push(("Signature".to_owned(), headers.signature));
        case
    }

    fn with_request<T>(&self, f: impl FnOnce(&Request<'_>) -> T) -> T {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let req = Request {
            method: &self.method,
            scheme: "https",
            authority: "fleet.example:8443",
            path: &self.path,
            query: self.query.as_deref(),
            headers: &headers,
        };
        f(&req)
    }

    fn set(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }

    fn verify(&self) -> Result<Verified, Error> {
        let options = VerifyOptions { label: self.label, now: self.now, window: NODE_WINDOW };
        let lookup = |id: &str| (id == NODE_ID).then(|| node_key().verifying_key());
        self.with_request(|req| verify_node_request(req, &self.body, &options, lookup))
    }
}

fn check(case: &Case, expected: Error) {
    assert_eq!(case.verify().map(|v| v.keyid), Err(expected));
}

fn node_params() -> SignatureParams {
    SignatureParams {
        created: Some(CREATED),
        nonce: Some(NONCE.to_owned()),
        keyid: Some(NODE_ID.to_owned()),
        alg: Some("ed25519".to_owned()),
        ..SignatureParams::default()
    }
}

/// The report signed over `components` with `params`, under `sig1`.
fn signed_over(components: &[&str], params: SignatureParams) -> Case {
    Case::signed_with(|req| sign(req, "sig1", components, &params, &node_key()).expect("signed"))
}

#[test]
fn a_node_request_verifies() {
    let case = Case::signed();
    let verified = case.verify().expect("verifies");
    assert_eq!(verified.keyid, NODE_ID);
    assert_eq!(verified.created, CREATED);
    assert_eq!(verified.components, ["@method", "@path", "@query", "content-digest"]);
    assert_eq!(verified.params.alg.as_deref(), Some("ed25519"));
    let input = &case.headers.iter().find(|(n, _)| n == "Signature-Input").expect("signed").1;
    assert_eq!(
        input,
        "sig1=(\"@method\" \"@path\" \"@query\" \"content-digest\");created=1800000000;nonce=\"3f2a9c41d07b5e86\";alg=\"ed25519\";keyid=\"node-0001\""
    );
    // The same request signed again is the same replay; one signed a second later is not.
    assert_eq!(Case::signed().verify().map(|v| v.replay_id), Ok(verified.replay_id));
    let later =
        Case::signed_with(|req| sign_node_request(req, NODE_ID, CREATED + 1, NONCE, &node_key()).expect("signed"));
    assert_ne!(later.verify().expect("verifies").replay_id, verified.replay_id);
    // A request without a body needs no content-digest.
    let mut get = Case::signed_with(|req| {
        let headers = [("Host", "fleet.example:8443")];
        let get = Request { method: "GET", query: Some("wait=30"), headers: &headers, ..*req };
        sign_node_request(&get, NODE_ID, CREATED, NONCE, &node_key()).expect("signed")
    });
    get.method = "GET".to_owned();
    get.query = Some("wait=30".to_owned());
    get.headers.retain(|(n, _)| n != "Content-Digest" && n != "Content-Type");
    get.body.clear();
    assert_eq!(get.verify().map(|v| v.components.len()), Ok(3));
    // Header names are matched without case, and the labels of other signatures are ignored.
    let mut case = Case::signed();
    for (name, _) in &mut case.headers {
        *name = name.to_ascii_uppercase();
    }
    assert_eq!(case.verify().map(|v| v.keyid), Ok(NODE_ID.to_owned()));
}

#[test]
fn the_window_is_inclusive_at_both_ends() {
    let mut case = Case::signed();
    case.now = CREATED + NODE_WINDOW.max_age_secs;
    assert!(case.verify().is_ok());
    case.now = CREATED - NODE_WINDOW.max_future_secs;
    assert!(case.verify().is_ok());
}

#[test]
fn a_changed_request_is_refused() {
    let bad_signature = Error::BadSignature { keyid: NODE_ID.to_owned() };

    let mut case = Case::signed();
    let signature = &case.headers.iter().find(|(n, _)| n == "Signature").expect("signed").1;
    let mut bytes = B64.decode(signature.trim_start_matches("sig1=:").trim_end_matches(':')).expect("base64");
    bytes[20] ^= 0x04;
    case.set("Signature", &format!("sig1=:{}:", B64.encode(&bytes)));
    check(&case, bad_signature.clone());

    let mut case = Case::signed();
    case.method = "PUT".to_owned();
    check(&case, bad_signature.clone());

    let mut case = Case::signed();
    case.path = "/v1/nodes/node-0002/reports".to_owned();
    check(&case, bad_signature.clone());

    let mut case = Case::signed();
    case.query = Some("all=1".to_owned());
    check(&case, bad_signature.clone());

    let mut case = Case::signed();
    case.set("Content-Digest", &content_digest(b"{}"));
    check(&case, bad_signature.clone());

    let mut case = Case::signed();
    case.body = br#"{"seq": 7, "phase": "rolled-back"}"#.to_vec();
    check(&case, Error::DigestMismatch { algorithm: "sha-256" });

    // Another node's key signing under this node's id.
    let case = Case::signed_with(|req| sign_node_request(req, NODE_ID, CREATED, NONCE, &other_key()).expect("signed"));
    check(&case, bad_signature);
}

#[test]
fn missing_parts_are_refused() {
    let mut case = Case::signed();
    case.headers.retain(|(n, _)| n != "Content-Digest");
    check(&case, Error::MissingComponent { name: "content-digest".to_owned() });

    let mut case = Case::signed();
    case.headers.retain(|(n, _)| n != "Signature");
    check(&case, Error::MissingHeader { name: "signature" });

    let mut case = Case::signed();
    case.headers.retain(|(n, _)| n != "Signature-Input");
    check(&case, Error::MissingHeader { name: "signature-input" });

    let case = signed_over(
        &["@method", "@path", "@query", "content-digest"],
        SignatureParams { created: None, ..node_params() },
    );
    check(&case, Error::MissingParameter { name: "created" });

    let case = signed_over(
        &["@method", "@path", "@query", "content-digest"],
        SignatureParams { keyid: None, ..node_params() },
    );
    check(&case, Error::MissingParameter { name: "keyid" });

    let case =
        signed_over(&["@method", "@path", "@query", "content-digest"], SignatureParams { alg: None, ..node_params() });
    check(&case, Error::MissingParameter { name: "alg" });
}

#[test]
fn keys_and_times_are_checked() {
    let case =
        Case::signed_with(|req| sign_node_request(req, "node-0002", CREATED, NONCE, &other_key()).expect("signed"));
    check(&case, Error::UnknownKey { keyid: "node-0002".to_owned() });

    let mut case = Case::signed();
    case.now = CREATED + NODE_WINDOW.max_age_secs + 1;
    check(&case, Error::CreatedTooOld { created: CREATED, now: case.now, max_age_secs: NODE_WINDOW.max_age_secs });

    let mut case = Case::signed();
    case.now = CREATED - NODE_WINDOW.max_future_secs - 1;
    check(
        &case,
        Error::CreatedInFuture { created: CREATED, now: case.now, max_future_secs: NODE_WINDOW.max_future_secs },
    );

    let case = signed_over(
        &["@method", "@path", "@query", "content-digest"],
        SignatureParams { expires: Some(CREATED + 1), ..node_params() },
    );
    check(&case, Error::Expired { expires: CREATED + 1, now: CREATED + 2 });

    let case = signed_over(
        &["@method", "@path", "@query", "content-digest"],
        SignatureParams { alg: Some("rsa-pss-sha512".to_owned()), ..node_params() },
    );
    check(&case, Error::WrongAlgorithm { alg: "rsa-pss-sha512".to_owned() });

    // A window of zero takes only a signature made this second.
    let case = Case::signed();
    let zero = Window { max_age_secs: 0, max_future_secs: 0 };
    let options = VerifyOptions { label: Some("sig1"), now: CREATED, window: zero };
    let lookup = |_: &str| Some(node_key().verifying_key());
    assert!(case.with_request(|req| verify_node_request(req, &case.body, &options, lookup)).is_ok());
}

#[test]
fn the_policy_asks_for_its_components() {
    check(
        &signed_over(&["@method", "content-digest"], node_params()),
        Error::InsufficientCoverage { missing: "@path" },
    );
    check(
        &signed_over(&["@method", "@path", "content-digest"], node_params()),
        Error::InsufficientCoverage { missing: "@query" },
    );
    check(
        &signed_over(&["@method", "@path", "@query"], node_params()),
        Error::InsufficientCoverage { missing: "content-digest" },
    );
    // A node request without a nonce, or with an empty one, is refused: without it, two polls in one second would be
    // one request and its replay.
    let no_nonce = SignatureParams { nonce: None, ..node_params() };
    check(
        &signed_over(&["@method", "@path", "@query", "content-digest"], no_nonce),
        Error::MissingParameter { name: "nonce" },
    );
    let empty_nonce = SignatureParams { nonce: Some(String::new()), ..node_params() };
    check(
        &signed_over(&["@method", "@path", "@query", "content-digest"], empty_nonce),
        Error::MissingParameter { name: "nonce" },
    );
    // More than the policy asks is fine.
    let case =
        signed_over(&["@method", "@target-uri", "@path", "@query", "content-digest", "content-type"], node_params());
    assert_eq!(case.verify().map(|v| v.components.len()), Ok(6));
}

#[test]
fn malformed_headers_are_refused() {
    let parse_input = |case: &Case| match case.verify() {
        Err(Error::ParseSignatureInput { source }) => source.kind,
        other => panic!("{other:?}"),
    };
    let parse_signature = |case: &Case| match case.verify() {
        Err(Error::ParseSignature { source }) => source.kind,
        other => panic!("{other:?}"),
    };
    let signed = Case::signed();
    let input = signed.headers.iter().find(|(n, _)| n == "Signature-Input").expect("signed").1.clone();
    let signature = signed.headers.iter().find(|(n, _)| n == "Signature").expect("signed").1.clone();

    let mut case = signed.clone();
    case.set("Signature-Input", "sig1=(\"@method\" @path)");
    assert_eq!(parse_input(&case), FieldErrorKind::Unsupported("an inner-list item other than a string"));

    let mut case = signed.clone();
    case.set("Signature-Input", &format!("{input}{}", ";nonce=\"x\"".repeat(600)));
    assert_eq!(parse_input(&case), FieldErrorKind::FieldTooLong);

    let mut case = signed.clone();
    case.set("Signature", "sig1=:not base64:");
    assert_eq!(parse_signature(&case), FieldErrorKind::Expected("':' closing the byte sequence"));

    let mut case = signed.clone();
    case.set("Signature", &format!("sig1=:{}:", B64.encode([1u8; 600])));
    assert_eq!(parse_signature(&case), FieldErrorKind::TooLong { what: "byte sequence", max: 512 });

    // Duplicate labels, in one line or across two lines of the header.
    let mut case = signed.clone();
    case.set("Signature-Input", &format!("{input}, {input}"));
    assert_eq!(parse_input(&case), FieldErrorKind::DuplicateKey);
    let mut case = signed.clone();
    case.headers.push(("Signature".to_owned(), signature.clone()));
    assert_eq!(parse_signature(&case), FieldErrorKind::DuplicateKey);

    let mut case = signed.clone();
    case.set("Signature", "sig1=:AAAA:");
    check(&case, Error::SignatureLength { len: 3 });

    let mut case = signed.clone();
    case.set("Signature", "sig1=\"AAAA\"");
    check(&case, Error::MemberShape { header: "signature", label: "sig1".into(), expected: "a byte sequence" });

    let mut case = signed.clone();
    case.set("Signature-Input", "sig1=1");
    check(
        &case,
        Error::MemberShape { header: "signature-input", label: "sig1".into(), expected: "an inner list of components" },
    );

    let mut case = signed.clone();
    case.set("Signature", &signature.replace("sig1", "sig2"));
    check(&case, Error::LabelNotFound { header: "signature", label: "sig1".into() });

    let mut case = signed.clone();
    case.label = Some("sig2");
    check(&case, Error::LabelNotFound { header: "signature-input", label: "sig2".into() });

    let mut case = signed.clone();
    case.label = None;
    case.set("Signature-Input", &format!("{input}, {}", input.replace("sig1", "sig2")));
    check(&case, Error::AmbiguousLabel { n_labels: 2 });

    let mut case = signed.clone();
    case.set("Signature-Input", &input.replace(";created", ";foo=1;created"));
    check(&case, Error::UnsupportedParameter { name: "foo".into() });

    let mut case = signed.clone();
    case.set("Signature-Input", &input.replace("created=1800000000", "created=\"1800000000\""));
    check(&case, Error::ParameterType { name: "created", expected: "a non-negative integer" });

    let mut case = signed.clone();
    case.set("Signature-Input", &input.replace("created=1800000000", "created=-1"));
    check(&case, Error::ParameterType { name: "created", expected: "a non-negative integer" });
}

#[test]
fn components_are_checked() {
    let signed = Case::signed();
    let input = signed.headers.iter().find(|(n, _)| n == "Signature-Input").expect("signed").1.clone();
    for (covered, expected) in [
        ("\"@query-param\";name=\"a\"", Error::UnsupportedComponent { name: "(\"@query-param\";name=\"a\")".into() }),
        ("\"content-digest\";sf", Error::UnsupportedComponent { name: "(\"content-digest\";sf)".into() }),
        ("\"@status\"", Error::UnsupportedComponent { name: "@status".into() }),
        ("\"@signature-params\"", Error::UnsupportedComponent { name: "@signature-params".into() }),
        ("\"Content-Type\"", Error::UnsupportedComponent { name: "Content-Type".into() }),
        ("\"\"", Error::UnsupportedComponent { name: "".into() }),
        ("\"@path\"", Error::DuplicateComponent { name: "@path".into() }),
    ] {
        let mut case = signed.clone();
        case.set("Signature-Input", &input.replace("\"content-digest\"", &format!("\"content-digest\" {covered}")));
        check(&case, expected);
    }

    // A covered value with a line break would add a line to the base.
    let mut case = signed_over(&["@method", "@path", "@query", "content-digest", "content-type"], node_params());
    case.set("Content-Type", "application/json\n\"@method\": GET");
    check(&case, Error::InvalidComponentValue { name: "content-type".into() });

    // Signing refuses what verifying refuses.
    let err = Case::signed().with_request(|req| sign(req, "sig1", &["@status"], &node_params(), &node_key()));
    assert_eq!(err, Err(Error::UnsupportedComponent { name: "@status".into() }));
    let err = Case::signed().with_request(|req| sign(req, "Sig1", &["@method"], &node_params(), &node_key()));
    assert_eq!(err, Err(Error::InvalidLabel { label: "Sig1".into() }));
    let params = SignatureParams { keyid: Some("node\u{e9}".into()), ..node_params() };
    let err = Case::signed().with_request(|req| sign(req, "sig1", &["@method"], &params, &node_key()));
    assert_eq!(err, Err(Error::ParameterType { name: "keyid", expected: "printable ASCII of at most 512 bytes" }));
}

#[test]
fn derived_components() {
    let headers = [("Host", "Example.COM")];
    let req =
        Request { method: "GET", scheme: "HTTPS", authority: "Example.COM", path: "", query: None, headers: &headers };
    let params = SignatureParams { created: Some(1), ..SignatureParams::default() };
    let base = signature_base(
        &req,
        &["@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query", "host"],
        &params,
    )
    .expect("a base");
    let expected = concat!(
        "\"@method\": GET\n",
        "\"@target-uri\": https://example.com/\n",
        "\"@authority\": example.com\n",
        "\"@scheme\": https\n",
        "\"@request-target\": /\n",
        "\"@path\": /\n",
        "\"@query\": ?\n",
        "\"host\": Example.COM\n",
        "\"@signature-params\": (\"@method\" \"@target-uri\" \"@authority\" \"@scheme\" \"@request-target\" \"@path\" \"@query\" \"host\");created=1",
    );
    assert_eq!(base, expected);
    // Lines of one header are trimmed and joined.
    let headers = [("X-A", " one "), ("x-a", "two\t")];
    let req = Request { headers: &headers, query: Some("a=1&b"), ..req };
    let base = signature_base(&req, &["x-a", "@query", "@request-target"], &params).expect("a base");
    assert!(base.starts_with("\"x-a\": one, two\n\"@query\": ?a=1&b\n\"@request-target\": /?a=1&b\n"), "{base}");
}

/// docs/fleet-protocol.md's example request and signature base are what this crate makes.
#[test]
fn the_protocol_doc_example() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fleet-protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/fleet-protocol.md is readable");
    let case = Case::signed();
    for (name, value) in &case.headers {
        let line = format!("{name}: {value}\n");
        assert!(doc.contains(&line), "docs/fleet-protocol.md lacks {line:?}");
    }
    let components = ["@method", "@path", "@query", "content-digest"];
    let base = case.with_request(|req| signature_base(req, &components, &node_params())).expect("a base");
    assert!(doc.contains(&format!("```text\n{base}\n```")), "docs/fleet-protocol.md lacks the base:\n{base}");
    assert!(
        doc.contains(&format!("\n\n{}\n```", String::from_utf8_lossy(BODY))),
        "docs/fleet-protocol.md lacks the body"
    );
}
