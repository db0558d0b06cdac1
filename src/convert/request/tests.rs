//! Conversion tests, table-style: a request, and the fields of the body it must become (or the
//! param its 400 must name).

use serde_json::{Value, json};

use super::*;

use crate::models::{ModelRules, apply_overrides, catalog};

/// A budget-thinking model with free sampling and small limits (Claude Sonnet 4's rules, with
/// `default_max_tokens` 1000 and `max_output_tokens` 8000).
fn rules() -> ModelRules {
    rules_of("claude-sonnet-4", "default_max_tokens = 1000\nmax_output_tokens = 8000")
}

/// A catalog entry's rules with overrides (TOML).
fn rules_of(family: &str, overrides: &str) -> ModelRules {
    let entry = catalog().by_family(family).unwrap_or_else(|| panic!("no catalog entry {family}"));
    apply_overrides(&entry.rules, overrides.parse().unwrap()).unwrap()
}
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// A request with one user message, overridden by `fields`.
fn request(fields: Value) -> Value {
    let mut base = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(base), Value::Object(fields)) = (base.as_object_mut(), fields) {
        base.extend(fields);
    }
    base
}

fn convert_with(input: &Value, rules: &ModelRules) -> Result<(Value, bool, bool, Option<String>), ApiError> {
    let bytes = serde_json::to_vec(input).unwrap();
    let req = parse_request(&bytes)?;
    let prepared = to_anthropic(&req, Target { name: "claude-test", rules })?;
    Ok((
        serde_json::to_value(&prepared.body).unwrap(),
        prepared.stream,
        prepared.include_usage,
        prepared.response_tool.map(str::to_owned),
    ))
}

/// Converts `input` and compares the listed top-level fields of the body with `expected`;
/// fields of `expected` that are `null` must be absent.
fn check(name: &str, input: Value, expected: Value) {
    check_with(name, input, &rules(), expected)
}

fn check_with(name: &str, input: Value, rules: &ModelRules, expected: Value) {
    let (body, ..) = convert_with(&input, rules).unwrap_or_else(|error| panic!("{name}: {error}"));
    assert_eq!(body["anthropic_version"], "bedrock-2023-05-31", "{name}");
    assert!(body.get("model").is_none() && body.get("stream").is_none(), "{name}: model/stream in body");
    for (key, want) in expected.as_object().unwrap() {
        match want {
            Value::Null => assert!(body.get(key).is_none(), "{name}: `{key}` should be absent: {body}"),
            want => assert_eq!(&body[key], want, "{name}: `{key}` in {body}"),
        }
    }
}

fn check_error(name: &str, input: Value, param: &str) {
    let error = convert_with(&input, &rules()).err().unwrap_or_else(|| panic!("{name}: accepted"));
    assert_eq!(error.status, 400, "{name}");
    assert_eq!(error.param.as_deref(), Some(param), "{name}: {error}");
    assert!(!error.message.ends_with('.'), "{name}: trailing period");
    assert_eq!(error.message.chars().next().map(char::is_lowercase), Some(true), "{name}: {}", error.message);
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": [{"type": "text", "text": text}]})
}

#[test]
fn converts_messages() {
    let cases = [
        (
            "plain user string",
            request(json!({})),
            json!({"max_tokens": 1000, "messages": [user("hi")], "system": null, "temperature": null,
                   "tools": null, "tool_choice": null, "thinking": null, "metadata": null, "stop_sequences": null}),
        ),
        (
            "system and developer anywhere go to system",
            request(json!({"messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "use metric"}]},
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "system", "content": "late rule"},
                {"role": "user", "content": "c"}]})),
            json!({"system": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "use metric"},
                              {"type": "text", "text": "late rule"}],
                   "messages": [user("a"), {"role": "assistant", "content": [{"type": "text", "text": "b"}]}, user("c")]}),
        ),
        (
            "same-role turns merge, whitespace text dropped",
            request(json!({"messages": [
                {"role": "user", "content": "a"}, {"role": "user", "content": "  "}, {"role": "user", "content": "b"}]})),
            json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
        ),
        (
            "conversation starting with assistant gets a placeholder user turn",
            request(json!({"messages": [
                {"role": "system", "content": "s"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "hi"}]})),
            json!({"messages": [user(PLACEHOLDER_USER_TURN),
                {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}, user("hi")]}),
        ),
        (
            "final assistant prefill is right-trimmed",
            request(
                json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "The answer is "}]}),
            ),
            json!({"messages": [user("q"), {"role": "assistant", "content": [{"type": "text", "text": "The answer is"}]}]}),
        ),
        (
            "tool calls and results, results first in the user turn",
            request(json!({"messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call.2", "type": "function", "function": {"name": "now", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call.2", "content": [{"type": "text", "text": "noon"}]},
                {"role": "user", "content": "thanks"}]})),
            json!({"messages": [
                user("weather?"),
                {"role": "assistant", "content": [
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "call_1", "name": "get", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "now", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                    {"type": "text", "text": "thanks"}]}]}),
        ),
        (
            "data url image, media type taken from the bytes",
            request(json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{PNG}"), "detail": "low"}}]}]})),
            json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}),
        ),
        (
            "thinking blocks replayed first and unchanged",
            request(json!({"messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "reasoning_content": "hmm", "thinking_blocks": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
                    {"type": "redacted_thinking", "data": "xyz"}]},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "b", "reasoning_content": "ok", "reasoning_signature": "sig2"},
                {"role": "user", "content": "q3"}]})),
            json!({"messages": [
                user("q"),
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "text", "text": "a"}]},
                user("q2"),
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "ok", "signature": "sig2"}, {"type": "text", "text": "b"}]},
                user("q3")]}),
        ),
        (
            "streamed thinking blocks come back with their index, which is dropped",
            request(json!({"messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "thinking_blocks": [
                    {"index": 0, "type": "thinking", "thinking": "hmm", "signature": "sig1"},
                    {"index": 1, "type": "redacted_thinking", "data": "xyz"}]},
                {"role": "user", "content": "q2"}]})),
            json!({"messages": [
                user("q"),
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "text", "text": "a"}]},
                user("q2")]}),
        ),
        (
            "cache_control on parts, messages and tools",
            request(json!({
                "messages": [
                    {"role": "system", "content": "big prompt", "cache_control": {"type": "ephemeral"}},
                    {"role": "user", "content": [{"type": "text", "text": "doc", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
                    {"role": "user", "content": "q", "cache_control": {"type": "ephemeral"}}],
                "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}]})),
            json!({
                "system": [{"type": "text", "text": "big prompt", "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "doc", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                    {"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}]}],
                "tools": [{"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}]}),
        ),
        (
            // Counted as sent: a part's cache_control and its message's land on the same block (one
            // breakpoint), one on whitespace-only text or an empty message is not sent at all.
            "cache_control on a part and on its message is one breakpoint",
            request(json!({
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "p", "cache_control": {"type": "ephemeral"}}],
                     "cache_control": {"type": "ephemeral"}},
                    {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
                     "cache_control": {"type": "ephemeral"}},
                    {"role": "assistant", "content": [{"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}],
                     "cache_control": {"type": "ephemeral"}},
                    {"role": "user", "content": [{"type": "text", "text": " ", "cache_control": {"type": "ephemeral"}},
                                                 {"type": "text", "text": "c", "cache_control": {"type": "ephemeral"}}],
                     "cache_control": {"type": "ephemeral"}}]})),
            json!({
                "system": [{"type": "text", "text": "p", "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]},
                    {"role": "user", "content": [{"type": "text", "text": "c", "cache_control": {"type": "ephemeral"}}]}]}),
        ),
        (
            "reasoning_content without a signature is dropped",
            request(json!({"messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "reasoning_content": "unsigned"},
                {"role": "user", "content": "q2"}]})),
            json!({"messages": [user("q"), {"role": "assistant", "content": [{"type": "text", "text": "a"}]}, user("q2")]}),
        ),
        (
            "a message object from the SDKs' parse helpers, `parsed` and all",
            request(json!({"messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "{\"x\":1}", "refusal": null, "parsed": {"x": 1},
                 "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "f", "arguments": "{}", "parsed_arguments": {}}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "r"}]})),
            json!({"messages": [user("q"),
                {"role": "assistant", "content": [
                    {"type": "text", "text": "{\"x\":1}"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "r"}]}]}]}),
        ),
        (
            "cache_control on a tool message marks its tool_result",
            request(json!({"messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": null, "refusal": null, "annotations": [],
                 "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "r", "cache_control": {"type": "ephemeral"}}]})),
            json!({"messages": [user("q"),
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "r"}], "cache_control": {"type": "ephemeral"}}]}]}),
        ),
        (
            // Bedrock refuses whitespace-only text blocks anywhere in messages ("text content
            // blocks must contain non-whitespace text"); a tool that printed only a newline
            // answered nothing.
            "a tool that answered only whitespace gives an empty tool_result",
            request(json!({"messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "t2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "\n"},
                {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": " \t"}, {"type": "text", "text": "ok\n"}]}]})),
            json!({"messages": [user("q"),
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                    {"type": "tool_use", "id": "t2", "name": "g", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1"},
                    {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "ok\n"}]}]}]}),
        ),
    ];
    for (name, input, expected) in cases {
        check(name, input, expected);
    }
}

#[test]
fn converts_parameters() {
    let tools = json!([
        {"type": "function", "function": {"name": "get", "description": "get it",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "bare", "parameters": {}}}]);
    let cases = [
        (
            "max_completion_tokens wins",
            request(json!({"max_tokens": 10, "max_completion_tokens": 20})),
            json!({"max_tokens": 20}),
        ),
        ("max_tokens used", request(json!({"max_tokens": 10})), json!({"max_tokens": 10})),
        ("max_tokens bounded by the model", request(json!({"max_tokens": 100000})), json!({"max_tokens": 8000})),
        (
            "sampling passes through",
            request(json!({"temperature": 0.2, "top_p": 0.9, "top_k": 5, "seed": 7, "n": 1, "logprobs": false})),
            json!({"temperature": 0.2, "top_p": 0.9, "top_k": 5}),
        ),
        ("stop string", request(json!({"stop": "END"})), json!({"stop_sequences": ["END"]})),
        ("stop list drops empty", request(json!({"stop": ["", "a", "b"]})), json!({"stop_sequences": ["a", "b"]})),
        ("user becomes metadata", request(json!({"user": "u-1"})), json!({"metadata": {"user_id": "u-1"}})),
        (
            "tools with default schema; no tool_choice by default",
            request(json!({"tools": tools})),
            json!({"tools": [
                {"name": "get", "description": "get it", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "bare", "input_schema": {"type": "object"}}], "tool_choice": null}),
        ),
        (
            "tool_choice auto",
            request(json!({"tools": tools, "tool_choice": "auto"})),
            json!({"tool_choice": {"type": "auto"}}),
        ),
        (
            "tool_choice none",
            request(json!({"tools": tools, "tool_choice": "none"})),
            json!({"tool_choice": {"type": "none"}}),
        ),
        (
            "tool_choice required",
            request(json!({"tools": tools, "tool_choice": "required"})),
            json!({"tool_choice": {"type": "any"}}),
        ),
        (
            "tool_choice function",
            request(json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "get"}}})),
            json!({"tool_choice": {"type": "tool", "name": "get"}}),
        ),
        (
            "parallel_tool_calls false",
            request(json!({"tools": tools, "parallel_tool_calls": false})),
            json!({"tool_choice": {"type": "auto", "disable_parallel_tool_use": true}}),
        ),
        (
            "parallel_tool_calls false with required",
            request(json!({"tools": tools, "tool_choice": "required", "parallel_tool_calls": false})),
            json!({"tool_choice": {"type": "any", "disable_parallel_tool_use": true}}),
        ),
        ("tool_choice without tools is dropped", request(json!({"tool_choice": "auto"})), json!({"tool_choice": null})),
        (
            "reasoning raises max_tokens above the budget",
            request(json!({"reasoning_effort": "medium", "temperature": 1})),
            json!({"thinking": {"type": "enabled", "budget_tokens": 4096}, "max_tokens": 5096, "temperature": null}),
        ),
        (
            "reasoning within the model limit",
            request(json!({"reasoning_effort": "high"})),
            json!({"thinking": {"type": "enabled", "budget_tokens": 6000}, "max_tokens": 8000}),
        ),
        (
            "reasoning leaves a large max_tokens alone",
            request(json!({"reasoning_effort": "low", "max_tokens": 3000, "top_p": 0.95})),
            json!({"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 3000, "top_p": 0.95}),
        ),
        ("none means no thinking", request(json!({"reasoning_effort": "none"})), json!({"thinking": null})),
        (
            "minimal is the smallest budget",
            request(json!({"reasoning_effort": "minimal"})),
            json!({"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2024}),
        ),
        (
            "anthropic thinking object",
            request(json!({"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 5000})),
            json!({"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 5000}),
        ),
        (
            "thinking dropped when the tool loop lacks thinking blocks",
            request(json!({"reasoning_effort": "low", "tools": tools, "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "r"}]})),
            json!({"thinking": null, "max_tokens": 1000}),
        ),
        (
            "json_schema becomes a forced tool",
            request(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "answer",
                "schema": {"type": "object", "properties": {"x": {"type": "integer"}}}, "strict": true}}})),
            json!({"tools": [{"name": "answer", "description": "Respond by calling this tool; its input is the final answer.",
                              "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}],
                   "tool_choice": {"type": "tool", "name": "answer"}}),
        ),
        (
            "json_object becomes a forced permissive tool",
            request(json!({"response_format": {"type": "json_object"}})),
            json!({"tools": [{"name": "json_object", "description": "Respond by calling this tool with the answer as a JSON object.",
                              "input_schema": {"type": "object"}}],
                   "tool_choice": {"type": "tool", "name": "json_object"}}),
        ),
        (
            "json_schema with client tools: call a tool or answer",
            request(json!({"tools": [{"type": "function", "function": {"name": "get"}}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "answer"}}})),
            json!({"tool_choice": {"type": "any"}}),
        ),
        (
            "json_schema with thinking stays auto",
            request(
                json!({"reasoning_effort": "low", "response_format": {"type": "json_schema", "json_schema": {"name": "answer"}}}),
            ),
            json!({"tool_choice": {"type": "auto"}}),
        ),
        (
            "response_format text is nothing",
            request(json!({"response_format": {"type": "text"}})),
            json!({"tools": null}),
        ),
    ];
    for (name, input, expected) in cases {
        check(name, input, expected);
    }
}

#[test]
fn flags_and_response_tool() {
    let input = request(json!({"stream": true, "stream_options": {"include_usage": true},
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer"}}}));
    let (body, stream, include_usage, response_tool) = convert_with(&input, &rules()).unwrap();
    assert!(stream && include_usage);
    assert_eq!(response_tool.as_deref(), Some("answer"));
    assert!(body.get("stream_options").is_none() && body.get("stream").is_none());
    let (_, stream, include_usage, response_tool) = convert_with(&request(json!({})), &rules()).unwrap();
    assert!(!stream && !include_usage && response_tool.is_none());
}

#[test]
fn exclusive_sampling_models_refuse_both() {
    let exclusive = rules_of("claude-sonnet-4", "sampling = \"exclusive\"");
    let error = convert_with(&request(json!({"temperature": 0.5, "top_p": 0.9})), &exclusive).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("top_p"));
    assert!(error.message.contains("claude-test"), "{}", error.message);
    check_with("one of them is fine", request(json!({"temperature": 0.5})), &exclusive, json!({"temperature": 0.5}));
    let no_thinking = rules_of("claude-sonnet-4", "thinking = \"none\"");
    let error = convert_with(&request(json!({"reasoning_effort": "low"})), &no_thinking).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("reasoning_effort"));
}

#[test]
fn parse_errors_do_not_echo_a_whole_value() {
    // serde quotes a mistyped string in full: a 1 MiB value must not come back as a 1 MiB error.
    let big = "A".repeat(1 << 20);
    for body in [request(json!({"max_tokens": big})), request(json!({"temperature": big}))] {
        let error = convert_with(&body, &rules()).unwrap_err();
        assert_eq!(error.status, 400);
        assert!(error.message.len() < 2048, "{} bytes: {}...", error.message.len(), &error.message[..80]);
        assert!(error.message.starts_with("invalid request body: "), "{}", &error.message[..80]);
    }
}

#[test]
fn rejects_bad_input() {
    let image = |url: String| {
        request(json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}))
    };
    let big = "A".repeat((MAX_IMAGE_BYTES / 3 + 1) * 4);
    let five_caches: Vec<Value> = (0..5)
        .map(|i| json!({"role": "user", "content": [{"type": "text", "text": format!("t{i}"), "cache_control": {"type": "ephemeral"}}]}))
        .collect();
    let call = |arguments: &str| {
        request(json!({"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"}]}))
    };
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let cases = [
        ("unknown field", request(json!({"foo": 1})), "foo"),
        ("wrong type", request(json!({"max_tokens": "many"})), "max_tokens"),
        ("empty messages", request(json!({"messages": []})), "messages"),
        (
            "unknown message field",
            request(json!({"messages": [{"role": "user", "content": "a", "foo": 1}]})),
            "messages[0].foo",
        ),
        ("unknown role", request(json!({"messages": [{"role": "robot", "content": "a"}]})), "messages[0].role"),
        (
            "function role",
            request(json!({"messages": [{"role": "function", "name": "f", "content": "a"}]})),
            "messages[0].role",
        ),
        ("n > 1", request(json!({"n": 2})), "n"),
        ("logprobs", request(json!({"logprobs": true})), "logprobs"),
        ("top_logprobs", request(json!({"top_logprobs": 2})), "top_logprobs"),
        ("audio", request(json!({"audio": {"voice": "alloy", "format": "wav"}})), "audio"),
        ("audio modality", request(json!({"modalities": ["text", "audio"]})), "modalities"),
        ("presence_penalty", request(json!({"presence_penalty": 0.5})), "presence_penalty"),
        ("frequency_penalty", request(json!({"frequency_penalty": -1})), "frequency_penalty"),
        ("logit_bias", request(json!({"logit_bias": {"50256": -100}})), "logit_bias"),
        ("prediction", request(json!({"prediction": {"type": "content", "content": "x"}})), "prediction"),
        ("functions", request(json!({"functions": [{"name": "f"}]})), "functions"),
        (
            "input_audio part",
            request(json!({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]})),
            "messages[0].content[0]",
        ),
        (
            "file part",
            request(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "file", "file": {"file_id": "f"}}]}]})),
            "messages[0].content[1]",
        ),
        (
            "image in system",
            request(json!({"messages": [{"role": "system", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}, {"role": "user", "content": "a"}]})),
            "messages[0].content[0]",
        ),
        ("http image", image("https://example.com/cat.png".into()), "messages[0].content[0].image_url.url"),
        ("image type", image("data:image/bmp;base64,Qk0=".into()), "messages[0].content[0].image_url.url"),
        ("image not base64", image("data:image/png;base64,@@@@".into()), "messages[0].content[0].image_url.url"),
        (
            "image not an image",
            image("data:image/png;base64,aGVsbG8gd29ybGQh".into()),
            "messages[0].content[0].image_url.url",
        ),
        ("image too large", image(format!("data:image/png;base64,{big}")), "messages[0].content[0].image_url.url"),
        ("invalid arguments", call("{\"a\":"), "messages[1].tool_calls[0].function.arguments"),
        ("non-object arguments", call("[1]"), "messages[1].tool_calls[0].function.arguments"),
        (
            "unanswered tool call",
            request(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "again"}]})),
            "messages[1].tool_calls",
        ),
        (
            "unknown tool_call_id",
            request(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c2", "content": "r"}]})),
            "messages[2].tool_call_id",
        ),
        (
            "tool without id",
            request(json!({"messages": [{"role": "tool", "content": "r"}]})),
            "messages[0].tool_call_id",
        ),
        ("temperature above 1", request(json!({"temperature": 1.5})), "temperature"),
        ("temperature above 2", request(json!({"temperature": 3})), "temperature"),
        ("top_p above 1", request(json!({"top_p": 1.5})), "top_p"),
        ("max_tokens 0", request(json!({"max_tokens": 0})), "max_tokens"),
        ("whitespace stop", request(json!({"stop": ["\n"]})), "stop"),
        (
            "non-function tool",
            request(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]})),
            "tools[0].type",
        ),
        (
            "bad tool name",
            request(json!({"tools": [{"type": "function", "function": {"name": "a b"}}]})),
            "tools[0].function.name",
        ),
        (
            "duplicate tool",
            request(json!({"tools": [{"type": "function", "function": {"name": "f"}},
            {"type": "function", "function": {"name": "f"}}]})),
            "tools[1].function.name",
        ),
        (
            "non-object parameters",
            request(json!({"tools": [{"type": "function", "function": {"name": "f",
            "parameters": {"type": "array"}}}]})),
            "tools[0].function.parameters",
        ),
        (
            "tool_choice names a missing tool",
            request(json!({"tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "g"}}})),
            "tool_choice.function.name",
        ),
        ("tool_choice unknown string", request(json!({"tools": tools, "tool_choice": "sometimes"})), "tool_choice"),
        ("required without tools", request(json!({"tool_choice": "required"})), "tool_choice"),
        (
            "reasoning with forced tool",
            request(json!({"reasoning_effort": "low", "tools": tools, "tool_choice": "required"})),
            "tool_choice",
        ),
        ("reasoning with temperature", request(json!({"reasoning_effort": "low", "temperature": 0.5})), "temperature"),
        ("reasoning with low top_p", request(json!({"reasoning_effort": "low", "top_p": 0.5})), "top_p"),
        ("reasoning with top_k", request(json!({"reasoning_effort": "low", "top_k": 5})), "top_k"),
        ("unknown effort", request(json!({"reasoning_effort": "extreme"})), "reasoning_effort"),
        (
            "small thinking budget",
            request(json!({"thinking": {"type": "enabled", "budget_tokens": 100}})),
            "thinking.budget_tokens",
        ),
        (
            "bad cache type",
            request(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "a", "cache_control": {"type": "forever"}}]}]})),
            "messages[0].content[0].cache_control.type",
        ),
        (
            "bad cache ttl",
            request(json!({"messages": [{"role": "user", "content": "a",
            "cache_control": {"type": "ephemeral", "ttl": "1d"}}]})),
            "messages[0].cache_control.ttl",
        ),
        (
            "too many cache breakpoints",
            request(json!({"messages": five_caches})),
            "messages[4].content[0].cache_control",
        ),
        (
            "too many cache breakpoints, counted in the order Anthropic reads them: tools, system, messages",
            request(json!({
                "messages": [
                    {"role": "user", "content": "a", "cache_control": {"type": "ephemeral"}},
                    {"role": "assistant", "content": "b", "cache_control": {"type": "ephemeral"}},
                    {"role": "user", "content": "c", "cache_control": {"type": "ephemeral"}},
                    {"role": "system", "content": "late", "cache_control": {"type": "ephemeral"}}],
                "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}]})),
            "messages[2].cache_control",
        ),
        (
            "array schema",
            request(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a",
            "schema": {"type": "array"}}}})),
            "response_format.json_schema.schema",
        ),
        (
            "schema name clashes",
            request(json!({"tools": tools, "response_format": {"type": "json_schema",
            "json_schema": {"name": "f"}}})),
            "response_format",
        ),
        ("long user", request(json!({"user": "u".repeat(300)})), "user"),
    ];
    for (name, input, param) in cases {
        check_error(name, input, param);
    }
}

/// Converts for a catalog model under its own name (so refusals name it).
fn convert_for(family: &str, input: &Value) -> Result<Value, ApiError> {
    let rules = rules_of(family, "");
    let bytes = serde_json::to_vec(input).unwrap();
    let req = parse_request(&bytes)?;
    let prepared = to_anthropic(&req, Target { name: family, rules: &rules })?;
    Ok(serde_json::to_value(&prepared.body).unwrap())
}

/// Compares the listed top-level fields (`null`: absent).
fn check_for(family: &str, name: &str, input: Value, expected: Value) {
    let body = convert_for(family, &input).unwrap_or_else(|error| panic!("{family} {name}: {error}"));
    for (key, want) in expected.as_object().unwrap() {
        match want {
            Value::Null => assert!(body.get(key).is_none(), "{family} {name}: `{key}` should be absent: {body}"),
            want => assert_eq!(&body[key], want, "{family} {name}: `{key}` in {body}"),
        }
    }
}

/// The 400 must name `param` and the model.
fn refuse_for(family: &str, name: &str, input: Value, param: &str) {
    let error = convert_for(family, &input).err().unwrap_or_else(|| panic!("{family} {name}: accepted"));
    assert_eq!((error.status.as_u16(), error.param.as_deref()), (400, Some(param)), "{family} {name}: {error}");
    if error.code == "unsupported_parameter" {
        assert!(error.message.contains(family), "{family} {name}: the message names the model: {}", error.message);
    }
}

#[test]
fn catalog_rules_drive_reasoning_and_limits() {
    let cases = [
        (
            "claude-opus-5-5",
            "effort high on an adaptive-only model",
            request(json!({"reasoning_effort": "high"})),
            json!({"thinking": {"type": "adaptive", "display": "summarized"}, "output_config": {"effort": "high"},
                   "max_tokens": 16384, "anthropic_beta": ["thinking-token-count-2026-05-13"]}),
        ),
        (
            "claude-opus-5-5",
            "no reasoning asked: the model's default, nothing sent",
            request(json!({})),
            json!({"thinking": null, "output_config": null, "max_tokens": 16384}),
        ),
        (
            "claude-opus-4-7",
            "none on a model that thinks only when asked",
            request(json!({"reasoning_effort": "none"})),
            json!({"thinking": null, "output_config": null, "max_tokens": 8192}),
        ),
        (
            "claude-haiku-5-5",
            "none turns thinking off where allowed",
            request(json!({"reasoning_effort": "none"})),
            json!({"thinking": {"type": "disabled"}, "output_config": null}),
        ),
        (
            "claude-opus-4-8",
            "thinking dropped for a tool loop without its blocks: the effort drops to one taken without thinking",
            request(
                json!({"reasoning_effort": "max", "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
                "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "r"}]}),
            ),
            json!({"thinking": null, "output_config": {"effort": "high"}}),
        ),
        (
            "claude-opus-4-6",
            "adaptive with effort, display left to the model",
            request(json!({"reasoning_effort": "max", "max_tokens": 2000})),
            json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}, "max_tokens": 2000}),
        ),
        (
            "claude-opus-4-6",
            "Anthropic's objects as sent",
            request(
                json!({"thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "low"}}),
            ),
            json!({"thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "low"}}),
        ),
        (
            "claude-opus-4-6",
            "budget thinking still accepted on 4.6",
            request(json!({"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 5000})),
            json!({"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 5000}),
        ),
        (
            "claude-sonnet-4-5",
            "budget model",
            request(json!({"reasoning_effort": "high"})),
            json!({"thinking": {"type": "enabled", "budget_tokens": 16384}, "max_tokens": 20480, "output_config": null}),
        ),
        (
            "claude-sonnet-4-6",
            "max_tokens capped at the model's output limit",
            request(json!({"max_completion_tokens": 200000})),
            json!({"max_tokens": 64000}),
        ),
        (
            "claude-fable-5-2",
            "default sampling values are dropped, never sent",
            request(json!({"temperature": 1.0, "top_p": 0.99})),
            json!({"temperature": null, "top_p": null}),
        ),
        (
            "claude-sonnet-4-5",
            "one sampling parameter passes",
            request(json!({"temperature": 0.2})),
            json!({"temperature": 0.2}),
        ),
    ];
    for (family, name, input, expected) in cases {
        check_for(family, name, input, expected);
    }
    let refusals = [
        (
            "claude-opus-4-7",
            "temperature on a defaults-only model",
            request(json!({"temperature": 0.2})),
            "temperature",
        ),
        ("claude-opus-5-5", "top_k", request(json!({"top_k": 5})), "top_k"),
        (
            "claude-opus-4-6",
            "xhigh where the model lacks it",
            request(json!({"reasoning_effort": "xhigh"})),
            "reasoning_effort",
        ),
        ("claude-sonnet-4-5", "max on a budget model", request(json!({"reasoning_effort": "max"})), "reasoning_effort"),
        (
            "claude-opus-4-7",
            "budget thinking on an adaptive-only model",
            request(json!({"thinking": {"type": "enabled", "budget_tokens": 2000}})),
            "thinking.type",
        ),
        (
            "claude-opus-5-5",
            "disabled where thinking is always on",
            request(json!({"thinking": {"type": "disabled"}})),
            "thinking.type",
        ),
        (
            "claude-sonnet-4-5",
            "effort on a budget model",
            request(json!({"output_config": {"effort": "high"}})),
            "output_config.effort",
        ),
        (
            "claude-opus-4-6",
            "contradicting effort fields",
            request(json!({"reasoning_effort": "low", "output_config": {"effort": "high"}})),
            "output_config.effort",
        ),
        ("claude-opus-4-6", "unknown effort", request(json!({"reasoning_effort": "extreme"})), "reasoning_effort"),
        (
            "claude-opus-4-6",
            "a prefill the model refuses",
            request(
                json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "The answer is"}]}),
            ),
            "messages[1]",
        ),
        (
            "claude-opus-5-5",
            "a beta the model does not take",
            request(json!({"anthropic_beta": ["context-1m-2025-08-07"]})),
            "anthropic_beta",
        ),
        (
            "claude-opus-5-5",
            "forced tool choice while the model always thinks",
            request(json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"})),
            "tool_choice",
        ),
        (
            "claude-opus-4-1",
            "native structured output where the model has none",
            request(json!({"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}})),
            "output_config.format",
        ),
    ];
    for (family, name, input, param) in refusals {
        refuse_for(family, name, input, param);
    }
}

#[test]
fn catalog_rules_drive_tools_structured_output_betas_and_system_turns() {
    let tool = json!([{"type": "function", "function": {"name": "get", "strict": true,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}}]);
    let schema = json!({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"], "additionalProperties": false});
    let turns = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "developer", "content": "now answer in French"}]);
    let cases = [
        (
            "claude-opus-5-5",
            "strict tools, arguments streamed as generated",
            request(json!({"tools": tool, "stream": true})),
            json!({"tools": [{"name": "get", "input_schema": tool[0]["function"]["parameters"], "strict": true, "eager_input_streaming": true}],
                   "tool_choice": null}),
        ),
        (
            "claude-opus-5-5",
            "eager streaming without a stream too: the tools are the same bytes for the prompt cache",
            request(json!({"tools": tool})),
            json!({"tools": [{"name": "get", "input_schema": tool[0]["function"]["parameters"], "strict": true, "eager_input_streaming": true}]}),
        ),
        (
            "claude-opus-4-1",
            "strict dropped, streaming through the beta",
            request(json!({"tools": tool, "stream": true})),
            json!({"tools": [{"name": "get", "input_schema": tool[0]["function"]["parameters"]}],
                   "anthropic_beta": ["fine-grained-tool-streaming-2025-05-14"]}),
        ),
        (
            "claude-opus-5-5",
            "json_schema becomes native structured output",
            request(
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}}}),
            ),
            json!({"output_config": {"format": {"type": "json_schema", "schema": schema}}, "tools": null, "tool_choice": null}),
        ),
        (
            "claude-opus-5-5",
            "json_object: a tool the always-thinking model is asked to call, not forced",
            request(json!({"response_format": {"type": "json_object"}})),
            json!({"output_config": null, "tools": [{"name": "json_object", "description": "Respond by calling this tool with the answer as a JSON object.",
                   "input_schema": {"type": "object"}}], "tool_choice": {"type": "auto"}}),
        ),
        (
            "claude-haiku-5-5",
            "a forced tool turns default thinking off where allowed",
            request(json!({"tools": tool, "tool_choice": {"type": "function", "function": {"name": "get"}}})),
            json!({"thinking": {"type": "disabled"}, "tool_choice": {"type": "tool", "name": "get"}}),
        ),
        (
            "claude-opus-4-6",
            "client betas forwarded, once",
            request(json!({"anthropic_beta": ["interleaved-thinking-2025-05-14", "interleaved-thinking-2025-05-14"]})),
            json!({"anthropic_beta": ["interleaved-thinking-2025-05-14"]}),
        ),
        (
            "claude-opus-5-5",
            "a late developer message becomes a system turn after the user turn",
            request(json!({"messages": turns})),
            json!({"system": [{"type": "text", "text": "be brief"}],
                   "messages": [user("a"), {"role": "assistant", "content": [{"type": "text", "text": "b"}]}, user("c"),
                                {"role": "system", "content": [{"type": "text", "text": "now answer in French"}]}]}),
        ),
        (
            "claude-sonnet-4-5",
            "folded into the system prompt on a model without system turns",
            request(json!({"messages": turns})),
            json!({"system": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "now answer in French"}],
                   "messages": [user("a"), {"role": "assistant", "content": [{"type": "text", "text": "b"}]}, user("c")]}),
        ),
        (
            "claude-opus-5-5",
            "a system turn Anthropic's placement rule refuses is folded (before a user turn)",
            request(json!({"messages": [
                {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "system", "content": "rule"}, {"role": "user", "content": "c"}]})),
            json!({"system": [{"type": "text", "text": "rule"}],
                   "messages": [user("a"), {"role": "assistant", "content": [{"type": "text", "text": "b"}]}, user("c")]}),
        ),
        (
            "claude-opus-5-5",
            "a system turn between a user turn and the assistant's is kept",
            request(json!({"messages": [
                {"role": "user", "content": "a"}, {"role": "system", "content": "rule"},
                {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]})),
            json!({"system": null, "messages": [user("a"), {"role": "system", "content": [{"type": "text", "text": "rule"}]},
                   {"role": "assistant", "content": [{"type": "text", "text": "b"}]}, user("c")]}),
        ),
    ];
    for (family, name, input, expected) in cases {
        check_for(family, name, input, expected);
    }
    let image = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]}]});
    let unknown = crate::models::catalog().unknown.clone();
    let error = convert_with(&request(image), &unknown).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("messages[0].content[0]"));
}
