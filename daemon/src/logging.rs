//! Logging to stderr, where Jupyter shows a kernel's log.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` wins over `--log-level`.
/// The `zeromq` crate's per-connection chatter is kept at `warn` unless
/// the filter names it.
pub fn init(level: &str, format: LogFormat) {
    let directives = if level.contains("zeromq") {
        level.to_owned()
    } else {
        format!("{level},zeromq=warn")
    };
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(&directives))
        .unwrap_or_else(|_| EnvFilter::new("info,zeromq=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
