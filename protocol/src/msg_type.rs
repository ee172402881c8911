//! The request message types this kernel answers, named once.
//!
//! Every request `X_request` is answered by `X_reply`: [`RequestType`]
//! holds the `X` of each request the kernel knows (the Jupyter ones and
//! skillkernel's extensions) and derives both names from it;
//! [`reply_type`] applies the same rule to a request type this kernel does
//! not know, so that it can still be answered with an error.

/// Suffix of every request's `msg_type`.
const REQUEST_SUFFIX: &str = "_request";
/// Suffix of every reply's `msg_type`.
const REPLY_SUFFIX: &str = "_reply";

macro_rules! request_types {
    ($($(#[$doc:meta])* $variant:ident = $base:literal,)*) => {
        /// A request message type this kernel knows (shell or control).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum RequestType {
            $($(#[$doc])* $variant,)*
        }

        impl RequestType {
            /// Every known request type.
            pub const ALL: &'static [RequestType] = &[$(RequestType::$variant,)*];

            /// The request's `msg_type`, e.g. `model_request`.
            pub const fn request(self) -> &'static str {
                match self {
                    $(RequestType::$variant => concat!($base, "_request"),)*
                }
            }

            /// The `msg_type` of its reply, e.g. `model_reply`.
            pub const fn reply(self) -> &'static str {
                match self {
                    $(RequestType::$variant => concat!($base, "_reply"),)*
                }
            }
        }
    };
}

request_types! {
    /// `kernel_info_request`: who the kernel is (shell and control).
    KernelInfo = "kernel_info",
    /// `execute_request`: run a cell.
    Execute = "execute",
    /// `complete_request`: completions at the cursor.
    Complete = "complete",
    /// `inspect_request`: help for what is under the cursor.
    Inspect = "inspect",
    /// `is_complete_request`: whether a cell is ready to run.
    IsComplete = "is_complete",
    /// `history_request`: past cells.
    History = "history",
    /// `comm_info_request`: open comms.
    CommInfo = "comm_info",
    /// `interrupt_request`: stop the running work (control).
    Interrupt = "interrupt",
    /// `shutdown_request`: stop or restart the kernel (control).
    Shutdown = "shutdown",
    /// `model_request`: models as data (skillkernel extension).
    Model = "model",
    /// `skill_request`: skills as data (skillkernel extension).
    Skill = "skill",
    /// `sandbox_request`: the sandbox as data (skillkernel extension).
    Sandbox = "sandbox",
    /// `status_request`: health and state (skillkernel extension).
    Status = "status",
    /// `mcp_request`: MCP sessions over the wire (skillkernel extension).
    Mcp = "mcp",
}

impl RequestType {
    /// The known request type whose `msg_type` is `msg_type`.
    pub fn parse(msg_type: &str) -> Option<RequestType> {
        RequestType::ALL
            .iter()
            .copied()
            .find(|t| t.request() == msg_type)
    }
}

impl std::fmt::Display for RequestType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.request())
    }
}

/// The reply `msg_type` for any request `msg_type` (`X_request` →
/// `X_reply`), known to this kernel or not; `None` when `msg_type` is not a
/// request.
pub fn reply_type(msg_type: &str) -> Option<String> {
    if let Some(known) = RequestType::parse(msg_type) {
        return Some(known.reply().to_owned());
    }
    msg_type
        .strip_suffix(REQUEST_SUFFIX)
        .filter(|base| !base.is_empty())
        .map(|base| format!("{base}{REPLY_SUFFIX}"))
}

/// `comm_open`, `comm_msg` and `comm_close`: shell messages that are not
/// requests (nothing answers them).
pub mod comm {
    pub const OPEN: &str = "comm_open";
    pub const MSG: &str = "comm_msg";
    pub const CLOSE: &str = "comm_close";
}

/// The stdin channel's pair: the kernel asks with `input_request`, the
/// front end answers with `input_reply` (the one request a kernel sends).
pub mod stdin {
    pub const INPUT_REQUEST: &str = "input_request";
    pub const INPUT_REPLY: &str = "input_reply";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_request_is_answered_by_its_reply_by_the_one_rule() {
        for t in RequestType::ALL {
            assert_eq!(RequestType::parse(t.request()), Some(*t));
            let base = t.request().strip_suffix(REQUEST_SUFFIX).unwrap();
            assert_eq!(t.reply(), format!("{base}{REPLY_SUFFIX}"));
            assert_eq!(reply_type(t.request()).as_deref(), Some(t.reply()));
        }
        assert_eq!(RequestType::Model.request(), "model_request");
        assert_eq!(RequestType::Model.reply(), "model_reply");
        assert_eq!(RequestType::Status.reply(), "status_reply");
        assert_eq!(RequestType::KernelInfo.request(), "kernel_info_request");
    }

    #[test]
    fn unknown_requests_get_a_reply_name_and_other_messages_none() {
        assert_eq!(reply_type("debug_request").as_deref(), Some("debug_reply"));
        assert_eq!(RequestType::parse("debug_request"), None);
        assert_eq!(reply_type("comm_open"), None);
        assert_eq!(reply_type("_request"), None);
        assert_eq!(RequestType::parse("model_reply"), None);
    }
}
