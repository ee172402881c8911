//! minisign signatures of skills: `skill.minisig` beside the manifest,
//! over the skill's digest manifest (the `HASH  PATH` lines of
//! [`skillkernel_skills::trust::digest`]), checked against the keys of
//! `[skills.signatures]`.
//!
//! An author signs with Debian's `minisign`:
//! `skillkernel skill-digest DIR > m && minisign -S -m m -x DIR/skill.minisig`.

use std::path::Path;

use skillkernel_skills::config::SignatureConfig;
use skillkernel_skills::trust::digest::SIGNATURE_FILE;

/// What the signature of a skill says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Good, from this key (as configured).
    Verified { key: String },
    /// No `skill.minisig`.
    Missing,
    /// A signature that does not verify with any configured key (or no key
    /// is configured): why.
    Bad(String),
    /// `policy = "off"`.
    NotChecked,
}

impl SignatureCheck {
    pub fn describe(&self) -> String {
        match self {
            SignatureCheck::Verified { key } => format!("signed by {key}"),
            SignatureCheck::Missing => format!("not signed (no {SIGNATURE_FILE})"),
            SignatureCheck::Bad(why) => format!("bad signature: {why}"),
            SignatureCheck::NotChecked => "signatures not checked".into(),
        }
    }
}

/// Checks `root/skill.minisig` over `manifest_text`.
pub fn check(root: &Path, manifest_text: &str, config: &SignatureConfig) -> SignatureCheck {
    use skillkernel_skills::config::SignaturePolicy;
    if config.policy == SignaturePolicy::Off {
        return SignatureCheck::NotChecked;
    }
    // A regular file of a signature's size, never a link or a device.
    let path = root.join(SIGNATURE_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() && m.len() <= 4096 => {}
        Ok(_) => {
            return SignatureCheck::Bad(format!(
                "{SIGNATURE_FILE} is not a regular file of at most 4 KiB"
            ))
        }
        Err(_) => return SignatureCheck::Missing,
    }
    let Ok(text) = std::fs::read_to_string(&path) else {
        return SignatureCheck::Missing;
    };
    let signature = match minisign_verify::Signature::decode(&text) {
        Ok(s) => s,
        Err(e) => return SignatureCheck::Bad(format!("{SIGNATURE_FILE} does not parse ({e})")),
    };
    if config.keys.is_empty() {
        return SignatureCheck::Bad("no key in [skills.signatures] keys to check it with".into());
    }
    for key in &config.keys {
        let Ok(public) = minisign_verify::PublicKey::from_base64(key.trim()) else {
            tracing::warn!(key, "a [skills.signatures] key does not parse; skipped");
            continue;
        };
        if public
            .verify(manifest_text.as_bytes(), &signature, false)
            .is_ok()
        {
            return SignatureCheck::Verified {
                key: key.trim().to_owned(),
            };
        }
    }
    SignatureCheck::Bad("it does not verify with any key in [skills.signatures] keys (signed by someone else, or the files changed after signing)".into())
}
