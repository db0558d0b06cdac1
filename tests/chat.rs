//! The adapter end to end: the real binary in local mode (a temporary AWS profile with static
//! keys) against a fake Bedrock on 127.0.0.1 that checks SigV4 and the body, and streams real
//! event-stream frames.

use std::time::Duration;

use byollm_testkit::harness::{Gateway, Harness};
use byollm_testkit::support::{BedrockErrorKind, FakeBedrock, FakeBedrockOptions, Reply, StreamExceptionKind};
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const KEY_ID: &str = "AKIDLOCALTEST0001";
const SECRET: &str = "local-test-secret-key-0001";
const MODEL_ID: &str = "global.anthropic.claude-haiku-4-5-20251001-v1:0";

struct Setup {
    bedrock: FakeBedrock,
    gateway: Gateway,
    _aws: tempfile::TempDir,
}

async fn setup(known_key: bool) -> Setup {
    let bedrock = FakeBedrock::start(FakeBedrockOptions::default()).await;
    if known_key {
        bedrock.add_static_key(KEY_ID, SECRET);
    }
    let (gateway, aws) = BYOLLM.start_local_with_keys(&bedrock.url(), KEY_ID, SECRET);
    Setup { bedrock, gateway, _aws: aws }
}

fn chat_body(stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

async fn post(setup: &Setup, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", setup.gateway.url))
        .bearer_auth(setup.gateway.local_key())
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Reads a whole SSE body into its `data:` payloads.
async fn sse(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    text.split("\n\n").filter(|e| !e.is_empty()).map(|e| e.strip_prefix("data: ").unwrap().to_owned()).collect()
}

fn chunks(events: &[String]) -> Vec<Value> {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "stream must end with [DONE]: {events:?}");
    events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn non_streamed_text_is_signed_converted_and_answered() {
    let setup = setup(true).await;
    setup.bedrock.set_script(vec![Reply::text(&["Hello", " there"]).usage(20, 5).cache(100, 7)]);
    let response = post(&setup, &chat_body(false)).await;
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "claude-haiku-4-5");
    assert_eq!(completion["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["usage"]["prompt_tokens"], 127);
    assert_eq!(completion["usage"]["completion_tokens"], 5);
    assert_eq!(completion["usage"]["prompt_tokens_details"]["cached_tokens"], 100);

    let requests = setup.bedrock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].model_id, MODEL_ID);
    assert!(!requests[0].streaming);
    assert_eq!(requests[0].access_key_id, KEY_ID);
    assert_eq!(requests[0].body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(requests[0].body["system"][0]["text"], "be brief");
    assert!(requests[0].body.get("model").is_none() && requests[0].body.get("stream").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_text_with_usage_ends_with_done() {
    let setup = setup(true).await;
    setup.bedrock.set_script(vec![Reply::text(&["One", " two", " three"]).usage(9, 3).cache(4, 2)]);
    let response = post(&setup, &chat_body(true)).await;
    assert_eq!(response.status(), 200);
    let chunks = chunks(&sse(response).await);
    let id = chunks[0]["id"].clone();
    assert!(chunks.iter().all(|c| c["id"] == id && c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0).and_then(|choice| choice["delta"]["content"].as_str()))
        .collect();
    assert_eq!(text, "One two three");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 15);
    assert_eq!(last["usage"]["completion_tokens"], 3);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert!(setup.bedrock.requests()[0].streaming);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_tool_calls_have_dense_indexes_and_streamed_arguments() {
    let setup = setup(true).await;
    setup.bedrock.set_script(vec![
        Reply::text(&["Let me check."])
            .with_tool_call("toolu_1", "get_weather", &["{\"ci", "ty\": \"Pa", "ris\"}"])
            .with_tool_call("toolu_2", "get_time", &["{\"tz\"", ": \"CET\"", "}"])
            .stop_reason("tool_use"),
    ]);
    let mut body = chat_body(true);
    body["tools"] = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    ]);
    let chunks = chunks(&sse(post(&setup, &body).await).await);
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut fragments = 0;
    for chunk in &chunks {
        let Some(tool_calls) = chunk["choices"].get(0).and_then(|c| c["delta"]["tool_calls"].as_array()) else {
            continue;
        };
        for call in tool_calls {
            fragments += 1;
            let index = call["index"].as_u64().unwrap() as usize;
            if index == calls.len() {
                calls.push((
                    call["id"].as_str().unwrap().into(),
                    call["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[index].2.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(calls[0], ("toolu_1".into(), "get_weather".into(), "{\"city\": \"Paris\"}".into()));
    assert_eq!(calls[1], ("toolu_2".into(), "get_time".into(), "{\"tz\": \"CET\"}".into()));
    assert!(fragments >= 8, "arguments were streamed piece by piece, not buffered ({fragments} fragments)");
    let finish = chunks.iter().filter_map(|c| c["choices"].get(0)).find(|c| !c["finish_reason"].is_null()).unwrap();
    assert_eq!(finish["finish_reason"], "tool_calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn thinking_streams_as_reasoning_with_its_signature() {
    let setup = setup(true).await;
    setup
        .bedrock
        .set_script(vec![Reply::default().with_thinking(&["Consider", " this."], "sig-abc").with_text(&["42"])]);
    let mut body = chat_body(true);
    body["reasoning_effort"] = json!("low");
    let chunks = chunks(&sse(post(&setup, &body).await).await);
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| &c["delta"]).collect();
    let reasoning: String = deltas.iter().filter_map(|d| d["reasoning_content"].as_str()).collect();
    assert_eq!(reasoning, "Consider this.");
    let block = deltas.iter().find_map(|d| d["thinking_blocks"].get(0)).unwrap();
    assert_eq!(block["signature"], "sig-abc");
    assert_eq!(block["thinking"], "Consider this.");
    let sent = &setup.bedrock.requests()[0].body;
    assert_eq!(sent["thinking"]["type"], "enabled");
    assert!(sent["thinking"]["budget_tokens"].as_u64().unwrap() >= 1024);
    assert!(sent["max_tokens"].as_u64().unwrap() > sent["thinking"]["budget_tokens"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_errors_before_the_stream_map_to_statuses() {
    let setup = setup(true).await;
    let cases = [
        (BedrockErrorKind::Throttling, 429, "bedrock_throttled"),
        (BedrockErrorKind::ServiceQuotaExceeded, 429, "bedrock_quota_exceeded"),
        (BedrockErrorKind::Validation, 400, "bedrock_validation_error"),
        (BedrockErrorKind::AccessDenied, 403, "bedrock_access_denied"),
        (BedrockErrorKind::ResourceNotFound, 404, "model_not_enabled"),
        (BedrockErrorKind::ModelTimeout, 504, "bedrock_model_timeout"),
        (BedrockErrorKind::ServiceUnavailable, 503, "bedrock_unavailable"),
        (BedrockErrorKind::ModelNotReady, 503, "bedrock_model_not_ready"),
        (BedrockErrorKind::InternalServer, 502, "bedrock_error"),
    ];
    for stream in [false, true] {
        for (kind, status, code) in cases {
            setup.bedrock.set_script(vec![Reply::error(kind)]);
            let response = post(&setup, &chat_body(stream)).await;
            assert_eq!(response.status(), status, "{kind:?} stream={stream}");
            if status == 429 {
                assert!(response.headers().contains_key("retry-after"), "{kind:?}");
            }
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{kind:?}");
        }
    }
    setup.bedrock.set_script(vec![Reply::error(BedrockErrorKind::AccessDenied)]);
    let body: Value = post(&setup, &chat_body(true)).await.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("bedrock:InvokeModelWithResponseStream"));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_inside_the_stream_become_an_error_event_then_done() {
    let setup = setup(true).await;
    for (reply, code) in [
        (
            Reply::text(&["a", "b", "c"]).exception_after(3, StreamExceptionKind::Throttling, "slow down"),
            "bedrock_throttled",
        ),
        (
            Reply::text(&["a", "b", "c"]).exception_after(3, StreamExceptionKind::ModelStreamError, "boom"),
            "bedrock_error",
        ),
        (Reply::text(&["a", "b", "c"]).cut_after(3), "upstream_stream_cut"),
    ] {
        setup.bedrock.set_script(vec![reply]);
        let response = post(&setup, &chat_body(true)).await;
        assert_eq!(response.status(), 200);
        let events = sse(response).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let error: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert_eq!(error["error"]["code"], code, "{events:?}");
        assert!(!events.iter().any(|e| e.contains("\"finish_reason\":\"stop\"")), "never a clean finish: {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_drops_the_upstream_stream() {
    let setup = setup(true).await;
    let pieces: Vec<String> = (0..200).map(|i| format!("w{i} ")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    setup.bedrock.set_script(vec![Reply::text(&pieces).delay(Duration::from_millis(20))]);
    let mut response = post(&setup, &chat_body(true)).await;
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(response);
    assert!(
        setup.bedrock.wait_for_disconnects(1, Duration::from_secs(5)).await,
        "the gateway kept reading from Bedrock after the client left"
    );
    assert_eq!(setup.bedrock.streams_completed(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_is_relayed_as_it_arrives() {
    let setup = setup(true).await;
    setup.bedrock.set_script(vec![Reply::text(&["slow", " but", " sure"]).delay(Duration::from_millis(150))]);
    let started = std::time::Instant::now();
    let mut response = post(&setup, &chat_body(true)).await;
    let first = response.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(first.starts_with(b"data: "));
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(started.elapsed() >= first_at + Duration::from_millis(300), "later events arrived later");
    assert!(String::from_utf8(rest).unwrap().ends_with("data: [DONE]\n\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_before_bedrock() {
    let setup = setup(true).await;
    let cases = [
        (json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}), 404, "model_not_found", "model"),
        (json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], "n": 2}), 400, "", "n"),
        (
            json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], "logprobs": true}),
            400,
            "",
            "logprobs",
        ),
        (json!({"model": "claude-haiku-4-5", "messages": "nope"}), 400, "invalid_body", "messages"),
    ];
    for (body, status, code, param) in cases {
        let response = post(&setup, &body).await;
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        if !code.is_empty() {
            assert_eq!(error["error"]["code"], code, "{error}");
        }
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    assert!(setup.bedrock.requests().is_empty());
    let models =
        reqwest::Client::new().get(format!("{}/v1/models", setup.gateway.url)).bearer_auth(setup.gateway.local_key());
    let models: Value = models.send().await.unwrap().json().await.unwrap();
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "claude-haiku-4-5"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_local_session_says_how_to_log_in_again() {
    let setup = setup(false).await;
    for stream in [false, true] {
        let response = post(&setup, &chat_body(stream)).await;
        assert_eq!(response.status(), 401);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "aws_session_expired");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("\"dev\"") && message.contains("aws login --profile dev"), "{message}");
    }
    let logs = setup.gateway.logs();
    assert!(!logs.contains(SECRET), "the secret key never reaches the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn web_pages_and_rebound_hosts_cannot_spend_the_local_session() {
    let setup = setup(true).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", setup.gateway.url);
    let from_page =
        client.post(&url).header("origin", "https://evil.example").json(&chat_body(false)).send().await.unwrap();
    assert_eq!(from_page.status(), 403);
    let body: Value = from_page.json().await.unwrap();
    assert_eq!(body["error"]["code"], "browser_request_refused");
    let rebound = client.post(&url).header("host", "evil.example:8080").json(&chat_body(false)).send().await.unwrap();
    assert_eq!(rebound.status(), 403);
    let body: Value = rebound.json().await.unwrap();
    assert_eq!(body["error"]["code"], "host_not_allowed");
    let localhost = client.post(&url).header("host", "localhost").bearer_auth(setup.gateway.local_key());
    let localhost = localhost.json(&chat_body(false)).send().await.unwrap();
    assert_eq!(localhost.status(), 200);
    assert_eq!(setup.bedrock.requests().len(), 1, "only the loopback request reached Bedrock");
}

/// `byollm local` with `config` (a `[models]` section, ...) against a fake Bedrock that enforces
/// each model's rules from its own table.
async fn setup_with(config: &str) -> Setup {
    let bedrock = FakeBedrock::start(FakeBedrockOptions { auto_reply: true, ..Default::default() }).await;
    bedrock.add_static_key(KEY_ID, SECRET);
    let (gateway, aws) = BYOLLM.start_local_configured(config, &bedrock.url(), KEY_ID, SECRET);
    Setup { bedrock, gateway, _aws: aws }
}

const MODELS: &str = r#"
[models."opus"]
id = "global.anthropic.claude-opus-5-5"
[models."sonnet45"]
id = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
[models."opus41"]
id = "us.anthropic.claude-opus-4-1-20250805-v1:0"
[models."loose-opus"]
id = "global.anthropic.claude-opus-4-7"
drop_unsupported_params = true
[models."team-opus"]
id = "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc123"
family = "claude-opus-5-5"
[models."mystery"]
id = "us.anthropic.claude-future-9"
[models."haiku55"]
id = "global.anthropic.claude-haiku-5-5"
"#;

async fn ask(setup: &Setup, body: Value) -> (u16, Value) {
    let response = post(setup, &body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn system_turns_betas_and_structured_output_follow_each_models_rules() {
    let setup = setup_with(MODELS).await;
    let conversation = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "developer", "content": "answer in French from now on"}]);

    // A late developer message: a system turn where the model takes one, folded elsewhere. The
    // fake refuses a system turn on a model without them, or out of place.
    let (status, _) = ask(&setup, json!({"model": "opus", "messages": conversation})).await;
    assert_eq!(status, 200);
    let (status, _) = ask(&setup, json!({"model": "sonnet45", "messages": conversation})).await;
    assert_eq!(status, 200);
    let requests = setup.bedrock.requests();
    let last = |i: usize| requests[i].body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last(0),
        json!({"role": "system", "content": [{"type": "text", "text": "answer in French from now on"}]})
    );
    assert_eq!(last(1)["role"], "user");
    assert_eq!(requests[1].body["system"][1]["text"], "answer in French from now on");

    // Betas: one the model does not take is refused by name before Bedrock; others pass.
    let (status, error) = ask(
        &setup,
        json!({"model": "opus", "messages": [{"role": "user", "content": "hi"}], "anthropic_beta": ["context-1m-2025-08-07"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["param"], "anthropic_beta");
    assert!(error["error"]["message"].as_str().unwrap().contains("context-1m-2025-08-07"), "{error}");
    let (status, _) = ask(
        &setup,
        json!({"model": "sonnet45", "messages": [{"role": "user", "content": "hi"}], "anthropic_beta": ["context-1m-2025-08-07"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(setup.bedrock.requests().last().unwrap().body["anthropic_beta"], json!(["context-1m-2025-08-07"]));

    // Native structured output on a model that has it: the answer is the model's text.
    let schema = json!({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"], "additionalProperties": false});
    setup.bedrock.set_script(vec![Reply::text(&["{\"x\": 1}"])]);
    let (status, completion) = ask(
        &setup,
        json!({"model": "opus", "messages": [{"role": "user", "content": "x?"}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}),
    )
    .await;
    assert_eq!(status, 200, "{completion}");
    assert_eq!(completion["choices"][0]["message"]["content"], "{\"x\": 1}");
    let sent = setup.bedrock.requests().last().unwrap().body.clone();
    assert_eq!(sent["output_config"]["format"], json!({"type": "json_schema", "schema": schema}));
    assert!(sent.get("tools").is_none());
    assert_eq!(setup.bedrock.requests().iter().filter(|r| r.status != 200).count(), 0, "Bedrock refused nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_arguments_stream_as_generated_and_reasoning_tokens_are_reported() {
    let setup = setup_with(MODELS).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    for model in ["opus", "opus41"] {
        let body = json!({"model": model, "stream": true, "tools": tools, "messages": [{"role": "user", "content": "weather?"}],
                          "stream_options": {"include_usage": true}});
        let events = chunks(&sse(post(&setup, &body).await).await);
        let arguments: String = events
            .iter()
            .filter_map(|c| c["choices"].get(0))
            .filter_map(|c| c["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(arguments, "{\"city\": \"Paris\"}", "{model}");
        if model == "opus" {
            // Opus 5.5 always thinks; the gateway asked for the thinking token count.
            let usage = &events.last().unwrap()["usage"];
            let reasoning = usage["completion_tokens_details"]["reasoning_tokens"].as_u64();
            assert!(reasoning.is_some_and(|n| n >= 1 && n <= usage["completion_tokens"].as_u64().unwrap()), "{usage}");
        }
    }
    let requests = setup.bedrock.requests();
    assert!(requests.iter().all(|r| r.status == 200));
    assert_eq!(requests[0].body["tools"][0]["eager_input_streaming"], true);
    assert!(requests[1].body["tools"][0].get("eager_input_streaming").is_none());
    assert_eq!(requests[1].body["anthropic_beta"], json!(["fine-grained-tool-streaming-2025-05-14"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_overrides_application_profiles_and_unknown_ids() {
    let setup = setup_with(MODELS).await;
    let hi = |model: &str, extra: Value| {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    // drop_unsupported_params: the refused sampling value is dropped, not refused.
    let (status, _) = ask(&setup, hi("loose-opus", json!({"temperature": 0.2, "top_k": 4}))).await;
    assert_eq!(status, 200);
    let sent = setup.bedrock.requests().last().unwrap().body.clone();
    assert!(sent.get("temperature").is_none() && sent.get("top_k").is_none(), "{sent}");

    // An application inference profile gets its family's rules (Opus 5.5: adaptive only).
    let (status, _) = ask(&setup, hi("team-opus", json!({"reasoning_effort": "max"}))).await;
    assert_eq!(status, 200);
    let last = setup.bedrock.requests().last().unwrap().clone();
    assert!(last.model_id.ends_with("application-inference-profile/abc123"));
    assert_eq!(last.body["thinking"]["type"], "adaptive");
    assert_eq!(last.body["output_config"]["effort"], "max");

    // An id the catalog does not know: a start-up warning naming it, conservative rules.
    assert!(
        setup.gateway.logs().contains("us.anthropic.claude-future-9 matches no catalog entry"),
        "{}",
        setup.gateway.logs()
    );
    let (status, error) = ask(&setup, hi("mystery", json!({"reasoning_effort": "low"}))).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["param"], "reasoning_effort");
    assert!(error["error"]["message"].as_str().unwrap().contains("mystery"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn thinking_effort_and_prefill_combinations_a_model_refuses_are_refused_before_bedrock() {
    let setup = setup_with(MODELS).await;
    let ask_with = |model: &str, messages: Value, extra: Value| {
        let mut body = json!({"model": model, "messages": messages});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let hi = json!([{"role": "user", "content": "hi"}]);
    let refused = |(status, error): (u16, Value), param: &str, model: &str| {
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["code"], "unsupported_parameter", "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(model), "{error}");
    };

    // Thinking off with an effort Haiku 5.5 takes only while it thinks.
    let off_max = json!({"thinking": {"type": "disabled"}, "output_config": {"effort": "max"}});
    refused(ask(&setup, ask_with("haiku55", hi.clone(), off_max)).await, "output_config.effort", "haiku55");
    // A forced tool choice cannot turn thinking off while the effort needs it.
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let forced = json!({"tools": tools, "tool_choice": "required", "output_config": {"effort": "xhigh"}});
    refused(ask(&setup, ask_with("haiku55", hi.clone(), forced)).await, "tool_choice", "haiku55");
    // With an effort it takes without thinking: answered, and sent as asked.
    let off_high = json!({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}});
    let (status, _) = ask(&setup, ask_with("haiku55", hi.clone(), off_high)).await;
    assert_eq!(status, 200);
    let sent = setup.bedrock.requests().last().unwrap().body.clone();
    assert_eq!((&sent["thinking"], &sent["output_config"]), (&json!({"type": "disabled"}), &json!({"effort": "high"})));

    // A prefill while a budget model thinks: Anthropic wants it to start with its thinking block.
    let prefill = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "The answer is"}]);
    refused(
        ask(&setup, ask_with("sonnet45", prefill.clone(), json!({"reasoning_effort": "high"}))).await,
        "messages[1]",
        "sonnet45",
    );
    let (status, _) = ask(&setup, ask_with("sonnet45", prefill, json!({}))).await;
    assert_eq!(status, 200);
    let requests = setup.bedrock.requests();
    assert_eq!(requests.len(), 2, "only the two valid requests reached Bedrock");
    assert!(requests.iter().all(|r| r.status == 200), "Bedrock refused nothing");
}

/// A burst of events that arrives at once leaves in one piece: the gateway writes one HTTP chunk
/// for it, not one per event (each a write to the socket), and loses none of its events.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_events_leaves_in_one_piece() {
    let setup = setup(true).await;
    let pieces: Vec<String> = (0..20).map(|n| format!(" w{n}")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    setup.bedrock.set_script(vec![Reply::text(&pieces).usage(9, 20).in_one_piece()]);
    let mut response = post(&setup, &chat_body(true)).await;
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        received.push(chunk);
    }
    let text: String = received.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    let events: Vec<String> =
        text.split("\n\n").filter(|e| !e.is_empty()).map(|e| e.strip_prefix("data: ").unwrap().to_owned()).collect();
    let content: String = chunks(&events)
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(content, pieces.concat(), "every event relayed, in order");
    // 20 deltas and the events around them came at once: one piece, and the closing `[DONE]`
    // (written when the stream ends) at most one more.
    assert!(received.len() <= 2, "{} pieces for one burst", received.len());
}
