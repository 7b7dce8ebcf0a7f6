//! The `--json` output of `edge-image`: each report is printed either as JSON or formatted for a person.
//!
//! Field names are an interface, documented in docs/cli.md in the words of docs/json.md. Each report starts with its
//! `schema`, `edge-image.<verb>/<major>`: adding a field keeps the major version, removing, renaming or changing
//! the meaning of one takes the next.

use serde::Serialize;

/// `schema` of `keygen --json`.
pub const KEYGEN_SCHEMA: &str = "edge-image.keygen/1";
/// `schema` of `build --json`.
pub const BUILD_SCHEMA: &str = "edge-image.build/1";
/// `schema` of `inspect --json`.
pub const INSPECT_SCHEMA: &str = "edge-image.inspect/1";
/// `schema` of `verify --json`.
pub const VERIFY_SCHEMA: &str = "edge-image.verify/1";
/// `schema` of `extract --json`.
pub const EXTRACT_SCHEMA: &str = "edge-image.extract/1";
/// `schema` of `sign --json`.
pub const SIGN_SCHEMA: &str = "edge-image.sign/1";
/// `schema` of `delta-plan --json`.
pub const DELTA_PLAN_SCHEMA: &str = "edge-image.delta-plan/1";
/// `schema` of `disk --json`.
pub const DISK_SCHEMA: &str = "edge-image.disk/1";

/// `edge-image keygen`.
#[derive(Debug, Serialize)]
pub struct KeygenReport {
    /// [`KEYGEN_SCHEMA`].
    pub schema: &'static str,
    /// The key id.
    pub key_id: String,
    /// The secret key file.
    pub secret_key: String,
    /// The public key file.
    pub public_key: String,
}

/// A payload as `inspect` and `build` show it.
#[derive(Debug, Serialize)]
pub struct PayloadReport {
    /// Name.
    pub name: String,
    /// Raw size.
    pub size_bytes: u64,
    /// Chunk size.
    pub chunk_size: u32,
    /// Number of chunks.
    pub n_chunks: u64,
    /// Block size.
    pub block_size: u32,
    /// Delta frame size.
    pub frame_size: u32,
    /// Bytes of stored chunks (what a full install fetches for this payload, with its index).
    pub chunks_bytes: u64,
    /// Bytes of the delta section (delta index and frames).
    pub delta_bytes: u64,
    /// `size_bytes / chunks_bytes`.
    pub compression_ratio: f64,
}

/// One signature record.
#[derive(Debug, Serialize)]
pub struct SignerReport {
    /// The key id.
    pub key_id: String,
    /// What its check found.
    pub status: SignerState,
}

/// What a signature record's check found (docs/cli.md, `inspect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignerState {
    /// Made by a trusted key, and it verifies.
    Valid,
    /// Claims a trusted key id but does not verify.
    Invalid,
    /// Made by a key the keyring does not hold (not checked).
    Untrusted,
    /// Not checked: no keyring was given.
    Unchecked,
}

impl SignerState {
    /// The word, as in JSON.
    pub fn word(self) -> &'static str {
        match self {
            SignerState::Valid => "valid",
            SignerState::Invalid => "invalid",
            SignerState::Untrusted => "untrusted",
            SignerState::Unchecked => "unchecked",
        }
    }
}

impl From<image_layout::keys::SignerStatus> for SignerState {
    fn from(s: image_layout::keys::SignerStatus) -> SignerState {
        use image_layout::keys::SignerStatus;
        match s {
            SignerStatus::Valid => SignerState::Valid,
            SignerStatus::Invalid => SignerState::Invalid,
            SignerStatus::Untrusted => SignerState::Untrusted,
        }
    }
}

impl std::fmt::Display for SignerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// `edge-image inspect` and `edge-image build`.
#[derive(Debug, Serialize)]
pub struct InspectReport {
    /// [`INSPECT_SCHEMA`], or [`BUILD_SCHEMA`] for `build`.
    pub schema: &'static str,
    /// Bundle size.
    pub bundle_bytes: u64,
    /// Bytes a full install reads.
    pub full_install_bytes: u64,
    /// blake3 of the manifest bytes.
    pub manifest_blake3: String,
    /// The manifest as signed.
    pub manifest: image_layout::manifest::Manifest,
    /// Per-payload figures.
    pub payloads: Vec<PayloadReport>,
    /// Signatures.
    pub signers: Vec<SignerReport>,
}

/// `edge-image verify`.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// [`VERIFY_SCHEMA`].
    pub schema: &'static str,
    /// Always true when printed (a failure exits non-zero).
    pub verified: bool,
    /// The bundle's name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Security version.
    pub security_version: u64,
    /// Key ids whose signatures verified.
    pub valid_signers: Vec<String>,
    /// Chunks verified, all payloads.
    pub n_chunks_verified: u64,
    /// blake3 of the manifest bytes.
    pub manifest_blake3: String,
}

/// `edge-image extract`.
#[derive(Debug, Serialize)]
pub struct ExtractReport {
    /// [`EXTRACT_SCHEMA`].
    pub schema: &'static str,
    /// The payload.
    pub payload: String,
    /// Bytes written.
    pub size_bytes: u64,
    /// Where.
    pub output: String,
}

/// `edge-image sign`.
#[derive(Debug, Serialize)]
pub struct SignReport {
    /// [`SIGN_SCHEMA`].
    pub schema: &'static str,
    /// The key id that signed.
    pub key_id: String,
    /// Signatures now on the bundle.
    pub n_signatures: usize,
}

/// `edge-image delta-plan`.
#[derive(Debug, Serialize)]
pub struct DeltaPlanReport {
    /// [`DELTA_PLAN_SCHEMA`].
    pub schema: &'static str,
    /// The payload planned.
    pub payload: String,
    /// Its raw size.
    pub image_bytes: u64,
    /// Raw bytes reused from the old image.
    pub reused_bytes: u64,
    /// Raw bytes that come from the bundle.
    pub fetched_raw_bytes: u64,
    /// Head and index bytes read before planning.
    pub metadata_bytes: u64,
    /// Bytes of the coalesced ranges.
    pub range_bytes: u64,
    /// Everything fetched: metadata plus ranges.
    pub fetched_bytes: u64,
    /// What a full install of the same bundle reads, for comparison.
    pub full_install_bytes: u64,
    /// Chunks taken wholly from the old image.
    pub n_chunks_local: u64,
    /// Chunks assembled from old blocks and fetched frames.
    pub n_chunks_frames: u64,
    /// Chunks fetched whole.
    pub n_chunks_whole: u64,
    /// Number of ranges.
    pub n_ranges: usize,
    /// The ranges, `[start, end)` absolute offsets in the bundle.
    pub ranges: Vec<[u64; 2]>,
}

/// `edge-image disk`.
#[derive(Debug, Serialize)]
pub struct DiskReport {
    /// [`DISK_SCHEMA`].
    pub schema: &'static str,
    /// The disk image written.
    pub output: String,
    /// Its size.
    pub size_bytes: u64,
    /// The disk GUID.
    pub disk_guid: String,
    /// The partitions, in table order.
    pub partitions: Vec<PartitionReport>,
}

/// One partition of a disk built by `edge-image disk`.
#[derive(Debug, Serialize)]
pub struct PartitionReport {
    /// Its number (1 is the first; GRUB's `gptN`, U-Boot's `DEV:N`).
    pub number: u32,
    /// Its GPT name (`PARTLABEL=`).
    pub label: String,
    /// Its type GUID.
    pub type_guid: String,
    /// Its unique GUID (`PARTUUID=`).
    pub unique_guid: String,
    /// First sector (512 bytes each).
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// Its size.
    pub size_bytes: u64,
    /// `fat12` or `fat16` for the ESP or a U-Boot board's boot partition, `u-boot-env` for its state partition (a raw
    /// redundant U-Boot environment), `ext4` for the data partition, null for the slots.
    pub filesystem: Option<String>,
    /// For a slot, the bundle written into it; null for the other partitions and an empty slot B.
    pub bundle: Option<SlotBundleReport>,
}

/// The bundle whose payload a slot holds.
#[derive(Debug, Serialize)]
pub struct SlotBundleReport {
    /// The bundle file.
    pub file: String,
    /// The manifest's name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
    /// The manifest's anti-rollback counter.
    pub security_version: u64,
    /// blake3 of the manifest bytes: the bundle's identity.
    pub manifest_blake3: String,
    /// The payload written.
    pub payload: String,
    /// Its size (the rest of the slot is zeros).
    pub payload_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signer's status is the word docs/cli.md documents, in JSON and in text alike.
    #[test]
    fn issue_15_signer_states_are_the_documented_words() {
        use image_layout::keys::SignerStatus;
        let check = |state: SignerState, word: &str| {
            assert_eq!(serde_json::to_string(&state).expect("serializes"), format!("\"{word}\""));
            assert_eq!(state.to_string(), word);
        };
        check(SignerStatus::Valid.into(), "valid");
        check(SignerStatus::Invalid.into(), "invalid");
        check(SignerStatus::Untrusted.into(), "untrusted");
        check(SignerState::Unchecked, "unchecked");
    }
}
