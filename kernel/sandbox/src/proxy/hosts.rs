//! [`HostPattern`]: one entry of a network allow-list — `api.example.com`,
//! `*.example.com` (any name below it, not itself), an IP address, each
//! with an optional `:port` (any port when absent).
//!
//! Parsing is strict: anything that is not a host name or an IP address
//! (a URL, a path, a bare `*`, a wildcard anywhere but the first label) is
//! refused with the reason, so that a typo never widens the allow-list.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A host (or IP) and port the sandbox lets a program reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    /// Lower-case name, without the `*.` of a wildcard.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

/// Why a host pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?} is not a host pattern: {reason}; write a host name (`api.example.com`), `*.example.com` for the names below one, or an IP address, each optionally with `:PORT`")]
pub struct BadHostPattern {
    pub pattern: String,
    pub reason: &'static str,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, BadHostPattern> {
        let bad = |reason| BadHostPattern {
            pattern: text.to_string(),
            reason,
        };
        let t = text.trim();
        if t.contains("://") || t.contains('/') {
            return Err(bad("it is a URL or path, not a host"));
        }
        // `[v6]:port`, `v6`, `host:port`, `host`.
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("junk after `]`")),
            };
            (h, port)
        } else if t.parse::<IpAddr>().is_ok() {
            (t, None)
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
            ),
            None => None,
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(HostPattern {
                host: ip.to_string(),
                wildcard: false,
                port,
            });
        }
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return Err(bad("no host name"));
        }
        if name.len() > 253 {
            return Err(bad("longer than a host name can be"));
        }
        let labels_ok = name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !labels_ok {
            return Err(bad(if name.contains('*') {
                "a wildcard may only be a whole first label (`*.example.com`)"
            } else {
                "a label is empty, too long, or holds characters a host name cannot"
            }));
        }
        if wildcard && !name.contains('.') {
            return Err(bad("a wildcard needs a domain with a dot below it"));
        }
        Ok(HostPattern {
            host: name,
            wildcard,
            port,
        })
    }

    /// Does `host:port` (as a client asked for it) match?
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return !self.wildcard && ip.to_string() == self.host;
        }
        if self.wildcard {
            host.strip_suffix(&self.host)
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
        } else {
            host == self.host
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = BadHostPattern;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<HostPattern> for String {
    fn from(p: HostPattern) -> String {
        p.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = if self.wildcard { "*." } else { "" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => write!(f, "{star}{host}:{port}"),
            None => write!(f, "{star}{host}"),
        }
    }
}

/// `network` as a skill's `permissions` and `[sandbox]` write it: `false`
/// (nothing, the default), `true` (everything) or a list of host patterns
/// (those hosts, through the proxy; an empty list is nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkGrant {
    #[default]
    Nothing,
    Everything,
    Hosts(Vec<HostPattern>),
}

impl NetworkGrant {
    /// Sets `policy`'s network to this grant.
    pub fn apply_to(&self, policy: &mut crate::SandboxPolicy) {
        policy.network = matches!(self, NetworkGrant::Everything);
        policy.network_hosts = match self {
            NetworkGrant::Hosts(hosts) => hosts.clone(),
            _ => Vec::new(),
        };
    }

    /// `allowed`, `denied` or the hosts, for reports.
    pub fn describe(&self) -> String {
        match self {
            NetworkGrant::Nothing => "denied".to_string(),
            NetworkGrant::Everything => "allowed".to_string(),
            NetworkGrant::Hosts(hosts) if hosts.is_empty() => "denied".to_string(),
            NetworkGrant::Hosts(hosts) => {
                let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
                format!("by host: {}", names.join(", "))
            }
        }
    }
}

impl Serialize for NetworkGrant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NetworkGrant::Nothing => s.serialize_bool(false),
            NetworkGrant::Everything => s.serialize_bool(true),
            NetworkGrant::Hosts(hosts) => hosts.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for NetworkGrant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = NetworkGrant;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"true, false or a list of hosts (`["api.example.com", "*.example.org:443"]`)"#)
            }
            fn visit_bool<E>(self, v: bool) -> Result<NetworkGrant, E> {
                Ok(if v {
                    NetworkGrant::Everything
                } else {
                    NetworkGrant::Nothing
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NetworkGrant, A::Error> {
                let mut hosts = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    hosts.push(HostPattern::parse(&text).map_err(serde::de::Error::custom)?);
                }
                Ok(if hosts.is_empty() {
                    NetworkGrant::Nothing
                } else {
                    NetworkGrant::Hosts(hosts)
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Does any of `patterns` let a program reach `host:port`? A host that is
/// neither an IP address nor a plain host name (a tab, a space, an `@`)
/// never matches: a resolver might read it otherwise than the check did.
pub fn allowed(patterns: &[HostPattern], host: &str, port: u16) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let plain = bare.parse::<IpAddr>().is_ok()
        || (!bare.is_empty()
            && bare.len() <= 253
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    plain && patterns.iter().any(|p| p.matches(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_wildcards_ips_and_ports_match_as_written() {
        let p = |s| HostPattern::parse(s).unwrap();
        assert!(p("api.example.com").matches("API.example.com.", 443));
        assert!(!p("api.example.com").matches("example.com", 443));
        assert!(p("*.example.com").matches("a.b.example.com", 80));
        assert!(!p("*.example.com").matches("example.com", 80));
        assert!(!p("*.example.com").matches("badexample.com", 80));
        assert!(p("example.com:443").matches("example.com", 443));
        assert!(!p("example.com:443").matches("example.com", 80));
        assert!(p("127.0.0.1").matches("127.0.0.1", 9));
        assert!(p("[::1]:8080").matches("[::1]", 8080));
        assert!(p("::1").matches("::1", 1));
        assert!(!p("localhost").matches("127.0.0.1", 80));
        assert_eq!(p("*.Example.com:8443").to_string(), "*.example.com:8443");
        let wild = [p("*.example.com")];
        assert!(allowed(&wild, "a.example.com", 1));
        assert!(!allowed(&wild, "1.2.3.4\t.example.com", 1));
        assert!(!allowed(&wild, "x@a.example.com", 1));
    }

    #[test]
    fn network_is_a_flag_or_a_list_of_hosts_and_a_bad_host_is_named() {
        let g = |v| serde_json::from_value::<NetworkGrant>(v);
        assert_eq!(
            g(serde_json::json!(true)).unwrap(),
            NetworkGrant::Everything
        );
        assert_eq!(g(serde_json::json!(false)).unwrap(), NetworkGrant::Nothing);
        assert_eq!(g(serde_json::json!([])).unwrap(), NetworkGrant::Nothing);
        let hosts = g(serde_json::json!(["api.example.com"])).unwrap();
        assert_eq!(hosts.describe(), "by host: api.example.com");
        let err = g(serde_json::json!(["https://api.example.com"])).unwrap_err();
        assert!(err.to_string().contains("not a host pattern"), "{err}");
        assert!(g(serde_json::json!("yes")).is_err());
    }

    #[test]
    fn what_is_not_a_host_is_refused_with_the_reason() {
        for (bad, why) in [
            ("https://example.com", "URL"),
            ("*", "wildcard"),
            ("*.com", "dot below"),
            ("api.*.com", "wildcard"),
            ("exa mple.com", "characters"),
            ("example.com:0", "port"),
            ("example.com:http", "port"),
            ("", "no host name"),
        ] {
            let err = HostPattern::parse(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }
}
