//! `kernel_info_reply`.

use skillkernel_protocol::content::{HelpLink, KernelInfoReply, LanguageInfo, ReplyStatus};
use skillkernel_protocol::PROTOCOL_VERSION;

/// The language name front ends see (`language_info.name`).
pub const LANGUAGE: &str = "skill";
/// File extension for exported scripts.
pub const FILE_EXTENSION: &str = ".skill";

/// This kernel's `kernel_info_reply` content.
pub fn kernel_info() -> KernelInfoReply {
    let version = env!("CARGO_PKG_VERSION");
    KernelInfoReply {
        status: ReplyStatus::Ok,
        protocol_version: PROTOCOL_VERSION.to_owned(),
        implementation: "skillkernel".to_owned(),
        implementation_version: version.to_owned(),
        language_info: LanguageInfo {
            name: LANGUAGE.to_owned(),
            version: version.to_owned(),
            mimetype: "text/x-skill".to_owned(),
            file_extension: FILE_EXTENSION.to_owned(),
            // Prompts read as Markdown; magics stand out as plain lines.
            pygments_lexer: "markdown".to_owned(),
            codemirror_mode: "markdown".to_owned(),
            nbconvert_exporter: "script".to_owned(),
        },
        banner: format!(
            "skillkernel {version}: LLM skills, prompts and commands in Jupyter.\n\
             Type a prompt, a %magic or a !command. %help lists everything."
        ),
        debugger: false,
        help_links: vec![
            HelpLink {
                text: "Jupyter messaging protocol".to_owned(),
                url: "https://jupyter-client.readthedocs.io/en/stable/messaging.html".to_owned(),
            },
            HelpLink {
                text: "SmolLM2 (default model)".to_owned(),
                url: "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct".to_owned(),
            },
        ],
        supported_features: Vec::new(),
    }
}
