//! Budgets in front of a priced call: the default model in its place, or
//! a refusal naming the budget (the rules are in [`crate::usage::budget`]).

use std::sync::Arc;

use super::{Registry, Route};
use crate::config::OnExceeded;
use crate::usage::{budget, BudgetState, Caller};
use crate::ProviderError;

impl Registry {
    /// `route`, or what a used-up budget puts in its place: the default
    /// model (with a notice saying why) or a refusal naming the budget.
    pub(super) async fn within_budget(
        &self,
        caller: &Caller,
        route: Route,
    ) -> Result<Route, ProviderError> {
        let Some(over) = self.used_up_budget(caller, &route).await else {
            return Ok(route);
        };
        let refused = || ProviderError::BudgetExceeded(budget::refusal(&over, &route.spec()));
        if self.config.budgets.on_exceeded == OnExceeded::Refuse {
            return Err(refused());
        }
        let default = &self.config.default;
        if self.config.is_profile(default) {
            return Err(refused());
        }
        let mut local = self.route_model(default).await.map_err(|_| refused())?;
        if self
            .config
            .price(&local.model, local.provider.backend())
            .is_some()
        {
            return Err(refused());
        }
        tracing::info!(asked = %route.spec(), answered_by = %local.spec(), budget = %over.name, "budget used up; the default model answers");
        local.profile = route.profile.clone();
        local.notice = Some(format!(
            "{} is used up: {} answered instead of {}",
            budget::describe(&over),
            local.spec(),
            route.spec()
        ));
        Ok(local)
    }

    /// The budget `caller` has used up today, if `route`'s model is priced
    /// and one is. Models without a price are never held back.
    ///
    /// Budgets are soft: they count calls that have ended, so calls
    /// started together (a workflow's parallel phases, other kernels) may
    /// all go ahead just before the limit.
    pub(super) async fn used_up_budget(
        &self,
        caller: &Caller,
        route: &Route,
    ) -> Option<BudgetState> {
        let ledger = self.usage.as_ref().filter(|_| self.config.budgets.any())?;
        self.config.price(&route.model, route.provider.backend())?;
        // File reads: off the async threads.
        let reader = Arc::clone(ledger);
        let spent = match tokio::task::spawn_blocking(move || reader.spent_today()).await {
            Ok(Ok(spent)) => spent,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read today's usage; budgets not checked");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading today's usage failed; budgets not checked");
                return None;
            }
        };
        budget::exceeded(&self.config.budgets, &spent, caller)
    }
}
