//! `%usage`: what model calls used and cost, from the usage ledger.

use std::sync::Arc;

use serde_json::{Map, Value};
use skillkernel_protocol::content::DisplayData;
use skillkernel_providers::usage::{Totals, UsageReport};

use super::model::table;
use super::split_args;
use crate::errors::KernelError;
use crate::exec_context::output::markdown_bundle;
use crate::exec_context::ExecContext;
use crate::Models;

pub(super) const USAGE: &str = "%usage [--days N]";

/// Days a report covers unless told otherwise.
pub const DEFAULT_DAYS: u32 = 7;
/// The longest report: the year the ledger keeps.
pub const MAX_DAYS: u32 = 366;

/// The report over the last `days` days, with today's budgets.
pub(crate) async fn report(models: &Models, days: u32) -> Result<UsageReport, KernelError> {
    let ledger = models.registry.usage().ok_or(KernelError::NoUsageLedger)?;
    let budgets = &models.registry.config().budgets;
    let dir = ledger.dir().display().to_string();
    let failed = |e: String| KernelError::Io(format!("cannot read the usage ledger in {dir}: {e}"));
    // A year of files is read: off the async threads.
    let (ledger, budgets) = (Arc::clone(ledger), budgets.clone());
    tokio::task::spawn_blocking(move || UsageReport::from_ledger(&ledger, days, &budgets))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))
}

fn parse_days(args: &str) -> Result<u32, KernelError> {
    let words = split_args(args);
    let bad = |why: &str| KernelError::usage("usage", why, USAGE);
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Ok(DEFAULT_DAYS),
        ["--days", n] => match n.parse::<u32>() {
            Ok(days) if (1..=MAX_DAYS).contains(&days) => Ok(days),
            _ => Err(bad("--days takes a number of days from 1 to 366")),
        },
        _ => Err(bad("unexpected arguments")),
    }
}

/// `12,345`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Cost with the precision small sums need.
pub(crate) fn money(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x < 0.01 {
        format!("{x:.6}")
    } else {
        format!("{x:.4}")
    }
}

fn cells(t: &Totals) -> Vec<String> {
    let cost = match (t.calls.saturating_sub(t.unpriced_calls), t.unpriced_calls) {
        (0, _) => "—".to_owned(),
        (_, 0) => money(t.cost),
        (_, unpriced) => format!("{} (+{unpriced} unpriced)", money(t.cost)),
    };
    vec![
        count(t.calls),
        count(t.prompt_tokens),
        count(t.completion_tokens),
        cost,
        t.mean_first_token_ms
            .map(|ms| format!("{ms:.0}"))
            .unwrap_or_default(),
    ]
}

const TOTAL_COLUMNS: [&str; 6] = [
    "",
    "calls",
    "tokens in",
    "tokens out",
    "cost",
    "first token ms",
];

fn with_key(key: &str, t: &Totals) -> Vec<String> {
    let mut row = vec![key.to_owned()];
    row.extend(cells(t));
    row
}

/// The report as text and HTML tables: totals, by model, by skill, budgets.
pub(crate) fn render(r: &UsageReport) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    let period = format!("last {} days", r.days);
    out.push(table(
        &TOTAL_COLUMNS,
        &[
            with_key(&format!("today ({})", r.today), &r.today_totals),
            with_key(&period, &r.period_totals),
        ],
    ));
    if r.period_totals.calls == 0 {
        out.push(markdown_bundle(&format!("No model calls in the {period}.")));
    } else {
        for (what, breakdown) in [("model", &r.by_model), ("skill", &r.by_skill)] {
            let mut columns = TOTAL_COLUMNS;
            columns[0] = what;
            let rows: Vec<Vec<String>> = breakdown
                .iter()
                .map(|row| with_key(&row.key, &row.totals))
                .collect();
            out.push(table(&columns, &rows));
        }
    }
    if !r.budgets.is_empty() {
        let rows: Vec<Vec<String>> = r
            .budgets
            .iter()
            .map(|b| {
                vec![
                    b.name.clone(),
                    money(b.limit),
                    money(b.spent),
                    if b.exceeded() {
                        "used up".to_owned()
                    } else {
                        money(b.limit - b.spent)
                    },
                ]
            })
            .collect();
        out.push(table(&["budget", "per day", "spent today", "left"], &rows));
    }
    if r.unreadable_lines > 0 {
        out.push(markdown_bundle(&format!(
            "{} ledger lines could not be read and are left out.",
            r.unreadable_lines
        )));
    }
    out
}

pub(super) async fn run(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let days = parse_days(args)?;
    let models = ctx.shared.models().ok_or(KernelError::NoModel)?;
    let r = report(&models, days).await?;
    for data in render(&r) {
        ctx.out.display(DisplayData::new(data)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_and_small_costs_keep_their_digits() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(money(0.000123), "0.000123");
        assert_eq!(money(2.5), "2.5000");
    }

    #[test]
    fn days_are_checked() {
        assert_eq!(parse_days("").unwrap(), DEFAULT_DAYS);
        assert_eq!(parse_days("--days 30").unwrap(), 30);
        assert!(parse_days("--days 0").is_err());
        assert!(parse_days("today").is_err());
    }
}
