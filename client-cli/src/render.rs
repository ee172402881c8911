//! Showing a cell's output in a terminal.

use std::io::{BufRead, Write};

use serde_json::Value;
use skillkernel_protocol::Message;

use crate::OutputHandler;

/// The best plain-text form of a mime bundle.
pub fn bundle_text(data: &Value) -> Option<String> {
    ["text/plain", "text/markdown"]
        .iter()
        .find_map(|mime| data.get(*mime).and_then(Value::as_str))
        .map(str::to_owned)
        .or_else(|| data.get("application/json").map(|v| v.to_string()))
}

/// Prints output to stdout/stderr as it streams in; answers input
/// requests from the terminal.
#[derive(Default)]
pub struct TerminalOutput {
    /// Whether an `error` was shown.
    pub saw_error: bool,
    /// Text already printed for each `display_id`, so an update that
    /// extends it (a streaming answer) prints only what is new.
    displays: std::collections::HashMap<String, String>,
}

impl TerminalOutput {
    fn show_display(&mut self, content: &Value, update: bool) {
        let Some(text) = bundle_text(&content["data"]) else {
            return;
        };
        let id = content["transient"]["display_id"]
            .as_str()
            .map(str::to_owned);
        let Some(id) = id else {
            println!("{}", text.trim_end());
            return;
        };
        let shown = self.displays.entry(id).or_default();
        match text.strip_prefix(shown.as_str()) {
            Some(delta) if update || shown.is_empty() => print!("{delta}"),
            // Replaced rather than extended: show it whole on a new line.
            _ => print!("\n{text}"),
        }
        let _ = std::io::stdout().flush();
        *shown = text;
    }

    /// Ends any display still open on the line.
    pub fn finish(&mut self) {
        if self.displays.values().any(|t| !t.ends_with('\n')) {
            println!();
        }
        self.displays.clear();
    }
}

impl OutputHandler for TerminalOutput {
    fn on_iopub(&mut self, msg: &Message) {
        let c = &msg.content;
        match msg.msg_type() {
            "stream" => {
                let text = c["text"].as_str().unwrap_or("");
                if c["name"] == "stderr" {
                    eprint!("{text}");
                    let _ = std::io::stderr().flush();
                } else {
                    print!("{text}");
                    let _ = std::io::stdout().flush();
                }
            }
            "execute_result" => {
                if let Some(text) = bundle_text(&c["data"]) {
                    println!("{}", text.trim_end());
                }
            }
            "display_data" => self.show_display(c, false),
            "update_display_data" => self.show_display(c, true),
            "error" => {
                self.saw_error = true;
                match c["traceback"].as_array() {
                    Some(lines) if !lines.is_empty() => {
                        for line in lines {
                            eprintln!("{}", line.as_str().unwrap_or(""));
                        }
                    }
                    _ => eprintln!(
                        "{}: {}",
                        c["ename"].as_str().unwrap_or("Error"),
                        c["evalue"].as_str().unwrap_or("")
                    ),
                }
            }
            _ => {}
        }
    }

    fn on_input_request(&mut self, prompt: &str, _password: bool) -> Option<String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).ok()?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
