//! Logging to stderr, where Jupyter shows a kernel's log.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

use crate::config::LogFormat;
use crate::reload::SetLogLevel;

/// Installs the global subscriber. `RUST_LOG` wins over `--log-level`.
/// The `zeromq` crate's per-connection chatter is kept at `warn` unless
/// the filter names it. Returns how to change the level later (reload).
pub fn init(level: &str, format: LogFormat) -> SetLogLevel {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(directives(level)))
        .unwrap_or_else(|_| EnvFilter::new("info,zeromq=warn"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json()).try_init(),
    };
    Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(directives(level)).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

fn directives(level: &str) -> String {
    if level.contains("zeromq") {
        level.to_owned()
    } else {
        format!("{level},zeromq=warn")
    }
}
