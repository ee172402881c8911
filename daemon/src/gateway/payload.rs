//! The connection information a launcher sends back, encrypted as
//! Enterprise Gateway decrypts it (its `ResponseManager._decode_payload`,
//! payload version 1):
//!
//! ```text
//! base64(JSON {
//!     "version": 1,
//!     "key": base64(RSA-PKCS#1-v1.5(gateway public key, aes_key)),
//!     "conn_info": base64(AES-128-ECB(aes_key, PKCS#7 pad(connection JSON))),
//! })
//! ```
//!
//! The gateway hands its public key over on the command line as the base64
//! body of a PEM `PUBLIC KEY` (a DER SubjectPublicKeyInfo), header, footer
//! and newlines stripped. A fresh AES key is made for every payload.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::Aes128;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rsa::pkcs8::DecodePublicKey;
use serde_json::json;
use thiserror::Error;

/// The payload version this launcher speaks (EG's `LAUNCHER_VERSION`).
pub const LAUNCHER_VERSION: u32 = 1;

const AES_BLOCK: usize = 16;

/// Why the gateway's key or the payload could not be made.
#[derive(Debug, Error)]
pub enum PayloadError {
    #[error("the gateway's public key is not base64 ({0}); pass it as the gateway gives it ({{public_key}} in the kernelspec)")]
    KeyNotBase64(base64::DecodeError),
    #[error("the gateway's public key is not an RSA public key ({0}); pass it as the gateway gives it ({{public_key}} in the kernelspec)")]
    KeyNotRsa(String),
    #[error("cannot encrypt the connection information for the gateway: {0}")]
    Encrypt(String),
}

/// The gateway's RSA public key.
#[derive(Debug, Clone)]
pub struct GatewayKey(rsa::PublicKey);

impl GatewayKey {
    /// Reads the key as the gateway passes it: a PEM body without its
    /// header, footer and newlines. A whole PEM is accepted too.
    pub fn parse(text: &str) -> Result<GatewayKey, PayloadError> {
        let body: String = text
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .flat_map(|line| line.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = BASE64.decode(body).map_err(PayloadError::KeyNotBase64)?;
        rsa::PublicKey::from_public_key_der(&der)
            .map(GatewayKey)
            .map_err(|e| PayloadError::KeyNotRsa(e.to_string()))
    }

    /// The payload carrying `connection_info` (the JSON the gateway loads).
    pub fn seal(&self, connection_info: &[u8]) -> Result<String, PayloadError> {
        let aes_key: [u8; AES_BLOCK] = rand::random();
        let encrypted_info = aes128_ecb_pkcs7(&aes_key, connection_info);
        let wrapped_key = self
            .0
            .pkcs1v15_encrypt(&aes_key)
            .map_err(|e| PayloadError::Encrypt(e.to_string()))?;
        let payload = json!({
            "version": LAUNCHER_VERSION,
            "key": BASE64.encode(wrapped_key),
            "conn_info": BASE64.encode(encrypted_info),
        });
        Ok(BASE64.encode(payload.to_string()))
    }
}

/// AES-128 in ECB mode with PKCS#7 padding: what the gateway's
/// `AES.new(key, AES.MODE_ECB)` and `unpad(…, 16)` undo.
fn aes128_ecb_pkcs7(key: &[u8; AES_BLOCK], plain: &[u8]) -> Vec<u8> {
    let cipher = Aes128::new(key.into());
    let pad = AES_BLOCK - plain.len() % AES_BLOCK;
    let mut data = Vec::with_capacity(plain.len() + pad);
    data.extend_from_slice(plain);
    data.resize(plain.len() + pad, pad as u8);
    for block in data.chunks_exact_mut(AES_BLOCK) {
        cipher.encrypt_block(block.try_into().expect("16-byte chunk"));
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockCipherDecrypt;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::Generate;

    /// What the gateway does with a payload (`_decode_payload`, version 1).
    fn open(private: &rsa::PrivateKey, payload: &str) -> serde_json::Value {
        let outer: serde_json::Value =
            serde_json::from_slice(&BASE64.decode(payload).unwrap()).unwrap();
        assert_eq!(outer["version"], 1);
        let wrapped = BASE64.decode(outer["key"].as_str().unwrap()).unwrap();
        let aes_key = private.pkcs1v15_decrypt(&wrapped).unwrap();
        let cipher = Aes128::new(aes_key.as_slice().try_into().unwrap());
        let mut data = BASE64.decode(outer["conn_info"].as_str().unwrap()).unwrap();
        for block in data.chunks_exact_mut(AES_BLOCK) {
            cipher.decrypt_block(block.try_into().unwrap());
        }
        let pad = *data.last().unwrap() as usize;
        assert!((1..=AES_BLOCK).contains(&pad));
        assert!(data[data.len() - pad..].iter().all(|&b| b as usize == pad));
        data.truncate(data.len() - pad);
        serde_json::from_slice(&data).unwrap()
    }

    /// The key as EG's `ResponseManager.public_key` prints it.
    fn gateway_form(private: &rsa::PrivateKey) -> String {
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        pem.replace("-----BEGIN PUBLIC KEY-----", "")
            .replace("-----END PUBLIC KEY-----", "")
            .replace('\n', "")
    }

    #[test]
    fn a_sealed_payload_opens_with_the_gateways_private_key() {
        let private = rsa::PrivateKey::generate();
        let key = GatewayKey::parse(&gateway_form(&private)).unwrap();
        // 16 bytes exactly: PKCS#7 then adds a whole block of padding.
        for info in [
            json!({"shell_port": 40001, "kernel_id": "k-1", "key": "abc"}),
            json!({"a": "0123456789ab"}),
        ] {
            let text = info.to_string();
            let payload = key.seal(text.as_bytes()).unwrap();
            assert_eq!(open(&private, &payload), info);
        }
    }

    #[test]
    fn each_payload_has_its_own_aes_key() {
        let private = rsa::PrivateKey::generate();
        let key = GatewayKey::parse(&gateway_form(&private)).unwrap();
        let one = key.seal(b"{}").unwrap();
        let two = key.seal(b"{}").unwrap();
        assert_ne!(one, two);
    }

    #[test]
    fn a_key_that_is_not_rsa_or_not_base64_is_refused_with_the_remedy() {
        let not_base64 = GatewayKey::parse("not a key!").unwrap_err().to_string();
        assert!(not_base64.contains("not base64"), "{not_base64}");
        assert!(not_base64.contains("{public_key}"), "{not_base64}");
        let not_rsa = GatewayKey::parse(&BASE64.encode(b"just some bytes"))
            .unwrap_err()
            .to_string();
        assert!(not_rsa.contains("not an RSA public key"), "{not_rsa}");
    }

    #[test]
    fn a_whole_pem_is_accepted() {
        let private = rsa::PrivateKey::generate();
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let key = GatewayKey::parse(&pem).unwrap();
        assert_eq!(
            open(&private, &key.seal(b"{\"x\":1}").unwrap()),
            json!({"x": 1})
        );
    }
}
