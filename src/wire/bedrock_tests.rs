use base64::Engine;
use http::HeaderMap;
use serde_json::json;

use super::*;

/// One event-stream frame with string headers (written here, independently of the decoder).
fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.push(name.len() as u8);
        head.extend_from_slice(name.as_bytes());
        head.push(7);
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        head.extend_from_slice(value.as_bytes());
    }
    let total = 12 + head.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn chunk(event: serde_json::Value) -> Vec<u8> {
    let bytes = base64::engine::general_purpose::STANDARD.encode(event.to_string());
    let payload = json!({"bytes": bytes, "p": "abcd"}).to_string();
    frame(
        &[(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")],
        payload.as_bytes(),
    )
}

fn event(kind: &str, payload: serde_json::Value) -> Vec<u8> {
    frame(
        &[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")],
        payload.to_string().as_bytes(),
    )
}

/// Feeds `bytes` in pieces of `piece` bytes; returns the usage read.
fn meter(operation: Operation, headers: &HeaderMap, bytes: &[u8], piece: usize) -> Usage {
    let mut meter = UsageMeter::new(operation, headers);
    for part in bytes.chunks(piece) {
        meter.observe(part);
    }
    meter.finish()
}

#[test]
fn usage_of_an_invoke_stream_comes_from_bedrocks_metrics() {
    let mut stream = Vec::new();
    stream.extend(chunk(
        json!({"type": "message_start", "message": {"usage": {"input_tokens": 30, "output_tokens": 1}}}),
    ));
    stream.extend(chunk(
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
    ));
    stream.extend(chunk(json!({"type": "message_delta", "usage": {"output_tokens": 9}})));
    let before_metrics = meter(Operation::InvokeStream, &HeaderMap::new(), &stream, 7);
    assert_eq!((before_metrics.input_tokens, before_metrics.output_tokens), (Some(30), Some(9)));
    stream.extend(chunk(json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": 31, "outputTokenCount": 10, "invocationLatency": 5, "firstByteLatency": 2,
        "cacheReadInputTokenCount": 4, "cacheWriteInputTokenCount": 2}})));
    for piece in [1, 13, 4096] {
        let usage = meter(Operation::InvokeStream, &HeaderMap::new(), &stream, piece);
        assert_eq!(
            usage,
            Usage {
                input_tokens: Some(31),
                output_tokens: Some(10),
                cache_read_input_tokens: Some(4),
                cache_creation_input_tokens: Some(2),
                reasoning_tokens: None,
            },
            "pieces of {piece}"
        );
    }
}

#[test]
fn chunk_payloads_in_bedrocks_shape_skip_the_json_parser() {
    assert_eq!(chunk_bytes(br#"{"bytes":"eyJ0eXBlIjoicGluZyJ9"}"#), Some(&b"eyJ0eXBlIjoicGluZyJ9"[..]));
    assert_eq!(chunk_bytes(br#"{"bytes":"e30=","p":"abcdefgh"}"#), Some(&b"e30="[..]));
    // Not UTF-8 inside the quotes: passed on, and the base64 decoder refuses it.
    let broken = chunk_base64(b"{\"bytes\":\"e3\xff=\"}").unwrap().unwrap();
    assert!(base64::engine::general_purpose::STANDARD.decode(&broken).is_err());
    for other in [
        &br#"{"bytes":"e3\/0="}"#[..],
        br#"{"p":"x","bytes":"e30="}"#,
        br#"{"bytes":"e30=","p":"a"b"}"#,
        br#"{"bytes":"e30=","other":1}"#,
        br#"{"bytes":"e30="} trailing"#,
        br#" {"bytes":"e30="}"#,
        br#"{"bytes":"e30="#,
    ] {
        assert_eq!(chunk_bytes(other), None, "{}", String::from_utf8_lossy(other));
    }
    // What the fast path leaves to serde still decodes.
    let part: PayloadPart<'_> = serde_json::from_slice(br#"{"bytes":"e3\/0="}"#).unwrap();
    assert_eq!(part.bytes.as_deref(), Some("e3/0="));
}

#[test]
fn content_block_events_in_anthropics_order_are_skipped_by_the_meter_and_others_are_read() {
    let base64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    assert_eq!(base64("{\"type\":\"content_bloc"), CONTENT_BLOCK_BASE64);
    let payload = |event: &str| format!(r#"{{"bytes":"{}"}}"#, base64(event));
    // As Anthropic writes them (`type` first): not decoded.
    for event in [
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"usage message_stop"}}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"n","input":{}}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
    ] {
        assert_eq!(chunk_event(payload(event).as_bytes()), None, "{event}");
    }
    // Every other event, and a content block written another way, is decoded.
    for event in [
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#,
        r#"{"type":"message_stop"}"#,
        r#"{"type": "content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        r#"{"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}"#,
    ] {
        assert_eq!(chunk_event(payload(event).as_bytes()).as_deref(), Some(event.as_bytes()), "{event}");
    }
    // A stream in Anthropic's order: the usage and the end are still found.
    let mut stream = Vec::new();
    for event in [
        r#"{"type":"message_start","message":{"usage":{"input_tokens":30,"output_tokens":1}}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#,
    ] {
        let headers = [(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")];
        stream.extend(frame(&headers, payload(event).as_bytes()));
    }
    let usage = meter(Operation::InvokeStream, &HeaderMap::new(), &stream, 5);
    assert_eq!((usage.input_tokens, usage.output_tokens), (Some(30), Some(9)));
    assert_eq!(complete(Operation::InvokeStream, &stream, 5), Some(false));
}

#[test]
fn usage_of_converse_invoke_and_broken_streams() {
    let metadata = event(
        "metadata",
        json!({"usage": {"inputTokens": 11, "outputTokens": 3, "totalTokens": 14}, "metrics": {"latencyMs": 9}, "p": "ab"}),
    );
    let mut stream = event("messageStart", json!({"role": "assistant"}));
    stream.extend(metadata);
    let usage = meter(Operation::ConverseStream, &HeaderMap::new(), &stream, 5);
    assert_eq!((usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens), (Some(11), Some(3), None));

    let answer = json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": "end_turn",
        "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7, "cacheReadInputTokens": 1, "cacheWriteInputTokens": 0}});
    let usage = meter(Operation::Converse, &HeaderMap::new(), answer.to_string().as_bytes(), 3);
    assert_eq!(usage.cache_read_input_tokens, Some(1));
    assert_eq!(usage.cache_creation_input_tokens, Some(0));

    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-bedrock-input-token-count", "12".parse().unwrap());
    headers.insert("x-amzn-bedrock-output-token-count", "4".parse().unwrap());
    let usage = meter(Operation::Invoke, &headers, b"{\"content\":[]}", 100);
    assert_eq!((usage.input_tokens, usage.output_tokens), (Some(12), Some(4)));

    // A broken stream stops metering; it never panics or fails the relay.
    let mut broken = chunk(json!({"type": "message_start", "message": {"usage": {"input_tokens": 8}}}));
    broken.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0, 1, 2, 3, 4]);
    broken.extend(chunk(json!({"type": "message_delta", "usage": {"output_tokens": 9}})));
    let usage = meter(Operation::InvokeStream, &HeaderMap::new(), &broken, 64);
    assert_eq!((usage.input_tokens, usage.output_tokens), (Some(8), None));
}

/// Whether each stream, fed in pieces of `piece` bytes, reached its last event.
fn complete(operation: Operation, bytes: &[u8], piece: usize) -> Option<bool> {
    let mut meter = UsageMeter::new(operation, &HeaderMap::new());
    for part in bytes.chunks(piece) {
        meter.observe(part);
    }
    meter.complete()
}

#[test]
fn a_stream_is_complete_only_after_its_last_event() {
    let mut invoke = chunk(json!({"type": "message_start", "message": {"usage": {"input_tokens": 3}}}));
    invoke.extend(chunk(
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "message_stop"}}),
    ));
    for piece in [1, 9, 4096] {
        // Cut short: no message_stop yet (the word in a text delta does not count).
        assert_eq!(complete(Operation::InvokeStream, &invoke, piece), Some(false), "pieces of {piece}");
    }
    let mut whole = invoke.clone();
    whole.extend(chunk(json!({"type": "message_stop"})));
    assert_eq!(complete(Operation::InvokeStream, &whole, 7), Some(true));
    // Half of the last frame: not complete.
    assert_eq!(complete(Operation::InvokeStream, &whole[..whole.len() - 5], 7), Some(false));
    // An exception frame ends a stream with its own error.
    let mut failed = invoke.clone();
    failed.extend(frame(
        &[
            (":exception-type", "modelStreamErrorException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        br#"{"message":"broke"}"#,
    ));
    assert_eq!(complete(Operation::InvokeStream, &failed, 5), Some(true));

    let mut converse = event("messageStart", json!({"role": "assistant"}));
    assert_eq!(complete(Operation::ConverseStream, &converse, 5), Some(false));
    converse.extend(event("messageStop", json!({"stopReason": "end_turn"})));
    assert_eq!(complete(Operation::ConverseStream, &converse, 5), Some(true));

    // Not a stream, or a frame that could not be read: nothing known.
    assert_eq!(complete(Operation::Invoke, b"{\"content\":[]}", 4), None);
    let mut broken = invoke;
    broken.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(complete(Operation::InvokeStream, &broken, 64), None);
}

#[test]
fn forwarded_and_relayed_headers() {
    let mut client = HeaderMap::new();
    for (name, value) in [
        ("authorization", "Bearer byollm_secret"),
        ("x-byollm-principal", "alice"),
        ("anthropic-beta", "claude-code-20250219"),
        ("accept", "application/json"),
        ("x-amzn-bedrock-trace", "ENABLED"),
        ("cookie", "a=b"),
    ] {
        client.insert(http::HeaderName::from_static(name), value.parse().unwrap());
    }
    let forwarded = forwarded_headers(&client);
    let names: Vec<&str> = forwarded.keys().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(forwarded["content-type"], "application/json", "a default content type");
    assert_eq!(forwarded["x-amzn-bedrock-trace"], "ENABLED");
    assert!(forwarded.get("authorization").is_none() && forwarded.get("x-byollm-principal").is_none());

    for (name, relayed) in [
        ("content-type", true),
        ("x-amzn-requestid", true),
        ("x-amzn-errortype", true),
        ("x-amzn-bedrock-input-token-count", true),
        ("retry-after", true),
        ("set-cookie", false),
        ("server", false),
        ("connection", false),
    ] {
        assert_eq!(is_relayed_header(&http::HeaderName::from_static(name)), relayed, "{name}");
    }
}

#[test]
fn bodies_and_operations() {
    assert!(check_body(b"{\"messages\": [], \"x\": {\"y\": [1, 2]}}").is_ok());
    for bad in [&b"[1]"[..], b"\"{}\"", b"{\"a\":", b"", b"{} {}", b"\xff{}"] {
        assert_eq!(check_body(bad).unwrap_err().status, 400);
    }
    for op in Operation::ALL {
        assert_eq!(Operation::parse(op.path_segment()), Some(op));
    }
    assert_eq!(Operation::parse("invoke-async"), None);
    assert_eq!(Operation::ConverseStream.iam_action(), "bedrock:InvokeModelWithResponseStream");
}

#[test]
fn inference_profiles_come_from_the_configured_models() {
    let config = Config::from_toml(
        r#"
        dev = true
        [models."opus"]
        id = "global.anthropic.claude-opus-4-7"
        [models."opus-eu"]
        id = "eu.anthropic.claude-opus-4-7"
        [models."haiku-base"]
        id = "anthropic.claude-haiku-4-5-20251001-v1:0"
        [models."tagged"]
        id = "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc123"
        family = "claude-sonnet-4-6"
        "#,
    )
    .unwrap();
    let every: Vec<String> = config.models.keys().cloned().collect();
    let all = inference_profiles(&config, "us-east-1", None, &every);
    let ids: Vec<(&str, &str)> = all.iter().map(|p| (p.inference_profile_id.as_str(), p.kind)).collect();
    assert_eq!(
        ids,
        [
            ("global.anthropic.claude-opus-4-7", "SYSTEM_DEFINED"),
            ("eu.anthropic.claude-opus-4-7", "SYSTEM_DEFINED"),
            ("abc123", "APPLICATION")
        ]
    );
    assert_eq!(all[0].models[0].model_arn, "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-4-7");
    assert_eq!(
        all[2].inference_profile_arn,
        "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc123"
    );
    let application = inference_profiles(&config, "us-east-1", Some("APPLICATION"), &every);
    assert_eq!(application.len(), 1);
    let tagged_only = inference_profiles(&config, "us-east-1", None, &["tagged".to_owned()]);
    assert_eq!(tagged_only.iter().map(|p| p.inference_profile_id.as_str()).collect::<Vec<_>>(), ["abc123"]);
    let wire = serde_json::to_value(&all[0]).unwrap();
    for key in ["inferenceProfileName", "inferenceProfileId", "inferenceProfileArn", "models", "status", "type"] {
        assert!(wire.get(key).is_some(), "{key} in {wire}");
    }
}
