//! [`ArtifactId`]: the name of a stored cell output. A leaf, so that the
//! history (which names artifacts) and the store (which keeps them) need
//! not import each other.

use std::fmt;

/// The blake3 hash naming an artifact.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArtifactId([u8; 32]);

impl ArtifactId {
    /// The id of `content`.
    pub fn of(content: &[u8]) -> ArtifactId {
        ArtifactId(*blake3::hash(content).as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> ArtifactId {
        ArtifactId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactId({self})")
    }
}
