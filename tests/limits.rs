//! The gateway's limits through the real binary (`[limits]`, in-process counters): a team's 6th
//! request within a minute refused in each API's own shape with `Retry-After` and the rate-limit
//! headers, before any STS or Bedrock call, another team unaffected; an agent's concurrent
//! streams; a day's USD budget spent by actual usage (cache reads and writes priced apart), with
//! the audit line's `cost_usd`; a stream the client left settled with its usage; and credential
//! export barred for a team.

use std::time::Duration;

use byollm_testkit::harness::{API_KEY, Gateway, Harness, OTHER_API_KEY, callers_toml};
use byollm_testkit::support::{
    CredentialStore, FakeBedrock, FakeBedrockOptions, FakeSts, FakeStsOptions, Reply, TrustedRole,
};
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const ACME_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme";
const REVIEWER_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme-reviewer";
const OTHER_ROLE: &str = "arn:aws:iam::222222222222:role/byollm-other";
const HAIKU: &str = "global.anthropic.claude-haiku-4-5-20251001-v1:0";

/// Fake STS trusting both teams' roles (and acme's agent's), a fake Bedrock accepting what it
/// issues, and a gateway with `limits` as its `[limits]` section.
async fn setup(limits: &str, default_reply: Reply) -> (FakeSts, FakeBedrock, Gateway) {
    let credentials = CredentialStore::new();
    let trusted = |arn: &str, team: &str| {
        TrustedRole::new(arn).sub_like(&[&format!("scoped_principal:{team}/*")]).aud_equals(&["sts.amazonaws.com"])
    };
    let sts = FakeSts::start(FakeStsOptions {
        roles: vec![trusted(ACME_ROLE, "acme"), trusted(REVIEWER_ROLE, "acme"), trusted(OTHER_ROLE, "other")],
        credentials: credentials.clone(),
        ..FakeStsOptions::default()
    })
    .await;
    let bedrock =
        FakeBedrock::start(FakeBedrockOptions { credentials, default_reply, ..FakeBedrockOptions::default() }).await;
    let config = format!(
        r#"{callers}
[sts]
endpoint_url = "{sts}"
[bedrock]
endpoint_url = "{bedrock}"
[[teams]]
uid = "acme"
role_arn = "{ACME_ROLE}"
agents = [{{ name = "reviewer", role_arn = "{REVIEWER_ROLE}" }}]
[[teams]]
uid = "other"
role_arn = "{OTHER_ROLE}"
[models.claude-haiku-4-5]
id = "{HAIKU}"
{limits}"#,
        callers = callers_toml(),
        sts = sts.url(),
        bedrock = bedrock.url(),
    );
    let gateway = BYOLLM.start(&config);
    sts.set_providers(vec![gateway.issuer_host()]);
    (sts, bedrock, gateway)
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn run_headers(request: reqwest::RequestBuilder, key: &str, agent: Option<&str>) -> reqwest::RequestBuilder {
    let request = request
        .bearer_auth(key)
        .header("x-byollm-actor", "service_account")
        .header("x-byollm-principal", "ci-bot")
        .header("x-byollm-run-id", "run-limits");
    match agent {
        Some(agent) => request.header("x-byollm-agent", agent),
        None => request,
    }
}

fn chat(gateway: &Gateway, key: &str, agent: Option<&str>, stream: bool) -> reqwest::RequestBuilder {
    let body = json!({"model": "claude-haiku-4-5", "stream": stream, "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}]});
    run_headers(client().post(format!("{}/v1/chat/completions", gateway.url)), key, agent).json(&body)
}

fn messages(gateway: &Gateway, key: &str) -> reqwest::RequestBuilder {
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    run_headers(client().post(format!("{}/v1/messages", gateway.url)), key, None)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
}

fn native(gateway: &Gateway, key: &str) -> reqwest::RequestBuilder {
    let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}]});
    run_headers(client().post(format!("{}/model/{HAIKU}/invoke", gateway.url)), key, None).json(&body)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or_else(|| panic!("no {name}"))
}

/// The audit lines the gateway wrote so far.
fn audit_lines(gateway: &Gateway) -> Vec<Value> {
    gateway
        .logs()
        .lines()
        .filter(|line| line.starts_with("{\"audit\""))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_teams_sixth_request_in_a_minute_is_refused_in_each_apis_shape_before_any_call() {
    let (sts, bedrock, gateway) = setup("[limits.teams.acme]\nrequests_per_minute = 5\n", Reply::text(&["ok"])).await;
    for n in 0..5u64 {
        let response = chat(&gateway, API_KEY, None, false).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "5");
        assert_eq!(header(&response, "x-ratelimit-remaining-requests"), (4 - n).to_string());
        assert!(header(&response, "x-ratelimit-reset-requests").ends_with('s'));
    }
    let (sts_calls, bedrock_calls) = (sts.calls(), bedrock.requests().len());
    assert_eq!(bedrock_calls, 5);

    // Chat completions: OpenAI's shape.
    let refused = chat(&gateway, API_KEY, None, false).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "12");
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("requests_per_minute"), "{body}");

    // The Messages API: Anthropic's shape and headers.
    let refused = messages(&gateway, API_KEY).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(header(&refused, "anthropic-ratelimit-requests-limit"), "5");
    assert_eq!(header(&refused, "anthropic-ratelimit-requests-remaining"), "0");
    assert!(header(&refused, "anthropic-ratelimit-requests-reset").ends_with('Z'));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // Bedrock's own API: a ThrottlingException the AWS SDKs retry.
    let refused = native(&gateway, API_KEY).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-amzn-errortype"), "ThrottlingException");
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("requests_per_minute"));

    assert_eq!((sts.calls(), bedrock.requests().len()), (sts_calls, bedrock_calls), "no STS or Bedrock call");

    // Another team is unaffected, and carries no limit headers.
    let other = chat(&gateway, OTHER_API_KEY, None, false).send().await.unwrap();
    assert_eq!(other.status(), 200);
    assert!(!other.headers().contains_key("x-ratelimit-limit-requests"));

    let metrics = client().get(format!("{}/metrics", gateway.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("byollm_limit_refusals_total{limit=\"requests_per_minute\"} 3"), "{metrics}");
    let refusals: Vec<Value> = audit_lines(&gateway).into_iter().filter(|l| l["status"] == 429).collect();
    assert_eq!(refusals.len(), 3);
    assert!(refusals.iter().all(|l| l["error"] == "rate_limit_exceeded" && l["attempts"] == json!([])));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_limited_to_three_streams_is_refused_the_fourth_and_admitted_when_one_ends() {
    // Each stream takes a while: one event every 300 ms.
    let slow = Reply::text(&["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]).delay(Duration::from_millis(300));
    let (_sts, bedrock, gateway) = setup("[limits.teams.acme.agents.reviewer]\nconcurrent_streams = 3\n", slow).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let response = chat(&gateway, API_KEY, Some("reviewer"), true).send().await.unwrap();
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    let refused = chat(&gateway, API_KEY, Some("reviewer"), true).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("concurrent_streams"), "{body}");
    assert_eq!(bedrock.requests().len(), 3);
    // The team itself, and a request that does not stream, are not held by the agent's streams.
    assert_eq!(chat(&gateway, API_KEY, None, true).send().await.unwrap().status(), 200);
    assert_eq!(chat(&gateway, API_KEY, Some("reviewer"), false).send().await.unwrap().status(), 200);

    // The client leaves one stream: its slot is free again.
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = chat(&gateway, API_KEY, Some("reviewer"), true).send().await.unwrap();
        if response.status() == 200 {
            assert!(response.text().await.unwrap().ends_with("data: [DONE]\n\n"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One that runs to its end frees its slot too.
    let finished = open.pop().unwrap().text().await.unwrap();
    assert!(finished.ends_with("data: [DONE]\n\n"));
    assert_eq!(chat(&gateway, API_KEY, Some("reviewer"), true).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_budget_is_refused_once_actual_spend_passes_it_and_the_audit_line_shows_the_cost() {
    // Each answer: 1000 input, 1000 output, 10000 cache reads, 2000 cache writes. On Haiku 4.5's
    // global profile ($1 in, $5 out, $0.10 cache read, $1.25 cache write per million tokens):
    // 1000 + 5000 + 1000 + 2500 = 9500 micro-USD.
    let reply = Reply::text(&["ok"]).usage(1000, 1000).cache(10_000, 2000);
    let (_sts, bedrock, gateway) = setup("[limits.teams.acme]\nusd_per_day = 0.02\n", reply).await;
    for _ in 0..3 {
        // 0, then 0.0095, then 0.019 spent: each below the budget, so admitted.
        assert_eq!(chat(&gateway, API_KEY, None, false).send().await.unwrap().status(), 200);
    }
    let refused = chat(&gateway, API_KEY, None, false).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "until the UTC day ends: {retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert!(body["error"]["message"].as_str().unwrap().contains("usd_per_day"), "{body}");
    assert_eq!(bedrock.requests().len(), 3);
    // Another team has no budget.
    assert_eq!(chat(&gateway, OTHER_API_KEY, None, false).send().await.unwrap().status(), 200);

    let lines = audit_lines(&gateway);
    let served: Vec<&Value> = lines.iter().filter(|l| l["team"] == "acme" && l["status"] == 200).collect();
    assert_eq!(served.len(), 3);
    for line in &served {
        assert_eq!(line["cost_usd"], json!(0.0095), "{line}");
    }
    assert_eq!(served[0]["budget_alerts"], json!([]), "0.0095 of 0.02 is below 80 %");
    assert_eq!(served[1]["budget_alerts"], json!(["usd_per_day"]), "0.019 of 0.02 is past 80 %");
    assert!(gateway.logs().contains("a budget passed its alert fraction"));

    // Metrics: spend and tokens by team and model, and the room left in the team's budget.
    let metrics = client().get(format!("{}/metrics", gateway.url)).send().await.unwrap().text().await.unwrap();
    let sample = |series: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series}: {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!((sample("byollm_team_spend_usd_total{team=\"acme\",model=\"claude-haiku-4-5\"}") - 0.0285).abs() < 1e-9);
    assert_eq!(
        sample("byollm_team_tokens_total{team=\"acme\",model=\"claude-haiku-4-5\",kind=\"cache_read\"}"),
        30_000.0
    );
    assert_eq!(sample("byollm_team_budget_remaining{team=\"acme\",limit=\"usd_per_day\"}"), 0.0);
    assert!(metrics.contains("byollm_limit_refusals_total{limit=\"usd_per_day\"} 1"), "{metrics}");

    // GET /v1/usage: the caller's own team, the same cost as the audit lines, the budget's room.
    let usage: Value = client()
        .get(format!("{}/v1/usage", gateway.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["team"], "acme");
    let line = &usage["usage"][0];
    assert_eq!((line["agent"].clone(), line["model"].clone()), (Value::Null, json!("claude-haiku-4-5")));
    assert_eq!(line["requests"], 3, "{usage}");
    assert_eq!(line["input_tokens"], 3000);
    assert_eq!(line["cache_read_input_tokens"], 30_000);
    assert_eq!(line["cache_creation_input_tokens"], 6000);
    let audited: f64 = served.iter().map(|l| l["cost_usd"].as_f64().unwrap()).sum();
    assert!((line["cost_usd"].as_f64().unwrap() - audited).abs() < 1e-12, "{usage}");
    assert_eq!(line["cost_usd"], json!(0.0285));
    let budget = &usage["budgets"][0];
    assert_eq!((budget["scope"].clone(), budget["limit"].clone()), (json!("team"), json!("usd_per_day")));
    assert_eq!(
        (budget["value"].clone(), budget["used"].clone(), budget["remaining"].clone()),
        (json!(0.02), json!(0.0285), json!(0.0))
    );
    // `byollm usage` reads a shared store only: without redis_url it points at GET /v1/usage.
    // (run_cli leaves out the caller's BYOLLM_* variables, which the config would read as overrides.)
    let (status, _, stderr) = BYOLLM.run_cli(&["usage", "--team", "acme"], Some(&gateway.config_path()));
    assert_eq!(status, 1, "{stderr}");
    assert!(stderr.contains("GET /v1/usage"), "{stderr}");

    // Another team sees its own usage only.
    let other: Value = client()
        .get(format!("{}/v1/usage", gateway.url))
        .bearer_auth(OTHER_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["team"], "other");
    assert_eq!(other["usage"].as_array().unwrap().len(), 1);
    assert_eq!(other["usage"][0]["requests"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_team_barred_from_exporting_credentials_gets_none_and_others_do() {
    let (sts, _bedrock, gateway) =
        setup("[limits.teams.acme]\nusd_per_month = 100\ncredentials = false\n", Reply::text(&["ok"])).await;
    let ask = |key: &str| {
        client()
            .post(format!("{}/v1/credentials", gateway.url))
            .bearer_auth(key)
            .json(&json!({"actor": "service_account", "principal": "ci-bot"}))
            .send()
    };
    let refused = ask(API_KEY).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "credential_export_disabled");
    assert_eq!(sts.calls(), 0, "refused before any STS call");
    assert_eq!(ask(OTHER_API_KEY).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_reload_with_the_routing_policy() {
    let (_sts, _bedrock, gateway) = setup("[limits.teams.acme]\nrequests_per_minute = 1\n", Reply::text(&["ok"])).await;
    assert_eq!(chat(&gateway, API_KEY, None, false).send().await.unwrap().status(), 200);
    assert_eq!(chat(&gateway, API_KEY, None, false).send().await.unwrap().status(), 429);
    let path = gateway.config_path();
    let text =
        std::fs::read_to_string(&path).unwrap().replace("requests_per_minute = 1\n", "requests_per_minute = 100\n");
    std::fs::write(&path, text).unwrap();
    gateway.sighup();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gateway.logs().contains("routing policy reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", gateway.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = chat(&gateway, API_KEY, None, false).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-limit-requests"), "100");
    // A broken [limits] keeps the one in force.
    let text =
        std::fs::read_to_string(&path).unwrap().replace("requests_per_minute = 100\n", "requests_per_minute = 0\n");
    std::fs::write(&path, text).unwrap();
    gateway.sighup();
    while !gateway.logs().contains("limits.teams.acme.requests_per_minute") {
        assert!(std::time::Instant::now() < deadline + Duration::from_secs(10), "{}", gateway.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = chat(&gateway, API_KEY, None, false).send().await.unwrap();
    assert_eq!(header(&response, "x-ratelimit-limit-requests"), "100");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_the_client_left_is_settled_with_the_usage_it_had() {
    // A slow stream whose usage (1000 input tokens, 10000 cache reads) comes with its start.
    let reply = Reply::text(&["a", "b", "c", "d", "e", "f"])
        .delay(Duration::from_millis(300))
        .usage(1000, 1000)
        .cache(10_000, 0);
    let (_sts, _bedrock, gateway) =
        setup("[limits.teams.acme]\nusd_per_day = 5\nconcurrent_streams = 1\n", reply).await;
    let mut left = chat(&gateway, API_KEY, None, true).send().await.unwrap();
    assert_eq!(left.status(), 200);
    assert!(left.chunk().await.unwrap().is_some(), "the stream began");
    drop(left);

    // Its audit line is written when the relay notices, with what the stream had used.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(line) = audit_lines(&gateway).into_iter().find(|l| l["team"] == "acme") {
            break line;
        }
        assert!(std::time::Instant::now() < deadline, "no audit line: {}", gateway.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["usage"]["input_tokens"], 1000, "{line}");
    let cost = line["cost_usd"].as_f64().expect("priced");
    assert!(cost > 0.0, "{line}");
    // Settled: the stream slot is free again, and the day's usage holds the same cost.
    let next = chat(&gateway, API_KEY, None, true).send().await.unwrap();
    assert_eq!(next.status(), 200, "the left stream's slot is free");
    assert!(next.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    let lines = loop {
        let lines: Vec<Value> = audit_lines(&gateway).into_iter().filter(|l| l["team"] == "acme").collect();
        if lines.len() == 2 {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "{}", gateway.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let usage: Value = client()
        .get(format!("{}/v1/usage", gateway.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let budget = &usage["budgets"][0];
    assert_eq!(budget["limit"], "usd_per_day", "{usage}");
    let served: f64 = lines.iter().map(|l| l["cost_usd"].as_f64().unwrap()).sum();
    assert!((budget["used"].as_f64().unwrap() - served).abs() < 1e-12, "{usage} vs {served}");
    assert!(served > cost, "both requests counted");
}

/// Output tokens are reserved as the request's own `max_tokens` (50 here), as the chat and
/// Messages surfaces read it, not the default 4,096 reserved for a request that names none.
#[tokio::test(flavor = "multi_thread")]
async fn chat_and_messages_reserve_the_max_tokens_their_request_names() {
    let (_sts, _bedrock, gateway) =
        setup("[limits.teams.acme]\noutput_tokens_per_minute = 1000\n", Reply::text(&["ok"])).await;
    let response = chat(&gateway, API_KEY, None, false).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "1000");
    assert_eq!(header(&response, "x-ratelimit-remaining-tokens"), "950");
    // The chat answer was settled to what it used; 50 more are reserved for each request below.
    let response = messages(&gateway, API_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let remaining: u64 = header(&response, "anthropic-ratelimit-output-tokens-remaining").parse().unwrap();
    assert!((900..=950).contains(&remaining), "{remaining}");
}
