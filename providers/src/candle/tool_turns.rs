//! Tool calls on the embedded engine, which has no native form for them:
//! the tools are described in the system prompt, generation is held to
//! [`call_schema`] (a call of one of them, or the final answer), and the
//! JSON the model wrote becomes a [`ToolCall`] or the answer's text.
//!
//! Earlier calls and results are written back into the conversation as
//! the model saw them: its JSON as the assistant's turn, a result as a
//! user turn naming the tool (small chat models know no `tool` role).

use serde_json::{json, Value};

use crate::tools::{call_instructions, call_schema};
use crate::{ChatMessage, CompletionRequest, OutputFormat, ToolCall, ToolChoice};

/// The conversation and the format to generate a tool turn with.
pub fn prepare(request: &CompletionRequest) -> (Vec<ChatMessage>, OutputFormat) {
    let instructions = call_instructions(&request.tools);
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    match request.messages.first() {
        Some(first) if first.role == "system" => {
            messages.push(ChatMessage::new(
                "system",
                format!("{}\n\n{instructions}", first.content),
            ));
        }
        _ => messages.push(ChatMessage::new("system", instructions)),
    }
    let rest = match request.messages.first() {
        Some(first) if first.role == "system" => &request.messages[1..],
        _ => &request.messages[..],
    };
    for m in rest {
        messages.push(match m.role.as_str() {
            "assistant" if !m.tool_calls.is_empty() => {
                let written: Vec<String> = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"tool": c.name, "arguments": c.arguments}).to_string())
                    .collect();
                ChatMessage::new("assistant", written.join("\n"))
            }
            "tool" => ChatMessage::new(
                "user",
                format!(
                    "The tool {} returned:\n{}\nUse this result in your answer.",
                    m.tool_name.as_deref().unwrap_or("you called"),
                    m.content.trim_end()
                ),
            ),
            _ => ChatMessage::new(m.role.clone(), m.content.clone()),
        });
    }
    let mut schema = call_schema(&request.tools, request.tool_choice);
    if let (Some(format), ToolChoice::Auto | ToolChoice::None) =
        (&request.format, request.tool_choice)
    {
        // A typed final answer: the answer branch takes the output's schema.
        if let Some(last) = schema["anyOf"].as_array_mut().and_then(|a| a.last_mut()) {
            last["properties"]["answer"] = format.schema();
        }
    }
    (messages, OutputFormat::JsonSchema { schema })
}

/// What a tool turn's JSON says: a call, or the answer's text.
pub enum Turn {
    Call(ToolCall),
    Answer(String),
}

/// Reads the JSON a tool turn produced; `n` numbers the call's id. A
/// `typed` answer (the request has an output format) is kept as JSON,
/// strings included, for the caller to validate.
pub fn interpret(text: &str, n: usize, typed: bool) -> Turn {
    let Ok(value) = serde_json::from_str::<Value>(text.trim()) else {
        // Cut short (max_tokens): what was written is the answer.
        return Turn::Answer(text.to_owned());
    };
    if let (Some(name), Some(arguments)) = (value["tool"].as_str(), value.get("arguments")) {
        return Turn::Call(ToolCall {
            id: format!("call_{n}"),
            name: name.to_owned(),
            arguments: arguments.clone(),
        });
    }
    match &value["answer"] {
        Value::String(s) if !typed => Turn::Answer(s.clone()),
        Value::Null => Turn::Answer(text.to_owned()),
        other => Turn::Answer(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GenerationOptions, ToolSpec};

    fn request(messages: Vec<ChatMessage>) -> CompletionRequest {
        CompletionRequest {
            model: "m".into(),
            messages,
            options: GenerationOptions::default(),
            format: None,
            tools: vec![ToolSpec {
                name: "count_words".into(),
                description: "Counts the words of a file.".into(),
                parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
            }],
            tool_choice: Default::default(),
        }
    }

    #[test]
    fn tools_are_described_and_earlier_calls_written_back_as_the_model_saw_them() {
        let call = ToolCall {
            id: "call_0".into(),
            name: "count_words".into(),
            arguments: json!({"path": "a.txt"}),
        };
        let asked = request(vec![
            ChatMessage::new("system", "Be helpful."),
            ChatMessage::new("user", "How long is a.txt?"),
            ChatMessage::assistant_calls("", vec![call.clone()]),
            ChatMessage::tool_result(&call, "42"),
        ]);
        let (messages, format) = prepare(&asked);
        assert!(messages[0]
            .content
            .starts_with("Be helpful.\n\nYou can call tools."));
        assert!(messages[0]
            .content
            .contains("count_words: Counts the words"));
        assert_eq!(
            messages[2].content,
            r#"{"tool":"count_words","arguments":{"path":"a.txt"}}"#
        );
        assert_eq!(
            (messages[3].role.as_str(), messages[3].content.as_str()),
            (
                "user",
                "The tool count_words returned:\n42\nUse this result in your answer."
            )
        );
        let OutputFormat::JsonSchema { schema } = format else {
            panic!()
        };
        assert_eq!(
            schema["anyOf"][0]["properties"]["tool"]["const"],
            "count_words"
        );
    }

    #[test]
    fn the_json_becomes_a_call_or_the_answer() {
        match interpret(
            r#"{"tool": "count_words", "arguments": {"path": "a.txt"}}"#,
            3,
            false,
        ) {
            Turn::Call(c) => assert_eq!(
                (c.id.as_str(), c.arguments["path"].as_str()),
                ("call_3", Some("a.txt"))
            ),
            Turn::Answer(a) => panic!("{a}"),
        }
        assert!(
            matches!(interpret(r#"{"answer": "42 words"}"#, 0, false), Turn::Answer(a) if a == "42 words")
        );
        assert!(
            matches!(interpret(r#"{"answer": "positive"}"#, 0, true), Turn::Answer(a) if a == "\"positive\""),
            "a typed answer stays JSON"
        );
    }
}
