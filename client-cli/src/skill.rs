//! `skillctl skill …`: the kernel's skills through `skill_request`.
//!
//! Each subcommand is one `skill_request` (see docs/protocol.md). Listings
//! print as tables, `--json` prints the reply content; `run` streams the
//! skill's output and workflow progress from IOPub as `exec` does, and
//! Ctrl-C interrupts it.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Map, Value};
use skillctl::render::TerminalOutput;
use skillctl::{KernelClient, OutputHandler, Quiet};

use crate::table::{print_table, text};

#[derive(Debug, Subcommand)]
pub enum SkillCommand {
    /// Every skill the kernel knows, and the files that failed to load.
    List,
    /// One skill: metadata, parameters, state, lifecycle, breaker, metrics.
    Info {
        /// NAME, or NAME@VERSION-RANGE (`summarize@^1`).
        skill: String,
    },
    /// Skills matching a query: words, `tag:T`, `author:A`, `category:C`.
    Search {
        #[arg(required = true)]
        query: Vec<String>,
    },
    /// Run a skill; its output streams to stdout.
    Run {
        skill: String,
        /// Parameters as NAME=VALUE.
        #[arg(value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// The input text (`{{input}}`); default: standard input when it
        /// is not a terminal, else empty.
        #[arg(long, short)]
        input: Option<String>,
    },
    /// Check a skill file or folder (on the kernel's host) without loading it.
    Validate { path: String },
    /// Re-read one skill, or every skill directory.
    Reload { skill: Option<String> },
    /// Execution metrics of one skill or all; `--prometheus` for the text
    /// exposition format.
    Metrics {
        skill: Option<String>,
        #[arg(long)]
        prometheus: bool,
    },
}

impl SkillCommand {
    fn request(&self) -> Result<Value, String> {
        Ok(match self {
            SkillCommand::List => json!({"action": "list"}),
            SkillCommand::Info { skill } => json!({"action": "info", "skill": skill}),
            SkillCommand::Search { query } => json!({"action": "search", "query": query.join(" ")}),
            SkillCommand::Run { skill, args, input } => {
                let input = match input {
                    Some(text) => text.clone(),
                    None if !std::io::stdin().is_terminal() => {
                        let mut text = String::new();
                        std::io::stdin()
                            .read_to_string(&mut text)
                            .map_err(|e| format!("cannot read the input from stdin: {e}"))?;
                        text
                    }
                    None => String::new(),
                };
                json!({"action": "run", "skill": skill, "input": input, "args": parse_args(args)?})
            }
            SkillCommand::Validate { path } => json!({"action": "validate", "path": path}),
            SkillCommand::Reload { skill } => json!({"action": "reload", "skill": skill}),
            SkillCommand::Metrics { skill, prometheus } => json!({
                "action": "metrics",
                "skill": skill,
                "format": if *prometheus { "prometheus" } else { "json" },
            }),
        })
    }
}

/// `NAME=VALUE` words into the request's `args` (values stay strings; the
/// kernel coerces them by the parameter's type).
fn parse_args(args: &[String]) -> Result<Map<String, Value>, String> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), Value::String(v.to_owned()))),
            _ => Err(format!("`{a}` is not NAME=VALUE")),
        })
        .collect()
}

fn skill_rows(skills: &Value) -> Vec<Vec<String>> {
    skills
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let tags: Vec<String> = s["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            vec![
                text(&s["name"]),
                text(&s["version"]),
                text(&s["kind"]),
                text(&s["state"]),
                text(&s["origin"]),
                tags.join(","),
                text(&s["description"]),
            ]
        })
        .collect()
}

const SKILL_COLUMNS: [&str; 7] = [
    "name",
    "version",
    "kind",
    "state",
    "origin",
    "tags",
    "description",
];

fn print_failures(c: &Value) {
    for f in c["failures"]
        .as_array()
        .or(c["errors"].as_array())
        .into_iter()
        .flatten()
    {
        // Load errors of `validate` carry file, field, line and remedy; the
        // registry's failures a path, a message (naming all that) and a hint.
        let line = f["line"]
            .as_u64()
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        let field = f["field"]
            .as_str()
            .map(|f| format!("`{f}`: "))
            .unwrap_or_default();
        let file = if f["file"].is_null() {
            &f["path"]
        } else {
            &f["file"]
        };
        let remedy = if f["remedy"].is_null() {
            &f["hint"]
        } else {
            &f["remedy"]
        };
        let mut shown = format!("{}{line}: {field}{}", text(file), text(&f["message"]));
        if !text(remedy).is_empty() {
            shown.push_str(&format!(" — {}", text(remedy)));
        }
        eprintln!("{shown}");
    }
}

fn print_reply(command: &SkillCommand, c: &Value) {
    match command {
        SkillCommand::List | SkillCommand::Search { .. } => {
            print_table(&SKILL_COLUMNS, &skill_rows(&c["skills"]));
            print_failures(c);
        }
        SkillCommand::Info { .. } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&c["skill"]).unwrap_or_default()
            )
        }
        SkillCommand::Run { .. } => {}
        SkillCommand::Validate { path } => {
            if c["valid"] == true {
                println!("{path}: valid");
                print_table(&SKILL_COLUMNS, &skill_rows(&c["skills"]));
            }
            print_failures(c);
        }
        SkillCommand::Reload { .. } => {
            let r = &c["report"];
            for what in ["added", "updated", "removed", "failed"] {
                let names: Vec<String> =
                    r[what].as_array().into_iter().flatten().map(text).collect();
                if !names.is_empty() {
                    println!("{what}: {}", names.join(", "));
                }
            }
            print_failures(r);
        }
        SkillCommand::Metrics { prometheus, .. } => {
            if *prometheus {
                print!("{}", text(&c["prometheus"]));
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&c["metrics"]).unwrap_or_default()
                );
            }
        }
    }
}

/// Runs one `skillctl skill` subcommand; exit 1 when the kernel refuses it
/// (or, for `validate`, when the skill is invalid).
pub async fn run(
    client: &mut KernelClient,
    command: SkillCommand,
    json_out: bool,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let running = matches!(command, SkillCommand::Run { .. });
    let wait = if running {
        // A skill runs as long as its timeout allows; Ctrl-C interrupts it.
        Duration::from_secs(24 * 3600)
    } else {
        timeout.max(Duration::from_secs(60))
    };
    let mut terminal = TerminalOutput::default();
    let mut quiet = Quiet;
    let handler: &mut dyn OutputHandler = if running && !json_out {
        &mut terminal
    } else {
        &mut quiet
    };
    let content = command.request()?;
    let reply =
        crate::request::send(client, "skill_request", content, timeout, wait, handler).await;
    terminal.finish();
    let reply = reply?;
    let c = &reply;
    if json_out {
        println!("{}", serde_json::to_string_pretty(c).unwrap_or_default());
    }
    if c["status"] != "ok" {
        if !terminal.saw_error {
            eprintln!("{}: {}", text(&c["ename"]), text(&c["evalue"]));
            if let Some(hint) = c["hint"].as_str().filter(|h| !h.is_empty()) {
                eprintln!("hint: {hint}");
            }
        }
        print_failures(c);
        return Ok(ExitCode::FAILURE);
    }
    if !json_out {
        print_reply(&command, c);
    }
    let invalid = matches!(command, SkillCommand::Validate { .. }) && c["valid"] != true;
    Ok(if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_arguments_become_string_args_and_bad_words_are_refused() {
        let args = parse_args(&["language=French".into(), "n=3".into()]).unwrap();
        assert_eq!(Value::Object(args), json!({"language": "French", "n": "3"}));
        let err = parse_args(&["French".into()]).unwrap_err();
        assert_eq!(err, "`French` is not NAME=VALUE");
        assert!(parse_args(&["=x".into()]).is_err());
    }
}
