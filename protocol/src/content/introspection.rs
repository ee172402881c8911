use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{MimeBundle, ReplyStatus};

/// `complete_request` content. `cursor_pos` counts Unicode code points.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CompleteRequest {
    pub code: String,
    pub cursor_pos: usize,
}

/// `complete_reply` content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteReply {
    pub status: ReplyStatus,
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
    pub metadata: Map<String, Value>,
}

/// `inspect_request` content.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InspectRequest {
    pub code: String,
    pub cursor_pos: usize,
    #[serde(default)]
    pub detail_level: u8,
}

/// `inspect_reply` content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectReply {
    pub status: ReplyStatus,
    pub found: bool,
    pub data: MimeBundle,
    pub metadata: Map<String, Value>,
}

/// `is_complete_request` content.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IsCompleteRequest {
    pub code: String,
}

/// `is_complete_reply` content. `indent` only accompanies `incomplete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsCompleteReply {
    pub status: IsCompleteStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IsCompleteStatus {
    Complete,
    Incomplete,
    Invalid,
    Unknown,
}

/// `history_request` content.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HistoryRequest {
    #[serde(default)]
    pub output: bool,
    #[serde(default)]
    pub raw: bool,
    pub hist_access_type: HistAccessType,
    #[serde(default)]
    pub session: i64,
    #[serde(default)]
    pub start: i64,
    #[serde(default)]
    pub stop: Option<i64>,
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub unique: bool,
}

impl HistoryRequest {
    /// A `range` request: `session`'s lines `start..stop` (0 is the
    /// current session, negative that many back).
    pub fn range(session: i64, start: i64, stop: Option<i64>) -> HistoryRequest {
        HistoryRequest {
            session,
            start,
            stop,
            ..HistoryRequest::empty(HistAccessType::Range)
        }
    }

    /// A `search` request: inputs matching the glob `pattern`, newest `n`,
    /// each distinct input once when `unique`.
    pub fn search(pattern: String, n: Option<usize>, unique: bool) -> HistoryRequest {
        HistoryRequest {
            pattern: Some(pattern),
            n,
            unique,
            ..HistoryRequest::empty(HistAccessType::Search)
        }
    }

    fn empty(hist_access_type: HistAccessType) -> HistoryRequest {
        HistoryRequest {
            output: false,
            raw: true,
            hist_access_type,
            session: 0,
            start: 0,
            stop: None,
            n: None,
            pattern: None,
            unique: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistAccessType {
    Range,
    Tail,
    Search,
}

/// `history_reply` content: `[session, line_number, input]` triples, or
/// `[session, line_number, [input, output]]` when output was asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryReply {
    pub status: ReplyStatus,
    pub history: Vec<Value>,
}
