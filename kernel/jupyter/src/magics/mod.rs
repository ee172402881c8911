//! Magics: the `%name` line commands and `%%name` cell commands.
//!
//! Every magic is described once in [`LINE_MAGICS`] / [`CELL_MAGICS`]; help,
//! completion, inspection and `is_complete` all read that table, so a new
//! magic is documented and completable the moment it is added.

pub mod help;
mod history;
mod mcp;
mod misc;
mod model;
pub mod sandbox;
pub mod skill;
pub(crate) mod skill_view;
mod status;
pub(crate) mod usage;
pub mod vars;

use crate::cell::CellMagic;
use crate::errors::KernelError;
use crate::exec_context::ExecContext;

/// The description of one magic.
#[derive(Debug)]
pub struct MagicSpec {
    pub name: &'static str,
    /// One-line usage, e.g. `%set NAME = VALUE`.
    pub usage: &'static str,
    pub summary: &'static str,
    /// Markdown shown by `%help NAME` and inspection.
    pub help: &'static str,
    /// Words completed after the magic name.
    pub subcommands: &'static [&'static str],
    /// Whether the first argument is a session variable name.
    pub takes_variable: bool,
}

/// `%name` magics.
pub const LINE_MAGICS: &[MagicSpec] = &[
    MagicSpec {
        name: "help",
        usage: "%help [TOPIC]",
        summary: "Show what the kernel can do, or page help on a magic or topic.",
        help: "With no argument, lists every magic and help topic.\n\
               With a magic name (`%help set`) or a topic (`%help commands`), opens that page in the pager.",
        subcommands: &[],
        takes_variable: false,
    },
    MagicSpec {
        name: "set",
        usage: "%set NAME = VALUE",
        summary: "Set a session variable.",
        help: "Stores `VALUE` under `NAME` for this session. A value that is valid JSON \
               (`3`, `[1, 2]`, `\"text\"`) is kept as JSON; anything else is kept as text.\n\n\
               Names start with a letter or `_` and hold letters, digits and `_`.\n\n\
               Example: `%set language = French`",
        subcommands: &[],
        takes_variable: true,
    },
    MagicSpec {
        name: "get",
        usage: "%get NAME",
        summary: "Show a session variable as the cell's result.",
        help: "Returns the value of `NAME` as the cell's `execute_result` \
               (`text/plain`, and `application/json` for JSON values).",
        subcommands: &[],
        takes_variable: true,
    },
    MagicSpec {
        name: "unset",
        usage: "%unset NAME",
        summary: "Remove a session variable.",
        help: "Removes `NAME` from the session variables. Removing a name that is not set is an error.",
        subcommands: &[],
        takes_variable: true,
    },
    MagicSpec {
        name: "vars",
        usage: "%vars",
        summary: "List session variables as a table.",
        help: "Shows every session variable with its type and value, as an HTML table \
               with a plain-text fallback.",
        subcommands: &[],
        takes_variable: false,
    },
    MagicSpec {
        name: "history",
        usage: "%history [-n N] [-g PATTERN] [-u] [-o]",
        summary: "Show the input history of this session.",
        help: "Prints the cells run so far, numbered by execution count.\n\n\
               * `-n N` — only the last N entries\n\
               * `-g PATTERN` — entries containing the glob PATTERN (`*`, `?`, `[abc]`; searched \
               as `*PATTERN*`, as in IPython), over all sessions; `-g` alone lists them all\n\
               * `-u` — with `-g`, each distinct input once\n\
               * `-o` — also show a summary of each cell's output",
        subcommands: &["-n", "-g", "-u", "-o"],
        takes_variable: false,
    },
    MagicSpec {
        name: "clear",
        usage: misc::CLEAR_USAGE,
        summary: "Clear the cell's output, or with --conversation start a new conversation.",
        help: "Sends `clear_output` to the front end. With `--wait`, the output is cleared \
               only when new output arrives, which avoids flicker.\n\n\
               `%clear --conversation` forgets the session's conversation (kept across \
               restarts otherwise): the next prompt cell starts a new one, and the embedded \
               engine frees the old one's KV cache at once.",
        subcommands: &["--wait", "--conversation"],
        takes_variable: false,
    },
    MagicSpec {
        name: "input",
        usage: "%input [--password] NAME [PROMPT]",
        summary: "Ask the user for a value and store it in a session variable.",
        help: "Sends an `input_request` to the front end and stores the answer under `NAME`. \
               With `--password` the front end hides what is typed. Needs a client that \
               accepts input (`allow_stdin`).",
        subcommands: &["--password"],
        takes_variable: true,
    },
    MagicSpec {
        name: "model",
        usage: model::USAGE,
        summary: "List, pull, inspect and choose the models prompt cells use.",
        help: "* `%model` or `%model list` — the models of every backend, as a table (`*` marks this session's); unreachable backends are named\n\
               * `%model use SPEC` — prompt cells of this session use SPEC: a model (file stem or unique prefix), `name@backend` (`llama3.2@ollama`), or a routing profile (`cheap`, `balanced`, `premium`); the conversation is kept\n\
               * `%model info [SPEC]` — one model's details: context length, size, quantization, and its price per million tokens\n\
               * `%model status` — each backend (available, version, detail), where the session's model routes now, the response cache\n\
               * `%model stats` — this session's prompts per model: turns, tokens, tokens/s, time to first token\n\
               * `%model pull SPEC` — download with a progress bar: `ORG/REPO/FILE.gguf` from the hub into the model directory, or `name@ollama` through Ollama\n\
               * `%model import PATH [NAME]` — copy a local GGUF file into the model directory (checked first)\n\
               * `%model rm SPEC` — delete a model",
        subcommands: &["list", "use", "info", "status", "stats", "pull", "import", "rm"],
        takes_variable: false,
    },
    MagicSpec {
        name: "status",
        usage: "%status",
        summary: "Show the kernel's health, version, session and uptime.",
        help: "Shows the health monitor's verdict (`healthy`, `degraded` or `unhealthy`, with \
               the reasons), the process's RSS and CPU, system memory, load average and uptime, \
               then the kernel version, protocol version, pid, this process's session id, \
               uptime, execution count, session variables, conversation turns and model. \
               The same report as `status_request` and `skillctl status`.",
        subcommands: &[],
        takes_variable: false,
    },
    MagicSpec {
        name: "skill",
        usage: skill::USAGE,
        summary: "List, search, inspect, run, load, reload and check skills.",
        help: "* `%skill` or `%skill list` — every skill (name, version, kind, state, origin), and the files that did not load with why\n\
               * `%skill search QUERY` — by words, `tag:T`, `author:A`, `category:C`\n\
               * `%skill info NAME` — parameters, dependencies, state and lifecycle, circuit breaker (also Shift-Tab on a skill name)\n\
               * `%skill run NAME [k=v …] [-- INPUT]` — run it (`%%run` takes the input from the cell body)\n\
               * `%skill load NAME|PATH` — parse a skill now, or add a skill file or folder to this session\n\
               * `%skill reload [NAME]` — re-read one skill or every skill directory\n\
               * `%skill unload|enable|disable NAME`\n\
               * `%skill validate [NAME|PATH]` — check a skill without running it; with no argument, every skill (discovery reads only headers, so template errors otherwise show at first use)\n\
               * `%skill metrics [NAME] [--prometheus]` — runs, errors, retries, cache hits, tokens, times\n\
               * `%skill reset NAME` — close its circuit breaker, zero its metrics, forget its conversation\n\
               * `%skill trust NAME` — trust a skill that asks for more than the default (a program, network, paths, environment): shows what it is granted and records it against the digest of its files; any later change to them withdraws it. `%skill untrust NAME` withdraws it.\n\
               * `%skill install SOURCE [--ref REF] [--subdir PATH]` — install a shared skill from git, an archive or a folder (checked, signed with minisign, recorded in the lock file); `%skill update [NAME]`, `%skill remove NAME`, `%skill list --installed`\n\
               * `%skill test NAME [--record|--replay] [--model M]` — run the skill's own tests (`tests` in its manifest, or tests.yaml beside it), live, recording the answers beside the skill, or replaying them without a model\n\n\
               `NAME` may carry a version requirement: `summarize@^1`. See `docs/skills.md`.",
        subcommands: &["list", "search", "info", "run", "load", "reload", "unload", "enable", "disable", "validate", "metrics", "reset", "trust", "untrust", "install", "update", "remove", "test"],
        takes_variable: false,
    },
    MagicSpec {
        name: "sandbox",
        usage: sandbox::USAGE,
        summary: "Show which sandbox layers this host enforces, and the running sessions.",
        help: "* `%sandbox` or `%sandbox status` — each layer (rlimits, no_new_privs, Landlock, seccomp): active here or why not; what `!command` cells may do; the session skills' processes; where the audit log is
               * `%sandbox end NAME` — end a session skill's process (its state is lost)

               `!command` cells and command and session skills run in the sandbox. See `docs/security.md`.",
        subcommands: &["status", "end"],
        takes_variable: false,
    },
    MagicSpec {
        name: "mcp",
        usage: mcp::USAGE,
        summary: "The MCP servers skills may use: their state and tools, and calling a tool from a cell.",
        help: "* `%mcp` or `%mcp servers` — each server of `[mcp.servers]`: stdio (launched in the sandbox) or HTTP, its state (stopped until first use, running with its pid, crashed, failed with why), its tools, its restarts\n\
               * `%mcp tools [SERVER]` — start the servers (or one) and list their tools with their arguments (`*`: required)\n\
               * `%mcp call SERVER.TOOL {\"arg\": …}` — call a tool; the result shows as text and JSON; interrupt cancels the call\n\n\
               Skills call them in their tool loop with `tools: [{mcp: SERVER}]` (or `mcp__SERVER` in a SKILL.md's `allowed-tools`). \
               `skillctl mcp servers|tools` gives the same lists. See `docs/mcp.md`.",
        subcommands: &["servers", "tools", "call"],
        takes_variable: false,
    },
    MagicSpec {
        name: "usage",
        usage: usage::USAGE,
        summary: "What model calls used and cost: today, the last days, by model and by skill, and the budgets.",
        help: "* `%usage` — calls, tokens in and out, cost and mean time to first token, today and over the last 7 days; the same by model and by skill; each budget and what today has spent of it\n\
               * `%usage --days N` — over the last N days instead (1–366)\n\n\
               Every model call of every kernel sharing the state directory is recorded in its `usage/` folder. \
               Cost comes from `[models.prices]` (per million tokens); `[models.budgets]` sets daily limits. \
               `skillctl usage` gives the same report, or JSON with `--json`.",
        subcommands: &["--days"],
        takes_variable: false,
    },
];

/// `%%name` magics.
pub const CELL_MAGICS: &[MagicSpec] = &[
    MagicSpec {
        name: "prompt",
        usage: "%%prompt [--json | --schema SCHEMA]",
        summary: "A one-shot prompt: the body, with {{var}} from session variables, without the conversation; --schema makes the answer typed JSON.",
        help: "Sends the body to the session's model on its own: no earlier turns go with it and \
               the exchange is not added to the conversation. `{{name}}` is replaced by the \
               session variable `name` (set with `%set` or `%%set`); a missing one is an error.\n\n\
               Example:\n\n```\n%%prompt\nTranslate into {{language}}: {{text}}\n```\n\n\
               `--schema` followed by a JSON Schema (inline, or the path of a .json file) makes \
               the answer JSON valid for it: the embedded engine and Ollama are held to the \
               schema token by token, every answer is validated (asked once more if it is not), \
               and it is shown as `application/json`. `--json` asks for any JSON object.\n\n\
               ```\n%%prompt --schema {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}\n\
               Where is the Eiffel Tower?\n```",
        subcommands: &["--json", "--schema"],
        takes_variable: false,
    },
    MagicSpec {
        name: "run",
        usage: "%%run NAME [k=v …]",
        summary: "Run a skill on the cell body.",
        help: "Runs skill `NAME` with the body as its input (`{{input}}`) and `k=v` as its \
               parameters (checked before any model call). The answer streams into the cell; \
               a workflow shows each phase as it starts and finishes, with its time and model. \
               Interrupt stops it and keeps what was said. Tab completes the skill name, its \
               parameters and an enum's values; Shift-Tab on either shows its help.\n\n\
               Example:\n\n```\n%%run translate language=German\nGood morning!\n```",
        subcommands: &[],
        takes_variable: false,
    },
    MagicSpec {
        name: "skill",
        usage: "%%skill",
        summary: "Define a skill for this session from the cell body.",
        help: "The body is a native manifest (YAML or JSON), or a `SKILL.md` when it opens \
               with `---`. The skill is checked as a file would be, is preferred over other \
               versions of its name in this session, and is gone when the kernel restarts.",
        subcommands: &[],
        takes_variable: false,
    },
    MagicSpec {
        name: "sh",
        usage: "%%sh",
        summary: "Run the cell body as a shell script.",
        help: "Runs the body with `/bin/sh`, streaming stdout and stderr as they come. \
               A non-zero exit status fails the cell. Interrupt kills the script's whole \
               process group.",
        subcommands: &[],
        takes_variable: false,
    },
    MagicSpec {
        name: "set",
        usage: "%%set NAME",
        summary: "Store the cell body, verbatim, in a session variable.",
        help: "Keeps the whole body (newlines included) as text under `NAME`, handy for \
               long inputs such as documents to summarise.",
        subcommands: &[],
        takes_variable: true,
    },
];

/// Finds a `%name` magic.
pub fn find_line(name: &str) -> Option<&'static MagicSpec> {
    LINE_MAGICS.iter().find(|m| m.name == name)
}

/// Finds a `%%name` magic.
pub fn find_cell(name: &str) -> Option<&'static MagicSpec> {
    CELL_MAGICS.iter().find(|m| m.name == name)
}

fn unknown(prefix: &str, name: &str, table: &[MagicSpec]) -> KernelError {
    let names: Vec<String> = table
        .iter()
        .map(|m| format!("{prefix}{}", m.name))
        .collect();
    KernelError::UnknownMagic {
        name: format!("{}{name}", &prefix[1..]),
        hint: format!("Available: {}. `%help` lists them all.", names.join(", ")),
    }
}

/// Runs a `%name args` line.
pub async fn run_line(
    ctx: &mut ExecContext<'_>,
    name: &str,
    args: &str,
) -> Result<(), KernelError> {
    match name {
        "help" => help::run(ctx, args).await,
        "set" => vars::set(ctx, args),
        "get" => vars::get(ctx, args).await,
        "unset" => vars::unset(ctx, args),
        "vars" => vars::list(ctx).await,
        "history" => history::run(ctx, args).await,
        "clear" => misc::clear(ctx, args).await,
        "input" => misc::input(ctx, args).await,
        "status" => status::run(ctx).await,
        "model" => model::run(ctx, args).await,
        "skill" => skill::run(ctx, args).await,
        "sandbox" => sandbox::run(ctx, args).await,
        "usage" => usage::run(ctx, args).await,
        "mcp" => mcp::run(ctx, args).await,
        _ => Err(unknown("%", name, LINE_MAGICS)),
    }
}

/// Runs a `%%name args` cell.
pub async fn run_cell(ctx: &mut ExecContext<'_>, magic: &CellMagic) -> Result<(), KernelError> {
    match magic.name.as_str() {
        "sh" => crate::command::run(ctx, &magic.body).await,
        "prompt" => match crate::typed_prompt::parse_args(&magic.args)? {
            Some(schema) => {
                let text = crate::prompt::fill_variables(ctx, &magic.body)?;
                crate::typed_prompt::run(ctx, &text, &schema).await
            }
            None => crate::prompt::run_one_shot(ctx, &magic.body).await,
        },
        "set" => vars::set_body(ctx, &magic.args, &magic.body),
        "run" => skill::run_cell(ctx, &magic.args, &magic.body).await,
        "skill" => skill::define(ctx, &magic.body).await,
        _ => Err(unknown("%%", &magic.name, CELL_MAGICS)),
    }
}

/// Splits arguments shell-style on whitespace, honouring simple quotes.
pub(crate) fn split_args(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in args.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_magic_has_usage_starting_with_its_name() {
        for m in LINE_MAGICS {
            assert!(m.usage.starts_with(&format!("%{}", m.name)), "{}", m.name);
        }
        for m in CELL_MAGICS {
            assert!(m.usage.starts_with(&format!("%%{}", m.name)), "{}", m.name);
        }
    }

    #[test]
    fn split_args_honours_quotes() {
        assert_eq!(
            split_args(r#"--password key "Your API key: " x"#),
            vec!["--password", "key", "Your API key: ", "x"]
        );
        assert_eq!(split_args("  "), Vec::<String>::new());
    }
}
