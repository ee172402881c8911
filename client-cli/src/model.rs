//! `skillctl model …`: the kernel's models through `model_request`.
//!
//! Each subcommand is one `model_request`; the reply's data is printed as a
//! table (or as JSON with `--json`). `pull` also follows the request's
//! progress display on IOPub and draws it as a bar on the terminal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use skillctl::render::bundle_text;
use skillctl::{KernelClient, OutputHandler};

use crate::table::{print_table, text};
use skillkernel_protocol::Message;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Models of every backend (`*` marks the session's).
    List,
    /// Download a model: ORG/REPO/FILE.gguf from the hub, or name@ollama.
    Pull { model: String },
    /// Details of one model (default: the session's).
    Info { model: Option<String> },
    /// Backends, their versions and the session's model.
    Status,
    /// Delete a model.
    Rm { model: String },
    /// Make prompt cells of the kernel's session use a model or a profile.
    Use { model: String },
}

impl ModelCommand {
    fn request(&self) -> Value {
        match self {
            ModelCommand::List => json!({"action": "list"}),
            ModelCommand::Pull { model } => json!({"action": "pull", "model": model}),
            ModelCommand::Info { model } => json!({"action": "info", "model": model}),
            ModelCommand::Status => json!({"action": "status"}),
            ModelCommand::Rm { model } => json!({"action": "remove", "model": model}),
            ModelCommand::Use { model } => json!({"action": "use", "model": model}),
        }
    }
}

/// Draws the pull's progress display on stderr: one line redrawn in place
/// on a terminal, a line per step (and per 10%) otherwise.
struct Progress {
    tty: bool,
    last: String,
    last_decile: Option<u64>,
    open_line: bool,
}

impl Progress {
    fn percent(text: &str) -> Option<u64> {
        let end = text.find('%')?;
        let start = text[..end].rfind(|c: char| !c.is_ascii_digit())? + 1;
        text[start..end].parse().ok()
    }

    fn done(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
    }
}

impl OutputHandler for Progress {
    fn on_iopub(&mut self, msg: &Message) {
        if !matches!(msg.msg_type(), "display_data" | "update_display_data") {
            return;
        }
        let Some(text) = bundle_text(&msg.content["data"]) else {
            return;
        };
        let text = text.trim_end().to_owned();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{text}");
            self.open_line = true;
        } else {
            let step = |t: &str| t.split(" [").next().unwrap_or(t).to_owned();
            let decile = Self::percent(&text).map(|p| p / 10);
            if step(&text) != step(&self.last) || decile != self.last_decile {
                let _ = writeln!(err, "{text}");
            }
            self.last_decile = decile;
        }
        let _ = err.flush();
        self.last = text;
    }
}

fn size(v: &Value) -> String {
    match v.as_u64() {
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        None => "?".into(),
    }
}

fn model_row(m: &Value, current: &str) -> Vec<String> {
    let name = text(&m["name"]);
    let backend = text(&m["backend"]);
    let here = match current.rsplit_once('@') {
        Some((n, b)) => n == name && b == backend,
        None => name == current,
    };
    vec![
        if here { "*" } else { "" }.into(),
        name,
        backend,
        text(&m["family"]),
        text(&m["quantization"]),
        size(&m["size_bytes"]),
        text(&m["context_length"]),
    ]
}

const MODEL_COLUMNS: [&str; 7] = ["", "name", "backend", "family", "quant", "size", "context"];

fn print_reply(command: &ModelCommand, c: &Value) {
    match command {
        ModelCommand::List => {
            let current = text(&c["current"]);
            let rows: Vec<Vec<String>> = c["models"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| model_row(m, &current))
                .collect();
            print_table(&MODEL_COLUMNS, &rows);
            for down in c["unavailable"].as_array().into_iter().flatten() {
                eprintln!(
                    "{} not reachable: {}",
                    text(&down["backend"]),
                    text(&down["error"])
                );
            }
        }
        ModelCommand::Info { .. } => print_table(&MODEL_COLUMNS, &[model_row(&c["model"], "")]),
        ModelCommand::Status => {
            let rows: Vec<Vec<String>> = c["providers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    vec![
                        text(&p["backend"]),
                        if p["available"] == true { "yes" } else { "no" }.into(),
                        text(&p["version"]),
                        text(&p["detail"]),
                    ]
                })
                .collect();
            print_table(&["backend", "available", "version", "detail"], &rows);
            println!(
                "session model: {} -> {}",
                text(&c["current"]),
                c["current_resolved"].as_str().unwrap_or("unavailable")
            );
            match c["cache"]["entries"].as_u64() {
                Some(n) => println!("response cache: on, {n} entries"),
                None => println!("response cache: off"),
            }
        }
        ModelCommand::Rm { .. } => println!("removed {}", text(&c["removed"])),
        ModelCommand::Use { .. } => println!("prompt cells now use {}", text(&c["current"])),
        ModelCommand::Pull { model } => {
            let p = &c["pull"];
            println!(
                "pulled {model} into {} in {:.1} s",
                text(&p["backend"]),
                p["seconds"].as_f64().unwrap_or(0.0)
            );
        }
    }
}

/// Runs one `skillctl model` subcommand; exit 1 when the kernel refuses it.
pub async fn run(
    client: &mut KernelClient,
    command: ModelCommand,
    json_out: bool,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let wait = match command {
        // Downloads take as long as they take; Ctrl-C interrupts them.
        ModelCommand::Pull { .. } => Duration::from_secs(7 * 24 * 3600),
        _ => timeout.max(Duration::from_secs(120)),
    };
    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        last: String::new(),
        last_decile: None,
        open_line: false,
    };
    let reply = crate::request::send(
        client,
        "model_request",
        command.request(),
        timeout,
        wait,
        &mut progress,
    )
    .await;
    progress.done();
    let reply = reply?;
    let c = &reply;
    if json_out {
        println!("{}", serde_json::to_string_pretty(c).unwrap_or_default());
    }
    if c["status"] != "ok" {
        eprintln!("{}: {}", text(&c["ename"]), text(&c["evalue"]));
        return Ok(ExitCode::FAILURE);
    }
    if !json_out {
        print_reply(&command, c);
    }
    Ok(ExitCode::SUCCESS)
}
