//! The log filter: the configured level (or `RUST_LOG`) turned into an
//! `EnvFilter`, with the `zeromq` crate held at `warn` unless the filter
//! names it, and typos caught before they silently filter everything out.

use tracing_subscriber::EnvFilter;

use super::LogError;

/// Level names a bare directive may be; anything else bare is a typo
/// (EnvFilter would read `debgu` as "every level of a target called debgu").
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The directives actually installed for `level`: the `zeromq` crate's
/// per-connection chatter stays at `warn` unless the filter names it.
pub(super) fn directives(level: &str) -> String {
    if level.contains("zeromq") {
        level.to_owned()
    } else {
        format!("{level},zeromq=warn")
    }
}

/// Parses an operator's filter (`info`, `debug,skillkernel_skills=trace`).
pub(super) fn parse(level: &str) -> Result<EnvFilter, LogError> {
    let invalid = |message: String| LogError::Filter {
        level: level.to_owned(),
        message,
    };
    let trimmed = level.trim();
    if trimmed.is_empty() {
        return Err(invalid("the filter is empty".into()));
    }
    for directive in trimmed.split(',').map(str::trim) {
        let bare = !directive.contains(['=', '[', ':']);
        if bare
            && !directive.is_empty()
            && !LEVELS.contains(&directive.to_ascii_lowercase().as_str())
        {
            return Err(invalid(format!(
                "`{directive}` is not a level (trace, debug, info, warn, error, off); \
                 use `target=level` to filter a target"
            )));
        }
    }
    EnvFilter::try_new(directives(trimmed)).map_err(|e| invalid(e.to_string()))
}

/// The filter at start: `RUST_LOG` when it is set and valid, else the
/// configured level. Returns the filter, the text in effect, and a note
/// when `RUST_LOG` was set but unusable (logged once logging runs).
pub(super) fn initial(configured: &str) -> Result<(EnvFilter, String, Option<String>), LogError> {
    if let Some(env) = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        match parse(&env) {
            Ok(filter) => return Ok((filter, env, None)),
            Err(e) => {
                let filter = parse(configured)?;
                let note = format!("RUST_LOG ignored: {e}");
                return Ok((filter, configured.to_owned(), Some(note)));
            }
        }
    }
    Ok((parse(configured)?, configured.to_owned(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeromq_is_held_at_warn_unless_the_filter_names_it() {
        assert_eq!(directives("debug"), "debug,zeromq=warn");
        assert_eq!(directives("debug,zeromq=trace"), "debug,zeromq=trace");
    }

    #[test]
    fn a_misspelt_level_is_refused_with_the_filter_named() {
        let e = parse("debgu").unwrap_err().to_string();
        assert!(e.contains("debgu") && e.contains("not a level"), "{e}");
        assert!(parse("").is_err());
        assert!(parse("info,skillkernel_kernel=trace").is_ok());
        assert!(parse("WARN").is_ok());
    }
}
