use serde::{Deserialize, Serialize};

use super::ReplyStatus;

/// `kernel_info_reply` content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelInfoReply {
    pub status: ReplyStatus,
    pub protocol_version: String,
    pub implementation: String,
    pub implementation_version: String,
    pub language_info: LanguageInfo,
    pub banner: String,
    pub debugger: bool,
    pub help_links: Vec<HelpLink>,
    /// JEP 92 feature list (`kernel subshells`, …); empty when none.
    #[serde(default)]
    pub supported_features: Vec<String>,
}

/// `language_info` inside `kernel_info_reply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LanguageInfo {
    pub name: String,
    pub version: String,
    pub mimetype: String,
    pub file_extension: String,
    pub pygments_lexer: String,
    pub codemirror_mode: String,
    pub nbconvert_exporter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelpLink {
    pub text: String,
    pub url: String,
}
