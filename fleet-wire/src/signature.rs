//! HTTP Message Signatures (RFC 9421) with `ed25519`: the signature base of a request, signing it into the
//! `Signature-Input` and `Signature` headers, and verifying those headers against a key the caller looks up, a time
//! the caller gives and the node policy (docs/fleet-protocol.md, "Request signatures").
//!
//! Everything here is pure: no clock is read and no key store is opened, so the node agent and the endpoint run the
//! same code and every refusal can be tested by building its input.
//! The Structured Fields syntax is `sfv`'s; the body's digest is `digest`'s; this module owns which components are
//! covered, how each is derived, and the order in which a signature is checked.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::Digest as _;

use crate::digest;
use crate::error::{Error, Result};
use crate::sfv::{self, BareItem, Dictionary, Item, Member, Params};

/// The only algorithm this crate signs and verifies with.
pub const ALG_ED25519: &str = "ed25519";

/// The label a node signs under.
pub const NODE_LABEL: &str = "sig1";

/// What every node request's signature covers at least (`content-digest` too when the request has a body).
pub const NODE_REQUIRED_COMPONENTS: [&str; 3] = ["@method", "@path", "@query"];

/// The window the endpoint checks a node request's `created` against.
pub const NODE_WINDOW: Window = Window { max_age_secs: 300, max_future_secs: 60 };

/// The derived components this crate computes (RFC 9421, section 2.2); `@query-param`, `@status` and
/// `@signature-params` are not among them.
pub const DERIVED_COMPONENTS: [&str; 7] =
    ["@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"];

/// What a signature is made over: the parts of a request a server or a client has in hand, before any body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method, as sent (`GET`, `POST`).
    pub method: &'a str,
    /// `https` or `http`.
    pub scheme: &'a str,
    /// The host and port, as in the `Host` header (the port left out when it is the scheme's default).
    pub authority: &'a str,
    /// The path of the request target, percent-encoded as sent; empty means `/`.
    pub path: &'a str,
    /// The query without its `?`, or `None` when the target has no `?`.
    pub query: Option<&'a str>,
    /// The header fields: names in any case (compared without it), values as received, one entry per field line.
    pub headers: &'a [(&'a str, &'a str)],
}

impl Request<'_> {
    /// A header's value: every line of that name, trimmed, joined with `", "` (RFC 9421, section 2.1).
    pub fn header(&self, name: &str) -> Option<String> {
        let mut lines = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).peekable();
        lines.peek()?;
        Some(lines.map(|(_, v)| v.trim_matches([' ', '\t'])).collect::<Vec<_>>().join(", "))
    }

    /// The value of one covered component, checked free of control characters.
    fn component(&self, name: &str) -> Result<String> {
        let value = match name {
            "@method" => self.method.to_owned(),
            "@target-uri" => {
                format!(
                    "{}://{}{}",
                    self.scheme.to_ascii_lowercase(),
                    self.authority.to_ascii_lowercase(),
                    self.request_target()
                )
            }
            "@authority" => self.authority.to_ascii_lowercase(),
            "@scheme" => self.scheme.to_ascii_lowercase(),
            "@request-target" => self.request_target(),
            "@path" => self.path_or_root().to_owned(),
            "@query" => format!("?{}", self.query.unwrap_or("")),
            header => self.header(header).ok_or_else(|| Error::MissingComponent { name: header.to_owned() })?,
        };
        if value.bytes().any(|c| (c < 0x20 && c != b'\t') || c == 0x7f) {
            return Err(Error::InvalidComponentValue { name: name.to_owned() });
        }
        Ok(value)
    }

    fn path_or_root(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            self.path
        }
    }

    fn request_target(&self) -> String {
        match self.query {
            Some(q) => format!("{}?{q}", self.path_or_root()),
            None => self.path_or_root().to_owned(),
        }
    }
}

/// The signature parameters this crate reads and writes (RFC 9421, section 2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureParams {
    /// When the signature was made, in seconds since the Unix epoch.
    pub created: Option<u64>,
    /// When it stops being valid, in seconds since the Unix epoch.
    pub expires: Option<u64>,
    /// A value the signer makes unique.
    pub nonce: Option<String>,
    /// The algorithm; when present it must be `ed25519`.
    pub alg: Option<String>,
    /// The key's id; for a node, its node id.
    pub keyid: Option<String>,
    /// The application the signature is for.
    pub tag: Option<String>,
}

/// The largest integer a Structured Field holds (15 digits).
const MAX_SF_INTEGER: u64 = 999_999_999_999_999;

impl SignatureParams {
    /// The parameters as Structured Fields parameters, in a fixed order: `created`, `expires`, `nonce`, `alg`,
    /// `keyid`, `tag` (the order of RFC 9421's registry and its examples).
    fn to_sfv(&self) -> Result<Params> {
        let mut params = Params::new();
        for (name, value) in [("created", self.created), ("expires", self.expires)] {
            if let Some(n) = value {
                let n = i64::try_from(n)
                    .ok()
                    .filter(|&n| n <= MAX_SF_INTEGER as i64)
                    .ok_or(Error::ParameterType { name, expected: "an integer of at most 15 digits" })?;
                params.push((name.to_owned(), BareItem::Integer(n)));
            }
        }
        for (name, value) in [("nonce", &self.nonce), ("alg", &self.alg), ("keyid", &self.keyid), ("tag", &self.tag)] {
            if let Some(s) = value {
                if !sfv::is_string(s) {
                    return Err(Error::ParameterType { name, expected: "printable ASCII of at most 512 bytes" });
                }
                params.push((name.to_owned(), BareItem::String(s.clone())));
            }
        }
        Ok(params)
    }

    /// The typed parameters of a `Signature-Input` member; an unknown parameter or one of the wrong type is refused.
    fn from_sfv(params: &Params) -> Result<Self> {
        let mut out = Self::default();
        for (key, value) in params {
            match key.as_str() {
                "created" => out.created = Some(non_negative("created", value)?),
                "expires" => out.expires = Some(non_negative("expires", value)?),
                "nonce" => out.nonce = Some(string("nonce", value)?),
                "alg" => out.alg = Some(string("alg", value)?),
                "keyid" => out.keyid = Some(string("keyid", value)?),
                "tag" => out.tag = Some(string("tag", value)?),
                _ => return Err(Error::UnsupportedParameter { name: key.clone() }),
            }
        }
        Ok(out)
    }
}

fn non_negative(name: &'static str, value: &BareItem) -> Result<u64> {
    match value {
        BareItem::Integer(n) => {
            u64::try_from(*n).map_err(|_| Error::ParameterType { name, expected: "a non-negative integer" })
        }
        _ => Err(Error::ParameterType { name, expected: "a non-negative integer" }),
    }
}

fn string(name: &'static str, value: &BareItem) -> Result<String> {
    match value {
        BareItem::String(s) => Ok(s.clone()),
        _ => Err(Error::ParameterType { name, expected: "a string" }),
    }
}

/// Checks a covered component's name: a derived component this crate computes, or a lowercase field name.
fn check_component(name: &str) -> Result<()> {
    let supported = if name.starts_with('@') {
        DERIVED_COMPONENTS.contains(&name)
    } else {
        !name.is_empty()
            && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c))
    };
    if supported {
        Ok(())
    } else {
        Err(Error::UnsupportedComponent { name: name.to_owned() })
    }
}

/// The covered components of an inner list: strings without parameters, each supported, none twice.
fn components_of(items: &[Item]) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let BareItem::String(name) = &item.value else {
            // The reader takes only strings into an inner list.
            return Err(Error::UnsupportedComponent { name: format!("{:?}", item.value) });
        };
        if !item.params.is_empty() {
            let listed = Member::InnerList { items: vec![item.clone()], params: Params::new() }.serialize();
            return Err(Error::UnsupportedComponent { name: listed });
        }
        check_component(name)?;
        if names.contains(name) {
            return Err(Error::DuplicateComponent { name: name.clone() });
        }
        names.push(name.clone());
    }
    Ok(names)
}

/// The signature base (RFC 9421, section 2.5): one line per covered component, then the `@signature-params` line,
/// whose value is `input`'s serialization.
fn base_of(req: &Request<'_>, components: &[String], input: &Member) -> Result<String> {
    let mut base = String::new();
    for name in components {
        base.push('"');
        base.push_str(name);
        base.push_str("\": ");
        base.push_str(&req.component(name)?);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&input.serialize());
    Ok(base)
}

/// The `Signature-Input` member for these components and parameters.
fn input_member(components: &[&str], params: &SignatureParams) -> Result<(Vec<String>, Member)> {
    let items: Vec<Item> =
        components.iter().map(|c| Item { value: BareItem::String((*c).to_owned()), params: Params::new() }).collect();
    let names = components_of(&items)?;
    Ok((names, Member::InnerList { items, params: params.to_sfv()? }))
}

/// The signature base of `req` for the components (in their order) and the parameters, as a signer makes it.
pub fn signature_base(req: &Request<'_>, components: &[&str], params: &SignatureParams) -> Result<String> {
    let (names, member) = input_member(components, params)?;
    base_of(req, &names, &member)
}

/// The two header values that carry one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `Signature-Input`: `LABEL=("COMPONENT" ...);created=...;keyid="..."`.
    pub signature_input: String,
    /// `Signature`: `LABEL=:BASE64:`.
    pub signature: String,
}

/// Signs `req` over the components with the parameters, under `label`.
pub fn sign(
    req: &Request<'_>,
    label: &str,
    components: &[&str],
    params: &SignatureParams,
    key: &SigningKey,
) -> Result<SignatureHeaders> {
    if !sfv::is_key(label) {
        return Err(Error::InvalidLabel { label: label.to_owned() });
    }
    let (names, member) = input_member(components, params)?;
    let base = base_of(req, &names, &member)?;
    let signature = key.sign(base.as_bytes()).to_bytes().to_vec();
    let input = Dictionary { members: vec![(label.to_owned(), member)] };
    let value = Member::Item(Item { value: BareItem::Bytes(signature), params: Params::new() });
    let signature = Dictionary { members: vec![(label.to_owned(), value)] };
    Ok(SignatureHeaders { signature_input: input.serialize(), signature: signature.serialize() })
}

/// Signs a node's request as the node policy asks: under `sig1`, over `@method`, `@path`, `@query`, and
/// `content-digest` when the request carries one (the caller adds `Content-Digest` to every request with a body,
/// from `digest::content_digest`), with `created`, `nonce`, `keyid` (the node id) and `alg="ed25519"`.
///
/// `nonce` must differ between any two requests a node signs within the window (the agent takes 16 random bytes),
/// so that two polls in one second are two requests, not a request and its replay.
pub fn sign_node_request(
    req: &Request<'_>,
    node_id: &str,
    created: u64,
    nonce: &str,
    key: &SigningKey,
) -> Result<SignatureHeaders> {
    let mut components = NODE_REQUIRED_COMPONENTS.to_vec();
    if req.header("content-digest").is_some() {
        components.push("content-digest");
    }
    let params = SignatureParams {
        created: Some(created),
        nonce: Some(nonce.to_owned()),
        keyid: Some(node_id.to_owned()),
        alg: Some(ALG_ED25519.to_owned()),
        ..SignatureParams::default()
    };
    sign(req, NODE_LABEL, &components, &params, key)
}

/// How far `created` may lie from the verifier's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The oldest signature taken, in seconds before now.
    pub max_age_secs: u64,
    /// How far ahead of now a signer's clock may be, in seconds.
    pub max_future_secs: u64,
}

/// What a verifier is given besides the request and the key lookup.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// The label to verify; `None` takes the only signature in `Signature-Input`.
    pub label: Option<&'a str>,
    /// The verifier's time, in seconds since the Unix epoch.
    pub now: u64,
    /// The window around `now` that `created` must fall in.
    pub window: Window,
}

/// The id under which an endpoint remembers a verified signature to refuse it a second time: the SHA-256 of the
/// signature base, which covers the key id, `created` and every covered component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayId(pub [u8; 32]);

impl ReplayId {
    /// Lowercase hex, for a database key.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a verified signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The label it was found under.
    pub label: String,
    /// The key id the key was looked up by.
    pub keyid: String,
    /// Its `created`, in seconds since the Unix epoch.
    pub created: u64,
    /// The covered components, in their order.
    pub components: Vec<String>,
    /// All its parameters.
    pub params: SignatureParams,
    /// What to remember to refuse a replay (kept at least for the window's length).
    pub replay_id: ReplayId,
}

/// Verifies the signature of `req`: parses `Signature-Input` and `Signature`, picks the label, checks the components
/// and parameters, checks `created` (and `expires`) against the window, looks up the key by `keyid` and checks the
/// signature over the rebuilt base. Does not look at the body: `verify_node_request` does, with the node policy.
pub fn verify(
    req: &Request<'_>,
    options: &VerifyOptions<'_>,
    lookup: impl FnMut(&str) -> Option<VerifyingKey>,
) -> Result<Verified> {
    verify_with(req, options, None, lookup)
}

/// Verifies a node's request as the node policy asks: `verify`, and the signature covers `@method`, `@path`,
/// `@query` and (when the body is not empty) `content-digest`, names `alg="ed25519"`, and `Content-Digest` is the
/// body's digest.
pub fn verify_node_request(
    req: &Request<'_>,
    body: &[u8],
    options: &VerifyOptions<'_>,
    lookup: impl FnMut(&str) -> Option<VerifyingKey>,
) -> Result<Verified> {
    verify_with(req, options, Some(body), lookup)
}

/// The checks in their order, cheapest and least dependent on secrets first: the headers' syntax, the label, the
/// components and parameters, the policy, the time, then the key lookup, the signature, and the body's digest.
fn verify_with(
    req: &Request<'_>,
    options: &VerifyOptions<'_>,
    node_body: Option<&[u8]>,
    mut lookup: impl FnMut(&str) -> Option<VerifyingKey>,
) -> Result<Verified> {
    let input_value = req.header("signature-input").ok_or(Error::MissingHeader { name: "signature-input" })?;
    let signature_value = req.header("signature").ok_or(Error::MissingHeader { name: "signature" })?;
    let inputs = sfv::parse_dictionary(&input_value).map_err(|source| Error::ParseSignatureInput { source })?;
    let signatures = sfv::parse_dictionary(&signature_value).map_err(|source| Error::ParseSignature { source })?;

    let label = match (options.label, inputs.members.as_slice()) {
        (Some(label), _) => label.to_owned(),
        (None, [(label, _)]) => label.clone(),
        (None, []) => return Err(Error::LabelNotFound { header: "signature-input", label: "*".to_owned() }),
        (None, members) => return Err(Error::AmbiguousLabel { n_labels: members.len() }),
    };
    let input =
        inputs.get(&label).ok_or_else(|| Error::LabelNotFound { header: "signature-input", label: label.clone() })?;
    let Member::InnerList { items, params } = input else {
        return Err(Error::MemberShape { header: "signature-input", label, expected: "an inner list of components" });
    };
    let signature = match signatures.get(&label) {
        None => return Err(Error::LabelNotFound { header: "signature", label }),
        Some(Member::Item(Item { value: BareItem::Bytes(bytes), .. })) => bytes,
        Some(_) => return Err(Error::MemberShape { header: "signature", label, expected: "a byte sequence" }),
    };

    let components = components_of(items)?;
    let params = SignatureParams::from_sfv(params)?;
    if let Some(alg) = &params.alg {
        if alg != ALG_ED25519 {
            return Err(Error::WrongAlgorithm { alg: alg.clone() });
        }
    }
    let keyid = params.keyid.clone().ok_or(Error::MissingParameter { name: "keyid" })?;
    let created = params.created.ok_or(Error::MissingParameter { name: "created" })?;
    if let Some(body) = node_body {
        let body_component = (!body.is_empty()).then_some("content-digest");
        for required in NODE_REQUIRED_COMPONENTS.into_iter().chain(body_component) {
            if !components.iter().any(|c| c == required) {
                return Err(Error::InsufficientCoverage { missing: required });
            }
        }
        if params.alg.is_none() {
            return Err(Error::MissingParameter { name: "alg" });
        }
        if params.nonce.as_deref().is_none_or(str::is_empty) {
            return Err(Error::MissingParameter { name: "nonce" });
        }
    }

    let now = options.now;
    let Window { max_age_secs, max_future_secs } = options.window;
    if created.saturating_add(max_age_secs) < now {
        return Err(Error::CreatedTooOld { created, now, max_age_secs });
    }
    if created > now.saturating_add(max_future_secs) {
        return Err(Error::CreatedInFuture { created, now, max_future_secs });
    }
    if let Some(expires) = params.expires {
        if expires < now {
            return Err(Error::Expired { expires, now });
        }
    }

    let key = lookup(&keyid).ok_or_else(|| Error::UnknownKey { keyid: keyid.clone() })?;
    let base = base_of(req, &components, input)?;
    let bytes: [u8; 64] =
        signature.as_slice().try_into().map_err(|_| Error::SignatureLength { len: signature.len() })?;
    // verify_strict also refuses small-order keys and non-canonical points, so no second signature over the same
    // base can be made from a first one.
    key.verify_strict(base.as_bytes(), &ed25519_dalek::Signature::from_bytes(&bytes))
        .map_err(|_| Error::BadSignature { keyid: keyid.clone() })?;

    if let Some(body) = node_body {
        if components.iter().any(|c| c == "content-digest") {
            let value = req.header("content-digest").ok_or(Error::MissingHeader { name: "content-digest" })?;
            digest::verify_content_digest(&value, body)?;
        }
    }

    let replay_id = ReplayId(sha2::Sha256::digest(base.as_bytes()).into());
    Ok(Verified { label, keyid, created, components, params, replay_id })
}
