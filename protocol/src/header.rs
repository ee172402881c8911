//! Message headers and protocol dates.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The messaging protocol version this kernel implements.
pub const PROTOCOL_VERSION: &str = "5.4";

/// A message header. Unknown keys (for example `subshell_id`) survive a
/// round trip in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub msg_id: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub date: String,
    pub msg_type: String,
    #[serde(default)]
    pub version: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Header {
    /// A fresh header: new `msg_id`, current date, this protocol version.
    pub fn new(msg_type: &str, session: &str, username: &str) -> Self {
        Header {
            msg_id: uuid::Uuid::new_v4().simple().to_string(),
            session: session.to_owned(),
            username: username.to_owned(),
            date: now_iso8601(),
            msg_type: msg_type.to_owned(),
            version: PROTOCOL_VERSION.to_owned(),
            extra: Map::new(),
        }
    }
}

/// The current UTC time as ISO-8601 with microseconds and `Z`, the form
/// `jupyter_client` parses: `2026-11-21T12:00:00.123456Z`.
pub fn now_iso8601() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_have_microseconds_and_z() {
        let d = now_iso8601();
        assert_eq!(d.len(), "2026-11-21T12:00:00.123456Z".len(), "{d}");
        assert!(d.ends_with('Z'));
        assert_eq!(&d[19..20], ".");
    }

    #[test]
    fn unknown_header_keys_survive() {
        let raw = r#"{"msg_id":"a","msg_type":"execute_request","subshell_id":"s1"}"#;
        let h: Header = serde_json::from_str(raw).unwrap();
        assert_eq!(h.extra["subshell_id"], "s1");
        let back = serde_json::to_value(&h).unwrap();
        assert_eq!(back["subshell_id"], "s1");
    }

    #[test]
    fn fresh_headers_have_unique_ids() {
        let a = Header::new("status", "s", "u");
        let b = Header::new("status", "s", "u");
        assert_ne!(a.msg_id, b.msg_id);
        assert_eq!(a.version, PROTOCOL_VERSION);
    }
}
