//! What parsing a request body costs in memory, measured with a counting allocator: bounded by the
//! body's size whatever it holds (ignored fields skipped unbuilt, unknown fields refused before
//! their value is read, lists and objects capped while parsing, schemas kept as raw text). For the
//! chat API, the Messages API, the body passed on to an OpenAI-compatible endpoint and its error
//! bodies, and the query of `GET /inference-profiles`.
//!
//! The allocator counts per thread, so the measurement is the parse on this test's thread alone.

use byollm::api::models::ProfileQuery;
use byollm::convert::messages;
use byollm::convert::request::{Target, parse_request, to_anthropic};
use byollm::models::catalog;
use byollm::upstream::openai_compat::{FieldAllowList, OpenAiFailure, failure_from_body, prepare_body};
use byollm::wire::openai::{MAX_CONTENT_PARTS, MAX_MESSAGES, PARSED_ITEM_BYTES};
use byollm_testkit::alloc::{self, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of `work`, above what was live before it.
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let (result, peak) = alloc::peak_of(work);
    eprintln!("peak {peak} bytes above the body");
    (result, peak)
}

const MIB: usize = 1 << 20;
const BODY: usize = 20 * MIB;

/// `{"model":…,"messages":[{"role":"user","content":"hi"}], <before>[0,0,…,0]<after>}`, ~20 MiB.
fn padded(before: &str, after: &str) -> Vec<u8> {
    let mut body =
        format!(r#"{{"model":"claude-haiku-4-5","messages":[{{"role":"user","content":"hi"}}],{before}["#).into_bytes();
    while body.len() < BODY {
        body.extend_from_slice(b"0,");
    }
    body.extend_from_slice(b"0]");
    body.extend_from_slice(after.as_bytes());
    body.push(b'}');
    body
}

fn list(open: &str, item: &str, count: usize, close: &str) -> Vec<u8> {
    let mut body = open.as_bytes().to_vec();
    for i in 0..count {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item.as_bytes());
    }
    body.extend_from_slice(close.as_bytes());
    body
}

#[test]
fn parsing_costs_are_bounded_by_the_body() {
    // An ignored field full of small values: skipped, nothing built.
    let body = padded(r#""metadata":"#, "");
    let (parsed, peak) = peak_of(|| parse_request(&body).map(|_| ()));
    assert!(parsed.is_ok(), "{parsed:?}");
    assert!(peak < 64 * 1024, "metadata: {peak} bytes for a {} byte body", body.len());

    // An unknown field: refused by name before its value is read.
    let body = padded(r#""junk":"#, "");
    let (parsed, peak) = peak_of(|| parse_request(&body).map(|_| ()));
    let error = parsed.unwrap_err();
    assert_eq!((error.status.as_u16(), error.param.as_deref()), (400, Some("junk")), "{}", error.message);
    assert!(peak < 64 * 1024, "unknown field: {peak} bytes");

    // The same inside a content part (no internally tagged enum buffers it first).
    let body = padded(r#""tools":[],"response_format":{"type":"text"},"messages2":"#, "");
    let (parsed, _) = peak_of(|| parse_request(&body).map(|_| ()));
    assert!(parsed.is_err());
    let mut part = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x","junk":["#.to_vec();
    while part.len() < BODY {
        part.extend_from_slice(b"0,");
    }
    part.extend_from_slice(b"0]}]}]}");
    let (parsed, peak) = peak_of(|| parse_request(&part).map(|_| ()));
    assert_eq!(parsed.unwrap_err().param.as_deref(), Some("messages[0].content[0]"));
    assert!(peak < 64 * 1024, "unknown part field: {peak} bytes");

    // Too many messages: refused at the cap, before more are built.
    let messages = list(r#"{"model":"m","messages":["#, r#"{"role":"user","content":"x"}"#, 700_000, "]}");
    let (parsed, peak) = peak_of(|| parse_request(&messages).map(|_| ()));
    let error = parsed.unwrap_err();
    assert_eq!(error.param.as_deref(), Some("messages"));
    assert!(error.message.contains(&format!("at most {MAX_MESSAGES}")), "{}", error.message);
    assert!(peak < 8 * MIB, "too many messages: {peak} bytes");

    // Nested lists, each within its cap, together over the request's item budget.
    let message = list(r#"{"role":"user","content":["#, r#"{"type":"text","text":"x"}"#, MAX_CONTENT_PARTS, "]}");
    let message = String::from_utf8(message).unwrap();
    let nested = list(r#"{"model":"m","messages":["#, &message, 700, "]}");
    assert!(nested.len() < BODY);
    let (parsed, peak) = peak_of(|| parse_request(&nested).map(|_| ()));
    let error = parsed.unwrap_err();
    assert!(error.message.contains("in all"), "{}", error.message);
    assert!(peak < 32 * MIB, "nested lists: {peak} bytes");

    // A 20 MiB tool schema is kept as one copy of its text, not a tree.
    let tool =
        padded(r#""tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","x":"#, "}}}]");
    let (parsed, peak) = peak_of(|| parse_request(&tool).map(|_| ()));
    assert!(parsed.is_ok(), "{parsed:?}");
    assert!(peak < BODY + 2 * MIB, "tool schema: {peak} bytes for a {} byte body", tool.len());
}

#[test]
fn converting_keeps_schemas_and_arguments_as_text() {
    // A large tool schema and large tool-call arguments: converting them builds no tree.
    let mut zeros = String::from("[");
    while zeros.len() < 3 * MIB {
        zeros.push_str("0,");
    }
    zeros.push_str("0]");
    let arguments = serde_json::to_string(&format!(r#"{{"a":{zeros}}}"#)).unwrap();
    let body = format!(
        r#"{{"model":"m","tools":[{{"type":"function","function":{{"name":"f","parameters":{{"properties":{{"a":{{"default":{zeros}}}}}}}}}}}],
        "messages":[{{"role":"user","content":"q"}},
                    {{"role":"assistant","tool_calls":[{{"id":"c1","type":"function","function":{{"name":"f","arguments":{arguments}}}}}]}},
                    {{"role":"tool","tool_call_id":"c1","content":"r"}}]}}"#
    );
    let request = parse_request(body.as_bytes()).unwrap();
    let rules = &catalog().by_family("claude-haiku-4-5").unwrap().rules;
    let (prepared, peak) =
        peak_of(|| to_anthropic(&request, Target { name: "claude-haiku-4-5", rules }).map(|p| p.body.messages.len()));
    assert_eq!(prepared.unwrap(), 3);
    // The schema gains `"type":"object"` (one copy of its text); the arguments are borrowed.
    assert!(peak < 3 * MIB + MIB, "conversion: {peak} bytes");
}

#[test]
fn messages_api_parsing_costs_are_bounded_by_the_body() {
    let rules = &catalog().by_family("claude-haiku-4-5").unwrap().rules;
    let convert = |body: &[u8]| {
        messages::parse(body).and_then(|request| messages::to_bedrock_body(&request, "claude-haiku-4-5", rules, &[]))
    };
    // The small fields the model rules read, each given a 20 MiB list: refused, no tree built.
    for field in ["max_tokens", "temperature", "top_p", "top_k", "thinking", "tool_choice"] {
        let body = padded(&format!(r#""{field}":"#), "");
        let (converted, peak) = peak_of(|| convert(&body).map(|_| ()));
        let error = converted.unwrap_err();
        assert_eq!((error.status.as_u16(), error.param.as_deref()), (400, Some(field)), "{}", error.message);
        assert!(peak < 256 * 1024, "{field}: {peak} bytes for a {} byte body", body.len());
    }
    let body = padded(r#""max_tokens":16,"output_config":{"effort":"#, "}");
    let (converted, peak) = peak_of(|| convert(&body).map(|_| ()));
    assert_eq!(converted.unwrap_err().param.as_deref(), Some("output_config.effort"));
    assert!(peak < 256 * 1024, "output_config.effort: {peak} bytes");

    // The large fields pass as one copy of their text.
    let body = padded(r#""max_tokens":16,"metadata":{"user_id":"u","x":"#, "}");
    let (converted, peak) = peak_of(|| convert(&body).map(|out| out.bytes.len()));
    assert!(converted.unwrap() > BODY - 64);
    assert!(peak < 2 * BODY + 2 * MIB, "metadata: {peak} bytes");
}

#[test]
fn openai_compatible_bodies_are_parsed_at_their_top_level_only_and_bounded() {
    // Many tiny top-level fields: refused at a cap, not kept as a map of millions of entries.
    let mut body = br#"{"model":"m","messages":[]"#.to_vec();
    let mut i = 0;
    while body.len() < BODY {
        body.extend_from_slice(format!(r#","k{i}":0"#).as_bytes());
        i += 1;
    }
    body.push(b'}');
    let (prepared, peak) = peak_of(|| prepare_body(&body, "z", &FieldAllowList::default()).map(|p| p.body.len()));
    assert!(prepared.is_err());
    assert!(peak < 256 * 1024, "top-level fields: {peak} bytes");

    // The same inside stream_options.
    let mut body = br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true"#.to_vec();
    while body.len() < BODY {
        body.extend_from_slice(format!(r#","k{i}":0"#).as_bytes());
        i += 1;
    }
    body.extend_from_slice(b"}}");
    let (prepared, peak) = peak_of(|| prepare_body(&body, "z", &FieldAllowList::default()).map(|p| p.body.len()));
    assert!(prepared.is_err());
    assert!(peak < 2 * BODY, "stream_options: {peak} bytes");

    // A large value passes as one copy of its text.
    let body = padded(r#""metadata":"#, "");
    let (prepared, peak) = peak_of(|| prepare_body(&body, "z", &FieldAllowList::default()).map(|p| p.body.len()));
    assert!(prepared.unwrap() > BODY - 64);
    assert!(peak < 2 * BODY + 2 * MIB, "metadata: {peak} bytes");
}

#[test]
fn messages_api_message_lists_cost_no_tree() {
    // The most messages a request may carry, each tiny: the rules read their roles (and the last
    // one's first block) without a value per message.
    let rules = &catalog().by_family("claude-haiku-4-5").unwrap().rules;
    let body = list(
        r#"{"model":"m","max_tokens":16,"messages":["#,
        r#"{"role":"user","content":[]}"#,
        messages::MAX_MESSAGES,
        "]}",
    );
    let (converted, peak) = peak_of(|| {
        messages::parse(&body)
            .and_then(|request| messages::to_bedrock_body(&request, "claude-haiku-4-5", rules, &[]))
            .map(|out| out.bytes.len())
    });
    assert!(converted.unwrap() > body.len() - 64);
    assert!(peak < 2 * body.len() + 256 * 1024, "{peak} bytes for a {} byte body", body.len());
}

#[test]
fn endpoint_error_bodies_cost_no_tree() {
    // An error body (at most 64 KiB are read) from an endpoint a request may name, its `code` a
    // list of small values: skipped, not built (a value tree cost 30 times the body).
    let mut body = br#"{"error":{"message":"m","code":["#.to_vec();
    while body.len() < 64 * 1024 {
        body.extend_from_slice(b"0,");
    }
    body.extend_from_slice(b"0]}}");
    let headers = axum::http::HeaderMap::new();
    let (failure, peak) = peak_of(|| failure_from_body(400, &headers, &body, &[]));
    assert!(matches!(failure, OpenAiFailure::Api { status: 400, code: None, .. }), "{failure:?}");
    assert!(peak < 16 * 1024, "{peak} bytes for a {} byte error body", body.len());
    let number = failure_from_body(429, &headers, br#"{"error":{"message":"slow","code":429}}"#, &[]);
    assert!(matches!(number, OpenAiFailure::Api { code: Some(ref c), .. } if c == "429"), "{number:?}");
}

#[test]
fn the_profile_list_query_costs_no_map() {
    // Nearly the longest URI the http crate takes (64 KiB), as tiny pairs: read before the caller
    // is authenticated, so only the three fields are kept (a map of every pair cost 1.2 MB).
    let mut uri = String::from("/inference-profiles?type=APPLICATION");
    let mut i = 0;
    while uri.len() < 60 * 1024 {
        uri.push_str(&format!("&k{i}="));
        i += 1;
    }
    let uri: axum::http::Uri = uri.parse().unwrap();
    let (query, peak) = peak_of(|| axum::extract::Query::<ProfileQuery>::try_from_uri(&uri).map(|q| q.0.kind));
    assert_eq!(query.unwrap().as_deref(), Some("APPLICATION"));
    assert!(peak < 16 * 1024, "{peak} bytes for a {} byte query", uri.query().unwrap().len());
}

#[test]
fn the_budget_charge_per_parsed_item_covers_what_a_request_holds() {
    // Shapes with the most elements per byte: tiny messages, tiny content parts. What the parsed
    // request, its conversion and the body sent hold together stays within the charge the gateway
    // takes from `server.max_body_bytes_in_flight` (`parsed_items` × PARSED_ITEM_BYTES).
    let rules = &catalog().by_family("claude-haiku-4-5").unwrap().rules;
    let role = |i: usize| if i.is_multiple_of(2) { "user" } else { "assistant" };
    let tiny_messages: Vec<String> =
        (0..MAX_MESSAGES).map(|i| format!(r#"{{"role":"{}","content":"x"}}"#, role(i))).collect();
    let part = r#"{"type":"text","text":"x"}"#;
    let parts = vec![part; 97].join(",");
    let tiny_parts: Vec<String> =
        (0..1000).map(|i| format!(r#"{{"role":"{}","content":[{parts}]}}"#, role(i))).collect();
    for (shape, messages) in [("tiny messages", tiny_messages), ("tiny parts", tiny_parts)] {
        let body = format!(r#"{{"model":"m","messages":[{}]}}"#, messages.join(","));
        let (held, peak) = peak_of(|| {
            let request = parse_request(body.as_bytes()).unwrap();
            let prepared = to_anthropic(&request, Target { name: "claude-haiku-4-5", rules }).unwrap();
            let sent = serde_json::to_vec(&prepared.body).unwrap();
            let items = request.parsed_items;
            drop(sent);
            drop(prepared);
            items
        });
        assert!(held >= messages_len(&body), "{shape}: {held} items counted");
        let charge = held * PARSED_ITEM_BYTES;
        assert!(peak <= charge, "{shape}: {peak} bytes held, {charge} charged for {held} items");
    }
}

/// At least the number of messages in `body` (each is one parsed item).
fn messages_len(body: &str) -> usize {
    body.matches(r#""role""#).count()
}
