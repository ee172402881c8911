//! HMAC-SHA256 message signing.
//!
//! The signature covers the four JSON frames (header, parent_header,
//! metadata, content) in that order, hex-encoded. An empty key disables
//! signing: the signature frame is empty and not checked.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The only `signature_scheme` this kernel accepts.
pub const SIGNATURE_SCHEME: &str = "hmac-sha256";

/// Why a signature did not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature frame is not hex")]
    NotHex,
    #[error("signature does not match the message (wrong key or altered frames)")]
    Mismatch,
}

/// Signs and verifies messages with the session key.
#[derive(Clone)]
pub struct Signer {
    /// Pre-keyed MAC, cloned per message so the key schedule runs once.
    mac: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Signer")
            .field("signing", &self.mac.is_some())
            .finish()
    }
}

impl Signer {
    /// A signer for `key`; an empty key means messages are not signed.
    pub fn new(key: &[u8]) -> Self {
        let mac = if key.is_empty() {
            None
        } else {
            // HMAC accepts keys of any length, so this cannot fail.
            Hmac::<Sha256>::new_from_slice(key).ok()
        };
        Signer { mac }
    }

    /// A signer that neither signs nor checks.
    pub fn unsigned() -> Self {
        Signer { mac: None }
    }

    /// Whether messages are signed.
    pub fn is_signing(&self) -> bool {
        self.mac.is_some()
    }

    /// Hex signature over the four JSON frames; empty when unsigned.
    pub fn sign(&self, parts: [&[u8]; 4]) -> String {
        match &self.mac {
            None => String::new(),
            Some(mac) => {
                let mut mac = mac.clone();
                for part in parts {
                    mac.update(part);
                }
                hex::encode(mac.finalize().into_bytes())
            }
        }
    }

    /// Checks `signature` (hex) in constant time. Always passes when unsigned.
    pub fn verify(&self, signature: &[u8], parts: [&[u8]; 4]) -> Result<(), SignatureError> {
        let Some(mac) = &self.mac else {
            return Ok(());
        };
        let expected = hex::decode(signature).map_err(|_| SignatureError::NotHex)?;
        let mut mac = mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(&expected)
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_python_hmac_reference() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b'key', b'abcd', hashlib.sha256).hexdigest())"
        let signer = Signer::new(b"key");
        assert_eq!(
            signer.sign([b"a", b"b", b"c", b"d"]),
            "2a31ec0ee8d878c9eece9fb0df79b3b90b2256240163aa5ee50d176d3d1121f8"
        );
    }

    #[test]
    fn verify_accepts_own_signature_and_rejects_tampering() {
        let signer = Signer::new(b"secret");
        let sig = signer.sign([b"{}", b"{}", b"{}", b"{\"a\":1}"]);
        assert_eq!(sig.len(), 64);
        assert!(signer
            .verify(sig.as_bytes(), [b"{}", b"{}", b"{}", b"{\"a\":1}"])
            .is_ok());
        assert_eq!(
            signer.verify(sig.as_bytes(), [b"{}", b"{}", b"{}", b"{\"a\":2}"]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            signer.verify(b"zz", [b"{}", b"{}", b"{}", b"{}"]),
            Err(SignatureError::NotHex)
        );
    }

    #[test]
    fn empty_key_means_unsigned() {
        let signer = Signer::new(b"");
        assert!(!signer.is_signing());
        assert_eq!(signer.sign([b"a", b"b", b"c", b"d"]), "");
        assert!(signer.verify(b"anything", [b"", b"", b"", b""]).is_ok());
    }
}
