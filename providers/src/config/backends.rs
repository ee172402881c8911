//! `[models] backends` and `order`: which backends run, what each is, and
//! in which order a bare model name is looked for.
//!
//! Two spellings, so that files written before named backends existed
//! keep working:
//!
//! ```toml
//! [models]
//! backends = ["candle", "ollama"]      # the built-ins, in this order
//! ```
//!
//! ```toml
//! [models]
//! order = ["candle", "gpu", "ollama"]  # optional; default: built-ins, then named
//! [models.backends.gpu]
//! kind = "openai"
//! url = "http://10.0.0.5:8000/v1"      # or urls = [...] for a pool
//! api_key_env = "GPU_API_KEY"
//! ```
//!
//! Every table is checked when the file is read, so a start or a reload
//! with a bad one stops with the file and `[models.backends.NAME]` named.

use std::collections::BTreeMap;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// What a backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Embedded inference on GGUF files (`[models.candle]`).
    Candle,
    /// An Ollama server.
    Ollama,
    /// An OpenAI-compatible server: vLLM, llama-server, LM Studio, LiteLLM,
    /// OpenAI, Groq …
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Candle => "candle",
            BackendKind::Ollama => "ollama",
            BackendKind::Openai => "openai",
            BackendKind::Anthropic => "anthropic",
        }
    }

    /// Whether this kind talks to servers over HTTP (and so takes urls).
    fn is_remote(self) -> bool {
        !matches!(self, BackendKind::Candle)
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[models.backends.NAME]` table, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendConfig {
    pub kind: BackendKind,
    /// The servers' base URLs (`…/v1` for `openai`); one for a single
    /// server, several for a pool. Empty for `candle`, and for `ollama`
    /// when `[models.ollama] host` / `OLLAMA_HOST` decide.
    pub urls: Vec<String>,
    /// The name of the environment variable holding the API key. The key
    /// itself is never in the configuration.
    pub api_key_env: Option<String>,
    /// Models this backend serves, for servers without discovery
    /// (`discover = false`) or to pin a list.
    pub models: Vec<String>,
    /// Whether to ask the servers (`/models`) what they serve.
    pub discover: bool,
    /// Extra HTTP headers sent with every request.
    pub headers: BTreeMap<String, String>,
    /// Seconds to wait for a TCP (and TLS) connection.
    pub connect_timeout_secs: f64,
    /// Seconds from sending a generation request to its first byte of
    /// answer (a server loading a model is slow to answer).
    pub first_byte_timeout_secs: f64,
    /// Requests in flight at once to each host; 0 for no limit.
    pub max_concurrency: usize,
    /// `anthropic-version` header for `anthropic` backends.
    pub anthropic_version: String,
}

/// The file's form of [`BackendConfig`], before its checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    kind: BackendKind,
    url: Option<String>,
    urls: Option<Vec<String>>,
    api_key_env: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    discover: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    connect_timeout_secs: Option<f64>,
    first_byte_timeout_secs: Option<f64>,
    max_concurrency: Option<usize>,
    anthropic_version: Option<String>,
}

/// Default `connect_timeout_secs`: a dead host must not hang a cell.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: f64 = 5.0;
/// Default `first_byte_timeout_secs`: room for a server to load a model.
pub const DEFAULT_FIRST_BYTE_TIMEOUT_SECS: f64 = 120.0;
/// Default `anthropic-version`.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

impl BackendConfig {
    /// Checks `raw`, the table `[models.backends.NAME]`.
    fn check(name: &str, raw: RawBackend) -> Result<BackendConfig, String> {
        check_name(name)?;
        let urls =
            match (raw.url, raw.urls) {
                (Some(_), Some(_)) => return Err(
                    "`url` and `urls` are both set; keep `url` for one server or `urls` for a pool"
                        .into(),
                ),
                (Some(url), None) => vec![url],
                (None, Some(urls)) if urls.is_empty() => {
                    return Err("`urls` is empty; list the servers of the pool".into())
                }
                (None, Some(urls)) => urls,
                (None, None) => Vec::new(),
            };
        match raw.kind {
            BackendKind::Openai | BackendKind::Anthropic if urls.is_empty() => {
                return Err(format!(
                    "a `{}` backend needs `url` (or `urls` for a pool)",
                    raw.kind
                ))
            }
            BackendKind::Candle if name != "candle" => {
                return Err("there is one embedded backend: it is named `candle` and set up in [models.candle]".into())
            }
            BackendKind::Candle if !urls.is_empty() => {
                return Err("a `candle` backend runs in this process and takes no `url`".into())
            }
            BackendKind::Ollama if urls.len() > 1 => {
                return Err("an `ollama` backend takes one `url`; for a fleet of Ollama servers use `kind = \"openai\"` with their `/v1` URLs".into())
            }
            _ => {}
        }
        for url in &urls {
            check_url(url)?;
        }
        if let Some(var) = &raw.api_key_env {
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`api_key_env` is the name of an environment variable (e.g. `GPU_API_KEY`), not `{var}`; the key itself goes in that variable"
                ));
            }
        }
        if !raw.kind.is_remote() && (raw.api_key_env.is_some() || !raw.headers.is_empty()) {
            return Err("a `candle` backend takes no `api_key_env` or `headers`".into());
        }
        let discover = raw.discover.unwrap_or(true);
        if !discover && raw.models.is_empty() {
            return Err(
                "`discover = false` needs `models`, the list of models the servers serve".into(),
            );
        }
        let secs = |field: &str, value: Option<f64>, default: f64| match value {
            Some(v) if !(v > 0.0 && v <= 86_400.0) => Err(format!(
                "`{field}` must be a number of seconds above 0 (at most a day), not {v}"
            )),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        Ok(BackendConfig {
            kind: raw.kind,
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            api_key_env: raw.api_key_env,
            models: raw.models,
            discover,
            headers: raw.headers,
            connect_timeout_secs: secs(
                "connect_timeout_secs",
                raw.connect_timeout_secs,
                DEFAULT_CONNECT_TIMEOUT_SECS,
            )?,
            first_byte_timeout_secs: secs(
                "first_byte_timeout_secs",
                raw.first_byte_timeout_secs,
                DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
            )?,
            max_concurrency: raw.max_concurrency.unwrap_or(0),
            anthropic_version: raw
                .anthropic_version
                .unwrap_or_else(|| DEFAULT_ANTHROPIC_VERSION.into()),
        })
    }

    /// The built-in backend of `kind` with every setting at its default.
    pub fn builtin(kind: BackendKind) -> BackendConfig {
        BackendConfig {
            kind,
            urls: Vec::new(),
            api_key_env: None,
            models: Vec::new(),
            discover: true,
            headers: BTreeMap::new(),
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            first_byte_timeout_secs: DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
            max_concurrency: 0,
            anthropic_version: DEFAULT_ANTHROPIC_VERSION.into(),
        }
    }
}

/// A backend name is used in specifiers (`MODEL@NAME`) and log lines.
fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(
            "a backend name is 1–64 letters, digits, `-` or `_` (it is written `MODEL@NAME`)"
                .into(),
        )
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Not echoed: the URL holds a secret.
        return Err(
            "a URL carries credentials (`user:password@`); put the key in the variable `api_key_env` names".into(),
        );
    }
    Ok(())
}

/// `[models] backends` as written: the old list of built-in names, or
/// named tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BackendsSection {
    /// `backends = ["candle", "ollama"]`: which built-ins, in order.
    Order(Vec<String>),
    /// `[models.backends.NAME]` tables.
    Named(BTreeMap<String, BackendConfig>),
}

/// No tables and no list: the built-ins, `candle` then `ollama`, unless
/// `order` says otherwise.
impl Default for BackendsSection {
    fn default() -> Self {
        BackendsSection::Named(BTreeMap::new())
    }
}

impl<'de> Deserialize<'de> for BackendsSection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SectionVisitor;

        impl<'de> Visitor<'de> for SectionVisitor {
            type Value = BackendsSection;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of backend names or `[models.backends.NAME]` tables")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(BackendsSection::Order(names))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut named = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    // Through a JSON value so that every error, serde's
                    // own included, can name the table it is about.
                    let value: serde_json::Value = map.next_value()?;
                    let table = format!("[models.backends.{name}]");
                    let raw: RawBackend = serde_json::from_value(value)
                        .map_err(|e| de::Error::custom(format!("{table}: {e}")))?;
                    let checked = BackendConfig::check(&name, raw)
                        .map_err(|e| de::Error::custom(format!("{table}: {e}")))?;
                    named.insert(name, checked);
                }
                Ok(BackendsSection::Named(named))
            }
        }

        deserializer.deserialize_any(SectionVisitor)
    }
}

/// One backend to set up: its name and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendPlan {
    pub name: String,
    pub config: BackendConfig,
}

/// The backends a configuration asks for, in routing order, or what is
/// wrong with it.
pub(crate) fn plan(
    section: &BackendsSection,
    order: &[String],
) -> Result<Vec<BackendPlan>, String> {
    let builtin = |name: &str| match name {
        "candle" => Some(BackendConfig::builtin(BackendKind::Candle)),
        "ollama" => Some(BackendConfig::builtin(BackendKind::Ollama)),
        _ => None,
    };
    let known = |name: &str| -> Option<BackendConfig> {
        match section {
            BackendsSection::Named(named) => named.get(name).cloned().or_else(|| builtin(name)),
            BackendsSection::Order(_) => builtin(name),
        }
    };
    let names: Vec<String> = match (section, order.is_empty()) {
        (BackendsSection::Order(list), true) => list.clone(),
        (BackendsSection::Order(_), false) => {
            return Err(
                "`[models] backends` (a list) and `order` both give the order; keep `order`".into(),
            )
        }
        (BackendsSection::Named(_), false) => order.to_vec(),
        (BackendsSection::Named(named), true) => {
            let mut names: Vec<String> = vec!["candle".into(), "ollama".into()];
            names.extend(
                named
                    .keys()
                    .filter(|n| !names.contains(n))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            names
        }
    };
    let mut plans: Vec<BackendPlan> = Vec::new();
    for name in names {
        if plans.iter().any(|p| p.name == name) {
            return Err(format!("backend `{name}` is listed twice in the order"));
        }
        let Some(config) = known(&name) else {
            let mut declared = vec!["candle".to_owned(), "ollama".to_owned()];
            if let BackendsSection::Named(named) = section {
                declared.extend(
                    named
                        .keys()
                        .filter(|n| !declared.contains(n))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
            return Err(format!(
                "unknown backend `{name}` in the order; declare it as [models.backends.{name}] (known: {})",
                declared.join(", ")
            ));
        };
        plans.push(BackendPlan { name, config });
    }
    Ok(plans)
}

#[cfg(test)]
mod tests;
