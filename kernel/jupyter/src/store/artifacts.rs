//! Artifacts: cell outputs too large for a history entry, stored whole in
//! their own tree, keyed by the blake3 hash of their content.
//!
//! Content addressing means the same output (a cell run twice) is stored
//! once. A value is a small header — magic, format version, codec, the
//! original length — and the bytes, lz4-compressed when the output is
//! longer than the compression threshold and compression makes it
//! smaller. The header lets a reader tell how to decode without guessing,
//! and the length bounds what decompression may allocate. On read the
//! hash is checked again, so a damaged value is reported, never served.

use thiserror::Error;

pub use crate::artifact_id::ArtifactId;

/// `b"ska"` + format version 1.
const MAGIC: [u8; 4] = *b"ska\x01";
const RAW: u8 = 0;
const LZ4: u8 = 1;
/// Magic, codec, original length.
const HEADER_LEN: usize = 4 + 1 + 8;

/// Longest output kept whole; a longer one is cut there (with a note).
/// Bounds both the store and what a cell buffers for it.
pub const MAX_ARTIFACT_BYTES: usize = 8 << 20;

/// Why a stored artifact could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArtifactError {
    #[error("the header is missing or not an artifact header")]
    BadHeader,
    #[error("unknown codec {0}")]
    UnknownCodec(u8),
    #[error("declared length {0} exceeds the {MAX_ARTIFACT_BYTES}-byte limit")]
    TooLong(u64),
    #[error("lz4 data does not decompress: {0}")]
    Decompress(String),
    #[error("content does not match its hash")]
    HashMismatch,
}

/// The stored form of `content`: compressed when it is longer than
/// `compress_above` bytes and compression pays.
pub fn encode(content: &[u8], compress_above: usize) -> Vec<u8> {
    let compressed = (content.len() > compress_above)
        .then(|| lz4_flex::block::compress(content))
        .filter(|c| c.len() < content.len());
    let (codec, body) = match &compressed {
        Some(c) => (LZ4, c.as_slice()),
        None => (RAW, content),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(codec);
    out.extend_from_slice(&(content.len() as u64).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Whether a stored value is compressed (for tests and statistics).
pub fn is_compressed(stored: &[u8]) -> bool {
    stored.len() >= HEADER_LEN && stored[..4] == MAGIC && stored[4] == LZ4
}

/// The content of a stored value, checked against `id`.
pub fn decode(id: &ArtifactId, stored: &[u8]) -> Result<Vec<u8>, ArtifactError> {
    if stored.len() < HEADER_LEN || stored[..4] != MAGIC {
        return Err(ArtifactError::BadHeader);
    }
    let codec = stored[4];
    let mut len = [0u8; 8];
    len.copy_from_slice(&stored[5..HEADER_LEN]);
    let len = u64::from_be_bytes(len);
    if len > MAX_ARTIFACT_BYTES as u64 {
        return Err(ArtifactError::TooLong(len));
    }
    let body = &stored[HEADER_LEN..];
    let content = match codec {
        RAW => body.to_vec(),
        LZ4 => lz4_flex::block::decompress(body, len as usize)
            .map_err(|e| ArtifactError::Decompress(e.to_string()))?,
        other => return Err(ArtifactError::UnknownCodec(other)),
    };
    if content.len() as u64 != len || ArtifactId::of(&content) != *id {
        return Err(ArtifactError::HashMismatch);
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_content_above_the_threshold_is_compressed() {
        let content = "line of output\n".repeat(100).into_bytes();
        let stored = encode(&content, 512);
        assert!(is_compressed(&stored));
        assert!(stored.len() < content.len() / 4);
        assert_eq!(decode(&ArtifactId::of(&content), &stored), Ok(content));
    }

    #[test]
    fn content_at_or_below_the_threshold_is_stored_raw() {
        let content = "a".repeat(512).into_bytes();
        let stored = encode(&content, 512);
        assert!(!is_compressed(&stored));
        assert_eq!(stored.len(), HEADER_LEN + 512);
        assert_eq!(decode(&ArtifactId::of(&content), &stored), Ok(content));
    }

    #[test]
    fn incompressible_content_is_stored_raw() {
        // blake3 output chained: no repetition for lz4 to find.
        let mut content = Vec::new();
        let mut block = *blake3::hash(b"seed").as_bytes();
        while content.len() < 4096 {
            content.extend_from_slice(&block);
            block = *blake3::hash(&block).as_bytes();
        }
        assert!(!is_compressed(&encode(&content, 512)));
    }

    #[test]
    fn damaged_values_are_errors() {
        let content = "x".repeat(4000).into_bytes();
        let id = ArtifactId::of(&content);
        let stored = encode(&content, 512);
        assert_eq!(decode(&id, &stored[..3]), Err(ArtifactError::BadHeader));
        let mut codec = stored.clone();
        codec[4] = 7;
        assert_eq!(decode(&id, &codec), Err(ArtifactError::UnknownCodec(7)));
        let mut long = stored.clone();
        long[5..13].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(decode(&id, &long), Err(ArtifactError::TooLong(u64::MAX)));
        let truncated = &stored[..stored.len() - 2];
        assert!(decode(&id, truncated).is_err());
        let other = ArtifactId::of(b"something else");
        assert_eq!(decode(&other, &stored), Err(ArtifactError::HashMismatch));
    }
}
