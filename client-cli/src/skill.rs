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
use serde_json::{Map, Value};
use skillctl::render::TerminalOutput;
use skillctl::{KernelClient, OutputHandler, Quiet};
use skillkernel_protocol::content::{
    MetricsFormat, MetricsReport, Reply, SkillFailure, SkillReply, SkillRequest, SkillSummary,
    TestMode, TrustReport, ValidationError,
};

use crate::table::{print_table, text};

#[derive(Debug, Subcommand)]
pub enum SkillCommand {
    /// Every skill the kernel knows, and the files that failed to load;
    /// `--installed`: the skills installed with `skill install`.
    List {
        #[arg(long)]
        installed: bool,
    },
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
    /// Trust a skill that asks for more than the default (a program,
    /// network, paths, environment): shows what it would be granted, asks
    /// (on a terminal) and records the trust against the digest of its
    /// files. Any later change to them withdraws it.
    Trust {
        skill: String,
        /// Trust without asking (what was shown is still what is trusted).
        #[arg(long, short)]
        yes: bool,
    },
    /// Withdraw trust in a skill.
    Untrust { skill: String },
    /// Install a skill into the kernel's user skill directory: a git URL
    /// (`--ref`, `--subdir`), an http(s)/file URL or path of a .tar.gz or
    /// .zip, or a local folder.
    Install {
        source: String,
        /// A branch, tag or commit of a git source.
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// The skill's folder inside the source.
        #[arg(long)]
        subdir: Option<String>,
    },
    /// Fetch an installed skill (or every one) again from its source.
    Update { skill: Option<String> },
    /// Remove an installed skill.
    Remove { skill: String },
    /// Run a skill's own tests; exit 1 when one fails.
    Test {
        skill: String,
        /// Run live and keep the answers beside the skill.
        #[arg(long, conflicts_with = "replay")]
        record: bool,
        /// Answer from the kept answers: no model.
        #[arg(long)]
        replay: bool,
        /// The model to run against (default: the skill's own routing).
        #[arg(long)]
        model: Option<String>,
    },
}

impl SkillCommand {
    fn request(&self) -> Result<SkillRequest, String> {
        Ok(match self {
            SkillCommand::List { installed: false } => SkillRequest::List,
            SkillCommand::List { installed: true } => SkillRequest::Installed,
            SkillCommand::Install {
                source,
                git_ref,
                subdir,
            } => SkillRequest::Install {
                source: local_path(source),
                git_ref: git_ref.clone(),
                subdir: subdir.clone(),
            },
            SkillCommand::Update { skill } => SkillRequest::Update {
                skill: skill.clone(),
            },
            SkillCommand::Remove { skill } => SkillRequest::Remove {
                skill: skill.clone(),
            },
            SkillCommand::Test {
                skill,
                record,
                replay,
                model,
            } => SkillRequest::Test {
                skill: skill.clone(),
                mode: if *record {
                    TestMode::Record
                } else if *replay {
                    TestMode::Replay
                } else {
                    TestMode::Live
                },
                model: model.clone(),
            },
            SkillCommand::Info { skill } => SkillRequest::Info {
                skill: skill.clone(),
            },
            SkillCommand::Search { query } => SkillRequest::Search {
                query: query.join(" "),
            },
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
                SkillRequest::Run {
                    skill: skill.clone(),
                    input,
                    args: parse_args(args)?,
                }
            }
            SkillCommand::Validate { path } => SkillRequest::Validate {
                path: Some(path.clone()),
                skill: None,
            },
            SkillCommand::Reload { skill } => SkillRequest::Reload {
                skill: skill.clone(),
            },
            SkillCommand::Trust { skill, .. } => SkillRequest::Trust {
                skill: skill.clone(),
                digest: None,
                confirm: false,
            },
            SkillCommand::Untrust { skill } => SkillRequest::Untrust {
                skill: skill.clone(),
            },
            SkillCommand::Metrics { skill, prometheus } => SkillRequest::Metrics {
                skill: skill.clone(),
                format: if *prometheus {
                    MetricsFormat::Prometheus
                } else {
                    MetricsFormat::Json
                },
            },
        })
    }
}

/// A relative path that exists here, made absolute: the kernel would
/// take it inside its own working directory. Anything else as typed.
fn local_path(source: &str) -> String {
    let path = std::path::Path::new(source);
    let plain = !source.contains("://") && !source.starts_with("git+") && !source.contains('@');
    if plain && path.is_relative() && path.exists() {
        if let Ok(abs) = std::path::absolute(path) {
            return abs.display().to_string();
        }
    }
    source.to_owned()
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

fn skill_rows<'a>(skills: impl IntoIterator<Item = &'a SkillSummary>) -> Vec<Vec<String>> {
    skills
        .into_iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.version.clone(),
                s.kind.clone(),
                s.state.clone(),
                s.origin.clone(),
                s.trust_label().to_owned(),
                s.tags.join(","),
                s.description.clone(),
            ]
        })
        .collect()
}

const SKILL_COLUMNS: [&str; 8] = [
    "name",
    "version",
    "kind",
    "state",
    "origin",
    "trust",
    "tags",
    "description",
];

/// One line per file that did not load: `FILE[:LINE]: [`FIELD`: ]MESSAGE[ — REMEDY]`.
fn print_problem(
    file: Option<&str>,
    line: Option<usize>,
    field: Option<&str>,
    message: &str,
    remedy: &str,
) {
    let line = line.map(|l| format!(":{l}")).unwrap_or_default();
    let field = field.map(|f| format!("`{f}`: ")).unwrap_or_default();
    let mut shown = format!("{}{line}: {field}{message}", file.unwrap_or(""));
    if !remedy.is_empty() {
        shown.push_str(&format!(" — {remedy}"));
    }
    eprintln!("{shown}");
}

/// The registry's failures: a path, a message (naming the rest) and a hint.
fn print_failures(failures: &[SkillFailure]) {
    for f in failures {
        print_problem(f.path.as_deref(), None, None, &f.message, &f.hint);
    }
}

/// Load errors of `validate`: file, field, line and remedy.
fn print_errors(errors: &[ValidationError]) {
    for e in errors {
        print_problem(
            e.file.as_deref(),
            e.line,
            e.field.as_deref(),
            &e.message,
            &e.remedy,
        );
    }
}

/// The skills `validate` says loaded: skill objects, or ids.
fn validated_rows(skills: &[Value]) -> Vec<Vec<String>> {
    skills
        .iter()
        .map(|s| {
            let tags: Vec<String> = s["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let name = match s {
                Value::String(id) => id.clone(),
                _ => text(&s["name"]),
            };
            vec![
                name,
                text(&s["version"]),
                text(&s["kind"]),
                text(&s["state"]),
                text(&s["origin"]),
                String::new(),
                tags.join(","),
                text(&s["description"]),
            ]
        })
        .collect()
}

fn print_reply(command: &SkillCommand, reply: &SkillReply) {
    match reply {
        SkillReply::List(listing) => {
            print_table(&SKILL_COLUMNS, &skill_rows(&listing.skills));
            print_failures(&listing.failures);
        }
        SkillReply::Search { skills } => {
            print_table(&SKILL_COLUMNS, &skill_rows(skills.iter().map(|h| &h.skill)));
        }
        SkillReply::Info { skill } => {
            println!(
                "{}",
                serde_json::to_string_pretty(skill).unwrap_or_default()
            )
        }
        SkillReply::Run { .. } => {}
        SkillReply::Validate(v) => {
            if v.valid {
                if let SkillCommand::Validate { path } = command {
                    println!("{path}: valid");
                }
                print_table(&SKILL_COLUMNS, &validated_rows(&v.skills));
            }
            print_errors(&v.errors);
        }
        SkillReply::Reload { report } => {
            for (what, names) in [
                ("added", &report.added),
                ("updated", &report.updated),
                ("removed", &report.removed),
            ] {
                if !names.is_empty() {
                    println!("{what}: {}", names.join(", "));
                }
            }
            let failed: Vec<String> = report
                .failed
                .iter()
                .map(|f| f.skill.clone().or(f.path.clone()).unwrap_or_default())
                .collect();
            if !failed.is_empty() {
                println!("failed: {}", failed.join(", "));
            }
            print_failures(&report.failed);
        }
        SkillReply::Metrics(MetricsReport::Prometheus { prometheus }) => print!("{prometheus}"),
        SkillReply::Metrics(MetricsReport::Json { metrics }) => println!(
            "{}",
            serde_json::to_string_pretty(metrics).unwrap_or_default()
        ),
        SkillReply::Install(report) => println!("{}", report.text()),
        SkillReply::Update { skills } => {
            if skills.is_empty() {
                println!("no installed skills");
            }
            for r in skills {
                println!("{}", r.text());
            }
        }
        SkillReply::Remove { skill, path } => println!("removed {skill} ({path})"),
        SkillReply::Test(report) => println!("{}", report.text()),
        SkillReply::Installed { skills } => {
            let rows: Vec<Vec<String>> = skills
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.skill.clone(),
                        s.state.clone(),
                        s.source.clone(),
                        s.resolved.clone(),
                        s.signed_by.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &["name", "skill", "state", "source", "resolved", "signed by"],
                &rows,
            );
        }
        SkillReply::Trust(report) => println!("{}", report.text(false)),
        SkillReply::Untrust(report) => println!("{}", report.text(true)),
        SkillReply::Load { .. }
        | SkillReply::Unload { .. }
        | SkillReply::Enable { .. }
        | SkillReply::Disable { .. }
        | SkillReply::Reset(_) => {}
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
    let running = matches!(
        command,
        SkillCommand::Run { .. } | SkillCommand::Test { .. }
    );
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
    let request = command.request()?;
    let reply = crate::request::send(client, &request, timeout, wait, handler).await;
    terminal.finish();
    let raw = reply?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&raw).unwrap_or_default());
    }
    let answer = match crate::request::parse::<SkillRequest>(&raw)? {
        Reply::Ok(answer) => answer,
        Reply::Error(e) => {
            if !terminal.saw_error {
                eprintln!("{}: {}", e.error.ename, e.error.evalue);
                if !e.hint.is_empty() {
                    eprintln!("hint: {}", e.hint);
                }
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if let (SkillCommand::Trust { skill, yes }, SkillReply::Trust(review)) = (&command, &answer) {
        return confirm_trust(client, skill, *yes, review, json_out, timeout).await;
    }
    if !json_out {
        print_reply(&command, &answer);
    }
    let invalid = matches!(&answer, SkillReply::Validate(v) if !v.valid)
        || matches!(&answer, SkillReply::Test(r) if r.failed > 0);
    Ok(if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `skillctl skill trust`, after the review: ask (on a terminal, unless
/// `--yes`), then trust exactly what was reviewed.
async fn confirm_trust(
    client: &mut KernelClient,
    skill: &str,
    yes: bool,
    review: &TrustReport,
    json_out: bool,
    timeout: Duration,
) -> Result<ExitCode, String> {
    if !json_out {
        println!("{}", review.text(false));
    }
    match review.mark.as_str() {
        "untrusted" | "changed" => {}
        "refused" | "unknown" => return Ok(ExitCode::FAILURE),
        _ => return Ok(ExitCode::SUCCESS),
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "not trusted: confirm on a terminal, or pass --yes to trust what is shown above"
            );
            return Ok(ExitCode::FAILURE);
        }
        eprint!("Trust {skill} with what it asks for above? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("not trusted");
            return Ok(ExitCode::FAILURE);
        }
    }
    let request = SkillRequest::Trust {
        skill: skill.to_owned(),
        digest: review.digest.clone(),
        confirm: true,
    };
    let wait = timeout.max(Duration::from_secs(60));
    let raw = crate::request::send(client, &request, timeout, wait, &mut Quiet).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&raw).unwrap_or_default());
    }
    match crate::request::parse::<SkillRequest>(&raw)? {
        Reply::Ok(SkillReply::Trust(report)) => {
            if !json_out {
                println!("{}", report.text(false));
            }
            Ok(ExitCode::SUCCESS)
        }
        Reply::Ok(_) => Err("the kernel answered `trust` with another action".into()),
        Reply::Error(e) => {
            eprintln!("{}: {}", e.error.ename, e.error.evalue);
            if !e.hint.is_empty() {
                eprintln!("hint: {}", e.hint);
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn run_arguments_become_string_args_and_bad_words_are_refused() {
        let args = parse_args(&["language=French".into(), "n=3".into()]).unwrap();
        assert_eq!(Value::Object(args), json!({"language": "French", "n": "3"}));
        let err = parse_args(&["French".into()]).unwrap_err();
        assert_eq!(err, "`French` is not NAME=VALUE");
        assert!(parse_args(&["=x".into()]).is_err());
    }
}
