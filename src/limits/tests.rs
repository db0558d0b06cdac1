use std::collections::BTreeMap;

use super::*;
use crate::config::Config;
use crate::routing::policy::MapSecrets;
use crate::routing::{Mode, RoutingPolicy};

const CONFIG: &str = r#"
dev = true
[[callers]]
name = "acme-worker"
key_sha256 = "0000000000000000000000000000000000000000000000000000000000000001"
team = "acme"
[[callers]]
name = "other-worker"
key_sha256 = "0000000000000000000000000000000000000000000000000000000000000002"
team = "other"
[[teams]]
uid = "acme"
role_arn = "arn:aws:iam::111111111111:role/acme"
agents = [{ name = "reviewer", role_arn = "arn:aws:iam::111111111111:role/reviewer" }]
[models.claude-haiku-4-5]
id = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
"#;

fn limits(section: &str) -> Limits {
    let config = Config::from_toml(&format!("{CONFIG}{section}")).unwrap();
    let routing = RoutingPolicy::from_config(&config, Mode::Hosted, &MapSecrets(BTreeMap::new())).unwrap();
    let policy = LimitsPolicy::from_config(&config, &routing, &MapSecrets(BTreeMap::new())).unwrap();
    Limits::new(policy, Arc::new(Metrics::default()))
}

fn who<'a>(team: &'a str, agent: Option<&'a str>) -> Who<'a> {
    Who { team, agent, caller: Some("acme-worker"), actor: "service_account", principal: "ci-bot" }
}

fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
    Usage {
        input_tokens: Some(input),
        output_tokens: Some(output),
        cache_read_input_tokens: Some(cache_read),
        cache_creation_input_tokens: Some(cache_write),
        reasoning_tokens: None,
    }
}

#[tokio::test]
async fn the_sixth_request_of_a_team_limited_to_five_a_minute_is_a_429_and_another_team_is_unaffected() {
    let limits = limits("[limits.teams.acme]\nrequests_per_minute = 5\n");
    for n in 0..5 {
        let admission = limits.admit(who("acme", None)).await.unwrap().unwrap();
        let room = admission.view.requests.unwrap();
        assert_eq!((room.limit, room.remaining()), (5, 4 - n));
        limits.settle(admission, &Usage::default(), None);
    }
    let refusal = limits.admit(who("acme", None)).await.unwrap_err();
    let error = refusal.error;
    assert_eq!((error.status.as_u16(), error.code, error.kind), (429, "rate_limit_exceeded", ErrorKind::RateLimit));
    assert_eq!(error.retry_after, Some(12));
    assert!(
        error.message.contains("team \"acme\"") && error.message.contains("requests_per_minute"),
        "{}",
        error.message
    );
    assert_eq!(refusal.view.requests.unwrap().remaining(), 0);
    assert!(limits.admit(who("other", None)).await.unwrap().is_none(), "no limit applies to team other");
    assert_eq!(limits.metrics.limit_refusals.get("requests_per_minute"), 1);
}

#[tokio::test]
async fn an_agent_limited_to_three_streams_gets_a_429_on_the_fourth_and_room_when_one_ends() {
    let limits = limits("[limits.teams.acme.agents.reviewer]\nconcurrent_streams = 3\n");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut admission = limits.admit(who("acme", Some("reviewer"))).await.unwrap().unwrap();
        limits.reserve(&mut admission, Estimate::default(), None, true).await.unwrap();
        open.push(admission);
    }
    let mut fourth = limits.admit(who("acme", Some("reviewer"))).await.unwrap().unwrap();
    let refusal = limits.reserve(&mut fourth, Estimate::default(), None, true).await.unwrap_err();
    assert_eq!(refusal.error.status.as_u16(), 429);
    assert!(refusal.error.message.contains("concurrent_streams"), "{}", refusal.error.message);
    // A request that does not stream takes no stream slot.
    limits.reserve(&mut fourth, Estimate::default(), None, false).await.unwrap();
    limits.settle(fourth, &Usage::default(), None);
    // Another agent of the team is not limited.
    let mut team = limits.admit(who("acme", None)).await.unwrap();
    assert!(team.is_none() || limits.reserve(team.as_mut().unwrap(), Estimate::default(), None, true).await.is_ok());
    limits.settle(open.pop().unwrap(), &Usage::default(), None);
    let mut again = limits.admit(who("acme", Some("reviewer"))).await.unwrap().unwrap();
    limits.reserve(&mut again, Estimate::default(), None, true).await.unwrap();
}

#[tokio::test]
async fn a_day_budget_is_refused_once_actual_spend_with_cache_priced_apart_passes_it() {
    // $0.01 a day on Haiku 4.5 through the global profile ($1 in, $5 out, $0.10 cache read,
    // $1.25 cache write per million tokens).
    let limits = limits("[limits.teams.acme]\nusd_per_day = 0.01\n");
    let price = limits.policy().price(
        "claude-haiku-4-5",
        &crate::routing::Upstream::Bedrock(crate::routing::BedrockRoute {
            model_id: "global.anthropic.claude-haiku-4-5-20251001-v1:0".into(),
            region: None,
            role: None,
        }),
    );
    let answer = usage(1000, 1000, 10_000, 2000);
    let cost = cost(price.unwrap(), &answer);
    // 1000 * 1 + 1000 * 5 + 10000 * 0.1 + 2000 * 1.25 = 9500 micro-USD.
    assert_eq!(cost, Usd(9_500_000));
    let mut admission = limits.admit(who("acme", None)).await.unwrap().unwrap();
    limits.reserve(&mut admission, Estimate { input_tokens: 10, output_tokens: 10 }, price, false).await.unwrap();
    let settled = limits.settle(admission, &answer, Some(cost));
    assert_eq!(settled.alerts, ["usd_per_day"], "9.5 of 10 cents is past 80 %");
    // 9.5 cents of 10 spent: still room, so the next is admitted and spends past the budget.
    let mut admission = limits.admit(who("acme", None)).await.unwrap().unwrap();
    limits.reserve(&mut admission, Estimate::default(), price, false).await.unwrap();
    limits.settle(admission, &answer, Some(cost));
    let mut admission = limits.admit(who("acme", None)).await.unwrap().unwrap();
    let refusal = limits.reserve(&mut admission, Estimate::default(), price, false).await.unwrap_err();
    assert_eq!((refusal.error.status.as_u16(), refusal.error.code), (429, "insufficient_quota"));
    assert!(refusal.error.message.contains("usd_per_day budget is spent (0.01 USD)"), "{}", refusal.error.message);
    assert!(refusal.error.retry_after.unwrap() <= 86_400);
}

#[tokio::test]
async fn token_rates_count_cache_writes_but_not_cache_reads_and_settle_the_estimate() {
    let limits = limits("[limits.teams.acme]\ninput_tokens_per_minute = 1000\n");
    let mut admission = limits.admit(who("acme", None)).await.unwrap().unwrap();
    // A 40 KB body reserves 10000 input tokens: admitted while there is room.
    limits.reserve(&mut admission, Estimate::of_body(&vec![b' '; 40_000]), None, false).await.unwrap();
    let mut next = limits.admit(who("acme", None)).await.unwrap().unwrap();
    assert!(
        limits.reserve(&mut next, Estimate::default(), None, false).await.is_err(),
        "the estimate fills the minute"
    );
    // The answer: 100 input, 200 cache writes, 5000 cache reads (not counted).
    limits.settle(admission, &usage(100, 7, 5000, 200), None);
    limits.reserve(&mut next, Estimate { input_tokens: 1, output_tokens: 0 }, None, false).await.unwrap();
    assert_eq!(next.view.input_tokens.unwrap().used, 301);
}

#[tokio::test]
async fn every_scope_is_checked_and_a_refusal_in_one_spends_nothing_in_the_others() {
    let limits = limits(
        "[limits.teams.acme]\nrequests_per_minute = 10\n[limits.callers.acme-worker]\nconcurrent_requests = 1\n",
    );
    let held = limits.admit(who("acme", None)).await.unwrap().unwrap();
    let refusal = limits.admit(who("acme", None)).await.unwrap_err();
    assert!(refusal.error.message.contains("caller \"acme-worker\""), "{}", refusal.error.message);
    limits.settle(held, &Usage::default(), None);
    let admission = limits.admit(who("acme", None)).await.unwrap().unwrap();
    assert_eq!(admission.view.requests.unwrap().remaining(), 8, "the refused request took no request of the team");
}

#[test]
fn headers_use_each_apis_names() {
    let view = View {
        requests: Some(Room { limit: 5, used: 2, reset_secs: 24 }),
        input_tokens: Some(Room { limit: 1000, used: 100, reset_secs: 6 }),
        output_tokens: None,
    };
    let openai: Vec<(String, String)> = headers(&view, Naming::OpenAi, 0)
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    for (name, value) in [
        ("x-ratelimit-limit-requests", "5"),
        ("x-ratelimit-remaining-requests", "3"),
        ("x-ratelimit-reset-requests", "24s"),
        ("x-ratelimit-limit-tokens", "1000"),
        ("x-ratelimit-remaining-tokens", "900"),
    ] {
        assert!(openai.contains(&(name.to_owned(), value.to_owned())), "{name} in {openai:?}");
    }
    let anthropic = headers(&view, Naming::Anthropic, 1_796_662_800);
    let get = |name: &str| anthropic.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap().to_owned());
    assert_eq!(get("anthropic-ratelimit-requests-remaining").as_deref(), Some("3"));
    assert_eq!(get("anthropic-ratelimit-requests-reset").as_deref(), Some("2026-12-07T17:00:24Z"));
    assert_eq!(get("anthropic-ratelimit-input-tokens-limit").as_deref(), Some("1000"));
    assert_eq!(get("anthropic-ratelimit-output-tokens-limit"), None);
}

#[test]
fn estimates_read_the_size_and_max_tokens_only() {
    let body = br#"{"model":"x","max_tokens":300,"messages":[{"role":"user","content":"hello there"}]}"#;
    let estimate = Estimate::of_body(body);
    assert_eq!(estimate.output_tokens, 300);
    assert_eq!(estimate.input_tokens, (body.len() as u64).div_ceil(4));
    assert_eq!(Estimate::of_body(b"{\"max_completion_tokens\":7}").output_tokens, 7);
    assert_eq!(Estimate::of_body(b"not json").output_tokens, DEFAULT_OUTPUT_ESTIMATE);
}

#[test]
fn a_team_barred_from_exporting_credentials_is_refused() {
    let limits = limits("[limits.teams.acme]\nusd_per_month = 100\ncredentials = false\n");
    let error = limits.may_export("acme").unwrap_err();
    assert_eq!((error.status.as_u16(), error.code), (403, "credential_export_disabled"));
    assert!(limits.may_export("other").is_ok());
}

#[test]
fn a_threads_kept_vector_is_handed_out_again_empty_and_a_big_one_is_not_kept() {
    let mut first = TAGS.take(8);
    first.push((0, Limit::UsdPerDay, 1, 1));
    let address = first.as_ptr();
    TAGS.give(first);
    let again = TAGS.take(4);
    assert!(again.is_empty(), "handed out empty");
    assert_eq!(again.as_ptr(), address, "the same allocation, not a new one");
    // Taken: a second request on this thread meanwhile makes its own.
    let other = TAGS.take(4);
    assert_ne!(other.as_ptr(), address);
    TAGS.give(again);
    let big: Vec<_> = Vec::with_capacity(REUSED_MAX + 1);
    TAGS.give(big);
    let kept = TAGS.take(0);
    assert_eq!(kept.as_ptr(), address, "a vector over the bound is dropped, not kept");
}
