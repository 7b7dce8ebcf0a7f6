//! The manifest: the signed JSON document at the front of every bundle, and the rules it must satisfy.
//!
//! This is a boundary type (it is on the wire and on disk), so it alone derives `Serialize`/`Deserialize`;
//! changing it means a format version bump and an update of docs/bundle-format.md, "Manifest".

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::format::{
    compress_bound, BLOCK_SIZE_RANGE, CHUNK_SIZE_RANGE, FINGERPRINT_LEN, FORMAT_VERSION, FRAME_SIZE_LEN,
    INDEX_ENTRY_LEN, MAX_DELTA_INDEX_RAW_LEN, MAX_INDEX_LEN, MAX_PAYLOADS, MAX_PAYLOAD_SIZE,
};

/// The bundle manifest; docs/bundle-format.md, "Manifest".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The format version; equal to the header's.
    pub format: u16,
    /// What the bundle is (free text, e.g. `edge-stack`).
    pub name: String,
    /// The version of the stack, as the operator names it.
    pub version: String,
    /// Monotonic anti-rollback counter: a node refuses a bundle below the one it runs.
    pub security_version: u64,
    /// The board string a node must match.
    pub compatible: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Optional expiry time, RFC 3339; a verifier refuses the bundle after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The stack inside (components and versions), for reporting; any JSON object.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub stack: serde_json::Value,
    /// The zstd levels used (informational: the reader does not need them).
    pub compression: Compression,
    /// The payloads, in body order.
    pub payloads: Vec<Payload>,
}

/// How the payloads were compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    /// Always `zstd`.
    pub algorithm: Algorithm,
    /// The level of the chunks (the full-install section).
    pub level: i32,
    /// The level of the delta frames.
    pub delta_level: i32,
}

/// The compression algorithm; only zstd exists in format 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Zstandard (RFC 8878) frames.
    Zstd,
}

/// One payload (a slot image or another file) and where its sections sit in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// The payload's name, e.g. `rootfs`.
    pub name: String,
    /// Raw size of the payload.
    pub size_bytes: u64,
    /// The block: unit of fingerprints and of reuse from the running slot.
    pub block_size: u32,
    /// The chunk: unit of the full-install section, of verification and of resume.
    pub chunk_size: u32,
    /// The frame: unit of the delta section.
    pub frame_size: u32,
    /// The chunk index: one entry per chunk.
    pub index: Section,
    /// The chunk area: the stored chunks, back to back.
    pub chunks: Area,
    /// The delta index: block fingerprints and frame sizes, one zstd frame.
    pub delta_index: Section,
    /// The frame area: the stored delta frames, back to back.
    pub frames: Area,
}

/// A hashed section of the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Offset from the start of the body.
    pub offset: u64,
    /// Stored size.
    pub size_bytes: u64,
    /// blake3 of the stored bytes, lowercase hex.
    pub blake3: String,
}

/// An area of the body whose pieces are hashed by an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    /// Offset from the start of the body.
    pub offset: u64,
    /// Size.
    pub size_bytes: u64,
}

impl Payload {
    /// Number of chunks.
    pub fn n_chunks(&self) -> u64 {
        self.size_bytes.div_ceil(u64::from(self.chunk_size))
    }
    /// Number of blocks.
    pub fn n_blocks(&self) -> u64 {
        self.size_bytes.div_ceil(u64::from(self.block_size))
    }
    /// Number of delta frames.
    pub fn n_frames(&self) -> u64 {
        self.size_bytes.div_ceil(u64::from(self.frame_size))
    }
    /// Raw size of chunk `chunk_idx`.
    pub fn chunk_raw_size(&self, chunk_idx: u64) -> u32 {
        let start = chunk_idx * u64::from(self.chunk_size);
        (self.size_bytes - start).min(u64::from(self.chunk_size)) as u32
    }
    /// Raw size of frame `frame_idx`.
    pub fn frame_raw_size(&self, frame_idx: u64) -> u32 {
        let start = frame_idx * u64::from(self.frame_size);
        (self.size_bytes - start).min(u64::from(self.frame_size)) as u32
    }
    /// Size of the decompressed delta index.
    pub fn delta_index_raw_len(&self) -> u64 {
        self.n_blocks() * FINGERPRINT_LEN as u64 + self.n_frames() * FRAME_SIZE_LEN as u64
    }
}

fn field_err(field: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::ManifestField { field: field.into(), detail: detail.into() }
}

/// The longest payload name, in bytes.
pub const MAX_PAYLOAD_NAME_LEN: usize = 64;

/// Checks a payload name against the manifest's rule (docs/bundle-format.md, "Manifest"): 1 to
/// [`MAX_PAYLOAD_NAME_LEN`] of `[A-Za-z0-9._-]`. On its own, so that `edge-image build` can check `--payload` names
/// before it reads any payload; the error says what is wrong and what was expected.
pub fn check_payload_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_PAYLOAD_NAME_LEN
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!("{name:?} is not 1..={MAX_PAYLOAD_NAME_LEN} of [A-Za-z0-9._-]"));
    }
    Ok(())
}

/// Parses an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Formats a time as RFC 3339 in UTC.
pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).expect("every UTC time with a 4-digit year formats as RFC 3339")
}

impl Manifest {
    /// Parses manifest bytes and checks every rule of docs/bundle-format.md, "Manifest".
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|source| Error::ParseManifest { source })?;
        m.validate()?;
        Ok(m)
    }

    /// Encodes the manifest as the exact bytes that get signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest holds only strings, numbers and JSON values")
    }

    /// The expiry time, if any.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.expires.as_deref().and_then(parse_time)
    }

    /// Checks the rules every manifest must satisfy: versions, sizes within limits, and a body laid out as one
    /// contiguous run of sections in the documented order.
    pub fn validate(&self) -> Result<()> {
        if self.format != FORMAT_VERSION {
            return Err(field_err("format", format!("{} is not {FORMAT_VERSION}", self.format)));
        }
        if parse_time(&self.created).is_none() {
            return Err(field_err("created", format!("{:?} is not an RFC 3339 time", self.created)));
        }
        if let Some(e) = &self.expires {
            if parse_time(e).is_none() {
                return Err(field_err("expires", format!("{e:?} is not an RFC 3339 time")));
            }
        }
        if !self.stack.is_null() && !self.stack.is_object() {
            return Err(field_err("stack", "must be a JSON object"));
        }
        if self.payloads.is_empty() || self.payloads.len() > MAX_PAYLOADS {
            return Err(field_err(
                "payloads",
                format!("{} payloads, expected 1..={MAX_PAYLOADS}", self.payloads.len()),
            ));
        }
        let mut expected = 0u64;
        let mut place = |field: String, offset: u64, size: u64| -> Result<()> {
            if offset != expected {
                return Err(field_err(
                    field,
                    format!("offset {offset}, expected {expected} (sections are contiguous)"),
                ));
            }
            expected =
                offset.checked_add(size).ok_or_else(|| field_err("payloads", "sections overflow a 64-bit offset"))?;
            Ok(())
        };
        for (i, p) in self.payloads.iter().enumerate() {
            let f = |name: &str| format!("payloads[{i}].{name}");
            check_payload_name(&p.name).map_err(|detail| field_err(f("name"), detail))?;
            if self.payloads[..i].iter().any(|q| q.name == p.name) {
                return Err(field_err(f("name"), format!("{:?} appears twice", p.name)));
            }
            if p.size_bytes == 0 || p.size_bytes > MAX_PAYLOAD_SIZE {
                return Err(field_err(
                    f("size_bytes"),
                    format!("{} out of range 1..={MAX_PAYLOAD_SIZE}", p.size_bytes),
                ));
            }
            if !BLOCK_SIZE_RANGE.contains(&p.block_size) || !p.block_size.is_power_of_two() {
                return Err(field_err(
                    f("block_size"),
                    format!("{} is not a power of two in 512..=65536", p.block_size),
                ));
            }
            if !CHUNK_SIZE_RANGE.contains(&p.chunk_size) || p.chunk_size % p.block_size != 0 {
                return Err(field_err(
                    f("chunk_size"),
                    format!("{} out of range 4096..=67108864 or not a multiple of block_size", p.chunk_size),
                ));
            }
            if p.frame_size < p.block_size || p.frame_size % p.block_size != 0 || p.chunk_size % p.frame_size != 0 {
                return Err(field_err(
                    f("frame_size"),
                    format!("{} is not a multiple of block_size that divides chunk_size", p.frame_size),
                ));
            }
            let index_len = p.n_chunks() * INDEX_ENTRY_LEN as u64;
            if index_len > MAX_INDEX_LEN || p.index.size_bytes != index_len {
                return Err(field_err(
                    f("index.size_bytes"),
                    format!("{}, expected {index_len} (at most {MAX_INDEX_LEN})", p.index.size_bytes),
                ));
            }
            if p.delta_index_raw_len() > MAX_DELTA_INDEX_RAW_LEN
                || p.delta_index.size_bytes == 0
                || p.delta_index.size_bytes > compress_bound(p.delta_index_raw_len()) + 64
            {
                return Err(field_err(
                    f("delta_index.size_bytes"),
                    format!("{} out of range", p.delta_index.size_bytes),
                ));
            }
            let max_stored = |n: u64, unit: u32| n.saturating_mul(compress_bound(u64::from(unit)));
            if p.chunks.size_bytes > max_stored(p.n_chunks(), p.chunk_size) {
                return Err(field_err(
                    f("chunks.size_bytes"),
                    format!("{} exceeds the largest possible", p.chunks.size_bytes),
                ));
            }
            if p.frames.size_bytes > max_stored(p.n_frames(), p.frame_size) {
                return Err(field_err(
                    f("frames.size_bytes"),
                    format!("{} exceeds the largest possible", p.frames.size_bytes),
                ));
            }
            for (name, s) in [("index", &p.index), ("delta_index", &p.delta_index)] {
                if crate::format::from_hex::<32>(&s.blake3).is_none() {
                    return Err(field_err(f(&format!("{name}.blake3")), "is not 64 hex digits"));
                }
            }
        }
        for (i, p) in self.payloads.iter().enumerate() {
            place(format!("payloads[{i}].index"), p.index.offset, p.index.size_bytes)?;
            place(format!("payloads[{i}].chunks"), p.chunks.offset, p.chunks.size_bytes)?;
        }
        for (i, p) in self.payloads.iter().enumerate() {
            place(format!("payloads[{i}].delta_index"), p.delta_index.offset, p.delta_index.size_bytes)?;
            place(format!("payloads[{i}].frames"), p.frames.offset, p.frames.size_bytes)?;
        }
        Ok(())
    }

    /// Bytes of the body (everything after the signatures).
    pub fn body_len(&self) -> u64 {
        self.payloads.last().map(|p| p.frames.offset + p.frames.size_bytes).unwrap_or(0)
    }

    /// Bytes of the body a full install reads: the chunk indexes and chunks, not the delta sections.
    pub fn full_install_body_len(&self) -> u64 {
        self.payloads.last().map(|p| p.chunks.offset + p.chunks.size_bytes).unwrap_or(0)
    }

    /// The payload called `name`, with its position.
    pub fn payload(&self, name: &str) -> Result<(usize, &Payload)> {
        self.payloads
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name)
            .ok_or_else(|| Error::NoSuchPayload { name: name.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Manifest {
        let size = 3 * 65536 + 100;
        let p = Payload {
            name: "rootfs".into(),
            size_bytes: size,
            block_size: 4096,
            chunk_size: 65536,
            frame_size: 8192,
            index: Section { offset: 0, size_bytes: 4 * 80, blake3: "00".repeat(32) },
            chunks: Area { offset: 320, size_bytes: 1000 },
            delta_index: Section { offset: 1320, size_bytes: 50, blake3: "11".repeat(32) },
            frames: Area { offset: 1370, size_bytes: 500 },
        };
        Manifest {
            format: 1,
            name: "edge-stack".into(),
            version: "1".into(),
            security_version: 1,
            compatible: "b".into(),
            created: "2026-01-01T00:00:00Z".into(),
            expires: None,
            stack: serde_json::Value::Null,
            compression: Compression { algorithm: Algorithm::Zstd, level: 3, delta_level: 1 },
            payloads: vec![p],
        }
    }

    fn check(edit: impl Fn(&mut Manifest), field: Option<&str>) {
        let mut m = good();
        edit(&mut m);
        match (m.validate(), field) {
            (Ok(()), None) => {}
            (Err(Error::ManifestField { field: f, .. }), Some(want)) => assert_eq!(f, want),
            (r, want) => panic!("expected {want:?}, got {r:?}"),
        }
        // Whatever validate says, parse says the same about the serialized form.
        assert_eq!(Manifest::parse(&m.to_bytes()).is_ok(), field.is_none());
    }

    #[test]
    fn manifest_rules() {
        check(|_| {}, None);
        check(|m| m.format = 2, Some("format"));
        check(|m| m.created = "yesterday".into(), Some("created"));
        check(|m| m.expires = Some("2026-13-01T00:00:00Z".into()), Some("expires"));
        check(|m| m.stack = serde_json::json!([1, 2]), Some("stack"));
        check(|m| m.payloads.clear(), Some("payloads"));
        check(|m| m.payloads[0].name = "root fs".into(), Some("payloads[0].name"));
        check(|m| m.payloads[0].size_bytes = 0, Some("payloads[0].size_bytes"));
        check(|m| m.payloads[0].size_bytes = 1 << 50, Some("payloads[0].size_bytes"));
        check(|m| m.payloads[0].block_size = 3000, Some("payloads[0].block_size"));
        check(|m| m.payloads[0].chunk_size = 131_072, Some("payloads[0].index.size_bytes"));
        check(|m| m.payloads[0].chunk_size = 6000, Some("payloads[0].chunk_size"));
        check(|m| m.payloads[0].frame_size = 12288, Some("payloads[0].frame_size"));
        check(|m| m.payloads[0].index.size_bytes = 80, Some("payloads[0].index.size_bytes"));
        check(|m| m.payloads[0].index.blake3 = "xyz".into(), Some("payloads[0].index.blake3"));
        check(|m| m.payloads[0].chunks.offset = 321, Some("payloads[0].chunks"));
        check(|m| m.payloads[0].chunks.size_bytes = u64::MAX / 2, Some("payloads[0].chunks.size_bytes"));
        check(|m| m.payloads[0].frames.offset = 1000, Some("payloads[0].frames"));
        check(|m| m.payloads[0].delta_index.size_bytes = 0, Some("payloads[0].delta_index.size_bytes"));
        check(
            |m| {
                let mut q = m.payloads[0].clone();
                q.index.offset = 9;
                m.payloads.push(q);
            },
            Some("payloads[1].name"),
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&good().to_bytes()).expect("json");
        v["surprise"] = serde_json::json!(1);
        assert!(matches!(Manifest::parse(&serde_json::to_vec(&v).expect("json")), Err(Error::ParseManifest { .. })));
    }
}
