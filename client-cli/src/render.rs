//! Showing a cell's output in a terminal.
//!
//! Results go to stdout, each once: a streamed answer (a display whose
//! updates extend it) prints only what is new. Progress displays — a
//! workflow's phases, a model pull's bar — go to stderr: redrawn in place
//! when stderr is a terminal, else printed once, in their last state, at
//! the end; so `skillctl … > file` or `| less` gets the answer alone.

use std::io::{BufRead, IsTerminal, Write};

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

/// The `display_id` prefixes of displays that report progress rather than
/// a result (docs/protocol.md): a workflow's phases, a model pull's bar, a
/// tool loop's calls.
const PROGRESS_DISPLAYS: &[&str] = &["skill-progress-", "pull-", "tool-"];

/// Whether the display `display_id` reports progress.
pub fn is_progress(display_id: &str) -> bool {
    PROGRESS_DISPLAYS.iter().any(|p| display_id.starts_with(p))
}

/// Prints output to stdout/stderr as it streams in; answers input
/// requests from the terminal.
pub struct TerminalOutput {
    /// Whether an `error` was shown.
    pub saw_error: bool,
    /// Text already printed for each `display_id`, so an update that
    /// extends it (a streaming answer) prints only what is new.
    displays: std::collections::HashMap<String, String>,
    /// Whether stdout is a terminal (then its output moves the cursor
    /// that progress redraws rely on).
    stdout_tty: bool,
    progress: Progress,
}

impl Default for TerminalOutput {
    fn default() -> Self {
        TerminalOutput {
            saw_error: false,
            displays: Default::default(),
            stdout_tty: std::io::stdout().is_terminal(),
            progress: Progress::new(std::io::stderr().is_terminal()),
        }
    }
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
            self.wrote_stdout();
            return;
        };
        if is_progress(&id) {
            let mut err = std::io::stderr().lock();
            self.progress.show(&id, text.trim_end(), &mut err);
            let _ = err.flush();
            return;
        }
        let shown = self.displays.entry(id).or_default();
        match text.strip_prefix(shown.as_str()) {
            Some(delta) if update || shown.is_empty() => print!("{delta}"),
            // Replaced rather than extended: show it whole on a new line.
            _ => print!("\n{text}"),
        }
        let _ = std::io::stdout().flush();
        *shown = text;
        self.wrote_stdout();
    }

    /// Something went to stdout: on a terminal, below any progress block.
    fn wrote_stdout(&mut self) {
        if self.stdout_tty {
            self.progress.covered();
        }
    }

    /// Ends any display still open on the line, then shows the progress
    /// that is not on the screen yet in its last state.
    pub fn finish(&mut self) {
        if self.displays.values().any(|t| !t.ends_with('\n')) {
            println!();
            self.wrote_stdout();
        }
        self.displays.clear();
        let mut err = std::io::stderr().lock();
        self.progress.finish(&mut err);
        let _ = err.flush();
    }
}

/// Progress displays, drawn on stderr.
///
/// On a terminal a display is drawn when it appears and redrawn in place
/// (cursor up, clear, draw) as long as nothing was written after it; once
/// other output covers it, its later states wait for [`Progress::finish`],
/// which draws the last one. Elsewhere each display is written once, in its
/// last state, by `finish`.
struct Progress {
    tty: bool,
    /// Each display's latest text and whether that text is drawn, in the
    /// order the displays appeared.
    latest: Vec<(String, String, bool)>,
    /// The display last drawn and its height in lines, while nothing was
    /// written after it.
    on_screen: Option<(String, usize)>,
}

impl Progress {
    fn new(tty: bool) -> Self {
        Progress {
            tty,
            latest: Vec::new(),
            on_screen: None,
        }
    }

    fn show(&mut self, id: &str, text: &str, out: &mut dyn Write) {
        let (index, new) = match self.latest.iter().position(|(i, _, _)| i == id) {
            Some(index) => (index, false),
            None => {
                self.latest.push((id.to_owned(), String::new(), false));
                (self.latest.len() - 1, true)
            }
        };
        self.latest[index].1 = text.to_owned();
        self.latest[index].2 = false;
        if !self.tty {
            return;
        }
        match &self.on_screen {
            Some((shown, lines)) if shown == id => {
                // Back to the block's first line and clear to the end.
                let _ = write!(out, "\r\x1b[{lines}A\x1b[J");
            }
            _ if new => {}
            // Covered by other output: drawn again at the end.
            _ => return,
        }
        self.draw(index, out);
    }

    fn draw(&mut self, index: usize, out: &mut dyn Write) {
        let (id, text, drawn) = &mut self.latest[index];
        let _ = writeln!(out, "{text}");
        *drawn = true;
        self.on_screen = Some((id.clone(), text.lines().count().max(1)));
    }

    /// Other output was written below the progress on the terminal.
    fn covered(&mut self) {
        self.on_screen = None;
    }

    /// Draws each display whose last state is not drawn yet, and forgets
    /// them all.
    fn finish(&mut self, out: &mut dyn Write) {
        for index in 0..self.latest.len() {
            if !self.latest[index].2 {
                self.draw(index, out);
            }
        }
        self.latest.clear();
        self.on_screen = None;
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
                    self.progress.covered();
                } else {
                    print!("{text}");
                    let _ = std::io::stdout().flush();
                    self.wrote_stdout();
                }
            }
            "execute_result" => {
                if let Some(text) = bundle_text(&c["data"]) {
                    println!("{}", text.trim_end());
                    self.wrote_stdout();
                }
            }
            "display_data" => self.show_display(c, false),
            "update_display_data" => self.show_display(c, true),
            "error" => {
                self.saw_error = true;
                self.progress.covered();
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
        self.progress.covered();
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).ok()?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(progress: &mut Progress, steps: &[(&str, &str)]) -> String {
        let mut out = Vec::new();
        for (id, text) in steps {
            progress.show(id, text, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn progress_is_recognised_by_its_display_id() {
        assert!(is_progress("skill-progress-1f2e"));
        assert!(is_progress("pull-1f2e"));
        assert!(!is_progress("skill-1f2e"), "a skill's answer");
        assert!(!is_progress("prompt-1f2e"));
    }

    #[test]
    fn off_a_terminal_progress_is_written_once_in_its_last_state() {
        let mut p = Progress::new(false);
        let during = shown(
            &mut p,
            &[
                ("skill-progress-1", "wf:\n  ▶ A"),
                ("skill-progress-1", "wf:\n  ✓ A"),
            ],
        );
        assert_eq!(during, "");
        let mut out = Vec::new();
        p.finish(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "wf:\n  ✓ A\n");
        let mut again = Vec::new();
        p.finish(&mut again);
        assert!(again.is_empty(), "finished progress is not written again");
    }

    #[test]
    fn on_a_terminal_progress_is_redrawn_in_place_until_covered() {
        let mut p = Progress::new(true);
        let text = shown(
            &mut p,
            &[
                ("skill-progress-1", "wf:\n  ▶ A"),
                ("skill-progress-1", "wf:\n  ✓ A"),
            ],
        );
        assert_eq!(text, "wf:\n  ▶ A\n\r\x1b[2A\x1b[Jwf:\n  ✓ A\n");
        // An answer printed below it: later states wait for the end.
        p.covered();
        let text = shown(&mut p, &[("skill-progress-1", "wf:\n  ✓ A\n  ✓ B")]);
        assert_eq!(text, "");
        let mut out = Vec::new();
        p.finish(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "wf:\n  ✓ A\n  ✓ B\n");
    }

    #[test]
    fn a_finished_progress_that_was_drawn_is_not_drawn_again() {
        let mut p = Progress::new(true);
        shown(&mut p, &[("pull-1", "m: 50%"), ("pull-1", "m: 100%")]);
        let mut out = Vec::new();
        p.finish(&mut out);
        assert!(out.is_empty());
    }
}
