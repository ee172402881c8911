//! Where the Ollama server is: the `OLLAMA_HOST` forms Ollama itself accepts.
//!
//! Ollama's own CLI reads `OLLAMA_HOST` as `host`, `host:port`,
//! `scheme://host[:port][/path]` or a bare port-less IP, and a server told to
//! listen on `0.0.0.0` is reached on the loopback address. We accept the same
//! forms so that one environment variable serves `ollama` and skillkernel.

use reqwest::Url;

use crate::ProviderError;

/// Ollama's default address.
pub const DEFAULT_HOST: &str = "http://127.0.0.1:11434";

/// The port Ollama listens on when none is given without a scheme.
const DEFAULT_PORT: u16 = 11434;

/// The base URL from an explicit setting (config), else `OLLAMA_HOST`, else
/// [`DEFAULT_HOST`]. Empty settings count as unset, as they do for Ollama.
pub fn resolve(configured: Option<&str>, env: Option<&str>) -> Result<String, ProviderError> {
    if let Some(host) = set(configured) {
        return parse(host).map_err(|reason| invalid("the configured Ollama host", host, &reason));
    }
    if let Some(host) = set(env) {
        return parse(host).map_err(|reason| invalid("OLLAMA_HOST", host, &reason));
    }
    Ok(DEFAULT_HOST.to_owned())
}

fn set(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|s| !s.is_empty())
}

fn invalid(source: &str, value: &str, reason: &str) -> ProviderError {
    ProviderError::Other(format!(
        "{source} `{value}` is not a usable address ({reason}); use host, host:port or http://host:port"
    ))
}

/// Normalises one `OLLAMA_HOST` value to `scheme://host:port[/path]`, with no
/// trailing slash.
///
/// Mirrors Ollama's `envconfig.Host`: no scheme means `http` and port 11434;
/// an explicit `http://` or `https://` without a port means 80 or 443.
pub fn parse(value: &str) -> Result<String, String> {
    let value = value.trim();
    let (scheme, rest, default_port) = match value.split_once("://") {
        None => ("http", value, DEFAULT_PORT),
        Some((s, rest)) if s.eq_ignore_ascii_case("http") => ("http", rest, 80),
        Some((s, rest)) if s.eq_ignore_ascii_case("https") => ("https", rest, 443),
        Some((s, _)) => return Err(format!("unsupported scheme `{s}`")),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    let (host, port) = split_host_port(authority)?;
    let port = port.unwrap_or(default_port);
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" => "::1",
        h => h,
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let mut url = format!("{scheme}://{host}:{port}");
    if !path.is_empty() {
        url.push('/');
        url.push_str(path);
    }
    // Let the URL parser have the last word on what is a valid host.
    Url::parse(&url).map_err(|e| e.to_string())?;
    Ok(url)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("`{p}` is not a port number"))
    };
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address is missing its `]`".to_owned())?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected `{after}` after the address")),
        };
    }
    match authority.matches(':').count() {
        0 => Ok((authority, None)),
        1 => {
            let (host, p) = authority.split_once(':').unwrap_or((authority, ""));
            Ok((host, Some(port(p)?)))
        }
        // A bare IPv6 address such as `::1`.
        _ => Ok((authority, None)),
    }
}

/// Whether the address is this machine, where a system proxy must not apply
/// (Go's HTTP client, which the `ollama` CLI uses, never proxies loopback).
pub fn is_loopback(url: &str) -> bool {
    let Some(host) = Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn bare_host_gets_http_and_the_ollama_port() {
        assert_eq!(p("example.com"), "http://example.com:11434");
        assert_eq!(p("10.0.0.5"), "http://10.0.0.5:11434");
    }

    #[test]
    fn host_and_port() {
        assert_eq!(p("example.com:8080"), "http://example.com:8080");
        assert_eq!(p(" localhost:11435 "), "http://localhost:11435");
    }

    #[test]
    fn scheme_host_port_and_path() {
        assert_eq!(p("http://gpu-box:11434"), "http://gpu-box:11434");
        assert_eq!(
            p("https://ollama.example.com"),
            "https://ollama.example.com:443"
        );
        assert_eq!(
            p("http://ollama.example.com"),
            "http://ollama.example.com:80"
        );
        assert_eq!(p("http://proxy:8000/ollama/"), "http://proxy:8000/ollama");
        assert_eq!(p("HTTP://gpu-box:1"), "http://gpu-box:1");
    }

    #[test]
    fn listen_everywhere_means_this_machine() {
        assert_eq!(p("0.0.0.0"), "http://127.0.0.1:11434");
        assert_eq!(p("0.0.0.0:9999"), "http://127.0.0.1:9999");
        assert_eq!(p("http://0.0.0.0:9999"), "http://127.0.0.1:9999");
        assert_eq!(p(":9999"), "http://127.0.0.1:9999");
        assert_eq!(p("[::]:9999"), "http://[::1]:9999");
    }

    #[test]
    fn ipv6() {
        assert_eq!(p("[::1]:8080"), "http://[::1]:8080");
        assert_eq!(p("::1"), "http://[::1]:11434");
        assert_eq!(p("[fe80::1]"), "http://[fe80::1]:11434");
    }

    #[test]
    fn nonsense_is_an_error_not_a_silent_default() {
        assert!(parse("example.com:99999").is_err());
        assert!(parse("example.com:port").is_err());
        assert!(parse("ftp://example.com").is_err());
        assert!(parse("[::1").is_err());
    }

    #[test]
    fn argument_wins_over_environment_over_default() {
        assert_eq!(
            resolve(Some("a:1"), Some("b:2")).ok().as_deref(),
            Some("http://a:1")
        );
        assert_eq!(
            resolve(None, Some("b:2")).ok().as_deref(),
            Some("http://b:2")
        );
        assert_eq!(
            resolve(Some("  "), Some("b:2")).ok().as_deref(),
            Some("http://b:2")
        );
        assert_eq!(resolve(None, Some("")).ok().as_deref(), Some(DEFAULT_HOST));
        assert_eq!(resolve(None, None).ok().as_deref(), Some(DEFAULT_HOST));
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let err = resolve(None, Some("x:y")).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("OLLAMA_HOST")));
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("http://127.0.0.1:11434"));
        assert!(is_loopback("http://localhost:1"));
        assert!(is_loopback("http://[::1]:1"));
        assert!(!is_loopback("http://gpu-box:11434"));
    }
}
