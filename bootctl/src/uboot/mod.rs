//! The U-Boot environment: the block U-Boot's `env save` writes and `fw_printenv`/`fw_setenv` (libubootenv) and
//! `mkenvimage` read and write, byte for byte, and the `/etc/fw_env.config` file that says where it lives.
//!
//! It is a module of its own because it is a format with its own error type; the crate-level error can wrap
//! [`Error`] and add which environment it concerns. Its parts, one concern each, are private modules re-exported
//! here, so every item is named `uboot::Item`:
//!
//! - `codec`: one copy's bytes ([`Env`], [`encode`], [`decode_single`], [`decode_redundant`]);
//! - `copies`: which of two copies U-Boot reads and which a save replaces ([`FlagScheme`], [`select`]);
//! - `store`: the environment on its device or devices, read and written as U-Boot does ([`EnvStore`]);
//! - `config`: the `fw_env.config` file that says where the copies live ([`Config`]);
//! - `error`: what can go wrong in any of them ([`Error`]).
//!
//! A redundant environment has two copies (two places in one file or device, or two devices). The copy with a
//! good CRC wins; when both are good, the flags byte decides ([`FlagScheme`]). Every save writes the copy that did
//! not win, with the next flags value, so a power cut during a save leaves the winning copy untouched: a torn copy
//! fails its CRC and the other one is read. [`EnvStore`] does the same and syncs before returning.

mod codec;
mod config;
mod copies;
mod error;
mod store;

pub use crate::blockdev::{Access, BlockDevice, FileDevice};
pub use codec::{
    decode_redundant, decode_single, encode, encode_redundant, encode_single, Env, Header, CRC_LEN, PAD_MKENVIMAGE,
    PAD_UBOOT,
};
pub use config::{Config, ConfigLine, FW_ENV_CONFIG, MAX_CONFIG_BYTES};
pub use copies::{select, CopyChoice, CopyId, FlagScheme, OtherCopy, FLAG_ACTIVE, FLAG_OBSOLETE};
pub use error::{Error, Result};
pub use store::{CopyAt, EnvStore, Written};

/// What the tests of every part build environments with.
#[cfg(test)]
mod test_env {
    use super::Env;

    /// An environment holding `vars`.
    pub(super) fn env(vars: &[(&str, &str)]) -> Env {
        let mut e = Env::new();
        for (n, v) in vars {
            e.set(n, v).expect("valid variable");
        }
        e
    }
}
