//! What a team used today, per agent and model (`GET /v1/usage`, `byollm usage`), kept in the
//! limits' store, and the billed tokens and cost of one answer.

use http::StatusCode;

use super::key::ScopeKey;
use super::store::{Store, usage_field, usage_key};
use super::{Limit, Limits, now_us, windows};
use crate::error::{ApiError, ErrorKind};
use crate::models::prices::{Price, Tokens, Usd};
use crate::wire::usage::Usage;

/// The billed token counts of `usage` (cache writes at the 5-minute rate: the one usage type does
/// not tell 1-hour writes apart).
pub fn tokens(usage: &Usage) -> Tokens {
    Tokens {
        input: usage.input_tokens.unwrap_or(0),
        output: usage.output_tokens.unwrap_or(0),
        cache_write_5m: usage.cache_creation_input_tokens.unwrap_or(0),
        cache_write_1h: 0,
        cache_read: usage.cache_read_input_tokens.unwrap_or(0),
    }
}

/// What `usage` cost at `price`: the one cost rule (audit line, span, budgets, `/v1/usage`).
pub fn cost(price: Price, usage: &Usage) -> Usd {
    Usd(price.cost_nanos(tokens(usage)))
}

/// How long a team's usage of one UTC day is kept for `/v1/usage`.
const USAGE_TTL_SECS: u64 = 40 * 86_400;

/// One agent's use of one model on one UTC day (`/v1/usage`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct UsageLine {
    /// `null`: the team's own runs (no agent).
    pub agent: Option<String>,
    pub model: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    /// The sum of the answers' `cost_usd` (answers without a price count nothing).
    pub cost_usd: Usd,
    /// Answers without a price.
    pub unpriced: u64,
}

/// A budget's room (`/v1/usage`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BudgetRoom {
    /// `team`, or `agent <name>`.
    pub scope: String,
    pub limit: &'static str,
    /// Tokens, or USD for `usd_per_*`.
    pub value: f64,
    pub used: f64,
    pub remaining: f64,
    /// Seconds until the window ends (00:00 UTC, or the 1st of the month).
    pub reset_secs: u64,
}

/// A team's usage today and its budgets' room.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsageReport {
    pub team: String,
    /// The UTC day reported.
    pub day: String,
    pub usage: Vec<UsageLine>,
    pub budgets: Vec<BudgetRoom>,
}

impl Limits {
    /// Add one finished request to its team's usage of the day (per agent and model).
    pub fn record_usage(&self, team: &str, agent: Option<&str>, model: Option<&str>, usage: &Usage, cost: Option<Usd>) {
        let now = now_us();
        let day = windows::Windows::at(now / 1_000_000).day().0;
        let (agent, model) = (agent.unwrap_or("-"), model.unwrap_or("-"));
        let counts = [
            ("requests", 1),
            ("input", usage.input_tokens.unwrap_or(0)),
            ("output", usage.output_tokens.unwrap_or(0)),
            ("cache_read", usage.cache_read_input_tokens.unwrap_or(0)),
            ("cache_write", usage.cache_creation_input_tokens.unwrap_or(0)),
            match cost {
                Some(cost) => ("cost_nanos", cost.0),
                None => ("unpriced", 1),
            },
        ];
        // Zero counts are not written: a line reads as 0 without them.
        let counts = counts.into_iter().filter(|(_, count)| *count > 0);
        let Some(shared) = &self.shared else {
            return self.local.add_usage_counts(team, day, agent, model, counts, USAGE_TTL_SECS, now);
        };
        let mut key = String::new();
        usage_key(&mut key, team, day);
        let fields: Vec<(String, u64)> = counts
            .map(|(kind, count)| {
                let mut field = String::new();
                usage_field(&mut field, agent, model, kind);
                (field, count)
            })
            .collect();
        let (shared, local, metrics) = (shared.clone(), self.local.clone(), self.metrics.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if shared.add_usage(&key, &fields, USAGE_TTL_SECS).await.is_err() {
                    metrics.limit_store_errors.inc("usage");
                    local.add_usage_now(&key, &fields, USAGE_TTL_SECS, now);
                }
            });
        }
    }

    /// `team`'s usage today, per agent and model, and the room of its budgets (the team's and
    /// its agents').
    pub async fn usage(&self, team: &str) -> Result<UsageReport, ApiError> {
        let policy = self.policy();
        let windows = windows::Windows::at(now_us() / 1_000_000);
        let day = windows.day().0.to_string();
        let store: &dyn Store = match &self.shared {
            Some(shared) => shared.as_ref(),
            None => self.local.as_ref(),
        };
        let unavailable = |_| {
            self.metrics.limit_store_errors.inc("usage");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Internal,
                "limits_unavailable",
                "the gateway's counter store does not answer; retry shortly",
            )
            .with_retry_after(1)
        };
        let mut key = String::new();
        usage_key(&mut key, team, windows.day().0);
        let fields = store.usage(&key).await.map_err(unavailable)?;
        let mut lines: Vec<UsageLine> = Vec::new();
        for (field, value) in fields {
            let mut parts = field.splitn(3, '\t');
            let (Some(agent), Some(model), Some(kind)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let agent = (agent != "-").then(|| agent.to_owned());
            let index = match lines.iter().position(|l| l.agent == agent && l.model == model) {
                Some(index) => index,
                None => {
                    lines.push(UsageLine { agent, model: model.to_owned(), ..UsageLine::default() });
                    lines.len() - 1
                }
            };
            let line = &mut lines[index];
            match kind {
                "requests" => line.requests = value,
                "input" => line.input_tokens = value,
                "output" => line.output_tokens = value,
                "cache_read" => line.cache_read_input_tokens = value,
                "cache_write" => line.cache_creation_input_tokens = value,
                "cost_nanos" => line.cost_usd = Usd(value),
                "unpriced" => line.unpriced = value,
                _ => {}
            }
        }
        let mut scopes = vec![("team".to_owned(), ScopeKey::team(team), policy.team(team))];
        if let Some(limits) = policy.teams.get(team) {
            for (agent, set) in &limits.agents {
                scopes.push((format!("agent {agent}"), ScopeKey::agent(team, agent), *set));
            }
        }
        let mut budgets = Vec::new();
        let mut keys = Vec::new();
        for (name, scope, set) in &scopes {
            for (limit, value, (window, left)) in [
                (Limit::TokensPerDay, set.tokens_per_day, windows.day()),
                (Limit::TokensPerMonth, set.tokens_per_month, windows.month()),
                (Limit::UsdPerDay, set.usd_per_day, windows.day()),
                (Limit::UsdPerMonth, set.usd_per_month, windows.month()),
            ] {
                let Some(value) = value else { continue };
                keys.push(scope.sum(limit, window));
                budgets.push((name.clone(), limit, value, left));
            }
        }
        let used = store.sums(&keys).await.map_err(unavailable)?;
        let budgets = budgets
            .into_iter()
            .zip(used)
            .map(|((scope, limit, value, reset_secs), used)| {
                let used = used.unwrap_or(0);
                let show = |n: u64| {
                    if matches!(limit, Limit::UsdPerDay | Limit::UsdPerMonth) { Usd(n).as_f64() } else { n as f64 }
                };
                BudgetRoom {
                    scope,
                    limit: limit.as_str(),
                    value: show(value),
                    used: show(used),
                    remaining: show(value.saturating_sub(used)),
                    reset_secs,
                }
            })
            .collect();
        Ok(UsageReport { team: team.to_owned(), day, usage: lines, budgets })
    }
}
