//! The direct upstream clients (Anthropic API, OpenAI-compatible) against the independent fakes on
//! 127.0.0.1, through the egress-guarded HTTP client.

use std::time::Duration;

use byollm::secret::Secret;
use byollm::upstream::anthropic::{self, AnthropicAnswer, AnthropicCall, AnthropicFailure, messages_body};
use byollm::upstream::buffered::AnswerBudget;
use byollm::upstream::direct::{DirectClient, DirectError, Limits};
use byollm::upstream::egress::{AddressClass, EgressError, EgressPolicy};
use byollm::upstream::openai_compat::{self, FieldAllowList, OpenAiAnswer, OpenAiCall, OpenAiFailure, prepare_body};
use byollm_testkit::support::*;
use serde_json::{Value, json};

const LIMITS: Limits = Limits {
    connect_timeout: Duration::from_secs(2),
    total_timeout: Duration::from_secs(10),
    max_response_bytes: 1 << 20,
};
const INTERNAL: EgressPolicy = EgressPolicy::Private { allow_http: true };
const HOSTED: EgressPolicy = EgressPolicy::Hosted { allow_http: true };

fn bedrock_body() -> Vec<u8> {
    json!({
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn anthropic_calls_carry_the_key_version_and_betas_and_stream_events() {
    let fake = FakeAnthropic::start(FakeAnthropicOptions::default()).await;
    fake.set_script(vec![AnthropicReply::text(&["Hi"]).usage(11, 1), AnthropicReply::text(&["a", "b"])]);
    let client = DirectClient::default();
    let base = url::Url::parse(&fake.url()).unwrap();
    let key = Secret::new("sk-ant-api03-test-key");
    let call = |stream| AnthropicCall {
        base_url: &base,
        key: &key,
        policy: INTERNAL,
        limits: LIMITS,
        team: None,
        body: messages_body(&bedrock_body(), "claude-sonnet-4-5", stream).unwrap(),
        stream,
    };
    let AnthropicAnswer::Message(body) = anthropic::send(&client, call(false)).await.unwrap() else { panic!("json") };
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(message["content"][0]["text"], "Hi");
    assert_eq!(message["usage"]["input_tokens"], 11);
    let seen = fake.requests().pop().unwrap();
    assert_eq!(seen.api_key.as_deref(), Some("sk-ant-api03-test-key"));
    assert_eq!(seen.version.as_deref(), Some("2023-06-01"));
    assert_eq!(seen.betas, ["interleaved-thinking-2025-05-14"]);
    assert_eq!(seen.model.as_deref(), Some("claude-sonnet-4-5"));

    let AnthropicAnswer::Stream(mut events) = anthropic::send(&client, call(true)).await.unwrap() else {
        panic!("stream")
    };
    let mut types = Vec::new();
    while let Some(event) = events.next_event().await.unwrap() {
        let event: Value = serde_json::from_slice(&event).unwrap();
        types.push(event["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    assert_eq!(types.iter().filter(|t| *t == "content_block_delta").count(), 2);
}

#[tokio::test]
async fn anthropic_errors_come_back_typed_and_without_the_key() {
    let fake = FakeAnthropic::start(FakeAnthropicOptions::default()).await;
    fake.set_script(vec![
        AnthropicReply::error(AnthropicErrorKind::Overloaded),
        AnthropicReply::text(&["x", "y"]).stream_error_after(2, AnthropicErrorKind::Overloaded),
    ]);
    let client = DirectClient::default();
    let base = url::Url::parse(&fake.url()).unwrap();
    let good = Secret::new("sk-ant-api03-test-key");
    let send = |key: &'static str, stream: bool| {
        let client = &client;
        let base = &base;
        async move {
            let key = Secret::new(key);
            let call = AnthropicCall {
                base_url: base,
                key: &key,
                policy: INTERNAL,
                limits: LIMITS,
                team: None,
                body: messages_body(&bedrock_body(), "claude-sonnet-4-5", stream).unwrap(),
                stream,
            };
            anthropic::send(client, call).await
        }
    };
    let failure = send("sk-ant-api03-test-key", false).await.unwrap_err();
    assert!(
        matches!(&failure, AnthropicFailure::Api { status: 529, error_type, .. } if error_type == "overloaded_error"),
        "{failure:?}"
    );
    let AnthropicAnswer::Stream(mut events) = send("sk-ant-api03-test-key", true).await.unwrap() else {
        panic!("stream")
    };
    let mut failure = None;
    loop {
        match events.next_event().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    assert!(
        matches!(failure, Some(AnthropicFailure::Api { ref error_type, .. }) if error_type == "overloaded_error"),
        "{failure:?}"
    );
    let failure = send("sk-ant-wrong-secret", false).await.unwrap_err();
    assert!(matches!(&failure, AnthropicFailure::Api { status: 401, .. }));
    assert!(!format!("{failure} {failure:?}").contains("wrong-secret"));
    drop(good);
}

#[tokio::test]
async fn openai_calls_rename_the_model_relay_streams_and_read_usage() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions::default()).await;
    fake.set_script(vec![OpenAiReply::text(&["one"]).usage(9, 1), OpenAiReply::text(&["a", "b"]).usage(5, 2)]);
    let client = DirectClient::default();
    let base = url::Url::parse(&fake.base_url()).unwrap();
    let key = Secret::new("sk-or-v1-test-key");
    let body = |stream: bool| {
        json!({"model": "glm", "messages": [{"role": "user", "content": "hi"}], "stream": stream}).to_string()
    };
    let call = |stream| OpenAiCall {
        base_url: &base,
        key: Some(&key),
        policy: INTERNAL,
        limits: LIMITS,
        team: None,
        url_from_request: false,
        body: prepare_body(body(stream).as_bytes(), "z-ai/glm-4.6", &FieldAllowList::default()).unwrap(),
    };
    let OpenAiAnswer::Completion { body, usage } = openai_compat::send(&client, call(false)).await.unwrap() else {
        panic!("json")
    };
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["choices"][0]["message"]["content"], "one");
    assert_eq!(usage.and_then(|u| u.prompt_tokens), Some(9));
    let seen = fake.requests().pop().unwrap();
    assert_eq!((seen.model.as_deref(), seen.api_key.as_deref()), (Some("z-ai/glm-4.6"), Some("sk-or-v1-test-key")));

    let OpenAiAnswer::Stream(mut stream) = openai_compat::send(&client, call(true)).await.unwrap() else {
        panic!("stream")
    };
    let mut relayed = String::new();
    while let Some(bytes) = stream.next().await.unwrap() {
        relayed.push_str(std::str::from_utf8(&bytes).unwrap());
    }
    assert!(relayed.ends_with("data: [DONE]\n\n"), "{relayed}");
    assert!(!relayed.contains("\"choices\":[]"), "the usage chunk the client did not ask for is left out: {relayed}");
    assert_eq!(stream.usage().and_then(|u| u.completion_tokens), Some(2));
    assert!(stream.finished());
    let seen = fake.requests().pop().unwrap();
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn hosted_mode_refuses_loopback_endpoints_before_any_request() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions::default()).await;
    let client = DirectClient::default();
    let base = url::Url::parse(&fake.base_url()).unwrap();
    let call = |policy| OpenAiCall {
        base_url: &base,
        key: None,
        policy,
        limits: LIMITS,
        team: None,
        url_from_request: false,
        body: prepare_body(
            br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
            "z-ai/glm-4.6",
            &FieldAllowList::default(),
        )
        .unwrap(),
    };
    let failure = openai_compat::send(&client, call(HOSTED)).await.unwrap_err();
    assert_eq!(failure, OpenAiFailure::Transport(DirectError::Refused(EgressError::Address(AddressClass::Loopback))));
    assert_eq!(failure.to_api_error("gateway", "m", false).status.as_u16(), 502, "a configured endpoint's refusal");
    // The same refusal of a URL the request named (through a host name, refused once resolved) is
    // the request's: 403 naming the header.
    let mut named_base = base.clone();
    named_base.set_host(Some("localhost")).unwrap();
    let named = OpenAiCall { base_url: &named_base, url_from_request: true, ..call(HOSTED) };
    let failure = openai_compat::send(&client, named).await.unwrap_err();
    assert_eq!(failure, OpenAiFailure::RequestUrlRefused(EgressError::Address(AddressClass::Loopback)));
    let error = failure.to_api_error("byo", "m", false);
    assert_eq!((error.status.as_u16(), error.code), (403, "egress_refused"));
    assert_eq!(error.param.as_deref(), Some("x-byollm-endpoint-url"));
    assert!(fake.requests().is_empty(), "nothing reached the endpoint");
    // The same endpoint from `byollm local`.
    let failure = openai_compat::send(&client, call(EgressPolicy::Local)).await.unwrap_err();
    assert!(
        matches!(failure, OpenAiFailure::Api { status: 401, .. }),
        "reached, and refused for want of a key: {failure:?}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn redirects_and_oversized_answers_from_an_endpoint_are_failures() {
    let fake = FakeOpenAi::start(FakeOpenAiOptions::default()).await;
    fake.set_script(vec![
        OpenAiReply::redirect("http://169.254.169.254/latest/meta-data/"),
        OpenAiReply::oversized(50_000),
    ]);
    let client = DirectClient::default();
    let base = url::Url::parse(&fake.base_url()).unwrap();
    let key = Secret::new("sk-or-v1-test-key");
    let call = || OpenAiCall {
        base_url: &base,
        key: Some(&key),
        policy: INTERNAL,
        limits: Limits { max_response_bytes: 10_000, ..LIMITS },
        team: None,
        url_from_request: false,
        body: prepare_body(
            br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
            "z-ai/glm-4.6",
            &FieldAllowList::default(),
        )
        .unwrap(),
    };
    assert_eq!(
        openai_compat::send(&client, call()).await.unwrap_err(),
        OpenAiFailure::Transport(DirectError::Redirect(302))
    );
    assert_eq!(
        openai_compat::send(&client, call()).await.unwrap_err(),
        OpenAiFailure::Transport(DirectError::TooLarge)
    );
    assert_eq!(fake.requests().len(), 2, "the redirect was not followed");
}

#[tokio::test]
async fn answers_read_whole_share_one_budget_and_no_call_is_made_without_room() {
    let openai = FakeOpenAi::start(FakeOpenAiOptions::default()).await;
    let anthropic = FakeAnthropic::start(FakeAnthropicOptions::default()).await;
    let answers = AnswerBudget::new(1 << 20);
    let client = DirectClient::with_budget(answers.clone());
    let openai_base = url::Url::parse(&openai.base_url()).unwrap();
    let anthropic_base = url::Url::parse(&anthropic.url()).unwrap();
    let openai_key = Secret::new("sk-or-v1-test-key");
    let anthropic_key = Secret::new("sk-ant-api03-test-key");
    let body = |stream: bool| {
        json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": stream}).to_string()
    };
    let openai_call = |stream: bool| OpenAiCall {
        base_url: &openai_base,
        key: Some(&openai_key),
        policy: INTERNAL,
        limits: LIMITS,
        team: None,
        url_from_request: false,
        body: prepare_body(body(stream).as_bytes(), "z-ai/glm-4.6", &FieldAllowList::default()).unwrap(),
    };
    let anthropic_call = |stream: bool| AnthropicCall {
        base_url: &anthropic_base,
        key: &anthropic_key,
        policy: INTERNAL,
        limits: LIMITS,
        team: None,
        body: messages_body(&bedrock_body(), "claude-sonnet-4-5", stream).unwrap(),
        stream,
    };

    // An answer keeps its bytes charged until it is dropped.
    let OpenAiAnswer::Completion { body: completion, .. } =
        openai_compat::send(&client, openai_call(false)).await.unwrap()
    else {
        panic!("json")
    };
    let held = completion.len().div_ceil(1024) * 1024;
    assert_eq!(answers.available_bytes(), (1 << 20) - held);
    let AnthropicAnswer::Message(message) = anthropic::send(&client, anthropic_call(false)).await.unwrap() else {
        panic!("json")
    };
    assert_eq!(answers.available_bytes(), (1 << 20) - held - message.len().div_ceil(1024) * 1024);
    drop((completion, message));
    assert_eq!(answers.available_bytes(), 1 << 20);

    // With the budget spent elsewhere, a call whose answer is read whole is not even made...
    let mut elsewhere = answers.start(1 << 20).unwrap();
    elsewhere.push(&vec![0; (1 << 20) - 1]).unwrap();
    let (openai_before, anthropic_before) = (openai.requests().len(), anthropic.requests().len());
    assert_eq!(
        openai_compat::send(&client, openai_call(false)).await.unwrap_err(),
        OpenAiFailure::Transport(DirectError::Busy)
    );
    assert_eq!(
        anthropic::send(&client, anthropic_call(false)).await.unwrap_err(),
        AnthropicFailure::Transport(DirectError::Busy)
    );
    assert_eq!((openai.requests().len(), anthropic.requests().len()), (openai_before, anthropic_before));
    // ...while streams, which hold one event at a time, still run.
    let OpenAiAnswer::Stream(mut stream) = openai_compat::send(&client, openai_call(true)).await.unwrap() else {
        panic!("stream")
    };
    while stream.next().await.unwrap().is_some() {}
    assert!(stream.finished());
    drop(elsewhere);
    assert!(openai_compat::send(&client, openai_call(false)).await.is_ok());
}
