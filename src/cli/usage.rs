//! `byollm usage --team <uid>`: a team's usage today (UTC) per agent and model and the room left
//! in its budgets, read from the limits store the replicas share (Redis, `[limits] redis_url`):
//! the same report as `GET /v1/usage`. Without `redis_url` the counters live only inside each
//! `byollm serve` process, so there is nothing to read from here: refused, pointing at
//! `GET /v1/usage`. Must never: print the store's password, or write to the store.

use std::sync::Arc;

use clap::Args;

use super::{ConfigArgs, Failure, load_config, runtime};
use crate::app;
use crate::limits::{Limits, UsageReport};
use crate::observe::metrics::Metrics;
use crate::routing::Mode;

#[derive(Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The team (its uid) whose usage to print.
    #[arg(long)]
    pub team: String,
    /// Print the report as JSON (the body `GET /v1/usage` answers with).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: UsageArgs) -> Result<(), Failure> {
    let config = load_config(&args.config, true)?;
    let known = config.teams.iter().any(|t| t.uid.as_str() == args.team)
        || config.callers.iter().any(|c| c.team.as_str() == args.team);
    if !known {
        return Err(Failure::Other(format!("team {:?} is neither in [[teams]] nor the team of a caller", args.team)));
    }
    let routing = app::routing_policy(&config, Mode::Hosted).map_err(Failure::Config)?;
    let policy = app::limits_policy(&config, &routing).map_err(Failure::Config)?;
    if policy.store.redis_url.is_none() {
        return Err(Failure::Other(
            "[limits] has no redis_url: the counters live inside each `byollm serve` process; ask the gateway \
             (GET /v1/usage with one of the team's caller keys)"
                .to_owned(),
        ));
    }
    let report = runtime()?.block_on(async {
        let limits = Limits::new(policy, Arc::new(Metrics::default()));
        limits.usage(&args.team).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The report as two plain-text tables: usage per agent and model, then the budgets' room.
fn table(report: &UsageReport) -> String {
    let mut out = format!("team {} on {} (UTC)\n\n", report.team, report.day);
    let mut rows = vec![
        ["agent", "model", "requests", "input", "output", "cache_read", "cache_write", "cost_usd", "unpriced"]
            .map(str::to_owned),
    ];
    for line in &report.usage {
        rows.push([
            line.agent.clone().unwrap_or_else(|| "-".into()),
            line.model.clone(),
            line.requests.to_string(),
            line.input_tokens.to_string(),
            line.output_tokens.to_string(),
            line.cache_read_input_tokens.to_string(),
            line.cache_creation_input_tokens.to_string(),
            format!("{:.6}", line.cost_usd.as_f64()),
            line.unpriced.to_string(),
        ]);
    }
    if report.usage.is_empty() {
        out.push_str("no requests today\n");
    } else {
        out.push_str(&aligned(&rows));
    }
    out.push('\n');
    if report.budgets.is_empty() {
        out.push_str("no budgets\n");
        return out;
    }
    let mut rows = vec![["scope", "limit", "value", "used", "remaining", "resets_in_s"].map(str::to_owned)];
    for budget in &report.budgets {
        rows.push([
            budget.scope.clone(),
            budget.limit.to_owned(),
            budget.value.to_string(),
            budget.used.to_string(),
            budget.remaining.to_string(),
            budget.reset_secs.to_string(),
        ]);
    }
    out.push_str(&aligned(&rows));
    out
}

/// Rows as columns padded to their widest cell.
fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{BudgetRoom, UsageLine};
    use crate::models::prices::Usd;

    #[test]
    fn the_table_lists_each_agent_and_model_and_each_budget() {
        let report = UsageReport {
            team: "acme".into(),
            day: "2026-12-07".into(),
            usage: vec![UsageLine {
                agent: Some("reviewer".into()),
                model: "claude-haiku-4-5".into(),
                requests: 3,
                input_tokens: 3000,
                output_tokens: 3000,
                cache_read_input_tokens: 30_000,
                cache_creation_input_tokens: 6000,
                cost_usd: Usd(28_500_000),
                unpriced: 0,
            }],
            budgets: vec![BudgetRoom {
                scope: "team".into(),
                limit: "usd_per_day",
                value: 0.02,
                used: 0.0285,
                remaining: 0.0,
                reset_secs: 600,
            }],
        };
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "team acme on 2026-12-07 (UTC)");
        assert!(lines[2].starts_with("agent     model             requests"), "{text}");
        assert!(lines[3].starts_with("reviewer  claude-haiku-4-5  3 "), "{text}");
        assert!(lines[3].contains(" 0.028500 "), "{text}");
        assert!(text.contains("team   usd_per_day  0.02   0.0285  0          600"), "{text}");
    }
}
