//! `Content-Digest` (RFC 9530): the digest of a request's body, which a signature covers so that it covers the body.
//!
//! A module of its own because the signature covers the header, not the body: checking that the header is the body's
//! digest is a separate step, done by whoever holds the body (docs/fleet-protocol.md, "Request signatures").
//! The node sends `sha-256`; the endpoint takes `sha-256` and `sha-512`, ignores other algorithms as RFC 9530 asks,
//! and refuses a header that has neither.

use base64::Engine as _;
use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::sfv::{self, BareItem, Member};

/// A digest algorithm of the Hash Algorithms for HTTP Digest Fields registry that this crate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// `sha-256`, what the node sends.
    Sha256,
    /// `sha-512`.
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm's key in the header.
    pub fn key(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha512 => "sha-512",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        match key {
            "sha-256" => Some(Self::Sha256),
            "sha-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The digest of `body`.
    pub fn digest(self, body: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(body).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(body).to_vec(),
        }
    }
}

/// The `Content-Digest` value for `body`: `sha-256=:BASE64:`.
pub fn content_digest(body: &[u8]) -> String {
    let digest = DigestAlgorithm::Sha256.digest(body);
    format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The digests of known algorithms in a `Content-Digest` value, in the order they appear; members of other
/// algorithms are skipped.
pub fn parse_content_digest(value: &str) -> Result<Vec<(DigestAlgorithm, Vec<u8>)>> {
    let dict = sfv::parse_dictionary(value).map_err(|source| Error::ParseContentDigest { source })?;
    let mut digests = Vec::new();
    for (key, member) in &dict.members {
        let Some(algorithm) = DigestAlgorithm::from_key(key) else { continue };
        match member {
            Member::Item(item) => match &item.value {
                BareItem::Bytes(bytes) => digests.push((algorithm, bytes.clone())),
                _ => return Err(Error::ContentDigestValue { algorithm: key.clone() }),
            },
            Member::InnerList { .. } => return Err(Error::ContentDigestValue { algorithm: key.clone() }),
        }
    }
    if digests.is_empty() {
        return Err(Error::NoDigestAlgorithm);
    }
    Ok(digests)
}

/// Checks a `Content-Digest` value against `body`: every known digest in it must match. Returns the strongest
/// algorithm checked.
pub fn verify_content_digest(value: &str, body: &[u8]) -> Result<DigestAlgorithm> {
    let mut strongest = DigestAlgorithm::Sha256;
    for (algorithm, expected) in parse_content_digest(value)? {
        // Digests are public; a comparison that stops early reveals nothing a sender could not compute.
        if algorithm.digest(body) != expected {
            return Err(Error::DigestMismatch { algorithm: algorithm.key() });
        }
        if algorithm == DigestAlgorithm::Sha512 {
            strongest = algorithm;
        }
    }
    Ok(strongest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldErrorKind;

    // RFC 9530's examples (section 2 and appendix B): the body {"hello": "world"} and a line feed, 19 bytes.
    const HELLO: &[u8] = b"{\"hello\": \"world\"}\n";
    const HELLO_SHA256: &str = "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:";
    const HELLO_SHA512: &str =
        "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:";
    // RFC 9421's test request (appendix B.2): the same body without the line feed, 18 bytes, and its digest.
    const TEST_REQUEST_BODY: &[u8] = br#"{"hello": "world"}"#;
    const TEST_REQUEST_SHA512: &str =
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

    fn check(header: &str, body: &[u8], expected: Result<DigestAlgorithm>) {
        assert_eq!(verify_content_digest(header, body), expected, "{header:?}");
    }

    #[test]
    fn rfc_9530_examples() {
        assert_eq!(content_digest(HELLO), HELLO_SHA256);
        check(HELLO_SHA256, HELLO, Ok(DigestAlgorithm::Sha256));
        check(HELLO_SHA512, HELLO, Ok(DigestAlgorithm::Sha512));
        check(&format!("{HELLO_SHA256}, {HELLO_SHA512}"), HELLO, Ok(DigestAlgorithm::Sha512));
        check(TEST_REQUEST_SHA512, TEST_REQUEST_BODY, Ok(DigestAlgorithm::Sha512));
        check("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:", b"", Ok(DigestAlgorithm::Sha256));
        // Unknown algorithms beside a known one are ignored.
        check(&format!("md5=:AAAA:, {HELLO_SHA256}, unixsum=:AA==:"), HELLO, Ok(DigestAlgorithm::Sha256));
    }

    #[test]
    fn refusals() {
        check("md5=:AAAA:", HELLO, Err(Error::NoDigestAlgorithm));
        check("", HELLO, Err(Error::NoDigestAlgorithm));
        // RFC 9530's mismatch example: the digest of {"hello": "world"} sent with the body {"hello": "woXYZ"}.
        check(HELLO_SHA256, b"{\"hello\": \"woXYZ\"}\n", Err(Error::DigestMismatch { algorithm: "sha-256" }));
        check(TEST_REQUEST_SHA512, HELLO, Err(Error::DigestMismatch { algorithm: "sha-512" }));
        check(
            &format!("{HELLO_SHA256}, sha-512=:{}:", base64::engine::general_purpose::STANDARD.encode([0u8; 64])),
            HELLO,
            Err(Error::DigestMismatch { algorithm: "sha-512" }),
        );
        check("sha-256=:AAAA:", HELLO, Err(Error::DigestMismatch { algorithm: "sha-256" }));
        check("sha-256=\"X48E\"", HELLO, Err(Error::ContentDigestValue { algorithm: "sha-256".into() }));
        check("sha-256=(\"x\")", HELLO, Err(Error::ContentDigestValue { algorithm: "sha-256".into() }));
        let err = verify_content_digest("sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=", HELLO);
        assert!(
            matches!(err, Err(Error::ParseContentDigest { source }) if source.kind == FieldErrorKind::Unsupported("a token"))
        );
        let err = verify_content_digest(&format!("{HELLO_SHA256}, {HELLO_SHA256}"), HELLO);
        assert!(
            matches!(err, Err(Error::ParseContentDigest { source }) if source.kind == FieldErrorKind::DuplicateKey)
        );
    }
}
