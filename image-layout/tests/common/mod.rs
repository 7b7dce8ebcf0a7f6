//! What the bad-input and property tests share: the signer of their bundles and the keyring that trusts it.

use std::sync::OnceLock;

use image_layout::keys::{Keyring, SecretKey};
use image_layout::reader::Policy;

/// The seed of the signer of every bundle in these tests.
pub const SEED: [u8; 32] = [7; 32];

/// The signer, made once: deriving a public key costs a scalar multiplication, which is slow in a debug build.
pub fn key() -> &'static SecretKey {
    static K: OnceLock<SecretKey> = OnceLock::new();
    K.get_or_init(|| SecretKey::from_seed(SEED))
}

/// The keyring of the signer alone.
pub fn ring() -> &'static Keyring {
    static R: OnceLock<Keyring> = OnceLock::new();
    R.get_or_init(|| Keyring::from_keys(vec![key().public()]))
}

/// One trusted signature, no expiry check.
pub fn policy() -> Policy {
    Policy::ignoring_expiry()
}
