//! The byte layout of a bundle below the manifest: header, signature records, chunk index entries, the delta index,
//! the hash definitions and the limits that bound every allocation.
//!
//! Kept apart from the reader and the writer so that both encode and decode through the same functions;
//! `docs/bundle-format.md` describes the same bytes in tables.

use crate::error::{Error, Result};

/// The first eight bytes of every bundle; docs/bundle-format.md, "Header".
pub const MAGIC: [u8; 8] = *b"EDGEBNDL";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 24;
/// Largest manifest accepted, checked before it is allocated.
pub const MAX_MANIFEST_LEN: u32 = 1 << 20;
/// Most signatures a bundle may carry, checked before they are allocated.
pub const MAX_SIGNATURES: u32 = 32;
/// One signature record: key id then ed25519 signature.
pub const SIGNATURE_RECORD_LEN: usize = KEY_ID_LEN + 64;
/// Length of a key id in bytes (shown as 16 hex digits).
pub const KEY_ID_LEN: usize = 8;
/// One chunk index entry.
pub const INDEX_ENTRY_LEN: usize = 80;
/// One fingerprint in the delta index.
pub const FINGERPRINT_LEN: usize = 8;
/// One frame size in the delta index.
pub const FRAME_SIZE_LEN: usize = 4;
/// Largest payload a manifest may declare (1 TiB).
pub const MAX_PAYLOAD_SIZE: u64 = 1 << 40;
/// Largest chunk index accepted (covers 1 TiB at 1 MiB chunks, 4 GiB at 4 KiB chunks).
pub const MAX_INDEX_LEN: u64 = 80 << 20;
/// Largest decompressed delta index accepted.
pub const MAX_DELTA_INDEX_RAW_LEN: u64 = 256 << 20;
/// Most payloads in one bundle.
pub const MAX_PAYLOADS: usize = 64;
/// Smallest and largest block size.
pub const BLOCK_SIZE_RANGE: std::ops::RangeInclusive<u32> = 512..=65536;
/// Smallest and largest chunk size.
pub const CHUNK_SIZE_RANGE: std::ops::RangeInclusive<u32> = 4096..=(64 << 20);

/// The domain string that prefixes the manifest bytes in every signed message; docs/bundle-format.md, "Signatures".
pub const SIGNING_DOMAIN: &[u8] = b"edge-image bundle manifest v1\0";
/// The blake3 key-derivation context of the chunk hash; docs/bundle-format.md, "Hashes".
pub const CHUNK_HASH_CONTEXT: &str = "edge-image 2026-11 chunk hash v1";
/// The blake3 key-derivation context of the key id.
pub const KEY_ID_CONTEXT: &str = "edge-image 2026-11 key id v1";

/// The fixed header at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the manifest JSON that follows the header.
    pub manifest_len: u32,
    /// Number of signature records after the manifest.
    pub n_signatures: u32,
}

impl Header {
    /// Encodes the header; docs/bundle-format.md, "Header".
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.manifest_len.to_le_bytes());
        b[16..20].copy_from_slice(&self.n_signatures.to_le_bytes());
        b
    }

    /// Decodes and range-checks a header, before anything is allocated from its lengths.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header> {
        if b[0..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
        }
        let flags = u16::from_le_bytes([b[10], b[11]]);
        if flags != 0 {
            return Err(Error::HeaderField { field: "flags", value: flags.into(), range: "0..=0" });
        }
        let manifest_len = le_u32(&b[12..16]);
        if manifest_len == 0 || manifest_len > MAX_MANIFEST_LEN {
            return Err(Error::HeaderField { field: "manifest_len", value: manifest_len.into(), range: "1..=1048576" });
        }
        let n_signatures = le_u32(&b[16..20]);
        if n_signatures > MAX_SIGNATURES {
            return Err(Error::HeaderField { field: "n_signatures", value: n_signatures.into(), range: "0..=32" });
        }
        let reserved = le_u32(&b[20..24]);
        if reserved != 0 {
            return Err(Error::HeaderField { field: "reserved", value: reserved.into(), range: "0..=0" });
        }
        Ok(Header { manifest_len, n_signatures })
    }

    /// Bytes from the start of the bundle to the start of the body.
    pub fn body_start(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.manifest_len) + u64::from(self.n_signatures) * SIGNATURE_RECORD_LEN as u64
    }
}

/// One signature record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRecord {
    /// The signer's key id.
    pub key_id: [u8; KEY_ID_LEN],
    /// The ed25519 signature over [`SIGNING_DOMAIN`] followed by the manifest bytes.
    pub signature: [u8; 64],
}

impl SignatureRecord {
    /// Encodes the record.
    pub fn encode(&self) -> [u8; SIGNATURE_RECORD_LEN] {
        let mut b = [0u8; SIGNATURE_RECORD_LEN];
        b[..KEY_ID_LEN].copy_from_slice(&self.key_id);
        b[KEY_ID_LEN..].copy_from_slice(&self.signature);
        b
    }

    /// Decodes a record (any bytes are a well-formed record; trust is decided by verification).
    pub fn decode(b: &[u8]) -> SignatureRecord {
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&b[..KEY_ID_LEN]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[KEY_ID_LEN..SIGNATURE_RECORD_LEN]);
        SignatureRecord { key_id, signature }
    }
}

/// One entry of a payload's chunk index; docs/bundle-format.md, "Chunk index".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the stored chunk from the start of the payload's chunk area.
    pub offset: u64,
    /// Bytes stored (the zstd frame); 0 means the chunk is all zeros and nothing is stored.
    pub stored_size: u32,
    /// Bytes of the chunk once decompressed.
    pub raw_size: u32,
    /// The chunk hash of the raw bytes (see [`chunk_hash`]).
    pub raw_hash: [u8; 32],
    /// blake3 of the stored bytes, checked before they reach the decompressor.
    pub stored_hash: [u8; 32],
}

impl IndexEntry {
    /// Encodes the entry.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_size.to_le_bytes());
        out.extend_from_slice(&self.raw_size.to_le_bytes());
        out.extend_from_slice(&self.raw_hash);
        out.extend_from_slice(&self.stored_hash);
    }

    /// Decodes one entry from exactly [`INDEX_ENTRY_LEN`] bytes.
    pub fn decode(b: &[u8]) -> IndexEntry {
        let mut raw_hash = [0u8; 32];
        raw_hash.copy_from_slice(&b[16..48]);
        let mut stored_hash = [0u8; 32];
        stored_hash.copy_from_slice(&b[48..80]);
        IndexEntry {
            offset: le_u64(&b[0..8]),
            stored_size: le_u32(&b[8..12]),
            raw_size: le_u32(&b[12..16]),
            raw_hash,
            stored_hash,
        }
    }
}

/// The most bytes zstd may need to store `raw` bytes (ZSTD_COMPRESSBOUND).
pub fn compress_bound(raw: u64) -> u64 {
    let small = if raw < (128 << 10) { ((128 << 10) - raw) >> 11 } else { 0 };
    raw + (raw >> 8) + small
}

/// The fingerprint of a block: XXH3-64 (seed 0) of its bytes; docs/bundle-format.md, "Hashes".
///
/// Only a lookup key for finding the block in an old image: a false match costs a whole-chunk fetch, never a wrong
/// byte, because every assembled chunk is checked against its chunk hash. XXH3 keeps indexing a whole running slot
/// close to the speed of reading it, also on small ARM cores.
pub fn fingerprint(block: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(block)
}

/// The chunk hash: BLAKE3 in key-derivation mode with [`CHUNK_HASH_CONTEXT`] over the chunk's raw bytes;
/// docs/bundle-format.md, "Hashes".
pub fn chunk_hash(raw: &[u8]) -> [u8; 32] {
    let mut h = ChunkHasher::new();
    h.update(raw);
    h.finalize()
}

/// The chunk hash computed over pieces that arrive in order (frames, or old blocks and fetched frames).
pub struct ChunkHasher(blake3::Hasher);

impl ChunkHasher {
    /// An empty hasher.
    pub fn new() -> ChunkHasher {
        ChunkHasher(blake3::Hasher::new_derive_key(CHUNK_HASH_CONTEXT))
    }
    /// Adds the next bytes of the chunk.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The chunk hash.
    pub fn finalize(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

impl Default for ChunkHasher {
    fn default() -> Self {
        ChunkHasher::new()
    }
}

/// Reads a little-endian u32 from exactly 4 bytes.
pub fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian u64 from exactly 8 bytes.
pub fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Lowercase hex of some bytes.
pub fn to_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

/// Parses lowercase or uppercase hex into exactly `N` bytes.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_header(mutate: impl Fn(&mut [u8; HEADER_LEN]), expected: fn(&Result<Header>) -> bool) {
        let mut b = Header { manifest_len: 100, n_signatures: 2 }.encode();
        mutate(&mut b);
        let r = Header::decode(&b);
        assert!(expected(&r), "{r:?}");
    }

    #[test]
    fn header_cases() {
        check_header(|_| {}, |r| matches!(r, Ok(Header { manifest_len: 100, n_signatures: 2 })));
        check_header(|b| b[0] ^= 1, |r| matches!(r, Err(Error::BadMagic)));
        check_header(|b| b[8] = 2, |r| matches!(r, Err(Error::UnsupportedVersion { found: 2, .. })));
        check_header(|b| b[10] = 1, |r| matches!(r, Err(Error::HeaderField { field: "flags", .. })));
        check_header(
            |b| b[12..16].copy_from_slice(&0u32.to_le_bytes()),
            |r| matches!(r, Err(Error::HeaderField { field: "manifest_len", .. })),
        );
        check_header(
            |b| b[12..16].copy_from_slice(&u32::MAX.to_le_bytes()),
            |r| matches!(r, Err(Error::HeaderField { field: "manifest_len", .. })),
        );
        check_header(
            |b| b[16..20].copy_from_slice(&33u32.to_le_bytes()),
            |r| matches!(r, Err(Error::HeaderField { field: "n_signatures", .. })),
        );
        check_header(|b| b[23] = 1, |r| matches!(r, Err(Error::HeaderField { field: "reserved", .. })));
    }

    #[test]
    fn index_entry_round_trips() {
        let e = IndexEntry { offset: 7, stored_size: 9, raw_size: 4096, raw_hash: [3; 32], stored_hash: [4; 32] };
        let mut v = Vec::new();
        e.encode(&mut v);
        assert_eq!(v.len(), INDEX_ENTRY_LEN);
        assert_eq!(IndexEntry::decode(&v), e);
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(to_hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(from_hex::<3>("00AB10"), Some([0, 0xab, 0x10]));
        assert_eq!(from_hex::<3>("00ab1"), None);
        assert_eq!(from_hex::<1>("zz"), None);
    }

    #[test]
    fn chunk_hash_is_incremental_and_domain_separated() {
        let a = [1u8; 8192];
        let mut h = ChunkHasher::new();
        h.update(&a[..100]);
        h.update(&a[100..]);
        assert_eq!(h.finalize(), chunk_hash(&a));
        assert_ne!(chunk_hash(&a), *blake3::hash(&a).as_bytes());
    }

    #[test]
    fn fingerprint_is_xxh3_64() {
        // XXH3-64 of the empty input with seed 0, from the algorithm's reference implementation.
        assert_eq!(fingerprint(b""), 0x2d06_8005_38d3_94c2);
    }
}
