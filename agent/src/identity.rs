//! The node's identity: an ed25519 key made on first start on the data partition (which outlives both slots), and
//! the node id derived from its public half (`fleet_wire::node::NodeId::of_key`).
//!
//! A key that exists but cannot be read or parsed is an error naming the file, never replaced: a new key is a new
//! node to the endpoint, so that is the operator's decision (they delete the file), not the agent's.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use ed25519_dalek::SigningKey;
use fleet_wire::node::NodeId;

use crate::error::{Error, Result};

/// The first word of a node key file; the 32-byte seed follows in lowercase hex.
pub const KEY_PREFIX: &str = "edge-agent-node-key-v1:";

/// The largest key file read (a key line is 88 bytes).
const MAX_KEY_BYTES: u64 = 1024;

/// The node's key and id.
pub struct Identity {
    /// The signing key.
    pub key: SigningKey,
    /// The id derived from it.
    pub id: NodeId,
}

impl Identity {
    /// The identity of a key.
    pub fn of(key: SigningKey) -> Identity {
        let id = NodeId::of_key(&key.verifying_key());
        Identity { key, id }
    }

    /// Loads the key at `path`, or makes one there when no file exists; returns the identity and whether it is new.
    pub fn load_or_create(path: &Path) -> Result<(Identity, bool)> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok((Identity::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut rand_core::OsRng);
                write_key(path, &key)?;
                log::info!("made a new node key {}", path.display());
                Ok((Identity::of(key), true))
            }
            Err(source) => Err(Error::ReadKey { path: path.to_owned(), source }),
        }
    }

    /// Loads the key at `path`.
    pub fn load(path: &Path) -> Result<Identity> {
        let bytes = image_layout::fsutil::read_bounded(path, MAX_KEY_BYTES).map_err(|e| match e {
            image_layout::Error::ReadFile { source, .. } => Error::ReadKey { path: path.to_owned(), source },
            _ => Error::CorruptKey { path: path.to_owned(), detail: "not a regular file of at most 1024 bytes" },
        })?;
        let corrupt = |detail| Error::CorruptKey { path: path.to_owned(), detail };
        let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("not text"))?;
        let hex = text.trim_end_matches('\n').strip_prefix(KEY_PREFIX).ok_or(corrupt("no edge-agent key line"))?;
        let seed = from_hex32(hex).ok_or(corrupt("the seed is not 64 hex digits"))?;
        Ok(Identity::of(SigningKey::from_bytes(&seed)))
    }
}

/// Writes a key file: mode 0600 before a byte of the key is in it, then fsync, rename, fsync of the directory.
fn write_key(path: &Path, key: &SigningKey) -> Result<()> {
    let werr = |source| Error::WriteFile { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let mut f = image_layout::fsutil::AtomicFile::create(path).map_err(|e| werr(std::io::Error::other(e)))?;
    f.file().set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(werr)?;
    let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    writeln!(f, "{KEY_PREFIX}{hex}").map_err(werr)?;
    // Durability: a cut before the rename leaves no key (the next start makes another, and nothing was enrolled
    // with this one); after it, the whole key, synced, which every later start reads.
    f.commit().map_err(|e| werr(std::io::Error::other(e)))
}

fn from_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn the_first_start_makes_a_private_key_and_later_ones_read_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data/edge-agent/node.key");
        let (first, new) = Identity::load_or_create(&path).expect("make");
        assert!(new);
        assert_eq!(std::fs::metadata(&path).expect("stat").mode() & 0o777, 0o600);
        let (again, new) = Identity::load_or_create(&path).expect("read");
        assert!(!new);
        assert_eq!(again.id, first.id);
        assert_eq!(again.key.to_bytes(), first.key.to_bytes());
        assert_eq!(std::fs::read_dir(path.parent().expect("dir")).expect("ls").count(), 1, "no temp file left");
    }

    #[test]
    fn a_corrupt_key_is_an_error_and_is_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let good = format!("{KEY_PREFIX}{}\n", "ab".repeat(32));
        std::fs::write(&path, &good).expect("write");
        Identity::load(&path).expect("a good key");
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            good.as_bytes()[..good.len() - 3].to_vec(),
            good.replace("edge-agent", "edge-image").into_bytes(),
            good.replace("ab", "AB").into_bytes(),
            vec![0xff; 90],
            vec![b'#'; 2000],
        ];
        for bytes in cases {
            std::fs::write(&path, &bytes).expect("write");
            let r = Identity::load_or_create(&path);
            assert!(matches!(&r, Err(Error::CorruptKey { path: p, .. }) if *p == path), "{r:?}", r = r.as_ref().err());
            assert_eq!(std::fs::read(&path).expect("read"), bytes, "left as it was");
        }
        std::fs::remove_file(&path).expect("rm");
        std::fs::create_dir(&path).expect("a directory in its place");
        let r = Identity::load_or_create(&path);
        assert!(matches!(&r, Err(Error::CorruptKey { .. })), "{:?}", r.as_ref().err());
    }

    #[test]
    fn an_unreadable_key_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        std::fs::write(&path, format!("{KEY_PREFIX}{}\n", "ab".repeat(32))).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        if std::fs::read(&path).is_ok() {
            // Root reads any file; the refusal is tested where it can happen.
            return;
        }
        let r = Identity::load_or_create(&path);
        assert!(matches!(&r, Err(Error::ReadKey { .. })), "{:?}", r.as_ref().err());
    }
}
