//! `[models.prices]` and `[models.budgets]`: what a model's tokens cost and
//! how much a day may spend.
//!
//! ```toml
//! [models.prices]                     # per million tokens
//! "gpt-4o-mini" = { input = 0.15, output = 0.60 }
//! "claude-3-5-haiku@claude" = { input = 0.80, output = 4.00 }
//!
//! [models.budgets]
//! daily = 2.00                        # all priced calls, per local day
//! on_exceeded = "local"               # or "refuse"
//! [models.budgets.skills]
//! translate = 0.25
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A model's price per million tokens, in the currency the budgets use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt (input) tokens.
    pub input: f64,
    /// Per million generated (output) tokens.
    pub output: f64,
}

impl Price {
    /// What `prompt_tokens` in and `completion_tokens` out cost.
    pub fn cost(&self, prompt_tokens: u32, completion_tokens: u32) -> f64 {
        (f64::from(prompt_tokens) * self.input + f64::from(completion_tokens) * self.output) / 1e6
    }
}

/// What happens to a priced call once a budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExceeded {
    /// The default model answers instead (when it has no price itself).
    #[default]
    Local,
    /// The call fails with a message naming the budget.
    Refuse,
}

/// Daily spending limits on priced models.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budgets {
    /// All priced calls together, per local day.
    pub daily: Option<f64>,
    /// Per skill (by name), per local day.
    pub skills: BTreeMap<String, f64>,
    pub on_exceeded: OnExceeded,
}

impl Budgets {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.daily.is_some() || !self.skills.is_empty()
    }
}

/// The price of `model` on `backend`: a `model@backend` entry first, then
/// one for the bare name.
pub fn price_of(prices: &BTreeMap<String, Price>, model: &str, backend: &str) -> Option<Price> {
    prices
        .get(&format!("{model}@{backend}"))
        .or_else(|| prices.get(model))
        .copied()
}

/// A finite amount, zero or more.
fn usable(amount: f64) -> bool {
    amount.is_finite() && amount >= 0.0
}

/// Negative prices or limits are typos, not discounts.
pub fn check(prices: &BTreeMap<String, Price>, budgets: &Budgets) -> Result<(), String> {
    for (model, p) in prices {
        if !(usable(p.input) && usable(p.output)) {
            return Err(format!(
                "[models.prices] `{model}`: input and output must be zero or more"
            ));
        }
    }
    let limits = budgets
        .daily
        .iter()
        .map(|d| ("daily".to_owned(), *d))
        .chain(
            budgets
                .skills
                .iter()
                .map(|(s, d)| (format!("skills.{s}"), *d)),
        );
    for (name, limit) in limits {
        if !usable(limit) {
            return Err(format!("[models.budgets] {name} must be zero or more"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_specific_price_wins_over_the_bare_name() {
        let prices: BTreeMap<String, Price> = toml::from_str(
            "m = { input = 1.0, output = 2.0 }\n\"m@gpu\" = { input = 0.5, output = 0.5 }",
        )
        .unwrap();
        assert_eq!(price_of(&prices, "m", "gpu").unwrap().input, 0.5);
        assert_eq!(price_of(&prices, "m", "cloud").unwrap().input, 1.0);
        assert!(price_of(&prices, "other", "gpu").is_none());
        let p = price_of(&prices, "m", "cloud").unwrap();
        assert!((p.cost(1_000_000, 500_000) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn negative_prices_and_limits_are_refused() {
        let prices: BTreeMap<String, Price> =
            toml::from_str("m = { input = -1.0, output = 2.0 }").unwrap();
        assert!(check(&prices, &Budgets::default())
            .unwrap_err()
            .contains("`m`"));
        let budgets: Budgets = toml::from_str("[skills]\nt = -0.5").unwrap();
        let e = check(&BTreeMap::new(), &budgets).unwrap_err();
        assert!(e.contains("skills.t"), "{e}");
    }
}
