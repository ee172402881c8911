//! Whether a priced call may go ahead: the daily budget and the calling
//! skill's, against what the ledger says today has spent.

use super::ledger::Spent;
use super::report::BudgetState;
use super::Caller;
use crate::config::Budgets;

/// The first budget `caller` has used up today: the daily one, then the
/// skill's own.
pub fn exceeded(budgets: &Budgets, spent: &Spent, caller: &Caller) -> Option<BudgetState> {
    if let Some(limit) = budgets.daily {
        if spent.total >= limit {
            return Some(BudgetState {
                name: "daily".into(),
                limit,
                spent: spent.total,
            });
        }
    }
    let skill = caller.skill.as_deref()?;
    let limit = *budgets.skills.get(skill)?;
    let used = spent.by_skill.get(skill).copied().unwrap_or(0.0);
    (used >= limit).then(|| BudgetState {
        name: format!("skill {skill}"),
        limit,
        spent: used,
    })
}

/// `the daily budget (2, 2.010000 spent today)`.
pub fn describe(b: &BudgetState) -> String {
    let name = match b.name.strip_prefix("skill ") {
        Some(skill) => format!("`{skill}` skill's daily budget"),
        None => "daily budget".into(),
    };
    format!("the {name} ({}, {:.6} spent today)", b.limit, b.spent)
}

/// Why a call to `spec` was refused.
pub fn refusal(b: &BudgetState, spec: &str) -> String {
    format!(
        "{} is used up, so `{spec}` was not called; raise it under [models.budgets], \
         set on_exceeded = \"local\" to have the default model answer instead, or wait until tomorrow",
        describe(b)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_budget_is_checked_before_the_skills_own() {
        let budgets: Budgets = toml::from_str("daily = 1.0\n[skills]\nt = 0.1").unwrap();
        let mut spent = Spent::default();
        let t = Caller::skill("s", "t");
        assert_eq!(exceeded(&budgets, &spent, &t), None);
        spent.by_skill.insert("t".into(), 0.1);
        spent.total = 0.1;
        assert_eq!(exceeded(&budgets, &spent, &t).unwrap().name, "skill t");
        assert_eq!(exceeded(&budgets, &spent, &Caller::session("s")), None);
        spent.total = 1.0;
        let over = exceeded(&budgets, &spent, &Caller::session("s")).unwrap();
        assert_eq!(over.name, "daily");
        assert!(refusal(&over, "m@cloud").contains("daily budget (1, 1.000000 spent"));
    }
}
