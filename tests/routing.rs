//! Issue 13's "Done when", through the real binary against independent fakes on 127.0.0.1: fake
//! STS and Bedrock (the team's role), a fake Anthropic API and a fake OpenAI-compatible server.
//!
//! - a policy listing Bedrock then the Anthropic API serves a Bedrock AccessDenied or throttle from
//!   the second route, and says so in `x-byollm-route`;
//! - a provider-only team gets one clear error listing the Bedrock failure;
//! - an OpenAI-compatible endpoint on a private or metadata address is refused in hosted mode, and
//!   allowed on loopback in local mode;
//! - every request leaves one audit line with its usage (and no prompt text or key).
//!
//! The fakes listen on loopback, which hosted mode refuses: the Anthropic endpoint is configured
//! as an internal one the operator vouches for (`allow_private_network`, `allow_http`), exactly as
//! an internal gateway would be.

use byollm_testkit::harness::{API_KEY, Gateway, Harness, OTHER_API_KEY, callers_toml};
use byollm_testkit::support::*;
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const ACME_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme";
const OTHER_ROLE: &str = "arn:aws:iam::222222222222:role/byollm-other";
const ANTHROPIC_KEY: &str = "sk-ant-api03-test-key";
const PROMPT: &str = "PROMPT-TEXT-THAT-MUST-NOT-BE-LOGGED";

struct Cloud {
    sts: FakeSts,
    bedrock: FakeBedrock,
    anthropic: FakeAnthropic,
    gateway: Gateway,
}

async fn cloud(routing: &str) -> Cloud {
    let credentials = CredentialStore::new();
    let sts = FakeSts::start(FakeStsOptions {
        roles: vec![
            TrustedRole::new(ACME_ROLE).sub_like(&["scoped_principal:acme/*"]).aud_equals(&["sts.amazonaws.com"]),
            TrustedRole::new(OTHER_ROLE).sub_like(&["scoped_principal:other/*"]).aud_equals(&["sts.amazonaws.com"]),
        ],
        credentials: credentials.clone(),
        ..Default::default()
    })
    .await;
    let bedrock = FakeBedrock::start(FakeBedrockOptions { credentials, ..Default::default() }).await;
    let anthropic = FakeAnthropic::start(FakeAnthropicOptions::default()).await;
    let config = format!(
        r#"{callers}
[sts]
endpoint_url = "{sts}"
[bedrock]
endpoint_url = "{bedrock}"
[[teams]]
uid = "acme"
role_arn = "{ACME_ROLE}"
[[teams]]
uid = "other"
role_arn = "{OTHER_ROLE}"
[models.claude-sonnet-4-5]
id = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"

[routing.anthropic]
base_url = "{anthropic}"
api_key_env = "TEST_ANTHROPIC_KEY"
allow_http = true
allow_private_network = true
{routing}
"#,
        callers = callers_toml(),
        sts = sts.url(),
        bedrock = bedrock.url(),
        anthropic = anthropic.url(),
    );
    let gateway = BYOLLM.start_with(&config, false, &[("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)]);
    sts.set_providers(vec![gateway.issuer_host()]);
    Cloud { sts, bedrock, anthropic, gateway }
}

const BEDROCK_THEN_ANTHROPIC: &str = r#"
[routing.failover]
skip_after_failures = 5
[routing.default.routes]
"claude-sonnet-4-5" = [{ bedrock = {} }, { anthropic = { model = "claude-sonnet-4-5-20250929" } }]
[routing.teams.other]
provider_only = true
"#;

fn ask(cloud: &Cloud, key: &'static str, team: &'static str, stream: bool) -> reqwest::RequestBuilder {
    ask_in_run(cloud, key, team, "run-7", stream)
}

fn ask_in_run(cloud: &Cloud, key: &str, team: &str, run: &str, stream: bool) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", cloud.gateway.url))
        .bearer_auth(key)
        .header("x-byollm-actor", "service_account")
        .header("x-byollm-principal", "ci-bot")
        .header("x-byollm-team", team)
        .header("x-byollm-run-id", run)
        .json(&json!({
            "model": "claude-sonnet-4-5",
            "stream": stream,
            "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
            "messages": [{"role": "user", "content": PROMPT}],
        }))
}

/// The audit lines the gateway wrote so far (its stdout), waiting briefly for `count` of them.
async fn audit_lines(gateway: &Gateway, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let lines: Vec<Value> = gateway
            .logs()
            .lines()
            .filter(|line| line.starts_with("{\"audit\":\"request\""))
            .map(|line| serde_json::from_str(line).expect("an audit line is one JSON object"))
            .collect();
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} audit lines in:\n{}", gateway.logs());
}

/// The `result` of each attempt an audit line lists, in order.
fn attempt_results(line: &Value) -> Vec<&str> {
    line["attempts"].as_array().unwrap().iter().map(|a| a["result"].as_str().unwrap()).collect()
}

fn streamed_text(body: &str) -> String {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_access_denied_or_throttling_is_served_by_the_anthropic_route() {
    let cloud = cloud(BEDROCK_THEN_ANTHROPIC).await;
    cloud.bedrock.set_script(vec![
        Reply::error(BedrockErrorKind::AccessDenied),
        Reply::error(BedrockErrorKind::Throttling),
        Reply::text(&["from", " bedrock"]),
    ]);
    cloud.anthropic.set_script(vec![
        AnthropicReply::text(&["Hello", " from", " FakeAnthropic."]).usage(31, 4).cache(7, 0),
        AnthropicReply::text(&["streamed", " by", " anthropic"]).usage(12, 3),
    ]);

    // AccessDenied on Bedrock: the Anthropic API answers.
    let response = ask(&cloud, API_KEY, "acme", false).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-byollm-route"], "anthropic");
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "Hello from FakeAnthropic.");
    assert_eq!(completion["model"], "claude-sonnet-4-5", "the client sees the public name");
    assert_eq!(completion["usage"]["prompt_tokens"], 38);

    // Throttling on Bedrock, streamed: the Anthropic API's SSE becomes chat completion chunks.
    let response = ask(&cloud, API_KEY, "acme", true).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-byollm-route"], "anthropic");
    let body = response.text().await.unwrap();
    assert_eq!(streamed_text(&body), "streamed by anthropic");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");

    // Bedrock answers: served there.
    let response = ask(&cloud, API_KEY, "acme", false).send().await.unwrap();
    assert_eq!(response.headers()["x-byollm-route"], "bedrock");
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "from bedrock");

    // What the Anthropic API saw: the key, its version, the model, no Bedrock fields (the fake
    // refuses those), a stream asked for the second time.
    let seen = cloud.anthropic.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.status == 200 && r.api_key.as_deref() == Some(ANTHROPIC_KEY)));
    assert!(seen.iter().all(|r| r.version.as_deref() == Some("2023-06-01")));
    assert!(seen.iter().all(|r| r.model.as_deref() == Some("claude-sonnet-4-5-20250929")));
    assert_eq!(seen.iter().map(|r| r.stream).collect::<Vec<_>>(), [false, true]);
    assert_eq!(seen[0].body["messages"][0]["content"][0]["text"], PROMPT);
    assert_eq!(cloud.bedrock.requests().len(), 3);
    assert_eq!(cloud.sts.calls(), 1, "one STS exchange serves the run");

    // A refused caller leaves a line too.
    let refused = ask(&cloud, "not-a-key", "acme", false).send().await.unwrap();
    assert_eq!(refused.status(), 401);

    let lines = audit_lines(&cloud.gateway, 4).await;
    assert_eq!(lines.len(), 4, "one line per request: {lines:#?}");
    let results = |line: &Value| -> Vec<(String, String)> {
        line["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["route"].as_str().unwrap().to_owned(), a["result"].as_str().unwrap().to_owned()))
            .collect()
    };
    let pair = |route: &str, result: &str| (route.to_owned(), result.to_owned());
    assert_eq!(results(&lines[0]), [pair("bedrock", "access_denied"), pair("anthropic", "served")]);
    assert_eq!(results(&lines[1]), [pair("bedrock", "throttled"), pair("anthropic", "served")]);
    assert_eq!(results(&lines[2]), [pair("bedrock", "served")]);
    for line in &lines[..3] {
        assert_eq!(line["status"], 200);
        assert_eq!(line["caller"], "acme-worker");
        assert_eq!((line["team"].as_str(), line["actor"].as_str()), (Some("acme"), Some("service_account")));
        assert_eq!((line["principal"].as_str(), line["run"].as_str()), (Some("ci-bot"), Some("run-7")));
        assert_eq!(line["model"], "claude-sonnet-4-5");
        assert!(line["duration_ms"].as_u64().is_some() && line["ttfb_ms"].as_u64().is_some(), "{line}");
    }
    assert_eq!(lines[0]["route"], "anthropic");
    assert_eq!(lines[0]["upstream_model"], "claude-sonnet-4-5-20250929");
    assert_eq!(lines[0]["usage"]["input_tokens"], 31);
    assert_eq!(lines[0]["usage"]["output_tokens"], 4);
    assert_eq!(lines[0]["usage"]["cache_read_input_tokens"], 7);
    assert_eq!(lines[1]["stream"], true);
    assert_eq!(lines[1]["usage"]["input_tokens"], 12);
    assert_eq!(lines[1]["usage"]["output_tokens"], 3);
    assert_eq!(lines[2]["upstream_model"], "global.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert!(lines[2]["usage"]["output_tokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(lines[3]["status"], 401);
    assert_eq!(lines[3]["attempts"], json!([]));

    let logs = cloud.gateway.logs();
    assert!(!logs.contains(PROMPT), "no prompt text in logs or audit lines");
    assert!(!logs.contains(ANTHROPIC_KEY), "no key in logs or audit lines");

    let metrics = reqwest::get(format!("{}/metrics", cloud.gateway.url)).await.unwrap().text().await.unwrap();
    for series in [
        "byollm_tokens_total{model=\"claude-sonnet-4-5\",route=\"anthropic\",kind=\"input\"} 43",
        "byollm_route_attempts_total{model=\"claude-sonnet-4-5\",route=\"bedrock\",result=\"access_denied\"} 1",
        "byollm_requests_in_flight{surface=\"chat\"} 0",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    assert!(metrics.contains(
        "byollm_time_to_first_byte_seconds_count{surface=\"chat\",model=\"claude-sonnet-4-5\",route=\"anthropic\"} 2"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_only_team_gets_one_error_listing_the_bedrock_failure() {
    let cloud = cloud(BEDROCK_THEN_ANTHROPIC).await;
    cloud.bedrock.set_script(vec![Reply::error(BedrockErrorKind::AccessDenied)]);
    let response = ask(&cloud, OTHER_API_KEY, "other", false).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("x-byollm-route").is_none());
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "bedrock_access_denied");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("bedrock:InvokeModel"), "{message}");
    assert!(message.contains("provider-only"), "{message}");
    assert!(cloud.anthropic.requests().is_empty(), "a provider-only team never reaches the Anthropic API");
    let lines = audit_lines(&cloud.gateway, 1).await;
    assert_eq!(lines[0]["team"], "other");
    assert_eq!(lines[0]["status"], 403);
    assert_eq!(lines[0]["error"], "bedrock_access_denied");
    assert_eq!(lines[0]["attempts"][0]["result"], "access_denied");
    assert_eq!(lines[0]["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_route_fails_one_error_lists_each_attempt_and_a_failing_route_is_then_skipped() {
    let skip_fast = r#"
[routing.failover]
skip_after_failures = 1
skip_secs = 60
[routing.default.routes]
"claude-sonnet-4-5" = [{ bedrock = {} }, { anthropic = { model = "claude-sonnet-4-5-20250929" } }]
"#;
    let cloud = cloud(skip_fast).await;
    cloud.bedrock.set_script(vec![Reply::error(BedrockErrorKind::ServiceUnavailable)]);
    cloud.anthropic.set_script(vec![AnthropicReply::error(AnthropicErrorKind::Overloaded)]);
    let response = ask(&cloud, API_KEY, "acme", false).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "all_routes_failed");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("bedrock: 503 bedrock_unavailable") && message.contains("anthropic: 503 anthropic_overloaded"),
        "{message}"
    );

    // Both routes are now skipped for a while; the one coming back first is still tried, once.
    let before = (cloud.bedrock.requests().len(), cloud.anthropic.requests().len());
    let response = ask(&cloud, API_KEY, "acme", false).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let after = (cloud.bedrock.requests().len(), cloud.anthropic.requests().len());
    assert_eq!((after.0 - before.0) + (after.1 - before.1), 1, "one upstream call, not a storm");
    let lines = audit_lines(&cloud.gateway, 2).await;
    let results = attempt_results(&lines[1]);
    assert_eq!(results, ["served", "skipped"], "{}", lines[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sts_outage_is_a_503_to_retry_and_does_not_mark_the_routes_as_failing() {
    let two_regions = r#"
[routing.failover]
skip_after_failures = 1
skip_secs = 60
[routing.default.routes]
"claude-sonnet-4-5" = [{ bedrock = {} }, { bedrock = { region = "eu-west-1" } }]
"#;
    let cloud = cloud(two_regions).await;
    // AWS STS answers 503 to every call (the broker tries each route's role three times).
    cloud.sts.set_script(StsStep::fail_times(StsErrorCode::ServiceUnavailable, 6));
    let response = ask(&cloud, API_KEY, "acme", false).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "sts_unavailable", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("bedrock: 503 sts_unavailable") && message.contains("bedrock#2: 503"), "{message}");
    assert!(cloud.bedrock.requests().is_empty(), "no credentials, no Bedrock call");

    // STS is back: the first route serves a new run at once, not skipped as if it had failed.
    // (The failed run's own credentials back off for a few seconds in the broker's cache.)
    cloud.sts.set_script(Vec::new());
    let response = ask_in_run(&cloud, API_KEY, "acme", "run-8", false).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", cloud.gateway.logs());
    let lines = audit_lines(&cloud.gateway, 2).await;
    let results = attempt_results(&lines[1]);
    assert_eq!(results, ["served"], "{}", lines[1]);
    let failed = attempt_results(&lines[0]);
    assert_eq!(failed, ["sts_unavailable", "sts_unavailable"], "{}", lines[0]);
}

fn openai_endpoint_config(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[routing.endpoints.gateway]
base_url = "{base_url}"
allow_http = true
models = ["llama3.1:8b"]
{extra}
[routing.endpoints.byo]
per_request = true
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_endpoints_on_private_or_metadata_addresses_are_refused_in_hosted_mode() {
    // Literal internal addresses never pass the configuration.
    for base in
        ["https://169.254.169.254/v1", "https://10.0.0.7/v1", "https://[fd00:ec2::254]/v1", "http://127.0.0.1:9/v1"]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("byollm.toml");
        std::fs::write(&path, format!("dev = true\n{}", openai_endpoint_config(base, ""))).unwrap();
        let (code, _, stderr) = BYOLLM.run_cli(&["serve"], Some(&path));
        assert_ne!(code, 0, "{base} must be refused");
        assert!(stderr.contains("routing.endpoints.gateway.base_url"), "{base}: {stderr}");
    }

    // A host name that resolves to loopback is refused when the request is made.
    let fake = FakeOpenAi::start(FakeOpenAiOptions { api_keys: vec![], ..FakeOpenAiOptions::default() }).await;
    let named = fake.base_url().replace("127.0.0.1", "localhost");
    let config = format!("{}\n{}", callers_toml(), openai_endpoint_config(&named, ""));
    let gateway = BYOLLM.start_with(&config, false, &[]);
    let client = reqwest::Client::new();
    let post = |url_header: Option<&'static str>| {
        let mut request = client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(API_KEY)
            .header("x-byollm-actor", "service_account")
            .header("x-byollm-principal", "ci-bot")
            .json(&json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}));
        if let Some(url) = url_header {
            request = request.header("x-byollm-endpoint-url", url);
        }
        request.send()
    };
    let response = post(None).await.unwrap();
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "egress_refused");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("loopback") && !message.contains("localhost"), "no URL in errors: {message}");
    assert!(fake.requests().is_empty(), "nothing reached the endpoint");
    assert!(!gateway.logs().contains(&named), "the endpoint URL stays out of the logs");
    assert!(audit_lines(&gateway, 1).await[0]["attempts"][0]["result"] == "refused");

    drop(gateway);
    // A URL the request names: the metadata service and private ranges are refused.
    let byo = format!(
        "{}\n{}\n[routing.default]\nroutes.\"llama3.1:8b\" = [{{ openai = {{ endpoint = \"byo\" }} }}]\n",
        callers_toml(),
        openai_endpoint_config(&fake.base_url().replace("127.0.0.1", "localhost"), "")
    );
    let gateway = BYOLLM.start_with(&byo, false, &[]);
    let client = reqwest::Client::new();
    // The last one passes the URL checks and is refused once its host name resolves (to loopback):
    // the same 403, the request's own fault.
    let resolved_to_loopback = fake.base_url().replace("http://127.0.0.1", "https://localhost");
    for url in [
        "https://169.254.169.254/latest",
        "https://10.1.2.3/v1",
        "https://[::ffff:127.0.0.1]/v1",
        "https://[::ffff:0:a9fe:a9fe]/v1",
        "http://api.example.com/v1",
        resolved_to_loopback.as_str(),
    ] {
        let response = client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(API_KEY)
            .header("x-byollm-actor", "service_account")
            .header("x-byollm-principal", "ci-bot")
            .header("x-byollm-endpoint-url", url)
            .json(&json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{url}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "egress_refused", "{url}");
        assert_eq!(error["error"]["param"], "x-byollm-endpoint-url", "{url}");
    }
    assert!(fake.requests().is_empty());
}

/// `byollm local` with `config` and a temporary AWS profile (keep the directory alive).
fn local_gateway(config: &str) -> (Gateway, tempfile::TempDir) {
    let aws = tempfile::tempdir().unwrap();
    std::fs::write(aws.path().join("config"), "[profile dev]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        aws.path().join("credentials"),
        "[dev]\naws_access_key_id = AKIDLOCAL\naws_secret_access_key = secret\n",
    )
    .unwrap();
    let env = [
        ("AWS_CONFIG_FILE", aws.path().join("config").to_str().unwrap().to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", aws.path().join("credentials").to_str().unwrap().to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (BYOLLM.start_local(config, &["--profile", "dev"], &env), aws)
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_endpoints_are_allowed_in_local_mode() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions { api_keys: vec![], ..FakeOpenAiOptions::default() }).await;
    fake.set_script(vec![
        OpenAiReply::text(&["local", " llama"]).usage(8, 2),
        OpenAiReply::text(&["a", "b"]).usage(5, 2),
    ]);
    let named = fake.base_url().replace("127.0.0.1", "localhost");
    let aws = tempfile::tempdir().unwrap();
    std::fs::write(aws.path().join("config"), "[profile dev]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        aws.path().join("credentials"),
        "[dev]\naws_access_key_id = AKIDLOCAL\naws_secret_access_key = secret\n",
    )
    .unwrap();
    let env = [
        ("AWS_CONFIG_FILE", aws.path().join("config").to_str().unwrap().to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", aws.path().join("credentials").to_str().unwrap().to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = BYOLLM.start_local(&openai_endpoint_config(&named, ""), &["--profile", "dev"], &env);
    let client = reqwest::Client::new();
    let models: Value = client
        .get(format!("{}/v1/models", gateway.url))
        .bearer_auth(gateway.local_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "llama3.1:8b"), "{models}");

    let ask = |stream: bool| {
        client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(gateway.local_key())
            .json(&json!({"model": "llama3.1:8b", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let response = ask(false).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-byollm-route"], "openai:gateway");
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "local llama");
    let response = ask(true).await.unwrap();
    let body = response.text().await.unwrap();
    assert_eq!(streamed_text(&body), "ab");
    assert!(!body.contains("\"choices\":[]"), "usage chunk not asked for, not relayed: {body}");
    assert!(body.ends_with("data: [DONE]\n\n"));
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.model.as_deref() == Some("llama3.1:8b")));

    let lines = audit_lines(&gateway, 2).await;
    assert_eq!(lines[0]["route"], "openai:gateway");
    assert_eq!(lines[0]["usage"]["input_tokens"], 8);
    assert_eq!(lines[1]["usage"]["output_tokens"], 2, "a stream's usage is read even when not relayed");
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_outside_openais_api_reach_an_endpoint_only_where_the_operator_allows_them() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions { api_keys: vec![], ..FakeOpenAiOptions::default() }).await;
    let config = format!(
        "{}[routing.endpoints.router]\nbase_url = \"{}\"\nmodels = [\"z-ai/glm-4.6\"]\nextra_fields = [\"provider\", \"route\"]\n",
        openai_endpoint_config(&fake.base_url(), ""),
        fake.base_url()
    );
    let (gateway, _aws) = local_gateway(&config);
    let client = reqwest::Client::new();
    let post = |body: Value| {
        client.post(format!("{}/v1/chat/completions", gateway.url)).bearer_auth(gateway.local_key()).json(&body).send()
    };
    // What OpenRouter and LiteLLM read to pick another model or upstream, billed to the shared key.
    let picks = json!({
        "models": ["openai/gpt-5-pro", "anthropic/claude-opus-4.1"],
        "fallbacks": ["openai/gpt-5-pro"],
        "route": "fallback",
        "provider": {"order": ["openai"], "allow_fallbacks": true},
        "api_base": "https://attacker.example/v1",
    });
    let with = |model: &str, fields: &[&str]| {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "temperature": 0.1});
        for field in fields {
            body[*field] = picks[*field].clone();
        }
        body
    };
    let all = ["models", "fallbacks", "route", "provider", "api_base"];
    for field in all {
        let response = post(with("llama3.1:8b", &[field])).await.unwrap();
        assert_eq!(response.status(), 400, "{field}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "field_not_allowed", "{field}");
        assert_eq!(error["error"]["param"], field);
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("{field:?}")) && message.contains("extra_fields"), "{message}");
    }
    let response = post(with("llama3.1:8b", &all)).await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(fake.requests().is_empty(), "no refused field reached the endpoint: {:?}", fake.requests());

    // The endpoint that allows two of them gets those two, and refuses the others all the same.
    let response = post(with("z-ai/glm-4.6", &all)).await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"models\"") && !message.contains("\"provider\""), "{message}");
    assert!(fake.requests().is_empty());
    let response = post(with("z-ai/glm-4.6", &["provider", "route"])).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-byollm-route"], "openai:router");
    // Documented fields pass everywhere, unchanged.
    let response = post(with("llama3.1:8b", &[])).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body["provider"], picks["provider"]);
    assert_eq!(seen[0].body["route"], "fallback");
    for request in &seen {
        for field in ["models", "fallbacks", "api_base"] {
            assert!(request.body.get(field).is_none(), "{field} reached the endpoint: {}", request.body);
        }
        assert_eq!(request.body["temperature"], 0.1);
    }
    assert!(seen[1].body.get("provider").is_none());

    // Counted by endpoint, never by the caller's field names.
    let metrics = client.get(format!("{}/metrics", gateway.url)).bearer_auth(gateway.local_key()).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("byollm_endpoint_fields_refused_total{endpoint=\"gateway\"} 6"), "{metrics}");
    assert!(metrics.contains("byollm_endpoint_fields_refused_total{endpoint=\"router\"} 1"), "{metrics}");
    assert!(!metrics.contains("fallbacks"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_mid_stream_still_leaves_an_audit_line() {
    let cloud = cloud("").await;
    cloud.bedrock.set_script(vec![
        Reply::text(&["one", " two", " three", " four"]).usage(9, 4).delay(std::time::Duration::from_millis(300)),
    ]);
    let mut response = ask(&cloud, API_KEY, "acme", true).send().await.unwrap();
    assert_eq!(response.headers()["x-byollm-route"], "bedrock");
    let first = response.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(response);
    let lines = audit_lines(&cloud.gateway, 1).await;
    assert_eq!(lines[0]["status"], 499, "{}", lines[0]);
    assert_eq!(lines[0]["error"], "client_closed");
    assert_eq!(lines[0]["usage"]["input_tokens"], 9, "the usage seen before the client left");
    assert!(lines[0]["ttfb_ms"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_the_request_brings_is_used_for_that_call_only_and_never_logged() {
    let anthropic_only = r#"
[routing.default.routes]
"claude-sonnet-4-5" = [{ anthropic = { model = "claude-sonnet-4-5-20250929" } }]
"#;
    let cloud = cloud(anthropic_only).await;
    let byok = "sk-ant-api03-BYOK-WRONG-KEY-0123456789";
    let response = ask(&cloud, API_KEY, "acme", false).header("x-byollm-anthropic-key", byok).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "anthropic_key_refused");
    assert_eq!(error["error"]["param"], "x-byollm-anthropic-key");
    assert_eq!(cloud.anthropic.requests()[0].api_key.as_deref(), Some(byok), "the request's key went to the API");
    // Without the header, the configured key; a refused request key did not mark the route as failing.
    for _ in 0..4 {
        let response = ask(&cloud, API_KEY, "acme", false).header("x-byollm-anthropic-key", byok).send().await.unwrap();
        assert_eq!(response.status(), 400);
    }
    let response = ask(&cloud, API_KEY, "acme", false).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(cloud.anthropic.requests().last().unwrap().api_key.as_deref(), Some(ANTHROPIC_KEY));
    let lines = audit_lines(&cloud.gateway, 6).await;
    assert_eq!(lines[0]["attempts"][0]["result"], "client_key");
    assert!(!cloud.gateway.logs().contains(byok), "the request's key is never logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_reloads_when_the_file_changes_and_a_broken_one_keeps_the_policy_in_force() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions { api_keys: vec![], ..FakeOpenAiOptions::default() }).await;
    let endpoint = |models: &str| {
        format!("[routing.endpoints.gateway]\nbase_url = \"{}\"\nmodels = [{models}]\n", fake.base_url())
    };
    let (gateway, _aws) = local_gateway(&endpoint("\"llama3.1:8b\""));
    let client = reqwest::Client::new();
    let status = |model: &'static str| {
        let request = client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(gateway.local_key())
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("z-ai/glm-4.6").await, 404);
    std::fs::write(gateway.config_path(), endpoint("\"llama3.1:8b\", \"z-ai/glm-4.6\"")).unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        if status("z-ai/glm-4.6").await == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the new policy was put in force:\n{}", gateway.logs());
    // The line is written just after the swap, so a request can see the new policy first.
    for _ in 0..100 {
        if gateway.logs().contains("routing policy reloaded") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gateway.logs().contains("routing policy reloaded"), "{}", gateway.logs());

    // A broken policy: logged by path, the one in force stays.
    std::fs::write(
        gateway.config_path(),
        format!("{}[routing.teams.nobody]\n", endpoint("\"llama3.1:8b\", \"z-ai/glm-4.6\"")),
    )
    .unwrap();
    gateway.sighup();
    for _ in 0..100 {
        if gateway.logs().contains("routing policy not reloaded") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gateway.logs().contains("routing.teams.nobody"), "{}", gateway.logs());
    assert_eq!(status("z-ai/glm-4.6").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_messages_api_and_native_routes_follow_the_policy_too() {
    let policy = r#"
[routing.default.routes]
"claude-sonnet-4-5" = [{ anthropic = { model = "claude-sonnet-4-5-20250929" } }]
[routing.teams.other]
models = []
"#;
    let cloud = cloud(policy).await;
    let client = reqwest::Client::new();
    let post = |path: &str, key: &'static str, team: &'static str, body: Value| {
        client
            .post(format!("{}{path}", cloud.gateway.url))
            .bearer_auth(key)
            .header("x-byollm-actor", "service_account")
            .header("x-byollm-principal", "ci-bot")
            .header("x-byollm-team", team)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let messages =
        json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let native = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    // The native routes relay Bedrock only; the Messages API is served by the Anthropic route
    // (tests/routing_surfaces.rs).
    let cases = [
        ("/model/claude-sonnet-4-5/invoke", API_KEY, "acme", native.clone(), "without Bedrock"),
        ("/v1/messages", OTHER_API_KEY, "other", messages, "may not use model"),
        ("/model/claude-sonnet-4-5/invoke", OTHER_API_KEY, "other", native, "may not use model"),
    ];
    // Each surface answers in its own error shape; the message says why.
    for (path, key, team, body, why) in cases {
        let response = post(path, key, team, body).await.unwrap();
        assert_eq!(response.status(), 403, "{path} {team}");
        let text = response.text().await.unwrap();
        assert!(text.contains(why), "{path} {team}: {text}");
    }
    assert!(cloud.bedrock.requests().is_empty(), "no Bedrock call for a model the policy does not route there");
    assert_eq!(cloud.sts.calls(), 0, "refused before any STS call");
}

/// A URL and a key the request brings (`per_request`), at the most verbose log level: neither the
/// key, nor the URL's path or query, reaches the logs, whatever the endpoint answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_named_endpoint_url_and_key_stay_out_of_trace_logs() {
    let key = "sk-byo-secret-key-0123456789";
    let fake =
        FakeOpenAi::start(FakeOpenAiOptions { api_keys: vec![key.into()], ..FakeOpenAiOptions::default() }).await;
    fake.set_script(vec![OpenAiReply::text(&["hi"]).usage(3, 1), OpenAiReply::text(&["a", "b"]).usage(3, 2)]);
    let config = format!(
        "{}\n[routing.default]\nroutes.\"llama3.1:8b\" = [{{ openai = {{ endpoint = \"byo\" }} }}]\n",
        openai_endpoint_config("https://gw.example.com/v1", "")
    );
    let aws = tempfile::tempdir().unwrap();
    std::fs::write(aws.path().join("config"), "[profile dev]\nregion = us-east-1\n").unwrap();
    std::fs::write(aws.path().join("credentials"), "[dev]\naws_access_key_id = AKIDLOCAL\naws_secret_access_key = s\n")
        .unwrap();
    let (config_file, credentials_file) = (aws.path().join("config"), aws.path().join("credentials"));
    let env = [
        ("AWS_CONFIG_FILE", config_file.to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials_file.to_str().unwrap()),
        ("BYOLLM_LOG", "trace"),
    ];
    let gateway = BYOLLM.start_local(&config, &["--profile", "dev"], &env);
    let client = reqwest::Client::new();
    let ask = |url: String, key: &'static str, stream: bool| {
        client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(gateway.local_key())
            .header("x-byollm-endpoint-url", url)
            .header("x-byollm-endpoint-key", key)
            .json(&json!({"model": "llama3.1:8b", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let with_query = format!("{}?token=url-secret-in-query", fake.base_url());
    let response = ask(with_query.clone(), key, false).await.unwrap();
    assert_eq!(response.status(), 200);
    let response = ask(with_query.clone(), key, true).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(streamed_text(&response.text().await.unwrap()), "ab");
    let refused = ask(with_query, "sk-byo-wrong-key-0123456789", false).await.unwrap();
    assert_eq!(refused.status(), 400);
    // A wrong path the endpoint quotes back (to the client that sent it).
    let wrong_path = format!("{}/url-secret-in-path", fake.base_url());
    let response = ask(wrong_path, key, false).await.unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    let _ = audit_lines(&gateway, 4).await;
    let logs = gateway.logs();
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "verbose logging is on");
    for secret in [key, "sk-byo-wrong-key", "url-secret-in-query", "url-secret-in-path"] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
}
