//! The crate's error types: `Error` for every refusal of a digest or a signature, and `FieldError` for a header
//! value that the Structured Fields reader (`sfv`) refuses, which `Error` wraps with the header's name.
//!
//! Each refusal has its own variant so that the endpoint can map classes to status codes and tests can match the
//! exact reason (docs/fleet-protocol.md, "Request signatures", lists the classes).

use std::fmt;

/// Everything that can make a request's digest or signature be refused, or a signature not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The `Content-Digest` value is not a Structured Fields dictionary of the supported subset.
    #[error("malformed content-digest field")]
    ParseContentDigest {
        /// Why and where.
        #[source]
        source: FieldError,
    },
    /// A `Content-Digest` member of a known algorithm is not a byte sequence.
    #[error("content-digest member {algorithm} is not a byte sequence")]
    ContentDigestValue {
        /// The member's key.
        algorithm: String,
    },
    /// The `Content-Digest` field names neither `sha-256` nor `sha-512`.
    #[error("content-digest has no sha-256 or sha-512 member")]
    NoDigestAlgorithm,
    /// A digest in `Content-Digest` is not the digest of the body.
    #[error("content-digest {algorithm} does not match the body")]
    DigestMismatch {
        /// The algorithm whose digest differs.
        algorithm: &'static str,
    },
    /// A header the signature needs is absent.
    #[error("no {name} header")]
    MissingHeader {
        /// The header's lowercase name.
        name: &'static str,
    },
    /// The `Signature-Input` value is not a Structured Fields dictionary of the supported subset.
    #[error("malformed signature-input field")]
    ParseSignatureInput {
        /// Why and where.
        #[source]
        source: FieldError,
    },
    /// The `Signature` value is not a Structured Fields dictionary of the supported subset.
    #[error("malformed signature field")]
    ParseSignature {
        /// Why and where.
        #[source]
        source: FieldError,
    },
    /// The label asked for is not in the header, or no label was asked for and the header does not hold exactly one.
    #[error("{header} has no signature labelled {label}")]
    LabelNotFound {
        /// `signature-input` or `signature`.
        header: &'static str,
        /// The label looked for (`*` when none was asked for).
        label: String,
    },
    /// No label was asked for and `Signature-Input` holds more than one signature.
    #[error("signature-input holds {n_labels} signatures and none was asked for")]
    AmbiguousLabel {
        /// How many labels the header holds.
        n_labels: usize,
    },
    /// A label's member is of the wrong shape: not an inner list in `Signature-Input`, not a byte sequence in
    /// `Signature`.
    #[error("{header} member {label} is not {expected}")]
    MemberShape {
        /// `signature-input` or `signature`.
        header: &'static str,
        /// The label.
        label: String,
        /// What the member must be.
        expected: &'static str,
    },
    /// A label to sign under is not a Structured Fields key.
    #[error("signature label {label:?} is not a lowercase structured-field key")]
    InvalidLabel {
        /// The label.
        label: String,
    },
    /// A covered component is not one this crate derives or reads: a derived component other than `@method`,
    /// `@target-uri`, `@authority`, `@scheme`, `@request-target`, `@path` and `@query`, a component with parameters,
    /// or a name that is not a lowercase field name.
    #[error("covered component {name:?} is not supported")]
    UnsupportedComponent {
        /// The component as given.
        name: String,
    },
    /// A covered component is listed twice.
    #[error("covered component {name} is listed twice")]
    DuplicateComponent {
        /// The component.
        name: String,
    },
    /// A covered header is absent from the request.
    #[error("covered component {name} is absent from the request")]
    MissingComponent {
        /// The header's name.
        name: String,
    },
    /// A covered value holds a control character (a line break would forge a line of the signature base).
    #[error("covered component {name} has a control character in its value")]
    InvalidComponentValue {
        /// The component.
        name: String,
    },
    /// A signature parameter other than `created`, `expires`, `nonce`, `alg`, `keyid` and `tag`.
    #[error("signature parameter {name} is not supported")]
    UnsupportedParameter {
        /// The parameter's key.
        name: String,
    },
    /// A signature parameter of the wrong type: `created` and `expires` are non-negative integers, the others
    /// strings (of printable ASCII, when signing).
    #[error("signature parameter {name} must be {expected}")]
    ParameterType {
        /// The parameter.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A parameter that verification or the policy needs is absent.
    #[error("signature has no {name} parameter")]
    MissingParameter {
        /// `created`, `keyid` or (for node requests) `alg`.
        name: &'static str,
    },
    /// The `alg` parameter names another algorithm than `ed25519`.
    #[error("signature alg {alg:?}, expected \"ed25519\"")]
    WrongAlgorithm {
        /// The algorithm named.
        alg: String,
    },
    /// The signature covers less than the policy asks for.
    #[error("signature does not cover {missing}, which the policy requires")]
    InsufficientCoverage {
        /// The first required component that is not covered.
        missing: &'static str,
    },
    /// `created` is older than the window allows.
    #[error("signature created at {created}, more than {max_age_secs} s before now ({now})")]
    CreatedTooOld {
        /// The signature's `created`, in seconds since the Unix epoch.
        created: u64,
        /// The verifier's time.
        now: u64,
        /// The window's age limit.
        max_age_secs: u64,
    },
    /// `created` is further in the future than the window allows.
    #[error("signature created at {created}, more than {max_future_secs} s after now ({now})")]
    CreatedInFuture {
        /// The signature's `created`, in seconds since the Unix epoch.
        created: u64,
        /// The verifier's time.
        now: u64,
        /// The window's allowance for clock skew.
        max_future_secs: u64,
    },
    /// The signature's `expires` has passed.
    #[error("signature expired at {expires}, now is {now}")]
    Expired {
        /// The signature's `expires`, in seconds since the Unix epoch.
        expires: u64,
        /// The verifier's time.
        now: u64,
    },
    /// The caller's key lookup knows no key by this id.
    #[error("no key with keyid {keyid:?}")]
    UnknownKey {
        /// The key id.
        keyid: String,
    },
    /// The signature is not 64 bytes long.
    #[error("signature is {len} bytes, expected 64")]
    SignatureLength {
        /// Its length.
        len: usize,
    },
    /// The signature does not verify over the signature base with the key.
    #[error("signature does not verify with key {keyid:?}")]
    BadSignature {
        /// The key id.
        keyid: String,
    },
    /// A node id is not `n-` and 32 lowercase hex digits.
    #[error("node id {id:?} is not n- and 32 lowercase hex digits")]
    BadNodeId {
        /// The id as given (its first 40 characters).
        id: String,
    },
    /// A public key in a body is not the base64 of a valid ed25519 key.
    #[error("public_key is not the standard base64 of a 32-byte ed25519 public key")]
    BadPublicKey,
    /// A body's field holds a value out of its set or shape.
    #[error("{field}: expected {expected}")]
    BadField {
        /// The field's path in the body.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A body's text field is longer than its bound.
    #[error("{field}: longer than {max} characters")]
    FieldTooLong {
        /// The field's path in the body.
        field: &'static str,
        /// The bound.
        max: usize,
    },
    /// A body's list holds more items than its bound.
    #[error("{field}: more than {max} items")]
    TooMany {
        /// The field's path in the body.
        field: &'static str,
        /// The bound.
        max: usize,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Why the Structured Fields reader refused a value, and the byte offset where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct FieldError {
    /// What was wrong.
    pub kind: FieldErrorKind,
    /// The offset in the value (after leading spaces) where reading stopped.
    pub offset: usize,
}

/// The classes of a refused Structured Fields value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// The whole value is longer than `sfv::MAX_FIELD_BYTES`.
    FieldTooLong,
    /// More members, inner-list items or parameters than the bounds allow.
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// A key, string or byte sequence longer than the bounds allow.
    TooLong {
        /// What is too long.
        what: &'static str,
        /// The bound, in bytes.
        max: usize,
    },
    /// Something else than what the grammar allows at this point.
    Expected(&'static str),
    /// A key appears twice in one dictionary or one parameter list.
    DuplicateKey,
    /// A valid Structured Fields construct that the subset does not take (tokens, decimals, bare boolean members,
    /// inner lists of non-strings, byte sequences as parameters).
    Unsupported(&'static str),
    /// An integer of more than 15 digits.
    IntegerRange,
    /// A byte sequence that is not canonical padded base64.
    Base64,
}

impl fmt::Display for FieldErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FieldTooLong => write!(f, "field longer than {} bytes", crate::sfv::MAX_FIELD_BYTES),
            Self::TooMany { what, max } => write!(f, "more than {max} {what}"),
            Self::TooLong { what, max } => write!(f, "{what} longer than {max} bytes"),
            Self::Expected(what) => write!(f, "expected {what}"),
            Self::DuplicateKey => write!(f, "duplicate key"),
            Self::Unsupported(what) => write!(f, "{what} outside the supported subset"),
            Self::IntegerRange => write!(f, "integer of more than 15 digits"),
            Self::Base64 => write!(f, "byte sequence that is not canonical padded base64"),
        }
    }
}
