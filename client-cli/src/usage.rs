//! `skillctl usage`: what model calls used and cost, through
//! `model_request` `{"action": "usage"}` (the data `%usage` shows).

use skillkernel_protocol::content::{UsageSummary, UsageTotals};

use crate::table::print_table;

fn cost(t: &UsageTotals) -> String {
    let priced = t.calls.saturating_sub(t.unpriced_calls);
    match (priced, t.unpriced_calls) {
        (0, _) => "-".into(),
        (_, 0) => format!("{:.6}", t.cost),
        (_, unpriced) => format!("{:.6} (+{unpriced} unpriced)", t.cost),
    }
}

fn row(key: &str, t: &UsageTotals) -> Vec<String> {
    vec![
        key.to_owned(),
        t.calls.to_string(),
        t.prompt_tokens.to_string(),
        t.completion_tokens.to_string(),
        cost(t),
        t.mean_first_token_ms
            .map(|ms| format!("{ms:.0}"))
            .unwrap_or_default(),
    ]
}

/// Prints the report as tables: totals, by model, by skill, budgets.
pub fn print(u: &UsageSummary) {
    let mut columns = [
        "",
        "calls",
        "tokens in",
        "tokens out",
        "cost",
        "first token ms",
    ];
    print_table(
        &columns,
        &[
            row(&format!("today ({})", u.today), &u.today_totals),
            row(&format!("last {} days", u.days), &u.period_totals),
        ],
    );
    if u.period_totals.calls > 0 {
        for (what, breakdown) in [("model", &u.by_model), ("skill", &u.by_skill)] {
            println!();
            columns[0] = what;
            let rows: Vec<Vec<String>> = breakdown.iter().map(|r| row(&r.key, &r.totals)).collect();
            print_table(&columns, &rows);
        }
    }
    if !u.budgets.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = u
            .budgets
            .iter()
            .map(|b| {
                let left = if b.spent >= b.limit {
                    "used up".to_owned()
                } else {
                    format!("{:.6}", b.limit - b.spent)
                };
                vec![
                    b.name.clone(),
                    format!("{:.2}", b.limit),
                    format!("{:.6}", b.spent),
                    left,
                ]
            })
            .collect();
        print_table(&["budget", "per day", "spent today", "left"], &rows);
    }
    if u.unreadable_lines > 0 {
        eprintln!("{} ledger lines could not be read", u.unreadable_lines);
    }
}
