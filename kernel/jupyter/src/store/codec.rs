//! Byte layouts of the session store's keys and records.
//!
//! Records are a version byte followed by length-prefixed fields. A
//! hand-rolled layout rather than serde: restoring ten thousand history
//! entries must take milliseconds even in an unoptimised build, and the
//! layout is three strings and a hash. Integers in keys are big-endian so
//! that sled's byte order is numeric order (history comes back sorted by
//! session, then line). Decoding never panics: a short, unknown or
//! non-UTF-8 record is a [`CodecError`], which the caller logs and skips.

use thiserror::Error;

use super::artifacts::ArtifactId;
use crate::history::HistoryEntry;

/// The only record version written so far.
const VERSION: u8 = 1;

const HAS_OUTPUT: u8 = 1;
const HAS_ARTIFACT: u8 = 2;

/// Why a stored record could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("the record ends early (at byte {0})")]
    Truncated(usize),
    #[error("unknown record version {0}")]
    UnknownVersion(u8),
    #[error("a text field is not UTF-8")]
    NotUtf8,
    #[error("the field has {0} bytes, not {1}")]
    BadLength(usize, usize),
}

/// A history entry as stored; the session and line are in the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub input: String,
    pub output: Option<String>,
    pub artifact: Option<ArtifactId>,
}

impl HistoryRecord {
    /// `entry` as the store keeps it.
    pub fn of(entry: &HistoryEntry) -> HistoryRecord {
        HistoryRecord {
            input: entry.input.clone(),
            output: entry.output.clone(),
            artifact: entry.artifact,
        }
    }
}

/// `session ‖ line`, both big-endian.
pub fn history_key(session: i64, line: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    // Session numbers start at 1; clamping keeps a negative one (never
    // written) from sorting after every real session.
    key[..8].copy_from_slice(&(session.max(0) as u64).to_be_bytes());
    key[8..].copy_from_slice(&line.to_be_bytes());
    key
}

/// Lines per history group: entries of one group are packed into
/// chunks once the session has moved past it (see `super::history`).
pub const HISTORY_GROUP: u64 = 128;

/// `session ‖ first line of the group ‖ chunk number`, big-endian, so
/// chunks sort by session, then group, like the entries they hold.
pub fn chunk_key(session: i64, group_start: u64, chunk: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(&history_key(session, group_start));
    key[16..].copy_from_slice(&chunk.to_be_bytes());
    key
}

/// The session and group start of a chunk key.
pub fn parse_chunk_key(key: &[u8]) -> Result<(i64, u64, u32), CodecError> {
    if key.len() != 20 {
        return Err(CodecError::BadLength(key.len(), 20));
    }
    let (session, group) = parse_history_key(&key[..16])?;
    let mut chunk = [0u8; 4];
    chunk.copy_from_slice(&key[16..]);
    Ok((session, group, u32::from_be_bytes(chunk)))
}

/// A chunk of history entries: a version byte, the entry count, then
/// each entry's line and its [`HistoryRecord`] bytes, length-prefixed so
/// that one damaged record does not hide the others.
pub fn encode_chunk<'a>(entries: impl ExactSizeIterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (line, record) in entries {
        out.extend_from_slice(&line.to_be_bytes());
        out.extend_from_slice(&(record.len() as u32).to_be_bytes());
        out.extend_from_slice(record);
    }
    out
}

/// The entries of a chunk as far as it can be read, and what stopped the
/// reading if it ended early.
pub fn decode_chunk(bytes: &[u8]) -> (Vec<(u64, &[u8])>, Option<CodecError>) {
    let mut r = Reader { bytes, at: 0 };
    let mut entries = Vec::new();
    let mut read = || -> Result<(), CodecError> {
        r.version()?;
        let count = r.u32()?;
        for _ in 0..count {
            let line = u64_at(r.take(8)?, 0)?;
            let len = r.u32()? as usize;
            entries.push((line, r.take(len)?));
        }
        Ok(())
    };
    let damage = read().err();
    (entries, damage)
}

/// How many entries a chunk says it holds (0 when unreadable).
pub fn chunk_count(bytes: &[u8]) -> u64 {
    let mut r = Reader { bytes, at: 0 };
    r.version().and_then(|()| r.u32()).map_or(0, u64::from)
}

/// The session and line of a history key.
pub fn parse_history_key(key: &[u8]) -> Result<(i64, u64), CodecError> {
    if key.len() != 16 {
        return Err(CodecError::BadLength(key.len(), 16));
    }
    let session = u64_at(key, 0)?;
    let line = u64_at(key, 8)?;
    Ok((i64::try_from(session).unwrap_or(i64::MAX), line))
}

/// A big-endian `u64` value (counters in the meta tree).
pub fn decode_u64(bytes: &[u8]) -> Result<u64, CodecError> {
    if bytes.len() != 8 {
        return Err(CodecError::BadLength(bytes.len(), 8));
    }
    u64_at(bytes, 0)
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, CodecError> {
    let slice = bytes
        .get(at..at + 8)
        .ok_or(CodecError::Truncated(bytes.len()))?;
    let mut buf = [0u8; 8];
    buf.copy_from_slice(slice);
    Ok(u64::from_be_bytes(buf))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Outputs are capped far below 4 GiB before they get here.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

/// Reads fields off the front of a record.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(CodecError::Truncated(self.bytes.len()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(buf))
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn string(&mut self) -> Result<String, CodecError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::NotUtf8)
    }

    fn version(&mut self) -> Result<(), CodecError> {
        match self.byte()? {
            VERSION => Ok(()),
            other => Err(CodecError::UnknownVersion(other)),
        }
    }
}

impl HistoryRecord {
    pub fn encode(&self) -> Vec<u8> {
        let output_len = self.output.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(self.input.len() + output_len + 46);
        out.push(VERSION);
        let mut flags = 0;
        if self.output.is_some() {
            flags |= HAS_OUTPUT;
        }
        if self.artifact.is_some() {
            flags |= HAS_ARTIFACT;
        }
        out.push(flags);
        put_str(&mut out, &self.input);
        if let Some(output) = &self.output {
            put_str(&mut out, output);
        }
        if let Some(id) = &self.artifact {
            out.extend_from_slice(id.as_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<HistoryRecord, CodecError> {
        let mut r = Reader { bytes, at: 0 };
        r.version()?;
        let flags = r.byte()?;
        let input = r.string()?;
        let output = if flags & HAS_OUTPUT != 0 {
            Some(r.string()?)
        } else {
            None
        };
        let artifact = if flags & HAS_ARTIFACT != 0 {
            let mut id = [0u8; 32];
            id.copy_from_slice(r.take(32)?);
            Some(ArtifactId::from_bytes(id))
        } else {
            None
        };
        Ok(HistoryRecord {
            input,
            output,
            artifact,
        })
    }
}

/// The `skill_conversation` key of turn `index` of skill `skill`: the
/// name, a 0 byte (names never hold one), the index big-endian — so a
/// skill's turns are contiguous and in order.
pub fn skill_turn_key(skill: &str, index: u64) -> Vec<u8> {
    let mut key = skill_turn_prefix(skill);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The prefix every key of skill `skill`'s turns starts with.
pub fn skill_turn_prefix(skill: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(skill.len() + 9);
    key.extend_from_slice(skill.as_bytes());
    key.push(0);
    key
}

/// The skill name and turn index of a `skill_conversation` key.
pub fn parse_skill_turn_key(key: &[u8]) -> Result<(String, u64), CodecError> {
    let split = key
        .len()
        .checked_sub(9)
        .filter(|&i| key[i] == 0)
        .ok_or(CodecError::Truncated(key.len()))?;
    let name = std::str::from_utf8(&key[..split]).map_err(|_| CodecError::NotUtf8)?;
    let index = decode_u64(&key[split + 1..])?;
    Ok((name.to_owned(), index))
}

/// One conversation turn: role and content.
pub fn encode_turn(role: &str, content: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(role.len() + content.len() + 9);
    out.push(VERSION);
    put_str(&mut out, role);
    put_str(&mut out, content);
    out
}

pub fn decode_turn(bytes: &[u8]) -> Result<(String, String), CodecError> {
    let mut r = Reader { bytes, at: 0 };
    r.version()?;
    Ok((r.string()?, r.string()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_records_round_trip_with_and_without_output() {
        let full = HistoryRecord {
            input: "!seq 1 5000".into(),
            output: Some("1\n2\n…".into()),
            artifact: Some(ArtifactId::of(b"x")),
        };
        assert_eq!(HistoryRecord::decode(&full.encode()), Ok(full));
        let bare = HistoryRecord {
            input: "%set x = 3".into(),
            output: None,
            artifact: None,
        };
        assert_eq!(HistoryRecord::decode(&bare.encode()), Ok(bare));
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bytes = HistoryRecord {
            input: "abc".into(),
            output: Some("out".into()),
            artifact: None,
        }
        .encode();
        for cut in 0..bytes.len() {
            assert!(
                HistoryRecord::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut future = bytes.clone();
        future[0] = 9;
        assert_eq!(
            HistoryRecord::decode(&future),
            Err(CodecError::UnknownVersion(9))
        );
        let mut huge = bytes;
        huge[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            HistoryRecord::decode(&huge),
            Err(CodecError::Truncated(_))
        ));
        assert!(decode_turn(&[1, 0, 0, 0, 2, 0xff, 0xfe, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn chunks_round_trip_and_keep_what_precedes_damage() {
        let a = HistoryRecord {
            input: "a".into(),
            output: None,
            artifact: None,
        }
        .encode();
        let b = [9u8, 9];
        let bytes = encode_chunk([(5u64, &a[..]), (6, &b[..])].into_iter());
        assert_eq!(chunk_count(&bytes), 2);
        let (entries, damage) = decode_chunk(&bytes);
        assert_eq!(entries, vec![(5, &a[..]), (6, &b[..])]);
        assert_eq!(damage, None);
        let (entries, damage) = decode_chunk(&bytes[..bytes.len() - 1]);
        assert_eq!(entries, vec![(5, &a[..])]);
        assert!(matches!(damage, Some(CodecError::Truncated(_))));
        assert_eq!(chunk_count(&[7]), 0);
        let key = chunk_key(3, 256, 1);
        assert_eq!(parse_chunk_key(&key), Ok((3, 256, 1)));
        assert!(chunk_key(3, 128, 9) < key && key < chunk_key(4, 0, 0));
    }

    #[test]
    fn history_keys_sort_by_session_then_line() {
        let a = history_key(1, 300);
        let b = history_key(2, 1);
        let c = history_key(2, 2);
        assert!(a < b && b < c);
        assert_eq!(parse_history_key(&c), Ok((2, 2)));
        assert!(parse_history_key(&c[..15]).is_err());
    }
}
