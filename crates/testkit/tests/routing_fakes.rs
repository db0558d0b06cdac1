//! Tests of the fake Anthropic API and the fake OpenAI-compatible server themselves, driven by a
//! plain HTTP client, so the routing tests can trust what the fakes answer.

use byollm_testkit::support::*;
use serde_json::{Value, json};

const ANTHROPIC_KEY: &str = "sk-ant-api03-test-key";
const OPENAI_KEY: &str = "sk-or-v1-test-key";

fn messages_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    })
}

async fn post_anthropic(
    fake: &FakeAnthropic,
    key: Option<&str>,
    version: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(format!("{}/v1/messages", fake.url())).json(body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(version) = version {
        request = request.header("anthropic-version", version);
    }
    request.send().await.unwrap()
}

/// Parse `event:` / `data:` pairs of an SSE body.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(rest) = line.strip_prefix("event: ") {
                    name = rest.to_owned();
                } else if let Some(rest) = line.strip_prefix("data: ") {
                    data = rest.to_owned();
                }
            }
            (name, serde_json::from_str(&data).unwrap_or(Value::String(data)))
        })
        .collect()
}

#[tokio::test]
async fn fake_anthropic_checks_key_version_and_body_shape() {
    let fake = FakeAnthropic::start(FakeAnthropicOptions::default()).await;
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Value, u16, &'a str);
    let cases: [Case; 6] = [
        (None, Some("2023-06-01"), messages_body(false), 401, "authentication_error"),
        (Some("sk-ant-wrong"), Some("2023-06-01"), messages_body(false), 401, "authentication_error"),
        (Some(ANTHROPIC_KEY), None, messages_body(false), 400, "invalid_request_error"),
        (
            Some(ANTHROPIC_KEY),
            Some("2023-06-01"),
            json!({"anthropic_version": "bedrock-2023-05-31", "model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (
            Some(ANTHROPIC_KEY),
            Some("2023-06-01"),
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (
            Some(ANTHROPIC_KEY),
            Some("2023-06-01"),
            json!({"model": "claude-unknown", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
        ),
    ];
    for (key, version, body, status, kind) in cases {
        let response = post_anthropic(&fake, key, version, &body).await;
        assert_eq!(response.status().as_u16(), status, "{key:?} {version:?} {body}");
        assert!(response.headers().contains_key("request-id"));
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], kind);
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(error["request_id"].as_str().unwrap().starts_with("req_"));
    }
    assert_eq!(fake.requests().len(), 6);
}

#[tokio::test]
async fn fake_anthropic_answers_json_and_sse_and_records_betas() {
    let fake = FakeAnthropic::start(FakeAnthropicOptions::default()).await;
    fake.set_script(vec![AnthropicReply::text(&["Hi", " there"]).usage(30, 2).cache(5, 1)]);
    let response = post_anthropic(&fake, Some(ANTHROPIC_KEY), Some("2023-06-01"), &messages_body(false)).await;
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["model"], "claude-sonnet-4-5");
    assert_eq!(message["content"][0], json!({"type": "text", "text": "Hi there"}));
    assert_eq!(message["usage"]["input_tokens"], 30);
    assert_eq!(message["usage"]["cache_read_input_tokens"], 5);

    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", fake.url()))
        .header("x-api-key", ANTHROPIC_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14, context-1m-2025-08-07")
        .json(&messages_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "the data's type names its event");
    }
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.betas, ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]);
    assert!(last.stream);
}

#[tokio::test]
async fn fake_anthropic_scripts_errors_before_and_inside_streams() {
    let fake = FakeAnthropic::start(FakeAnthropicOptions::default()).await;
    fake.set_script(vec![
        AnthropicReply::error(AnthropicErrorKind::Overloaded),
        AnthropicReply::error(AnthropicErrorKind::RateLimit),
        AnthropicReply::text(&["a", "b"]).stream_error_after(3, AnthropicErrorKind::Overloaded),
    ]);
    let response = post_anthropic(&fake, Some(ANTHROPIC_KEY), Some("2023-06-01"), &messages_body(false)).await;
    assert_eq!(response.status().as_u16(), 529);
    let response = post_anthropic(&fake, Some(ANTHROPIC_KEY), Some("2023-06-01"), &messages_body(false)).await;
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let response = post_anthropic(&fake, Some(ANTHROPIC_KEY), Some("2023-06-01"), &messages_body(true)).await;
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].0, "error");
    assert_eq!(events[3].1["error"]["type"], "overloaded_error");
}

async fn post_openai(fake: &FakeOpenAi, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(format!("{}/chat/completions", fake.base_url())).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

fn chat_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

#[tokio::test]
async fn fake_openai_checks_bearer_model_and_messages() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions::default()).await;
    let cases = [
        (None, chat_body("z-ai/glm-4.6", false), 401, None),
        (Some("sk-wrong-key"), chat_body("z-ai/glm-4.6", false), 401, Some("invalid_api_key")),
        (Some(OPENAI_KEY), chat_body("gpt-nope", false), 404, Some("model_not_found")),
        (Some(OPENAI_KEY), json!({"model": "z-ai/glm-4.6", "messages": []}), 400, Some("empty_array")),
    ];
    for (key, body, status, code) in cases {
        let response = post_openai(&fake, key, &body).await;
        assert_eq!(response.status().as_u16(), status, "{key:?} {body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code.map_or(Value::Null, |c| json!(c)));
        assert!(error["error"]["type"].is_string());
    }
    let wrong = fake.requests().into_iter().find(|r| r.api_key.as_deref() == Some("sk-wrong-key")).unwrap();
    assert_eq!(wrong.status, 401);
}

#[tokio::test]
async fn fake_openai_answers_json_and_sse_with_usage() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions::default()).await;
    fake.set_script(vec![OpenAiReply::text(&["one", " two"]).usage(11, 2).details(4, 1)]);
    let response = post_openai(&fake, Some(OPENAI_KEY), &chat_body("z-ai/glm-4.6", false)).await;
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "z-ai/glm-4.6");
    assert_eq!(completion["choices"][0]["message"]["content"], "one two");
    assert_eq!(completion["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(completion["usage"]["completion_tokens_details"]["reasoning_tokens"], 1);

    let response = post_openai(&fake, Some(OPENAI_KEY), &chat_body("z-ai/glm-4.6", true)).await;
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.split("\n\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.last(), Some(&"data: [DONE]"));
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    let content: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(content, "Hello from FakeOpenAI.");
}

#[tokio::test]
async fn fake_openai_misbehaves_on_demand() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions::default()).await;
    fake.set_script(vec![
        OpenAiReply::redirect("http://169.254.169.254/latest/meta-data/"),
        OpenAiReply::oversized(100_000),
        OpenAiReply::rate_limited(),
    ]);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client
        .post(format!("{}/chat/completions", fake.base_url()))
        .bearer_auth(OPENAI_KEY)
        .json(&chat_body("z-ai/glm-4.6", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "http://169.254.169.254/latest/meta-data/");
    let response = post_openai(&fake, Some(OPENAI_KEY), &chat_body("z-ai/glm-4.6", false)).await;
    assert!(response.bytes().await.unwrap().len() > 100_000);
    let response = post_openai(&fake, Some(OPENAI_KEY), &chat_body("z-ai/glm-4.6", false)).await;
    assert_eq!(response.status(), 429);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn fake_openai_without_keys_is_an_open_local_server() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions { api_keys: vec![], ..FakeOpenAiOptions::default() }).await;
    let response = post_openai(&fake, None, &chat_body("llama3.1:8b", false)).await;
    assert_eq!(response.status(), 200);
}
