//! `skillctl model …`: the kernel's models through `model_request`.
//!
//! Each subcommand is one `model_request`; the reply's data is printed as a
//! table (or as JSON with `--json`). `pull` also follows the request's
//! progress display on IOPub and draws it as a bar on the terminal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use skillctl::render::bundle_text;
use skillctl::{KernelClient, OutputHandler};
use skillkernel_protocol::content::{ModelEntry, ModelReply, ModelRequest, Reply};
use skillkernel_protocol::Message;

use crate::table::print_table;

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
    /// What model calls used and cost (also `skillctl usage`).
    Usage {
        /// Report over the last N days (default 7).
        #[arg(long)]
        days: Option<u32>,
    },
}

impl ModelCommand {
    fn request(&self) -> ModelRequest {
        match self {
            ModelCommand::List => ModelRequest::List,
            ModelCommand::Pull { model } => ModelRequest::Pull {
                model: model.clone(),
            },
            ModelCommand::Info { model } => ModelRequest::Info {
                model: model.clone(),
            },
            ModelCommand::Status => ModelRequest::Status,
            ModelCommand::Rm { model } => ModelRequest::Remove {
                model: model.clone(),
            },
            ModelCommand::Use { model } => ModelRequest::Use {
                model: model.clone(),
            },
            ModelCommand::Usage { days } => ModelRequest::Usage { days: *days },
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

fn size(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        None => "?".into(),
    }
}

fn model_row(m: &ModelEntry, current: &str) -> Vec<String> {
    let here = match current.rsplit_once('@') {
        Some((n, b)) => n == m.name && b == m.backend,
        None => m.name == current,
    };
    vec![
        if here { "*" } else { "" }.into(),
        m.name.clone(),
        m.backend.clone(),
        m.family.clone().unwrap_or_default(),
        m.quantization.clone().unwrap_or_default(),
        size(m.size_bytes),
        m.context_length.map(|c| c.to_string()).unwrap_or_default(),
        m.price
            .map(|p| format!("{} / {}", p.input, p.output))
            .unwrap_or_default(),
    ]
}

const MODEL_COLUMNS: [&str; 8] = [
    "",
    "name",
    "backend",
    "family",
    "quant",
    "size",
    "context",
    "price in / out per M",
];

fn print_reply(reply: &ModelReply) {
    match reply {
        ModelReply::List {
            models,
            unavailable,
            current,
        } => {
            let rows: Vec<Vec<String>> = models.iter().map(|m| model_row(m, current)).collect();
            print_table(&MODEL_COLUMNS, &rows);
            for down in unavailable {
                eprintln!("{} not reachable: {}", down.backend, down.error);
            }
        }
        ModelReply::Info { model } => print_table(&MODEL_COLUMNS, &[model_row(model, "")]),
        ModelReply::Status {
            providers,
            current,
            current_resolved,
            cache,
        } => {
            let rows: Vec<Vec<String>> = providers
                .iter()
                .map(|p| {
                    vec![
                        p.backend.clone(),
                        if p.available { "yes" } else { "no" }.into(),
                        p.version.clone().unwrap_or_default(),
                        p.detail.clone(),
                    ]
                })
                .collect();
            print_table(&["backend", "available", "version", "detail"], &rows);
            println!(
                "session model: {current} -> {}",
                current_resolved.as_deref().unwrap_or("unavailable")
            );
            match cache {
                Some(c) => println!("response cache: on, {} entries", c.entries),
                None => println!("response cache: off"),
            }
        }
        ModelReply::Remove { removed } => println!("removed {removed}"),
        ModelReply::Use { current, .. } => println!("prompt cells now use {current}"),
        ModelReply::Pull { pull, .. } => {
            println!(
                "pulled {} into {} in {:.1} s",
                pull.model, pull.backend, pull.seconds
            );
        }
        ModelReply::Usage { usage } => crate::usage::print(usage),
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
    let reply =
        crate::request::send(client, &command.request(), timeout, wait, &mut progress).await;
    progress.done();
    let raw = reply?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&raw).unwrap_or_default());
    }
    match crate::request::parse::<ModelRequest>(&raw)? {
        Reply::Error(e) => {
            eprintln!("{}: {}", e.ename, e.evalue);
            Ok(ExitCode::FAILURE)
        }
        Reply::Ok(answer) => {
            if !json_out {
                print_reply(&answer);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
