//! `%status`: the status report ([`crate::status`]) as a table — health
//! first, since that is what someone typing `%status` usually wants.

use skillkernel_protocol::content::DisplayData;

use crate::errors::KernelError;
use crate::exec_context::output::markdown_bundle;
use crate::exec_context::ExecContext;
use crate::health::units::format_bytes;
use crate::health::HealthReport;
use crate::status::{self, IopubStatus, StatusReport, TelemetryStatus};
use crate::store::PersistenceStatus;

pub(super) async fn run(ctx: &mut ExecContext<'_>) -> Result<(), KernelError> {
    let report = status::collect(ctx.shared);
    ctx.out
        .display(DisplayData::new(markdown_bundle(&table(&report))))
        .await;
    Ok(())
}

/// The report as a two-column Markdown table.
fn table(r: &StatusReport) -> String {
    let (k, s) = (&r.kernel, &r.session);
    let mut rows = health_rows(&r.health);
    rows.extend([
        ("kernel", format!("{} {}", k.name, k.version)),
        ("protocol", k.protocol_version.clone()),
        ("pid", k.pid.to_string()),
        ("kernel session", format!("`{}`", k.session_id)),
        ("history session", s.history_session.to_string()),
        ("uptime", skillkernel_stdx::text::dhms(k.uptime_secs)),
        ("execution count", s.execution_count.to_string()),
        ("session variables", s.variables.to_string()),
        ("conversation turns", s.conversation_turns.to_string()),
        (
            "model",
            s.current_model.clone().unwrap_or_else(|| "none".into()),
        ),
    ]);
    rows.push((
        "operations in flight",
        match r.operations.len() {
            0 => "none".to_owned(),
            n => format!("{n} (oldest {:.1} s)", r.operations[0].running_secs),
        },
    ));
    rows.push(("IOPub", iopub_row(&r.iopub)));
    for t in &r.telemetry {
        rows.push((telemetry_label(t), telemetry_row(t)));
    }
    if r.shutting_down {
        rows.push(("shutdown", "in progress; new work is refused".into()));
    }
    let mut out = String::from("| | |\n|---|---|\n");
    for (name, value) in rows {
        out.push_str(&format!("| {name} | {value} |\n"));
    }
    out.push_str(&persistence_rows(&r.persistence));
    out
}

fn telemetry_label(t: &TelemetryStatus) -> &'static str {
    match t.name.as_str() {
        "traces" => "traces",
        "log" => "log file",
        _ => "telemetry",
    }
}

/// "to X: N sent", and while it fails, why and how much was dropped.
fn telemetry_row(t: &TelemetryStatus) -> String {
    let mut row = format!("to `{}`: {} delivered", t.target, t.delivered);
    if t.dropped > 0 {
        row.push_str(&format!(", **{} dropped**", t.dropped));
    }
    if let Some(why) = &t.failing {
        row.push_str(&format!(" — dropping now: {}", why.replace('|', "\\|")));
    }
    row
}

fn iopub_row(i: &IopubStatus) -> String {
    let mut row = match i.subscribers {
        1 => "1 subscriber".to_owned(),
        n => format!("{n} subscribers"),
    };
    if i.lagging > 0 {
        row.push_str(&format!(
            ", {} not reading ({} queued)",
            i.lagging,
            format_bytes(i.queued_bytes as u64)
        ));
    }
    if i.dropped > 0 {
        row.push_str(&format!(
            "; {} messages dropped for subscribers that did not read",
            i.dropped
        ));
    }
    row
}

/// `%status` rows for the persisted session.
fn persistence_rows(p: &PersistenceStatus) -> String {
    let state = match (&p.reason, p.persisted) {
        (_, true) if p.unsaved_changes == 0 => "persisted".to_owned(),
        (_, true) => format!("persisted ({} changes being saved)", p.unsaved_changes),
        (Some(reason), false) => format!("in memory: {reason}"),
        (None, false) => "in memory".to_owned(),
    };
    let mut rows = String::new();
    if let Some(session) = &p.session {
        rows.push_str(&format!("| persisted session | `{}` |\n", cell(session)));
    }
    if let Some(path) = &p.path {
        rows.push_str(&format!(
            "| state path | `{}` |\n",
            cell(&path.display().to_string())
        ));
    }
    rows.push_str(&format!("| session state | {} |\n", cell(&state)));
    if p.history_in_memory < p.history_entries {
        rows.push_str(&format!(
            "| history entries | {} (newest {} in memory) |\n",
            p.history_entries, p.history_in_memory
        ));
    } else {
        rows.push_str(&format!("| history entries | {} |\n", p.history_entries));
    }
    if p.artifacts > 0 {
        rows.push_str(&format!(
            "| output artifacts | {} ({} KiB stored) |\n",
            p.artifacts,
            p.artifact_bytes.div_ceil(1024)
        ));
    }
    rows
}

/// Text safe inside a Markdown table cell.
pub(super) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn health_rows(h: &HealthReport) -> Vec<(&'static str, String)> {
    let s = &h.sample;
    let verdict = if h.reasons.is_empty() {
        h.status.to_string()
    } else {
        format!("{}: {}", h.status, h.reasons.join("; "))
    };
    let memory = match s.system_memory_available_percent() {
        Some(percent) => format!(
            "{} available of {} ({percent:.1}%)",
            format_bytes(s.system_memory_available_bytes),
            format_bytes(s.system_memory_total_bytes)
        ),
        None => "unknown".into(),
    };
    let [one, five, fifteen] = s.load_average;
    let service = &h.service;
    let recent = match service.request_p99_ms {
        Some(p99) => format!(
            "{} runs, {} failed; {} requests, p99 {p99:.1} ms",
            service.recent_runs, service.recent_failures, service.recent_requests
        ),
        None => format!(
            "{} runs, {} failed",
            service.recent_runs, service.recent_failures
        ),
    };
    let mut rows = vec![
        ("health", verdict),
        ("RSS", format_bytes(s.rss_bytes)),
        ("CPU", format!("{:.1}%", s.cpu_percent)),
        ("system memory", memory),
        (
            "load average",
            format!("{one:.2} {five:.2} {fifteen:.2} ({} cores)", s.cpu_cores),
        ),
        (
            "system uptime",
            skillkernel_stdx::text::dhms(s.system_uptime_secs),
        ),
        ("recent work", recent),
    ];
    if let Some(free) = s.state_dir_free_bytes {
        rows.push(("state dir free", format_bytes(free)));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{HealthStatus, HealthThresholds, Sample};
    use crate::status::{KernelStatus, SessionStatus};

    fn report(status: HealthStatus, reasons: &[&str]) -> StatusReport {
        StatusReport {
            kernel: KernelStatus {
                name: "skillkernel".into(),
                version: "0.1.0".into(),
                protocol_version: "5.4".into(),
                pid: 42,
                session_id: "abc".into(),
                started_at: "2026-01-01T00:00:00.000Z".into(),
                uptime_secs: 65,
            },
            health: HealthReport {
                status,
                reasons: reasons.iter().map(|r| r.to_string()).collect(),
                sample: Sample {
                    sampled_at: "2026-01-01T00:01:05.000Z".into(),
                    rss_bytes: 6 << 20,
                    cpu_percent: 0.25,
                    system_memory_total_bytes: 4 << 30,
                    system_memory_available_bytes: 1 << 30,
                    load_average: [0.5, 0.25, 0.125],
                    cpu_cores: 2,
                    system_uptime_secs: 90061,
                    state_dir_free_bytes: None,
                },
                service: Default::default(),
                thresholds: HealthThresholds::default(),
            },
            session: SessionStatus {
                execution_count: 3,
                history_session: 1,
                history_entries: 3,
                variables: 1,
                conversation_turns: 0,
                current_model: None,
            },
            persistence: PersistenceStatus {
                session: Some("default".into()),
                path: Some("/state/sessions/default".into()),
                persisted: true,
                reason: None,
                history_session: 1,
                history_entries: 3,
                history_in_memory: 3,
                artifacts: 0,
                artifact_bytes: 0,
                unsaved_changes: 0,
            },
            operations: Vec::new(),
            shutting_down: false,
            iopub: IopubStatus {
                subscribers: 2,
                lagging: 1,
                queued_bytes: 3 << 20,
                dropped: 1200,
                dropped_before_subscriber: 0,
            },
            telemetry: vec![TelemetryStatus {
                name: "traces".into(),
                target: "http://127.0.0.1:4318/v1/traces".into(),
                delivered: 40,
                dropped: 12,
                failing: Some("connection refused".into()),
            }],
        }
    }

    #[test]
    fn the_table_says_what_iopub_dropped_for_a_subscriber_not_reading() {
        let t = table(&report(HealthStatus::Healthy, &[]));
        assert!(
            t.contains("| IOPub | 2 subscribers, 1 not reading (3.0 MiB queued); 1200 messages dropped for subscribers that did not read |\n"),
            "{t}"
        );
    }

    #[test]
    fn the_table_says_what_telemetry_dropped_and_why() {
        let t = table(&report(HealthStatus::Healthy, &[]));
        assert!(
            t.contains("| traces | to `http://127.0.0.1:4318/v1/traces`: 40 delivered, **12 dropped** — dropping now: connection refused |\n"),
            "{t}"
        );
    }

    #[test]
    fn the_table_opens_with_health_and_its_figures() {
        let t = table(&report(HealthStatus::Healthy, &[]));
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(rows[0], "| health | healthy |");
        assert_eq!(rows[1], "| RSS | 6.0 MiB |");
        assert_eq!(rows[2], "| CPU | 0.2% |");
        assert_eq!(
            rows[3],
            "| system memory | 1.0 GiB available of 4.0 GiB (25.0%) |"
        );
        assert_eq!(rows[4], "| load average | 0.50 0.25 0.12 (2 cores) |");
        assert_eq!(rows[5], "| system uptime | 1d 1h 1m |");
        assert!(t.contains("| kernel | skillkernel 0.1.0 |\n"));
        assert!(t.contains("| pid | 42 |\n"));
        assert!(t.contains("| model | none |\n"));
    }

    #[test]
    fn a_degraded_kernel_shows_its_reasons_in_the_health_row() {
        let t = table(&report(
            HealthStatus::Degraded,
            &[
                "rss 6.0 MiB > 1 MiB",
                "load 9.00 over 2 cores = 4.50 per core > 4",
            ],
        ));
        assert!(
            t.contains(
                "| health | degraded: rss 6.0 MiB > 1 MiB; load 9.00 over 2 cores = 4.50 per core > 4 |\n"
            ),
            "{t}"
        );
    }
}
