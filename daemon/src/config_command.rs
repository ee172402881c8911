//! `skillkernel config`: the configuration a `skillkernel start` would use
//! here — system file, user file, `--config`, then `SKILLKERNEL_*`
//! environment variables — printed with secrets redacted, or with
//! `--check` only validated. Operators run it before a reload
//! (the systemd units' `ExecReload` does).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, FromArgMatches};
use thiserror::Error;

use crate::cli::{ConfigArgs, StartArgs};
use crate::config::{Config, ConfigError};
use crate::{logging, redact};

#[derive(Debug, Error)]
pub enum ConfigCommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("a SKILLKERNEL_* environment variable is not valid: {0}")]
    Environment(String),
    #[error("[log] level in the configuration: {0}")]
    Level(#[from] logging::LogError),
    #[error("cannot render the configuration: {0}")]
    Render(String),
}

/// The `SKILLKERNEL_*` variables, read by the same clap definitions as
/// `skillkernel start` so both agree on names and types.
fn environment() -> Result<StartArgs, ConfigCommandError> {
    let command = StartArgs::augment_args(clap::Command::new("skillkernel"));
    let invalid = |e: clap::Error| ConfigCommandError::Environment(e.to_string().trim().into());
    let matches = command
        .try_get_matches_from(["skillkernel"])
        .map_err(invalid)?;
    StartArgs::from_arg_matches(&matches).map_err(invalid)
}

/// The effective configuration and the files it came from.
pub fn effective(args: &ConfigArgs) -> Result<(Config, Vec<PathBuf>), ConfigCommandError> {
    let (mut config, files) = Config::load(args.config.as_deref())?;
    environment()?.apply_to(&mut config);
    // The only value the types alone do not check.
    logging::check_level(&config.log.level)?;
    Ok((config, files))
}

/// `config` as TOML with secrets redacted, under a comment naming its
/// sources (so the output is itself a valid config file).
pub fn render_toml(config: &Config, files: &[PathBuf]) -> Result<String, ConfigCommandError> {
    let render = |e: &dyn std::fmt::Display| ConfigCommandError::Render(e.to_string());
    let mut value = toml::Value::try_from(config).map_err(|e| render(&e))?;
    redact::redact_toml(&mut value);
    shortest_floats(&mut value);
    let body = toml::to_string_pretty(&value).map_err(|e| render(&e))?;
    let mut out = String::from("# Effective skillkernel configuration (secrets redacted).\n");
    for file in files {
        out.push_str(&format!("# read: {}\n", file.display()));
    }
    out.push_str("# then SKILLKERNEL_* environment variables\n\n");
    out.push_str(&body);
    Ok(out)
}

/// Floats that came from `f32` fields print as the operator wrote them
/// (`1.1`, not `1.100000023841858`) and still read back as the same `f32`.
fn shortest_floats(value: &mut toml::Value) {
    match value {
        toml::Value::Float(f) => {
            let narrow = *f as f32;
            if f64::from(narrow) == *f {
                if let Ok(short) = narrow.to_string().parse::<f64>() {
                    *f = short;
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(shortest_floats),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| shortest_floats(v)),
        _ => {}
    }
}

/// `config` as JSON with secrets redacted.
pub fn render_json(config: &Config) -> Result<String, ConfigCommandError> {
    let render = |e: serde_json::Error| ConfigCommandError::Render(e.to_string());
    let mut value = serde_json::to_value(config).map_err(render)?;
    redact::redact_json(&mut value);
    serde_json::to_string_pretty(&value).map_err(render)
}

pub fn run(args: ConfigArgs) -> Result<ExitCode, ConfigCommandError> {
    let (config, files) = effective(&args)?;
    if args.check {
        if files.is_empty() {
            println!("no configuration file found; built-in defaults apply");
        }
        for file in &files {
            println!("read {}", file.display());
        }
        println!("configuration OK");
    } else if args.json {
        println!("{}", render_json(&config)?);
    } else {
        print!("{}", render_toml(&config, &files)?);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_toml_reads_back_as_the_same_configuration() {
        let mut config = Config::default();
        config.log.keep = 3;
        config.models.ollama.host = Some("http://gpu-box:11434".into());
        config.models.generation.stop = vec!["\n\n".into()];
        config.models.generation.top_p = Some(0.9);
        let text = render_toml(&config, &[PathBuf::from("/etc/x.toml")]).unwrap();
        assert!(text.contains("# read: /etc/x.toml"), "{text}");
        assert!(text.contains("repeat_penalty = 1.2\n"), "{text}");
        assert!(text.contains("top_p = 0.9\n"), "{text}");
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn credentials_in_the_ollama_url_are_not_printed() {
        let mut config = Config::default();
        config.models.ollama.host = Some("https://bob:hunter2@gpu-box:11434".into());
        let toml = render_toml(&config, &[]).unwrap();
        let json = render_json(&config).unwrap();
        for text in [toml, json] {
            assert!(!text.contains("hunter2") && !text.contains("bob"), "{text}");
            assert!(text.contains("https://***@gpu-box:11434"), "{text}");
        }
    }
}
