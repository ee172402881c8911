//! The `status_reply` as text: health first (what an operator looks for),
//! then the kernel, the session, and any further section the kernel adds,
//! one `key: value` line each so it greps well.

use std::fmt::Write;

use serde_json::{Map, Value};

/// Sections shown by name, in this order; any other object in the reply
/// follows, printed generically.
const KNOWN: [&str; 4] = ["status", "health", "kernel", "session"];

/// Renders a `status_reply` content.
pub fn render(c: &Value) -> String {
    let mut out = String::new();
    health(&mut out, &c["health"]);
    kernel(&mut out, &c["kernel"]);
    session(&mut out, &c["session"]);
    if let Some(all) = c.as_object() {
        for (name, section) in all.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str())) {
            generic(&mut out, name, section);
        }
    }
    out
}

fn health(out: &mut String, h: &Value) {
    let _ = writeln!(out, "health: {}", text(&h["status"]));
    for reason in h["reasons"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  reason: {}", text(reason));
    }
    let _ = writeln!(out, "  rss: {}", bytes(&h["rss_bytes"]));
    let _ = writeln!(
        out,
        "  cpu: {:.1}%",
        h["cpu_percent"].as_f64().unwrap_or(0.0)
    );
    let total = h["system_memory_total_bytes"].as_u64().unwrap_or(0);
    let available = h["system_memory_available_bytes"].as_u64().unwrap_or(0);
    if total > 0 {
        let _ = writeln!(
            out,
            "  system memory: {} available of {} ({:.1}%)",
            bytes(&h["system_memory_available_bytes"]),
            bytes(&h["system_memory_total_bytes"]),
            available as f64 * 100.0 / total as f64
        );
    }
    let load: Vec<String> = h["load_average"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| format!("{:.2}", l.as_f64().unwrap_or(0.0)))
        .collect();
    let _ = writeln!(
        out,
        "  load average: {} ({} cores)",
        load.join(" "),
        text(&h["cpu_cores"])
    );
    let _ = writeln!(
        out,
        "  system uptime: {}",
        duration(&h["system_uptime_secs"])
    );
    let _ = writeln!(out, "  sampled at: {}", text(&h["sampled_at"]));
}

fn kernel(out: &mut String, k: &Value) {
    let _ = writeln!(out, "kernel: {} {}", text(&k["name"]), text(&k["version"]));
    let _ = writeln!(out, "  protocol: {}", text(&k["protocol_version"]));
    let _ = writeln!(out, "  pid: {}", text(&k["pid"]));
    let _ = writeln!(out, "  session id: {}", text(&k["session_id"]));
    let _ = writeln!(out, "  started at: {}", text(&k["started_at"]));
    let _ = writeln!(out, "  uptime: {}", duration(&k["uptime_secs"]));
}

fn session(out: &mut String, s: &Value) {
    let _ = writeln!(out, "session:");
    let _ = writeln!(out, "  execution count: {}", text(&s["execution_count"]));
    let _ = writeln!(out, "  history entries: {}", text(&s["history_entries"]));
    let _ = writeln!(out, "  variables: {}", text(&s["variables"]));
    let _ = writeln!(
        out,
        "  conversation turns: {}",
        text(&s["conversation_turns"])
    );
    let model = s["current_model"].as_str().unwrap_or("none");
    let _ = writeln!(out, "  model: {model}");
}

/// A section this client does not know yet: its scalar fields as they are.
fn generic(out: &mut String, name: &str, section: &Value) {
    match section {
        Value::Object(fields) => {
            let _ = writeln!(out, "{name}:");
            fields_lines(out, fields);
        }
        other => {
            let _ = writeln!(out, "{name}: {}", text(other));
        }
    }
}

fn fields_lines(out: &mut String, fields: &Map<String, Value>) {
    for (key, value) in fields {
        let _ = writeln!(out, "  {}: {}", key.replace('_', " "), text(value));
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bytes(v: &Value) -> String {
    const KIB: f64 = 1024.0;
    let Some(b) = v.as_u64() else {
        return "-".into();
    };
    let f = b as f64;
    if f >= KIB * KIB * KIB {
        format!("{:.1} GiB", f / (KIB * KIB * KIB))
    } else if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else if f >= KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{b} B")
    }
}

fn duration(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".into(), skillkernel_stdx::text::dhms)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::render;

    #[test]
    fn health_comes_first_with_its_reasons_then_kernel_and_session() {
        let reply = json!({
            "status": "ok",
            "kernel": {"name": "skillkernel", "version": "0.1.0", "protocol_version": "5.4",
                       "pid": 42, "session_id": "abc", "started_at": "2026-01-01T00:00:00.000Z",
                       "uptime_secs": 65},
            "health": {"status": "degraded", "reasons": ["rss 6.5 MiB > 1 MiB"],
                       "rss_bytes": 6815744, "cpu_percent": 0.25,
                       "system_memory_total_bytes": 4294967296u64,
                       "system_memory_available_bytes": 1073741824u64,
                       "load_average": [0.5, 0.25, 0.125], "cpu_cores": 2,
                       "system_uptime_secs": 90061, "sampled_at": "2026-01-01T00:01:05.000Z"},
            "session": {"execution_count": 3, "history_entries": 3, "variables": 1,
                        "conversation_turns": 0, "current_model": null},
            "operations": {"running": 0}
        });
        let text = render(&reply);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "health: degraded");
        assert_eq!(lines[1], "  reason: rss 6.5 MiB > 1 MiB");
        assert!(text.contains("  rss: 6.5 MiB\n"), "{text}");
        assert!(text.contains("  system memory: 1.0 GiB available of 4.0 GiB (25.0%)\n"));
        assert!(
            text.contains("  load average: 0.50 0.25 0.12 (2 cores)\n"),
            "{text}"
        );
        assert!(text.contains("  system uptime: 1d 1h 1m\n"));
        assert!(text.contains("kernel: skillkernel 0.1.0\n  protocol: 5.4\n  pid: 42\n"));
        assert!(text.contains("  uptime: 1m 5s\n"));
        assert!(text.contains("  model: none\n"));
        assert!(text.ends_with("operations:\n  running: 0\n"), "{text}");
    }
}
