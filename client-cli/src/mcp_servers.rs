//! `skillctl mcp servers|tools`: the MCP servers the daemon is a client
//! of (`[mcp.servers]`), through `mcp_request`. (`skillctl mcp` alone is
//! the stdio MCP server: see the library's `mcp` module.)

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;
use skillctl::{KernelClient, Quiet};
use skillkernel_protocol::content::{ExtensionRequest, McpReply, McpRequest, Reply};

use crate::table::{print_table, text};

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Serve the daemon's skills over MCP on stdin/stdout (the default).
    Serve,
    /// The MCP servers the daemon uses, their state and tools (none is
    /// started).
    Servers {
        /// Print the raw mcp_reply content as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The tools of every server, or of one (starting them); exit status 1
    /// when one could not list its tools.
    Tools {
        server: Option<String>,
        /// Print the raw mcp_reply content as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(
    client: &mut KernelClient,
    command: McpCommand,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let (request, raw) = match command {
        McpCommand::Serve => unreachable!("`skillctl mcp serve` is the bridge"),
        McpCommand::Servers { json } => (McpRequest::Servers, json),
        McpCommand::Tools { server, json } => (McpRequest::Tools { server }, json),
    };
    let reply = crate::request::send(client, &request, timeout, timeout, &mut Quiet).await?;
    if raw {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    }
    let answer = match crate::request::parse::<McpRequest>(&reply)? {
        Reply::Ok(answer) => answer,
        Reply::Error(e) => return Err(format!("{}: {}", e.ename, e.evalue)),
    };
    match answer {
        McpReply::Servers { servers } => {
            if !raw {
                print_servers(&servers);
            }
            Ok(ExitCode::SUCCESS)
        }
        McpReply::Tools { tools } => {
            if !raw {
                print_tools(&tools);
            }
            let failed = tools.iter().any(|s| !s["error"].is_null());
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        _ => Err(format!(
            "the kernel's {} does not answer this request",
            McpRequest::TYPE.reply()
        )),
    }
}

fn print_servers(servers: &[Value]) {
    if servers.is_empty() {
        println!("no MCP servers are configured ([mcp.servers.NAME] in the daemon's config)");
        return;
    }
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let tools: Vec<String> = s["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            vec![
                text(&s["name"]),
                text(&s["transport"]),
                text(&s["state"]),
                text(&s["pid"]),
                tools.join(", "),
                text(&s["error"]),
            ]
        })
        .collect();
    print_table(
        &["server", "transport", "state", "pid", "tools", "error"],
        &rows,
    );
}

fn print_tools(listed: &[Value]) {
    let mut rows = Vec::new();
    for server in listed {
        let name = text(&server["server"]);
        if !server["error"].is_null() {
            rows.push(vec![
                format!("{name}.*"),
                format!("error: {}", text(&server["error"])),
            ]);
        }
        for tool in server["tools"].as_array().into_iter().flatten() {
            let description = text(&tool["description"]);
            rows.push(vec![
                format!("{name}.{}", text(&tool["name"])),
                description.lines().next().unwrap_or("").to_owned(),
            ]);
        }
    }
    print_table(&["tool", "description"], &rows);
}
