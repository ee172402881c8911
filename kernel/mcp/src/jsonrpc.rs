//! Telling a client's message from something that is not one, before it
//! reaches `rmcp`: both transports answer what does not parse as an MCP
//! client message with a JSON-RPC error naming what is wrong, instead of
//! dropping it or answering in prose.

use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use serde_json::{json, Value};

/// JSON-RPC's codes for what this module refuses.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;

/// A JSON-RPC error response.
pub fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// `message` as a client message, or the error response that answers it:
/// `-32602` for a request of a known shape whose params do not fit,
/// `-32600` for anything that is not a JSON-RPC 2.0 message.
pub fn client_message(message: &Value) -> Result<ClientJsonRpcMessage, Value> {
    // rmcp takes a message without `"jsonrpc": "2.0"`; the spec does not.
    if message.get("jsonrpc") != Some(&json!("2.0")) {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        return Err(error(
            id,
            INVALID_REQUEST,
            "not a JSON-RPC 2.0 message: \"jsonrpc\": \"2.0\" is missing",
        ));
    }
    let parsed: ClientJsonRpcMessage = serde_json::from_value(message.clone()).map_err(|e| {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let is_request = message.get("jsonrpc") == Some(&json!("2.0"))
            && message.get("method").is_some_and(Value::is_string);
        if is_request {
            error(id, INVALID_PARAMS, format!("invalid params: {e}"))
        } else {
            error(
                id,
                INVALID_REQUEST,
                format!("not a JSON-RPC 2.0 message: {e}"),
            )
        }
    })?;
    // rmcp reads a standard request whose params do not fit as a custom
    // one, which a server would answer "method not found".
    if let JsonRpcMessage::Request(request) = &parsed {
        if let ClientRequest::CustomRequest(custom) = &request.request {
            if is_standard_method(&custom.method) {
                return Err(error(
                    message.get("id").cloned().unwrap_or(Value::Null),
                    INVALID_PARAMS,
                    format!("invalid params for {}", custom.method),
                ));
            }
        }
    }
    Ok(parsed)
}

/// Whether `method` is one of MCP's own (not an extension's).
fn is_standard_method(method: &str) -> bool {
    matches!(method, "initialize" | "ping")
        || [
            "tools/",
            "prompts/",
            "resources/",
            "completion/",
            "logging/",
            "tasks/",
        ]
        .iter()
        .any(|prefix| method.starts_with(prefix))
}

/// Parses `body` as one client message (the Streamable HTTP transport
/// sends one per POST).
pub fn parse_body(body: &[u8]) -> Result<ClientJsonRpcMessage, Value> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| error(Value::Null, PARSE_ERROR, format!("parse error: {e}")))?;
    client_message(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_bad_message_gets_its_json_rpc_code() {
        assert_eq!(
            parse_body(b"{oops").unwrap_err()["error"]["code"],
            PARSE_ERROR
        );
        let no_version = client_message(&json!({"id": 3, "method": "ping"})).unwrap_err();
        assert_eq!(no_version["error"]["code"], INVALID_REQUEST);
        assert_eq!(no_version["id"], 3);
        let bad_params = client_message(
            &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"wrong": 1}}),
        )
        .unwrap_err();
        assert_eq!(bad_params["error"]["code"], INVALID_PARAMS);
        assert!(client_message(&json!({"jsonrpc": "2.0", "id": 5, "method": "ping"})).is_ok());
    }
}
