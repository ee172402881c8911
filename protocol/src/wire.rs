//! Multipart framing: `[identities…, <IDS|MSG>, signature, header,
//! parent_header, metadata, content, buffers…]`.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::signing::Signer;

/// The frame that separates routing identities from the message proper.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

/// Bounds on what an inbound message may be, so a hostile or broken peer
/// cannot make the kernel allocate without limit.
#[derive(Debug, Clone, Copy)]
pub struct WireLimits {
    /// Total bytes over all frames.
    pub max_message_bytes: usize,
    /// Routing identity frames before the delimiter.
    pub max_identities: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_message_bytes: 64 * 1024 * 1024,
            max_identities: 16,
        }
    }
}

/// A message split into its frames, not yet parsed as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrames {
    pub identities: Vec<Bytes>,
    pub signature: Bytes,
    pub header: Bytes,
    pub parent_header: Bytes,
    pub metadata: Bytes,
    pub content: Bytes,
    pub buffers: Vec<Bytes>,
}

/// Splits raw frames at the delimiter, enforcing `limits`.
pub fn split_frames(frames: Vec<Bytes>, limits: &WireLimits) -> Result<WireFrames, ProtocolError> {
    let size: usize = frames.iter().map(Bytes::len).sum();
    if size > limits.max_message_bytes {
        return Err(ProtocolError::TooLarge {
            size,
            limit: limits.max_message_bytes,
        });
    }
    let delim = frames
        .iter()
        .position(|f| f.as_ref() == DELIMITER)
        .ok_or(ProtocolError::MissingDelimiter)?;
    if delim > limits.max_identities {
        return Err(ProtocolError::TooManyIdentities {
            count: delim,
            limit: limits.max_identities,
        });
    }
    let after = frames.len() - delim - 1;
    if after < 5 {
        return Err(ProtocolError::Truncated(after));
    }
    let mut iter = frames.into_iter();
    let identities: Vec<Bytes> = iter.by_ref().take(delim).collect();
    let _delimiter = iter.next();
    // `after >= 5` was checked above, so these frames exist.
    let mut next = || iter.next().unwrap_or_default();
    let signature = next();
    let header = next();
    let parent_header = next();
    let metadata = next();
    let content = next();
    let buffers = iter.collect();
    Ok(WireFrames {
        identities,
        signature,
        header,
        parent_header,
        metadata,
        content,
        buffers,
    })
}

impl WireFrames {
    /// Verifies the signature over the four JSON frames (constant time).
    pub fn verify(&self, signer: &Signer) -> Result<(), ProtocolError> {
        signer.verify(&self.signature, self.signed_parts())?;
        Ok(())
    }

    /// Computes and stores the signature for the current frames.
    pub fn sign(&mut self, signer: &Signer) {
        self.signature = Bytes::from(signer.sign(self.signed_parts()));
    }

    fn signed_parts(&self) -> [&[u8]; 4] {
        [
            &self.header,
            &self.parent_header,
            &self.metadata,
            &self.content,
        ]
    }

    /// The frames in wire order, ready for a socket.
    pub fn into_frames(self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(self.identities.len() + 6 + self.buffers.len());
        out.extend(self.identities);
        out.push(Bytes::from_static(DELIMITER));
        out.push(self.signature);
        out.push(self.header);
        out.push(self.parent_header);
        out.push(self.metadata);
        out.push(self.content);
        out.extend(self.buffers);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
    }

    #[test]
    fn splits_identities_and_buffers() {
        let f = frames(&[
            b"id1", b"id2", DELIMITER, b"sig", b"h", b"p", b"m", b"c", b"b1",
        ]);
        let w = split_frames(f.clone(), &WireLimits::default()).unwrap();
        assert_eq!(w.identities.len(), 2);
        assert_eq!(&w.header[..], b"h");
        assert_eq!(w.buffers.len(), 1);
        assert_eq!(w.into_frames(), f);
    }

    #[test]
    fn rejects_missing_delimiter_truncation_and_size() {
        let limits = WireLimits::default();
        assert!(matches!(
            split_frames(frames(&[b"a", b"b"]), &limits),
            Err(ProtocolError::MissingDelimiter)
        ));
        assert!(matches!(
            split_frames(frames(&[DELIMITER, b"sig", b"h"]), &limits),
            Err(ProtocolError::Truncated(2))
        ));
        let small = WireLimits {
            max_message_bytes: 10,
            max_identities: 16,
        };
        assert!(matches!(
            split_frames(frames(&[DELIMITER, b"0123456789"]), &small),
            Err(ProtocolError::TooLarge { .. })
        ));
    }
}
