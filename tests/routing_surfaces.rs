//! The routing policy on the Messages API and the Bedrock-native routes, through the real binary
//! against independent fakes on 127.0.0.1 (STS with the team's and a fallback role, Bedrock, the
//! Anthropic API): the same routing function and failover as the chat API, route overrides
//! (profile, region, role), `x-byollm-route`, errors in each surface's shape listing every attempt,
//! one audit line per request with its usage, and `GET /v1/models` in both shapes listing what the
//! caller's policy allows.
//!
//! The fake Bedrock serves `eu-west-1` only and the team's region is `us-east-1`: a route without a
//! region override is refused there (a signature scoped to another region), a route that names
//! `eu-west-1` is served, so which region a call went to shows in which route answered.

use byollm_testkit::harness::{API_KEY, Gateway, Harness, callers_toml};
use byollm_testkit::support::*;
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const ACME_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme";
const FALLBACK_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme-fallback";
const ANTHROPIC_KEY: &str = "sk-ant-api03-test-key";
const PROMPT: &str = "PROMPT-TEXT-THAT-MUST-NOT-BE-LOGGED";

struct Setup {
    sts: FakeSts,
    bedrock: FakeBedrock,
    anthropic: FakeAnthropic,
    gateway: Gateway,
}

async fn setup() -> Setup {
    let credentials = CredentialStore::new();
    let trusted =
        |arn: &str| TrustedRole::new(arn).sub_like(&["scoped_principal:acme/*"]).aud_equals(&["sts.amazonaws.com"]);
    let sts = FakeSts::start(FakeStsOptions {
        roles: vec![trusted(ACME_ROLE), trusted(FALLBACK_ROLE)],
        credentials: credentials.clone(),
        ..Default::default()
    })
    .await;
    let bedrock =
        FakeBedrock::start(FakeBedrockOptions { region: "eu-west-1".into(), credentials, ..Default::default() }).await;
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
region = "us-east-1"
[models.claude-sonnet-4-5]
id = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
[models.opus]
id = "global.anthropic.claude-opus-4-7"
[models.haiku]
id = "global.anthropic.claude-haiku-4-5-20251001-v1:0"

[routing.failover]
skip_after_failures = 10
[routing.anthropic]
base_url = "{anthropic}"
api_key_env = "TEST_ANTHROPIC_KEY"
allow_http = true
allow_private_network = true
[routing.endpoints.gw]
base_url = "https://gw.example.com/v1"
models = ["llama3.1:8b"]
[routing.default.routes]
"claude-sonnet-4-5" = [
  {{ bedrock = {{ region = "eu-west-1" }} }},
  {{ anthropic = {{ model = "claude-sonnet-4-5-20250929" }} }},
  {{ openai = {{ endpoint = "gw", model = "anthropic/claude-sonnet-4.5" }} }},
]
"opus" = [
  {{ bedrock = {{}} }},
  {{ bedrock = {{ profile = "eu.anthropic.claude-opus-4-7", region = "eu-west-1", role = "{FALLBACK_ROLE}" }} }},
]
"haiku" = [
  {{ bedrock = {{ region = "eu-west-1" }} }},
  {{ bedrock = {{ region = "eu-west-1", role = "{FALLBACK_ROLE}" }} }},
]
"#,
        callers = callers_toml(),
        sts = sts.url(),
        bedrock = bedrock.url(),
        anthropic = anthropic.url(),
    );
    let gateway = BYOLLM.start_with(&config, false, &[("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)]);
    sts.set_providers(vec![gateway.issuer_host()]);
    Setup { sts, bedrock, anthropic, gateway }
}

fn post(gateway: &Gateway, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}{path}", gateway.url))
        .bearer_auth(API_KEY)
        .header("x-byollm-actor", "service_account")
        .header("x-byollm-principal", "ci-bot")
        .header("x-byollm-run-id", "run-9")
        .header("anthropic-version", "2023-06-01")
}

fn messages_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]})
}

/// The audit lines the gateway wrote so far, waiting briefly for `count` of them.
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

/// `(route, result)` of each attempt of an audit line.
fn attempts(line: &Value) -> Vec<(String, String)> {
    line["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["route"].as_str().unwrap().to_owned(), a["result"].as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

/// SSE events: (name, data as JSON).
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default().to_owned();
            let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_messages_api_fails_over_from_bedrock_to_the_anthropic_api() {
    let Setup { sts, bedrock, anthropic, gateway } = setup().await;
    bedrock.set_script(vec![
        Reply::error(BedrockErrorKind::AccessDenied),
        Reply::error(BedrockErrorKind::Throttling),
        Reply::text(&["from", " bedrock"]).usage(5, 2),
    ]);
    anthropic.set_script(vec![
        AnthropicReply::text(&["Hello", " from", " FakeAnthropic."]).usage(31, 4).cache(7, 0),
        AnthropicReply::text(&["streamed", " by", " anthropic"]).usage(12, 3),
    ]);

    // AccessDenied on Bedrock: the Anthropic API answers, in Anthropic's own shape.
    let response = post(&gateway, "/v1/messages")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14,claude-code-20250219")
        .json(&messages_body("claude-sonnet-4-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-byollm-route"], "anthropic");
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], "Hello from FakeAnthropic.");
    assert_eq!(message["usage"]["input_tokens"], 31);

    // Throttled on Bedrock, streamed: the Anthropic API's events, relayed as events.
    let response = post(&gateway, "/v1/messages").json(&messages_body("claude-sonnet-4-5", true)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-byollm-route"], "anthropic");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.first().unwrap().0, "message_start");
    assert_eq!(events.last().unwrap().0, "message_stop");
    assert!(events.iter().all(|(name, data)| data["type"] == name.as_str()), "{events:?}");
    let text: String =
        events.iter().filter_map(|(_, data)| data["delta"]["text"].as_str().map(str::to_owned)).collect();
    assert_eq!(text, "streamed by anthropic");

    // Bedrock answers: served there, in the route's region.
    let response =
        post(&gateway, "/v1/messages").json(&messages_body("claude-sonnet-4-5", false)).send().await.unwrap();
    assert_eq!(response.headers()["x-byollm-route"], "bedrock");
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["content"][0]["text"], "from bedrock");

    // What the Anthropic API saw: its key and version, the model renamed, the betas it may take
    // as a header (the fake refuses Bedrock's body fields), the prompt as the client sent it.
    let seen = anthropic.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.status == 200 && r.api_key.as_deref() == Some(ANTHROPIC_KEY)));
    assert!(seen.iter().all(|r| r.version.as_deref() == Some("2023-06-01")));
    assert!(seen.iter().all(|r| r.model.as_deref() == Some("claude-sonnet-4-5-20250929")));
    assert_eq!(seen[0].betas, ["interleaved-thinking-2025-05-14"]);
    assert_eq!(seen.iter().map(|r| r.stream).collect::<Vec<_>>(), [false, true]);
    assert_eq!(seen[0].body["messages"][0]["content"], PROMPT);
    assert_eq!(bedrock.requests().len(), 3);
    assert!(bedrock.requests().iter().all(|r| r.model_id == "global.anthropic.claude-sonnet-4-5-20250929-v1:0"));
    assert_eq!(sts.calls(), 1);

    let lines = audit_lines(&gateway, 3).await;
    assert_eq!(lines.len(), 3, "one line per request");
    let unsupported = ("openai:gw", "unsupported");
    assert_eq!(attempts(&lines[0]), pairs(&[("bedrock", "access_denied"), ("anthropic", "served"), unsupported]));
    assert_eq!(attempts(&lines[1]), pairs(&[("bedrock", "throttled"), ("anthropic", "served"), unsupported]));
    assert_eq!(attempts(&lines[2]), pairs(&[("bedrock", "served"), unsupported]));
    for line in &lines {
        assert_eq!((line["surface"].as_str(), line["operation"].as_str()), (Some("messages"), Some("messages")));
        assert_eq!((line["status"].as_u64(), line["model"].as_str()), (Some(200), Some("claude-sonnet-4-5")));
        assert_eq!((line["caller"].as_str(), line["team"].as_str()), (Some("acme-worker"), Some("acme")));
        assert_eq!((line["principal"].as_str(), line["run"].as_str()), (Some("ci-bot"), Some("run-9")));
        assert!(line["ttfb_ms"].as_u64().is_some() && line["duration_ms"].as_u64().is_some(), "{line}");
    }
    assert_eq!(
        (lines[0]["route"].as_str(), lines[0]["upstream_model"].as_str()),
        (Some("anthropic"), Some("claude-sonnet-4-5-20250929"))
    );
    assert_eq!(lines[0]["usage"]["input_tokens"], 31);
    assert_eq!(lines[0]["usage"]["cache_read_input_tokens"], 7);
    assert_eq!((lines[1]["stream"].as_bool(), lines[1]["usage"]["input_tokens"].as_u64()), (Some(true), Some(12)));
    assert_eq!(lines[1]["usage"]["output_tokens"], 3);
    assert_eq!((lines[2]["route"].as_str(), lines[2]["usage"]["input_tokens"].as_u64()), (Some("bedrock"), Some(5)));

    let logs = gateway.logs();
    assert!(!logs.contains(PROMPT) && !logs.contains(ANTHROPIC_KEY), "no prompt text or key in logs or audit lines");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_route_fails_the_messages_api_lists_each_attempt_in_anthropics_shape() {
    let Setup { sts: _sts, bedrock, anthropic, gateway } = setup().await;
    bedrock.set_script(vec![Reply::error(BedrockErrorKind::ServiceUnavailable)]);
    anthropic.set_script(vec![AnthropicReply::error(AnthropicErrorKind::Overloaded)]);
    let response = post(&gateway, "/v1/messages").json(&messages_body("claude-sonnet-4-5", true)).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.headers().get("x-byollm-route").is_none());
    let error: Value = response.json().await.unwrap();
    assert_eq!((error["type"].as_str(), error["error"]["type"].as_str()), (Some("error"), Some("api_error")));
    let message = error["error"]["message"].as_str().unwrap();
    for part in [
        "bedrock: 503 bedrock_unavailable",
        "anthropic: 503 anthropic_overloaded",
        "openai:gw: not used (the Messages API",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }

    // A request the model's rules refuse is the request's fault: no upstream call at all.
    let refused = post(&gateway, "/v1/messages")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "temperature": 3, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    // A model only an OpenAI-compatible endpoint serves: refused before any call.
    let endpoint_only = post(&gateway, "/v1/messages").json(&messages_body("llama3.1:8b", false)).send().await.unwrap();
    assert_eq!(endpoint_only.status(), 403);
    let error: Value = endpoint_only.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("/v1/chat/completions"), "{error}");
    assert_eq!((bedrock.requests().len(), anthropic.requests().len()), (1, 1));

    let lines = audit_lines(&gateway, 3).await;
    assert_eq!((lines[0]["status"].as_u64(), lines[0]["error"].as_str()), (Some(502), Some("all_routes_failed")));
    assert_eq!(
        attempts(&lines[0]),
        pairs(&[("bedrock", "upstream"), ("anthropic", "upstream"), ("openai:gw", "unsupported")])
    );
    assert_eq!(lines[1]["status"], 400);
    assert_eq!((lines[2]["status"].as_u64(), lines[2]["model"].as_str()), (Some(403), Some("llama3.1:8b")));
}

#[tokio::test(flavor = "multi_thread")]
async fn count_tokens_follows_the_bedrock_routes_with_their_overrides() {
    let Setup { sts, bedrock, gateway, .. } = setup().await;
    let response = post(&gateway, "/v1/messages/count_tokens")
        .json(&json!({"model": "opus", "messages": [{"role": "user", "content": "one two three"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The first route signs for the team's region, which this Bedrock refuses; the second names
    // eu-west-1 and its own role.
    assert_eq!(response.headers()["x-byollm-route"], "bedrock#2");
    let counted: Value = response.json().await.unwrap();
    assert!(counted["input_tokens"].as_u64().is_some_and(|n| n > 0), "{counted}");
    let seen = bedrock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].operation.as_str(), seen[0].model_id.as_str()), ("count-tokens", "anthropic.claude-opus-4-7"));
    let fallback =
        sts.issued().into_iter().find(|c| c.role_arn == FALLBACK_ROLE).expect("the route's role was assumed");
    assert_eq!(seen[0].access_key_id, fallback.access_key_id);
    let lines = audit_lines(&gateway, 1).await;
    assert_eq!(lines[0]["operation"], "count_tokens");
    assert_eq!(attempts(&lines[0]), pairs(&[("bedrock", "credentials"), ("bedrock#2", "served")]));
}

/// Decoded event-stream frames: the base64 Anthropic events of `chunk` frames.
fn chunk_events(mut bytes: &[u8]) -> Vec<Value> {
    use base64::Engine;
    let mut out = Vec::new();
    while bytes.len() >= 16 {
        let total = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let payload: Value = serde_json::from_slice(&bytes[12 + headers_len..total - 4]).unwrap();
        if let Some(encoded) = payload["bytes"].as_str() {
            let event = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
            out.push(serde_json::from_slice(&event).unwrap());
        }
        bytes = &bytes[total..];
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn native_calls_fail_over_between_bedrock_routes_and_keep_bedrocks_bytes() {
    let Setup { sts, bedrock, gateway, .. } = setup().await;
    const BODY: &str = "{\"anthropic_version\":\"bedrock-2023-05-31\", \"max_tokens\": 20, \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    let native = |path: &str| post(&gateway, path).header("content-type", "application/json").body(BODY);

    // opus: the first route (the team's region) is refused, the second (profile, region, role)
    // serves the body byte for byte.
    bedrock.set_script(vec![Reply::text(&["Plain."]).usage(17, 2)]);
    let answer = native("/model/opus/invoke").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-byollm-route"], "bedrock#2");
    assert_eq!(answer.headers()["x-amzn-bedrock-input-token-count"], "17");
    let message: Value = answer.json().await.unwrap();
    assert_eq!(message["content"][0]["text"], "Plain.");
    let seen = bedrock.requests();
    assert_eq!(seen[0].model_id, "eu.anthropic.claude-opus-4-7", "the route's profile");
    assert_eq!(seen[0].raw_body, BODY.as_bytes());
    let fallback =
        sts.issued().into_iter().find(|c| c.role_arn == FALLBACK_ROLE).expect("the route's role was assumed");
    assert_eq!(seen[0].access_key_id, fallback.access_key_id);

    // haiku, streamed: throttled on the first route, the second serves; frames relayed as sent.
    bedrock.set_script(vec![Reply::error(BedrockErrorKind::Throttling), Reply::text(&["One", " two"]).usage(9, 3)]);
    let answer = native("/model/haiku/invoke-with-response-stream").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-byollm-route"], "bedrock#2");
    assert_eq!(answer.headers()["content-type"], "application/vnd.amazon.eventstream");
    let events = chunk_events(&answer.bytes().await.unwrap());
    assert_eq!(events.first().unwrap()["type"], "message_start");
    assert_eq!(events.last().unwrap()["amazon-bedrock-invocationMetrics"]["outputTokenCount"], 3);

    // The request's own fault on the first route: not retried, Bedrock's answer unchanged.
    let before = bedrock.requests().len();
    bedrock.set_script(vec![Reply::error_with(BedrockErrorKind::Validation, "messages: bad turn order")]);
    let refused = native("/model/haiku/invoke").send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.headers()["x-amzn-errortype"], "ValidationException");
    assert_eq!(refused.text().await.unwrap(), json!({"message": "messages: bad turn order"}).to_string());
    assert_eq!(bedrock.requests().len(), before + 1, "not retried on the next route");

    // Every route throttled: one Bedrock-shaped error listing each attempt.
    bedrock.set_script(vec![Reply::error(BedrockErrorKind::Throttling), Reply::error(BedrockErrorKind::Throttling)]);
    let throttled = native("/model/haiku/invoke").send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["x-amzn-errortype"], "ThrottlingException");
    assert!(throttled.headers().get("retry-after").is_some());
    let error: Value = throttled.json().await.unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("bedrock: 429") && message.contains("bedrock#2: 429"), "{message}");

    let lines = audit_lines(&gateway, 4).await;
    assert!(lines.iter().all(|l| l["surface"] == "native" && l["team"] == "acme"), "{lines:#?}");
    assert_eq!((lines[0]["operation"].as_str(), lines[0]["model"].as_str()), (Some("invoke"), Some("opus")));
    assert_eq!(attempts(&lines[0]), pairs(&[("bedrock", "credentials"), ("bedrock#2", "served")]));
    assert_eq!(lines[0]["upstream_model"], "eu.anthropic.claude-opus-4-7");
    assert_eq!(
        (lines[0]["usage"]["input_tokens"].as_u64(), lines[0]["usage"]["output_tokens"].as_u64()),
        (Some(17), Some(2))
    );
    assert_eq!(lines[1]["operation"], "invoke-with-response-stream");
    assert_eq!(attempts(&lines[1]), pairs(&[("bedrock", "throttled"), ("bedrock#2", "served")]));
    assert_eq!(
        (lines[1]["usage"]["input_tokens"].as_u64(), lines[1]["usage"]["output_tokens"].as_u64()),
        (Some(9), Some(3))
    );
    assert!(lines[1]["ttfb_ms"].as_u64().is_some());
    assert_eq!(
        (lines[2]["status"].as_u64(), lines[2]["error"].as_str()),
        (Some(400), Some("bedrock_validation_error"))
    );
    assert_eq!(attempts(&lines[2]), pairs(&[("bedrock", "request")]));
    assert_eq!((lines[3]["status"].as_u64(), lines[3]["error"].as_str()), (Some(429), Some("all_routes_throttled")));
}

#[tokio::test(flavor = "multi_thread")]
async fn both_model_lists_show_what_the_policy_allows_on_their_surface() {
    let Setup { gateway, .. } = setup().await;
    let client = reqwest::Client::new();
    let get = |path: &str, anthropic: bool| {
        let mut request = client.get(format!("{}{path}", gateway.url)).bearer_auth(API_KEY);
        if anthropic {
            request = request.header("anthropic-version", "2023-06-01");
        }
        request.send()
    };
    let ids = |list: &Value| -> Vec<String> {
        list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
    };
    let openai: Value = get("/v1/models", false).await.unwrap().json().await.unwrap();
    assert_eq!(ids(&openai), ["claude-sonnet-4-5", "haiku", "opus", "llama3.1:8b"]);
    let anthropic: Value = get("/v1/models", true).await.unwrap().json().await.unwrap();
    assert_eq!(
        ids(&anthropic),
        ["claude-sonnet-4-5", "haiku", "opus"],
        "the Messages API cannot serve an endpoint-only model"
    );
    assert_eq!(anthropic["data"][0]["type"], "model");
    let one: Value = get("/v1/models/haiku", true).await.unwrap().json().await.unwrap();
    assert_eq!((one["type"].as_str(), one["id"].as_str()), (Some("model"), Some("haiku")));
    let missing = get("/v1/models/llama3.1:8b", true).await.unwrap();
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["type"], "not_found_error");
}
