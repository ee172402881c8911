//! Totals over the ledger: today, the last N days, by model and by skill,
//! and where each budget stands.

use std::collections::BTreeMap;
use std::io;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::ledger::{today, Ledger, Spent};
use super::UsageRecord;
use crate::config::Budgets;

/// Sums over a set of calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// What the priced calls cost.
    pub cost: f64,
    /// Calls to models with no price (local ones): not in `cost`.
    pub unpriced_calls: u64,
    /// Calls answered from the response cache.
    pub cached_calls: u64,
    /// Mean time to first token over the calls that produced one.
    pub mean_first_token_ms: Option<f64>,
    /// Time spent generating, all calls together.
    pub total_ms: f64,
    #[serde(skip)]
    first_token_sum: f64,
    #[serde(skip)]
    first_token_n: u64,
}

impl Totals {
    fn add(&mut self, r: &UsageRecord) {
        self.calls += 1;
        self.prompt_tokens += u64::from(r.prompt_tokens);
        self.completion_tokens += u64::from(r.completion_tokens);
        match r.cost {
            Some(c) => self.cost += c,
            None => self.unpriced_calls += 1,
        }
        self.cached_calls += u64::from(r.cached);
        self.total_ms += r.total_ms;
        if let Some(ms) = r.first_token_ms {
            self.first_token_sum += ms;
            self.first_token_n += 1;
            self.mean_first_token_ms = Some(self.first_token_sum / self.first_token_n as f64);
        }
    }
}

/// One row of a breakdown: a model (`name@backend`) or a skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    pub totals: Totals,
}

/// A budget and what today has spent of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    /// `daily`, or `skill NAME`.
    pub name: String,
    pub limit: f64,
    pub spent: f64,
}

impl BudgetState {
    pub fn exceeded(&self) -> bool {
        self.spent >= self.limit
    }
}

/// Usage over the last `days` local days, today included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub today: NaiveDate,
    pub days: u32,
    pub today_totals: Totals,
    pub period_totals: Totals,
    /// Over the period, costliest first, then by calls.
    pub by_model: Vec<Row>,
    /// Over the period; prompt cells (no skill) are `(prompt cells)`.
    pub by_skill: Vec<Row>,
    pub budgets: Vec<BudgetState>,
    /// Ledger lines that could not be read (a damaged file).
    pub unreadable_lines: usize,
}

/// The key prompt cells are listed under in the by-skill breakdown.
pub const NO_SKILL: &str = "(prompt cells)";

/// Adds records up as they are read.
struct Builder {
    today: NaiveDate,
    first: NaiveDate,
    days: u32,
    today_totals: Totals,
    period_totals: Totals,
    by_model: BTreeMap<String, Totals>,
    by_skill: BTreeMap<String, Totals>,
}

impl Builder {
    fn new(today: NaiveDate, days: u32) -> Builder {
        let days = days.max(1);
        Builder {
            today,
            first: today - chrono::Days::new(u64::from(days - 1)),
            days,
            today_totals: Totals::default(),
            period_totals: Totals::default(),
            by_model: BTreeMap::new(),
            by_skill: BTreeMap::new(),
        }
    }

    fn add(&mut self, r: &UsageRecord) {
        if r.day < self.first || r.day > self.today {
            return;
        }
        self.period_totals.add(r);
        if r.day == self.today {
            self.today_totals.add(r);
        }
        self.by_model.entry(r.spec()).or_default().add(r);
        let skill = r.skill.clone().unwrap_or_else(|| NO_SKILL.to_owned());
        self.by_skill.entry(skill).or_default().add(r);
    }

    fn finish(self, budgets: &Budgets, spent: &Spent, unreadable_lines: usize) -> UsageReport {
        let mut budget_states: Vec<BudgetState> = budgets
            .daily
            .map(|limit| BudgetState {
                name: "daily".into(),
                limit,
                spent: spent.total,
            })
            .into_iter()
            .collect();
        budget_states.extend(budgets.skills.iter().map(|(skill, &limit)| BudgetState {
            name: format!("skill {skill}"),
            limit,
            spent: spent.by_skill.get(skill).copied().unwrap_or(0.0),
        }));
        UsageReport {
            today: self.today,
            days: self.days,
            today_totals: self.today_totals,
            period_totals: self.period_totals,
            by_model: ranked(self.by_model),
            by_skill: ranked(self.by_skill),
            budgets: budget_states,
            unreadable_lines,
        }
    }
}

impl UsageReport {
    /// Usage over the last `days` local days, today included, from the
    /// ledger, and where `budgets` stand today.
    pub fn from_ledger(ledger: &Ledger, days: u32, budgets: &Budgets) -> io::Result<UsageReport> {
        let mut builder = Builder::new(today(), days);
        let unreadable = ledger.scan_since(builder.first, |r| builder.add(&r))?;
        let spent = ledger.spent_today()?;
        Ok(builder.finish(budgets, &spent, unreadable))
    }
}

fn ranked(map: BTreeMap<String, Totals>) -> Vec<Row> {
    let mut rows: Vec<Row> = map
        .into_iter()
        .map(|(key, totals)| Row { key, totals })
        .collect();
    rows.sort_by(|a, b| {
        b.totals
            .cost
            .total_cmp(&a.totals.cost)
            .then(b.totals.calls.cmp(&a.totals.calls))
            .then(a.key.cmp(&b.key))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(day: NaiveDate, model: &str, skill: Option<&str>, cost: Option<f64>) -> UsageRecord {
        UsageRecord {
            at: String::new(),
            day,
            session: "s".into(),
            skill: skill.map(str::to_owned),
            backend: "b".into(),
            model: model.into(),
            profile: None,
            prompt_tokens: 100,
            completion_tokens: 10,
            first_token_ms: Some(20.0),
            total_ms: 100.0,
            finish_reason: "stop".into(),
            cached: false,
            cost,
        }
    }

    #[test]
    fn today_and_the_period_are_split_and_breakdowns_rank_by_cost() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let d = |n| today - chrono::Days::new(n);
        let records = [
            rec(today, "cheap", None, Some(0.01)),
            rec(today, "local", Some("t"), None),
            rec(d(3), "dear", Some("t"), Some(1.0)),
            rec(d(7), "dear", None, Some(5.0)),
        ];
        let budgets: Budgets = toml::from_str("daily = 1.0\n[skills]\nt = 0.5").unwrap();
        let spent = Spent {
            total: 0.01,
            by_skill: Default::default(),
        };
        let mut builder = Builder::new(today, 7);
        for record in &records {
            builder.add(record);
        }
        let r = builder.finish(&budgets, &spent, 0);
        assert_eq!(r.today_totals.calls, 2);
        assert_eq!(r.today_totals.unpriced_calls, 1);
        assert_eq!(
            r.period_totals.calls, 3,
            "the 8th day back is outside 7 days"
        );
        assert!((r.period_totals.cost - 1.01).abs() < 1e-9);
        let models: Vec<&str> = r.by_model.iter().map(|row| row.key.as_str()).collect();
        assert_eq!(models, ["dear@b", "cheap@b", "local@b"]);
        let skills: Vec<&str> = r.by_skill.iter().map(|row| row.key.as_str()).collect();
        assert_eq!(skills, ["t", NO_SKILL]);
        assert_eq!(r.period_totals.mean_first_token_ms, Some(20.0));
        assert_eq!(r.budgets.len(), 2);
        assert!(!r.budgets[0].exceeded());
        assert_eq!(r.budgets[1].name, "skill t");
    }
}
