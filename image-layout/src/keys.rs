//! Signing keys, public keys, key ids and keyrings, and the signature checks over a manifest.
//!
//! Key files are one line of text so an operator can read and copy them: `edge-image-secret-key-v1:HEX` and
//! `edge-image-public-key-v1:HEX`, with the 32-byte ed25519 seed or public key in hex; docs/bundle-format.md, "Keys".

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::error::{Error, Result};
use crate::format::{from_hex, to_hex, SignatureRecord, KEY_ID_CONTEXT, KEY_ID_LEN, SIGNING_DOMAIN};

const SECRET_PREFIX: &str = "edge-image-secret-key-v1:";
const PUBLIC_PREFIX: &str = "edge-image-public-key-v1:";

/// The largest key file read: a key line is 90 bytes, and this leaves room for a CRLF or stray blanks, never for a
/// file whose reading would cost memory; docs/bundle-format.md, "Keys".
pub const MAX_KEY_FILE_BYTES: u64 = 1024;

/// A key file's text, its type and size checked first.
fn read_key_file(path: &Path, kind: &'static str) -> Result<String> {
    let bytes = crate::fsutil::read_bounded(path, MAX_KEY_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|_| Error::ParseKey { path: path.to_owned(), kind })
}

/// A key id: the first 8 bytes of blake3 (key-derivation mode, [`KEY_ID_CONTEXT`]) of the public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    /// The id of a public key.
    pub fn of(public: &VerifyingKey) -> KeyId {
        let mut h = blake3::Hasher::new_derive_key(KEY_ID_CONTEXT);
        h.update(public.as_bytes());
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&h.finalize().as_bytes()[..KEY_ID_LEN]);
        KeyId(id)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

/// A signing key with its id.
pub struct SecretKey {
    key: SigningKey,
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> SecretKey {
        SecretKey { key: SigningKey::generate(&mut rand_core::OsRng) }
    }

    /// A key from a 32-byte seed (test vectors use a fixed one).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey { key: SigningKey::from_bytes(&seed) }
    }

    /// Reads a secret key file.
    pub fn load(path: &Path) -> Result<SecretKey> {
        let text = read_key_file(path, "secret")?;
        let seed = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .and_then(from_hex::<32>)
            .ok_or_else(|| Error::ParseKey { path: path.to_owned(), kind: "secret" })?;
        Ok(SecretKey::from_seed(seed))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey { key: self.key.verifying_key() }
    }

    /// Signs manifest bytes (the domain string is prepended here).
    pub fn sign_manifest(&self, manifest: &[u8]) -> SignatureRecord {
        let sig = self.key.sign(&signed_message(manifest));
        SignatureRecord { key_id: self.public().id().0, signature: sig.to_bytes() }
    }

    /// Writes `NAME.key` (mode 0600, never over an existing file) and `NAME.pub`.
    pub fn write_pair(&self, base: &Path) -> Result<(PathBuf, PathBuf)> {
        let secret_path = with_suffix(base, "key");
        let public_path = with_suffix(base, "pub");
        for p in [&secret_path, &public_path] {
            if p.exists() {
                return Err(Error::KeyExists { path: p.clone() });
            }
        }
        let mut f =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&secret_path).map_err(|source| {
                match source.kind() {
                    std::io::ErrorKind::AlreadyExists => Error::KeyExists { path: secret_path.clone() },
                    _ => Error::WriteFile { path: secret_path.clone(), source },
                }
            })?;
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::WriteFile { path, source }
        };
        writeln!(f, "{SECRET_PREFIX}{}", to_hex(self.key.as_bytes())).map_err(werr(&secret_path))?;
        f.sync_all().map_err(werr(&secret_path))?;
        let mut f = crate::fsutil::AtomicFile::create(&public_path)?;
        writeln!(f, "{PUBLIC_PREFIX}{}", to_hex(self.public().key.as_bytes())).map_err(werr(&public_path))?;
        f.commit()?;
        Ok((secret_path, public_path))
    }
}

/// A public key with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Reads a public key file.
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = read_key_file(path, "public")?;
        let bytes = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .and_then(from_hex::<32>)
            .ok_or_else(|| Error::ParseKey { path: path.to_owned(), kind: "public" })?;
        let key =
            VerifyingKey::from_bytes(&bytes).map_err(|_| Error::ParseKey { path: path.to_owned(), kind: "public" })?;
        Ok(PublicKey { key })
    }

    /// The key id.
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.key)
    }
}

/// The keys a verifier trusts.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<PublicKey>,
}

impl Keyring {
    /// A keyring of the given keys.
    pub fn from_keys(keys: Vec<PublicKey>) -> Keyring {
        Keyring { keys }
    }

    /// Every `*.pub` file in a directory (or a single `.pub` file).
    ///
    /// An entry named `*.pub` that is not a regular file (or a symbolic link to one) refuses the whole keyring, as a
    /// malformed key does: it is a trust anchor someone meant to add, and skipping it would turn a mistake or a
    /// planted FIFO into a quiet "not enough signatures" later. Other names are not opened at all.
    pub fn load(path: &Path) -> Result<Keyring> {
        if path.is_file() {
            return Ok(Keyring { keys: vec![PublicKey::load(path)?] });
        }
        let rd = fs::read_dir(path).map_err(|source| Error::ReadFile { path: path.to_owned(), source })?;
        let mut files = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|source| Error::ReadFile { path: path.to_owned(), source })?;
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "pub") {
                files.push(p);
            }
        }
        files.sort();
        let keys = files.iter().map(|p| PublicKey::load(p)).collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(Error::EmptyKeyring { path: path.to_owned() });
        }
        Ok(Keyring { keys })
    }

    /// The key with this id, if trusted.
    pub fn get(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.id() == *id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What one signature record says, checked against a keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerStatus {
    /// Made by a trusted key, and it verifies.
    Valid,
    /// Claims a trusted key id but does not verify.
    Invalid,
    /// Made by a key the keyring does not hold (not checked).
    Untrusted,
}

/// One signature record's key id and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignerCheck {
    /// The key id the record names.
    pub key_id: KeyId,
    /// The outcome.
    pub status: SignerStatus,
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + manifest.len());
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(manifest);
    m
}

/// Checks every signature record against the keyring.
pub fn check_signatures(manifest: &[u8], records: &[SignatureRecord], keyring: &Keyring) -> Vec<SignerCheck> {
    let msg = signed_message(manifest);
    records
        .iter()
        .map(|r| {
            let key_id = KeyId(r.key_id);
            let status = match keyring.get(&key_id) {
                None => SignerStatus::Untrusted,
                Some(pk) => {
                    let sig = ed25519_dalek::Signature::from_bytes(&r.signature);
                    if pk.key.verify_strict(&msg, &sig).is_ok() {
                        SignerStatus::Valid
                    } else {
                        SignerStatus::Invalid
                    }
                }
            };
            SignerCheck { key_id, status }
        })
        .collect()
}

/// Requires no invalid signature by a trusted key and at least `threshold` distinct trusted keys that verify.
pub fn require_threshold(checks: &[SignerCheck], threshold: usize) -> Result<()> {
    if let Some(bad) = checks.iter().find(|c| c.status == SignerStatus::Invalid) {
        return Err(Error::BadSignature { key_id: bad.key_id.to_string() });
    }
    let mut valid: Vec<KeyId> = checks.iter().filter(|c| c.status == SignerStatus::Valid).map(|c| c.key_id).collect();
    valid.sort();
    valid.dedup();
    if valid.len() < threshold.max(1) {
        return Err(Error::NotEnoughSignatures { valid: valid.len(), threshold: threshold.max(1) });
    }
    Ok(())
}

fn with_suffix(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_check_against_keyring() {
        let a = SecretKey::from_seed([1; 32]);
        let b = SecretKey::from_seed([2; 32]);
        let ring = Keyring::from_keys(vec![a.public(), b.public()]);
        let m = b"{\"x\":1}";
        let ra = a.sign_manifest(m);
        let rb = b.sign_manifest(m);
        let checks = check_signatures(m, &[ra.clone(), rb.clone()], &ring);
        assert!(checks.iter().all(|c| c.status == SignerStatus::Valid));
        assert!(require_threshold(&checks, 2).is_ok());
        // The same key twice counts once.
        let checks = check_signatures(m, &[ra.clone(), ra.clone()], &ring);
        assert!(matches!(require_threshold(&checks, 2), Err(Error::NotEnoughSignatures { valid: 1, threshold: 2 })));
        // A different message does not verify.
        let checks = check_signatures(b"{\"x\":2}", &[ra], &ring);
        assert!(matches!(require_threshold(&checks, 1), Err(Error::BadSignature { .. })));
        // An unknown signer is ignored.
        let c = SecretKey::from_seed([3; 32]);
        let checks = check_signatures(m, &[c.sign_manifest(m)], &ring);
        assert_eq!(checks[0].status, SignerStatus::Untrusted);
        assert!(matches!(require_threshold(&checks, 1), Err(Error::NotEnoughSignatures { valid: 0, .. })));
    }

    /// Key files and keyring entries are read only when they are regular files, and only up to a bound: a huge key
    /// file, a link to a device and a FIFO are refused, naming the file, before anything is read.
    #[test]
    fn issue_14_key_files_are_bounded_and_typed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = dir.path().join("ring");
        fs::create_dir(&ring).expect("ring");
        let (secret, public) = SecretKey::from_seed([1; 32]).write_pair(&dir.path().join("k")).expect("keys");
        fs::copy(&public, ring.join("k.pub")).expect("trust");
        assert_eq!(Keyring::load(&ring).expect("a good keyring").len(), 1);
        let refused = |entry: &str, expected: fn(&Error) -> bool| {
            let r = Keyring::load(&ring);
            assert!(matches!(&r, Err(e) if expected(e)), "{entry}: {r:?}");
            fs::remove_file(ring.join(entry)).expect("remove");
        };
        // A key file of a mebibyte: refused by its size, not read.
        let big = fs::File::create(ring.join("big.pub")).expect("create");
        big.set_len(1 << 20).expect("a sparse mebibyte");
        refused("big.pub", |e| matches!(e, Error::FileTooLarge { size_bytes: 1_048_576, max_bytes: 1024, .. }));
        for (name, target) in [("null.pub", "/dev/null"), ("zero.pub", "/dev/zero")] {
            std::os::unix::fs::symlink(target, ring.join(name)).expect("symlink");
            refused(name, |e| matches!(e, Error::FileType { found: "character device", .. }));
        }
        let made = std::process::Command::new("mkfifo").arg(ring.join("fifo.pub")).status().expect("mkfifo");
        assert!(made.success());
        refused("fifo.pub", |e| matches!(e, Error::FileType { found: "FIFO", .. }));
        fs::create_dir(ring.join("dir.pub")).expect("mkdir");
        let r = Keyring::load(&ring);
        assert!(matches!(r, Err(Error::FileType { found: "directory", .. })), "{r:?}");
        fs::remove_dir(ring.join("dir.pub")).expect("rmdir");
        // Entries with other names are not opened, whatever they are.
        std::os::unix::fs::symlink("/dev/zero", ring.join("zero.txt")).expect("symlink");
        assert_eq!(Keyring::load(&ring).expect("other names are ignored").len(), 1);
        // The secret key file has the same bound.
        fs::OpenOptions::new().append(true).open(&secret).expect("open").set_len(1 << 20).expect("grow");
        let r = SecretKey::load(&secret);
        assert!(matches!(r, Err(Error::FileTooLarge { .. })), "{:?}", r.err());
    }

    #[test]
    fn keygen_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("k");
        let k = SecretKey::generate();
        let (sk, pk) = k.write_pair(&base).expect("first write");
        assert_eq!(fs::metadata(&sk).expect("key").permissions().mode() & 0o777, 0o600);
        assert_eq!(SecretKey::load(&sk).expect("load").public(), PublicKey::load(&pk).expect("load pub"));
        assert!(matches!(SecretKey::generate().write_pair(&base), Err(Error::KeyExists { .. })));
        use std::os::unix::fs::PermissionsExt;
    }
}
