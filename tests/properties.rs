//! Property tests: arbitrary and structured-random input to the parsers that read what clients and
//! upstreams send — the event-stream frame decoder, the server-sent-events reader, the chat request
//! conversion, the Messages parse and conversion, the bounded readers and the config reader.
//!
//! Invariants: no panic; a client's bad input is an `ApiError` with a 4xx status (and a config
//! error names a path); memory bounded by the input's size (a counting allocator, as in
//! `tests/bounded_parsing.rs`); frames and events round-trip exactly.
//!
//! Each property runs a bounded number of cases (the file runs in well under a minute in debug);
//! `PROPTEST_CASES=N` raises every one of them to N. Failures are not persisted to files: a case
//! worth keeping becomes a named test below.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as SdkValue, Message};
use aws_smithy_types::str_bytes::StrBytes;
use byollm::config::Config;
use byollm::convert::messages;
use byollm::convert::request::{Target, parse_request, to_anthropic};
use byollm::error::ApiError;
use byollm::models::catalog;
use byollm::upstream::direct::DirectError;
use byollm::upstream::sse::{MAX_EVENT_BYTES, SseEvent, SseParser};
use byollm::wire::bounded::{Bounded, MAX_ITEMS, NonEmpty, is_json_object, with_item_count};
use byollm::wire::eventstream::{FrameDecoder, FrameError, HeaderValue, MAX_FRAME_LEN};
use byollm::wire::openai::PARSED_ITEM_BYTES;
use byollm_testkit::alloc::{Counting, peak_of};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError};
use serde_json::{Map, Value, json};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KIB: usize = 1024;

/// `cases` unless `PROPTEST_CASES` says otherwise; nothing written to disk.
fn cases(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = None;
    config
}

/// Client input refused: a 4xx `ApiError` that says something.
fn client_error(error: &ApiError) -> Result<(), TestCaseError> {
    prop_assert!(error.status.is_client_error(), "status {} for client input: {}", error.status, error.message);
    prop_assert!(!error.message.is_empty());
    Ok(())
}

/// Split `bytes` at the given cut points (any values; reduced modulo the length).
fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| if bytes.is_empty() { 0 } else { c % bytes.len() }).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

// --- event stream --------------------------------------------------------------------------------

/// A header value as the decoder reports it, owned.
#[derive(Debug, Clone, PartialEq)]
enum Owned {
    Bool(bool),
    Byte(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Bytes(Vec<u8>),
    String(String),
    Timestamp(i64),
    Uuid(u128),
}

impl From<HeaderValue<'_>> for Owned {
    fn from(value: HeaderValue<'_>) -> Owned {
        match value {
            HeaderValue::Bool(v) => Owned::Bool(v),
            HeaderValue::Byte(v) => Owned::Byte(v),
            HeaderValue::Int16(v) => Owned::Int16(v),
            HeaderValue::Int32(v) => Owned::Int32(v),
            HeaderValue::Int64(v) => Owned::Int64(v),
            HeaderValue::Bytes(v) => Owned::Bytes(v.to_vec()),
            HeaderValue::String(v) => Owned::String(v.to_owned()),
            HeaderValue::Timestamp(v) => Owned::Timestamp(v),
            HeaderValue::Uuid(v) => Owned::Uuid(v),
        }
    }
}

impl Owned {
    fn to_sdk(&self) -> SdkValue {
        match self.clone() {
            Owned::Bool(v) => SdkValue::Bool(v),
            Owned::Byte(v) => SdkValue::Byte(v),
            Owned::Int16(v) => SdkValue::Int16(v),
            Owned::Int32(v) => SdkValue::Int32(v),
            Owned::Int64(v) => SdkValue::Int64(v),
            Owned::Bytes(v) => SdkValue::ByteArray(v.into()),
            Owned::String(v) => SdkValue::String(StrBytes::from(v)),
            Owned::Timestamp(v) => SdkValue::Timestamp(aws_smithy_types::DateTime::from_millis(v)),
            Owned::Uuid(v) => SdkValue::Uuid(v),
        }
    }
}

/// A decoded frame, owned: headers in order, payload, and the three headers the decoder names.
#[derive(Debug, Clone, PartialEq)]
struct OwnedFrame {
    headers: Vec<(String, Owned)>,
    payload: Vec<u8>,
    types: [Option<String>; 3],
}

fn header_value() -> impl Strategy<Value = Owned> {
    prop_oneof![
        any::<bool>().prop_map(Owned::Bool),
        any::<i8>().prop_map(Owned::Byte),
        any::<i16>().prop_map(Owned::Int16),
        any::<i32>().prop_map(Owned::Int32),
        any::<i64>().prop_map(Owned::Int64),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Owned::Bytes),
        prop_oneof![
            Just("event".to_owned()),
            Just("exception".to_owned()),
            Just("chunk".to_owned()),
            ".{0,24}".prop_map(String::from)
        ]
        .prop_map(Owned::String),
        // Milliseconds a `DateTime` holds exactly (about ±30,000 years).
        (-1_000_000_000_000_000i64..1_000_000_000_000_000).prop_map(Owned::Timestamp),
        any::<u128>().prop_map(Owned::Uuid),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(":message-type".to_owned()),
        Just(":event-type".to_owned()),
        Just(":exception-type".to_owned()),
        Just(":content-type".to_owned()),
        // Names of 1 to 255 bytes (the format's limit), any characters.
        "[a-z:-]{1,16}",
        ".{1,40}".prop_filter("at most 255 bytes", |name| name.len() <= 255),
    ]
}

fn frame() -> impl Strategy<Value = OwnedFrame> {
    (proptest::collection::vec((header_name(), header_value()), 0..8), proptest::collection::vec(any::<u8>(), 0..512))
        .prop_map(|(headers, payload)| {
            // What the decoder names: the string header of that name (when repeated, the last).
            let named = |name: &str| {
                headers.iter().rev().find_map(|(n, v)| match v {
                    Owned::String(s) if n == name => Some(s.clone()),
                    _ => None,
                })
            };
            let types = [named(":message-type"), named(":event-type"), named(":exception-type")];
            OwnedFrame { headers, payload, types }
        })
}

fn encode(frame: &OwnedFrame) -> Vec<u8> {
    let mut message = Message::new(frame.payload.clone());
    for (name, value) in &frame.headers {
        message = message.add_header(Header::new(name.clone(), value.to_sdk()));
    }
    let mut out = Vec::new();
    write_message_to(&message, &mut out).expect("aws-smithy-eventstream encodes the frame");
    out
}

/// Push `pieces` one at a time, taking every frame as soon as it is whole. Stops at the first error.
fn decode(pieces: &[&[u8]]) -> (Vec<OwnedFrame>, Option<FrameError>, bool) {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for piece in pieces {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let message_type = frame.message_type().map(str::to_owned);
                    let event_type = frame.event_type().map(str::to_owned);
                    let exception_type = frame.exception_type().map(str::to_owned);
                    frames.push(OwnedFrame {
                        headers: frame.headers().map(|(n, v)| (n.to_owned(), Owned::from(v))).collect(),
                        payload: frame.payload().to_vec(),
                        types: [message_type, event_type, exception_type],
                    });
                }
                Ok(None) => break,
                Err(error) => {
                    // An event stream cannot be resynchronised: every later call fails alike.
                    assert_eq!(decoder.next_frame().err(), Some(error));
                    decoder.push(b"more");
                    assert_eq!(decoder.next_frame().err(), Some(error));
                    return (frames, Some(error), true);
                }
            }
        }
    }
    let partial = decoder.has_partial_frame();
    (frames, None, partial)
}

/// What decoding `len` bytes may hold at its peak: the buffered copy, grown by doubling.
fn decode_budget(len: usize) -> usize {
    2 * len + 64 * KIB
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn eventstream_frames_round_trip_in_any_pieces(
        frames in proptest::collection::vec(frame(), 0..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(encode).collect();
        let ((decoded, error, partial), peak) = peak_of(|| decode(&pieces(&stream, &cuts)));
        prop_assert_eq!(error, None);
        prop_assert!(!partial);
        prop_assert_eq!(decoded, frames);
        prop_assert!(peak <= decode_budget(stream.len()), "{peak} bytes for {}", stream.len());
    }

    #[test]
    fn eventstream_any_changed_byte_is_caught_at_its_frame(
        frames in proptest::collection::vec(frame(), 1..5),
        at in any::<usize>(),
        flip in 1u8..=255,
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let encoded: Vec<Vec<u8>> = frames.iter().map(encode).collect();
        let mut stream: Vec<u8> = encoded.concat();
        let at = at % stream.len();
        stream[at] ^= flip;
        // The frame holding the changed byte, and how many whole frames come before it.
        let mut start = 0;
        let mut index = 0;
        while start + encoded[index].len() <= at {
            start += encoded[index].len();
            index += 1;
        }
        let (decoded, error, _) = decode(&pieces(&stream, &cuts));
        // CRC32 catches every error burst of up to 32 bits: a changed byte is never accepted.
        prop_assert!(error.is_some(), "byte {at} changed, frames {:?}", decoded.len());
        prop_assert_eq!(&decoded[..], &frames[..index]);
    }

    #[test]
    fn eventstream_arbitrary_bytes_never_panic_and_cost_their_size(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let (_, peak) = peak_of(|| decode(&pieces(&bytes, &cuts)));
        prop_assert!(peak <= decode_budget(bytes.len()), "{peak} bytes for {}", bytes.len());
    }

    #[test]
    fn eventstream_a_declared_length_is_never_allocated_ahead(
        total in any::<u32>(),
        headers_len in prop_oneof![0u32..64, any::<u32>()],
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        // A prelude with a valid CRC declaring any length, then fewer bytes than it declares.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&total.to_be_bytes());
        bytes.extend_from_slice(&headers_len.to_be_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_be_bytes());
        bytes.extend_from_slice(&tail);
        let ((frames, error, partial), peak) = peak_of(|| decode(&[&bytes]));
        prop_assert!(peak <= decode_budget(bytes.len()), "{peak} bytes for {} declaring {total}", bytes.len());
        let total = total as usize;
        if !(16..=MAX_FRAME_LEN).contains(&total) {
            prop_assert_eq!(error, Some(FrameError::Length(total as u32)));
        } else if total > bytes.len() {
            prop_assert!(frames.is_empty());
            // Waiting for the rest, or refused for its header length.
            prop_assert!(partial || error == Some(FrameError::Headers), "{error:?}");
        }
    }
}

// --- server-sent events --------------------------------------------------------------------------

/// One event as a server writes it: an optional name, data lines, comment lines, a line ending.
#[derive(Debug, Clone)]
struct SseSpec {
    name: Option<String>,
    data: Vec<String>,
    comments: Vec<String>,
    crlf: bool,
}

impl SseSpec {
    fn encode(&self) -> Vec<u8> {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        for comment in &self.comments {
            out.push_str(&format!(":{comment}{eol}"));
        }
        if let Some(name) = &self.name {
            out.push_str(&format!("event: {name}{eol}"));
        }
        for line in &self.data {
            out.push_str(&format!("data: {line}{eol}"));
        }
        out.push_str(eol);
        out.into_bytes()
    }

    /// What the reader returns for it: `None` for a block with neither name nor data.
    fn expected(&self) -> Option<(Option<String>, Vec<u8>)> {
        (self.name.is_some() || !self.data.is_empty()).then(|| (self.name.clone(), self.data.join("\n").into_bytes()))
    }
}

/// Text without line breaks (which would end the field).
fn sse_text() -> impl Strategy<Value = String> {
    prop_oneof!["[^\r\n]{0,40}", Just("{\"type\":\"ping\"}".to_owned()), Just("[DONE]".to_owned())]
}

fn sse_event() -> impl Strategy<Value = SseSpec> {
    (
        proptest::option::of("[a-z_]{1,20}"),
        proptest::collection::vec(sse_text(), 0..4),
        proptest::collection::vec("[^\r\n]{0,16}", 0..2),
        any::<bool>(),
    )
        .prop_map(|(name, data, comments, crlf)| SseSpec { name, data, comments, crlf })
}

/// Bytes rich in line breaks and colons (drawn as plain bytes, then mapped: quick to generate).
fn sse_noise() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..4096).prop_map(|bytes| {
        bytes
            .into_iter()
            .map(|b| match b % 8 {
                0 | 1 => b'\n',
                2 => b'\r',
                3 => b':',
                _ => b,
            })
            .collect()
    })
}

fn read_events(pieces: &[&[u8]]) -> (Vec<SseEvent>, Option<DirectError>, bool) {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for piece in pieces {
        parser.push(piece);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => return (events, Some(error), true),
            }
        }
    }
    let partial = parser.has_partial();
    (events, None, partial)
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn sse_events_round_trip_in_any_pieces(
        specs in proptest::collection::vec(sse_event(), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream: Vec<u8> = specs.iter().flat_map(SseSpec::encode).collect();
        let ((events, error, partial), peak) = peak_of(|| read_events(&pieces(&stream, &cuts)));
        prop_assert!(error.is_none(), "{error:?}");
        prop_assert!(!partial);
        let expected: Vec<_> = specs.iter().filter_map(SseSpec::expected).collect();
        let got: Vec<_> = events.iter().map(|e| (e.name.clone(), e.data.to_vec())).collect();
        prop_assert_eq!(got, expected);
        // Each event keeps its bytes as received, from its first field to its blank line.
        for (event, spec) in events.iter().zip(specs.iter().filter(|s| s.expected().is_some())) {
            // (After any empty blocks before it, which carry no event of their own.)
            let encoded = spec.encode();
            prop_assert!(event.raw.ends_with(&encoded), "{:?} vs {:?}", event.raw, String::from_utf8_lossy(&encoded));
            prop_assert!(event.raw[..event.raw.len() - encoded.len()].iter().all(|b| matches!(b, b'\r' | b'\n')));
        }
        prop_assert!(peak <= 4 * stream.len() + 64 * KIB, "{peak} bytes for {}", stream.len());
    }

    #[test]
    fn sse_arbitrary_bytes_never_panic_and_cost_their_size(
        bytes in sse_noise(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let ((events, error, _), peak) = peak_of(|| read_events(&pieces(&bytes, &cuts)));
        prop_assert!(error.is_none(), "{error:?}: the input is far below the event limit");
        for event in &events {
            prop_assert!(event.raw.ends_with(b"\n\n") || event.raw.ends_with(b"\r\n\r\n"));
            prop_assert!(event.data.len() <= event.raw.len());
        }
        prop_assert!(peak <= 4 * bytes.len() + 64 * KIB, "{peak} bytes for {}", bytes.len());
    }
}

#[test]
fn sse_an_event_over_the_limit_is_refused_without_growing_further() {
    let mut parser = SseParser::default();
    let line = vec![b'x'; 64 * KIB];
    parser.push(b"data: ");
    let mut pushed = 0;
    let (result, peak) = peak_of(|| {
        loop {
            parser.push(&line);
            pushed += line.len();
            match parser.next_event() {
                Ok(None) if pushed <= 2 * MAX_EVENT_BYTES => continue,
                other => break other,
            }
        }
    });
    assert!(matches!(result, Err(DirectError::TooLarge)), "{result:?}");
    assert!(pushed <= MAX_EVENT_BYTES + line.len(), "refused only after {pushed} bytes");
    assert!(peak <= 2 * (MAX_EVENT_BYTES + line.len()) + 64 * KIB, "{peak} bytes");
}

// --- JSON shapes ---------------------------------------------------------------------------------
//
// Requests are built valid (a conversation in order, tools and choices that refer to each other,
// values in range) so most reach the conversion and its model rules, and then, in one case out of
// three, changed at one random place: a value replaced by any JSON, a key removed, a stray key.

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// One change at one place of a JSON tree.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
    Stray(String, Value),
}

fn mutation() -> impl Strategy<Value = Option<(usize, Mutation)>> {
    let change = prop_oneof![
        any_json().prop_map(Mutation::Replace),
        Just(Mutation::Remove),
        ("[a-z_]{1,12}", any_json()).prop_map(|(key, value)| Mutation::Stray(key, value)),
    ];
    prop_oneof![2 => Just(None), 1 => (any::<usize>(), change).prop_map(Some)]
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Applies `change` to the `at`-th node in pre-order (a removal takes it out of its parent).
fn mutate(value: &mut Value, change: Option<(usize, Mutation)>) {
    fn walk(node: &mut Value, at: &mut usize, change: &Mutation) -> bool {
        if *at == 0 {
            match (change, node.as_object_mut()) {
                (Mutation::Stray(key, new), Some(object)) => {
                    object.insert(key.clone(), new.clone());
                }
                (Mutation::Replace(new) | Mutation::Stray(_, new), _) => *node = new.clone(),
                (Mutation::Remove, _) => *node = Value::Null,
            }
            return true;
        }
        *at -= 1;
        match node {
            Value::Array(items) => {
                for index in 0..items.len() {
                    if *at == 0 && matches!(change, Mutation::Remove) {
                        items.remove(index);
                        return true;
                    }
                    if walk(&mut items[index], at, change) {
                        return true;
                    }
                }
            }
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    if *at == 0 && matches!(change, Mutation::Remove) {
                        map.remove(&key);
                        return true;
                    }
                    if walk(map.get_mut(&key).unwrap(), at, change) {
                        return true;
                    }
                }
            }
            _ => {}
        }
        false
    }
    if let Some((at, change)) = change {
        let mut at = at % count_nodes(value);
        walk(value, &mut at, &change);
    }
}

fn words() -> impl Strategy<Value = String> {
    prop_oneof![Just("Hello.".to_owned()), "[a-zA-Z ,.]{1,30}", ".{1,20}"]
}

fn tool_name() -> impl Strategy<Value = String> {
    prop_oneof![Just("get_weather".to_owned()), Just("lookup".to_owned()), "[a-z_]{1,16}"]
}

fn schema() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})),
        Just(json!({"type": "object"})),
        Just(json!({"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": false})),
    ]
}

fn image_data_url() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("data:image/png;base64,iVBORw0KGgo=".to_owned()),
        "data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/]{4,24}",
        "https://[a-z]{1,8}\\.example/[a-z]{1,8}\\.png",
    ]
}

/// Optional members: each `(key, value)` present or not.
fn optional(fields: Vec<BoxedStrategy<Option<(&'static str, Value)>>>) -> impl Strategy<Value = Map<String, Value>> {
    fields.prop_map(|fields| fields.into_iter().flatten().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn maybe<S: Strategy<Value = Value> + 'static>(
    key: &'static str,
    weight: u32,
    value: S,
) -> BoxedStrategy<Option<(&'static str, Value)>> {
    prop_oneof![10 - weight => Just(None), weight => value.prop_map(move |v| Some((key, v)))].boxed()
}

// --- the chat request ----------------------------------------------------------------------------

fn chat_user_content() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        3 => words().prop_map(|text| json!({"type": "text", "text": text})),
        1 => image_data_url().prop_map(|url| json!({"type": "image_url", "image_url": {"url": url}})),
        1 => words().prop_map(|text| json!({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}})),
    ];
    prop_oneof![2 => words().prop_map(Value::String), 1 => proptest::collection::vec(part, 1..4).prop_map(Value::Array)]
}

/// A conversation: an optional system turn, then user and assistant in turn (an assistant turn
/// may call tools, answered by tool turns), ending with the user or tool results.
fn chat_messages() -> impl Strategy<Value = Value> {
    let turn = (chat_user_content(), words(), proptest::collection::vec((tool_name(), words()), 0..3), any::<bool>());
    (proptest::option::of(words()), any::<bool>(), proptest::collection::vec(turn, 1..4)).prop_map(
        |(system, developer, turns)| {
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(json!({"role": if developer { "developer" } else { "system" }, "content": system}));
            }
            let last = turns.len() - 1;
            for (index, (user, answer, calls, reasoning)) in turns.into_iter().enumerate() {
                messages.push(json!({"role": "user", "content": user}));
                if index == last {
                    break;
                }
                let mut assistant = json!({"role": "assistant", "content": answer});
                if reasoning {
                    assistant["reasoning_content"] = json!("Thinking it over.");
                    assistant["reasoning_signature"] = json!("c2lnbmF0dXJl");
                }
                if !calls.is_empty() {
                    let calls: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(i, (name, _))| {
                            json!({"id": format!("call_{index}_{i}"), "type": "function",
                                   "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}})
                        })
                        .collect();
                    assistant["tool_calls"] = Value::Array(calls.clone());
                    messages.push(assistant);
                    for i in 0..calls.len() {
                        messages.push(
                            json!({"role": "tool", "tool_call_id": format!("call_{index}_{i}"), "content": "Sunny."}),
                        );
                    }
                } else {
                    messages.push(assistant);
                }
            }
            Value::Array(messages)
        },
    )
}

fn chat_request() -> impl Strategy<Value = Value> {
    let tools = proptest::collection::vec((tool_name(), words(), schema()), 1..3).prop_map(|tools| {
        Value::Array(
            tools
                .into_iter()
                .map(|(name, description, parameters)| {
                    json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}})
                })
                .collect(),
        )
    });
    let fields = vec![
        maybe("max_tokens", 5, (1u32..8192).prop_map(Value::from)),
        maybe("max_completion_tokens", 2, (1u32..8192).prop_map(Value::from)),
        maybe("temperature", 3, (0.0f64..1.0).prop_map(Value::from)),
        maybe("top_p", 2, (0.0f64..1.0).prop_map(Value::from)),
        maybe("top_k", 1, (1u32..500).prop_map(Value::from)),
        maybe("stop", 2, proptest::collection::vec("[a-z]{1,8}", 1..4).prop_map(Value::from)),
        maybe("stream", 5, any::<bool>().prop_map(Value::from)),
        maybe("stream_options", 2, any::<bool>().prop_map(|on| json!({"include_usage": on}))),
        maybe("tools", 3, tools),
        maybe(
            "tool_choice",
            2,
            prop_oneof![
                Just(json!("auto")),
                Just(json!("none")),
                Just(json!("required")),
                Just(json!({"type": "function", "function": {"name": "get_weather"}})),
            ],
        ),
        maybe("parallel_tool_calls", 1, any::<bool>().prop_map(Value::from)),
        maybe(
            "reasoning_effort",
            3,
            proptest::sample::select(&["none", "minimal", "low", "medium", "high", "xhigh", "max"][..])
                .prop_map(Value::from),
        ),
        maybe(
            "response_format",
            2,
            prop_oneof![
                Just(json!({"type": "text"})),
                Just(json!({"type": "json_object"})),
                schema().prop_map(
                    |schema| json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
                ),
            ],
        ),
        maybe("user", 1, "[a-z0-9-]{1,20}".prop_map(Value::from)),
        maybe("n", 1, Just(json!(1))),
        maybe("seed", 1, any::<u32>().prop_map(Value::from)),
        maybe("metadata", 1, Just(json!({"run": "1"}))),
        maybe("anthropic_beta", 1, Just(json!(["interleaved-thinking-2025-05-14"]))),
    ];
    (chat_messages(), optional(fields), mutation()).prop_map(|(messages, fields, change)| {
        let mut request = json!({"model": "claude", "messages": messages});
        request.as_object_mut().unwrap().extend(fields);
        mutate(&mut request, change);
        request
    })
}

fn family() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(catalog().families())
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn chat_requests_convert_or_are_refused_with_a_4xx(request in chat_request(), family in family()) {
        let body = serde_json::to_vec(&request).unwrap();
        let rules = &catalog().by_family(family).unwrap().rules;
        let (outcome, peak) = peak_of(|| {
            let parsed = parse_request(&body)?;
            let items = parsed.parsed_items;
            let prepared = to_anthropic(&parsed, Target { name: family, rules })?;
            let sent = serde_json::to_vec(&prepared.body).expect("a converted body serialises");
            Ok::<_, ApiError>((items, sent.len()))
        });
        match outcome {
            Err(error) => client_error(&error)?,
            Ok((items, sent)) => {
                prop_assert!(sent > 0);
                // What the gateway charges for a request held in memory covers it.
                let charge = body.len() + items * PARSED_ITEM_BYTES + 64 * KIB;
                prop_assert!(peak <= charge, "{peak} bytes held, {charge} charged ({items} items)");
            }
        }
    }

    #[test]
    fn chat_arbitrary_bytes_are_refused_with_a_4xx(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (outcome, peak) = peak_of(|| parse_request(&body).map(|r| r.parsed_items));
        if let Err(error) = outcome {
            client_error(&error)?;
        }
        prop_assert!(peak <= 4 * body.len() + 64 * KIB, "{peak} bytes for {}", body.len());
    }
}

// --- the Messages request ------------------------------------------------------------------------

fn messages_user_content() -> impl Strategy<Value = Value> {
    let block = prop_oneof![
        3 => words().prop_map(|text| json!({"type": "text", "text": text})),
        1 => Just(json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})),
        1 => words().prop_map(|text| json!({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}})),
    ];
    prop_oneof![2 => words().prop_map(Value::String), 1 => proptest::collection::vec(block, 1..4).prop_map(Value::Array)]
}

/// User and assistant in turn, starting and ending with the user; an assistant turn may think and
/// use tools, answered in the next user turn.
fn messages_turns() -> impl Strategy<Value = Value> {
    let turn = (messages_user_content(), words(), proptest::collection::vec(tool_name(), 0..3), any::<bool>());
    proptest::collection::vec(turn, 1..4).prop_map(|turns| {
        let mut messages = Vec::new();
        let mut results: Vec<Value> = Vec::new();
        let last = turns.len() - 1;
        for (index, (user, answer, calls, thinks)) in turns.into_iter().enumerate() {
            let content = if results.is_empty() {
                user
            } else {
                let mut blocks = std::mem::take(&mut results);
                blocks.push(json!({"type": "text", "text": "Go on."}));
                Value::Array(blocks)
            };
            messages.push(json!({"role": "user", "content": content}));
            if index == last {
                break;
            }
            let mut blocks = Vec::new();
            if thinks {
                blocks.push(json!({"type": "thinking", "thinking": "Let me see.", "signature": "c2lnbmF0dXJl"}));
            }
            blocks.push(json!({"type": "text", "text": answer}));
            for (i, name) in calls.iter().enumerate() {
                let id = format!("toolu_{index}_{i}");
                blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": {"city": "Paris"}}));
                results.push(json!({"type": "tool_result", "tool_use_id": id, "content": "Sunny."}));
            }
            messages.push(json!({"role": "assistant", "content": blocks}));
        }
        Value::Array(messages)
    })
}

fn messages_request() -> impl Strategy<Value = Value> {
    let tools = proptest::collection::vec((tool_name(), words(), schema()), 1..3).prop_map(|tools| {
        Value::Array(
            tools
                .into_iter()
                .map(|(name, description, schema)| json!({"name": name, "description": description, "input_schema": schema}))
                .collect(),
        )
    });
    let fields = vec![
        maybe(
            "system",
            3,
            prop_oneof![words().prop_map(Value::String), words().prop_map(|t| json!([{"type": "text", "text": t}]))],
        ),
        maybe("tools", 3, tools),
        maybe(
            "tool_choice",
            2,
            prop_oneof![
                Just(json!({"type": "auto"})),
                Just(json!({"type": "any"})),
                Just(json!({"type": "none"})),
                Just(json!({"type": "tool", "name": "get_weather"})),
            ],
        ),
        maybe("stream", 5, any::<bool>().prop_map(Value::from)),
        maybe("temperature", 3, (0.0f64..1.0).prop_map(Value::from)),
        maybe("top_p", 2, (0.0f64..1.0).prop_map(Value::from)),
        maybe("top_k", 1, (1u32..500).prop_map(Value::from)),
        maybe("stop_sequences", 2, proptest::collection::vec("[a-z]{1,8}", 1..4).prop_map(Value::from)),
        maybe("metadata", 1, "[a-z0-9-]{1,20}".prop_map(|id| json!({"user_id": id}))),
        maybe(
            "thinking",
            3,
            prop_oneof![
                (1024u32..4096).prop_map(|budget| json!({"type": "enabled", "budget_tokens": budget})),
                Just(json!({"type": "disabled"})),
                Just(json!({"type": "adaptive"})),
            ],
        ),
        maybe(
            "output_config",
            2,
            prop_oneof![
                proptest::sample::select(&["low", "medium", "high", "max"][..]).prop_map(|e| json!({"effort": e})),
                schema().prop_map(|schema| json!({"format": {"type": "json_schema", "schema": schema}})),
            ],
        ),
        maybe("service_tier", 1, Just(json!("auto"))),
        maybe("container", 1, Just(json!("container_1"))),
    ];
    ((1u32..16_000).prop_map(Value::from), messages_turns(), optional(fields), mutation()).prop_map(
        |(max_tokens, messages, fields, change)| {
            let mut request = json!({"model": "claude", "max_tokens": max_tokens, "messages": messages});
            request.as_object_mut().unwrap().extend(fields);
            mutate(&mut request, change);
            request
        },
    )
}

fn betas() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(
        proptest::sample::select(
            &["context-1m-2025-08-07", "interleaved-thinking-2025-05-14", "token-efficient-tools-2025-02-19", "x"][..],
        ),
        0..3,
    )
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn messages_requests_convert_or_are_refused_with_a_4xx(
        request in messages_request(),
        family in family(),
        betas in betas(),
    ) {
        let body = serde_json::to_vec(&request).unwrap();
        let rules = &catalog().by_family(family).unwrap().rules;
        let (outcome, peak) = peak_of(|| {
            let parsed = messages::parse(&body)?;
            messages::to_bedrock_body(&parsed, family, rules, &betas)
        });
        match outcome {
            Err(error) => client_error(&error)?,
            Ok(sent) => {
                let max_tokens = sent.max_tokens;
                let sent: Value = serde_json::from_slice(&sent.bytes).expect("the Bedrock body is JSON");
                prop_assert!(sent.get("anthropic_version").is_some(), "{sent}");
                prop_assert_eq!(max_tokens, sent["max_tokens"].as_u64(), "{}", sent);
                prop_assert!(sent.get("model").is_none() && sent.get("stream").is_none(), "{sent}");
            }
        }
        prop_assert!(peak <= 3 * body.len() + 64 * KIB, "{peak} bytes for {}", body.len());
    }

    #[test]
    fn messages_arbitrary_bytes_are_refused_with_a_4xx(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (outcome, peak) = peak_of(|| messages::parse(&body).map(|r| r.model.len()));
        if let Err(error) = outcome {
            client_error(&error)?;
        }
        prop_assert!(peak <= 4 * body.len() + 64 * KIB, "{peak} bytes for {}", body.len());
    }
}

// --- the bounded readers -------------------------------------------------------------------------

type Nested = Bounded<Bounded<u8, 1000>, 1000>;

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn bounded_lists_hold_exactly_up_to_their_cap(items in proptest::collection::vec(any::<u8>(), 0..40)) {
        let body = serde_json::to_string(&items).unwrap();
        let parsed = serde_json::from_str::<Bounded<u8, 20>>(&body);
        if items.len() <= 20 {
            prop_assert_eq!(parsed.unwrap().0, items);
        } else {
            let error = parsed.unwrap_err().to_string();
            prop_assert!(error.contains("at most 20"), "{error}");
        }
    }

    #[test]
    fn non_empty_and_object_checks_agree_with_a_parsed_value(value in any_json()) {
        let text = value.to_string();
        let expected = match &value {
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => false,
        };
        prop_assert_eq!(serde_json::from_str::<NonEmpty>(&text).unwrap().0, expected);
        prop_assert_eq!(is_json_object(&text), value.is_object());
    }

    #[test]
    fn the_object_check_never_panics_and_accepts_only_objects(text in prop_oneof![
        ".{0,64}",
        any_json().prop_map(|v| v.to_string()),
        (any_json(), "[ \\]\\}\\{,:x\"]{0,3}").prop_map(|(v, junk)| format!("{v}{junk}")),
    ]) {
        if is_json_object(&text) {
            prop_assert!(text.trim_start().starts_with('{'), "{text}");
            prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(), "{text}");
        }
    }
}

proptest! {
    // Bodies up to ~600 KiB: fewer cases.
    #![proptest_config(cases(48))]

    #[test]
    fn the_request_wide_item_budget_is_exact(rows in 1usize..=400, per_row in 0usize..=400) {
        let row = format!("[{}]", vec!["0"; per_row].join(","));
        let body = format!("[{}]", vec![row.as_str(); rows].join(","));
        let (parsed, counted) = with_item_count(|| serde_json::from_str::<Nested>(&body));
        // Every row is an item, and every element in it.
        let items = rows + rows * per_row;
        if items <= MAX_ITEMS {
            let parsed = parsed.unwrap();
            prop_assert_eq!(parsed.len(), rows);
            prop_assert_eq!(counted, items);
        } else {
            let error = parsed.unwrap_err().to_string();
            prop_assert!(error.contains(&format!("at most {MAX_ITEMS}")), "{error}");
            prop_assert_eq!(counted, MAX_ITEMS);
        }
    }
}

// --- the config reader ---------------------------------------------------------------------------

/// A configuration built valid (dev mode, or an https issuer; callers, teams with agents, models,
/// endpoints, limits in range), then changed at one place like the requests above.
fn config_value() -> impl Strategy<Value = Value> {
    let hash = "[0-9a-f]{64}";
    let caller = (hash, any::<bool>(), proptest::option::of(Just(json!(["user", "service_account"])))).prop_map(
        |(hash, mint, actors)| {
            let mut caller = json!({"name": "worker", "key_sha256": hash, "team": "acme", "mint_tokens": mint});
            if let Some(actors) = actors {
                caller["actors"] = actors;
            }
            caller
        },
    );
    let team = (any::<bool>(), any::<bool>()).prop_map(|(tags, agent)| {
        let mut team = json!({"uid": "acme", "role_arn": "arn:aws:iam::111111111111:role/byollm-acme",
                              "region": "us-east-1", "session_tags": tags});
        if agent {
            team["agents"] =
                json!([{"name": "reviewer", "role_arn": "arn:aws:iam::111111111111:role/byollm-acme-reviewer"}]);
        }
        team
    });
    let fields = vec![
        maybe(
            "server",
            4,
            ((1024u64..(64 << 20)), (1u64..600), any::<bool>()).prop_map(|(body, timeout, public)| {
                let mut server =
                    json!({"listen": "127.0.0.1:8080", "max_body_bytes": body, "request_timeout_secs": timeout});
                if public {
                    server["public_listen"] = json!("0.0.0.0:8443");
                }
                server
            }),
        ),
        maybe(
            "keys",
            3,
            (proptest::sample::select(&[2048u32, 3072, 4096][..]), 1u64..3600).prop_map(
                |(bits, reload)| json!({"dir": "/nonexistent/jwks", "rsa_bits": bits, "reload_interval_secs": reload}),
            ),
        ),
        maybe(
            "callers",
            5,
            proptest::collection::vec(caller, 1..3).prop_map(|callers| {
                let named = callers.into_iter().enumerate().map(|(i, mut caller)| {
                    caller["name"] = json!(format!("worker-{i}"));
                    caller
                });
                Value::Array(named.collect())
            }),
        ),
        maybe("teams", 5, proptest::collection::vec(team, 1..2).prop_map(Value::from)),
        maybe("sts", 2, Just(json!({"endpoint_url": "http://127.0.0.1:9"}))),
        maybe("bedrock", 2, Just(json!({"endpoint_url": "http://127.0.0.1:9"}))),
        maybe(
            "models",
            3,
            prop_oneof![
                Just(json!({"haiku": {"id": "global.anthropic.claude-haiku-4-5-20251001-v1:0"}})),
                Just(
                    json!({"opus": {"id": "global.anthropic.claude-opus-4-7"}, "custom": {"id": "us.anthropic.claude-x-v1:0", "family": "claude-haiku-4-5"}})
                ),
            ],
        ),
        maybe("local", 1, (10u64..3600).prop_map(|secs| json!({"profile": "dev", "refresh_interval_secs": secs}))),
        maybe("telemetry", 1, Just(json!({"service_name": "byollm", "export_timeout_secs": 10}))),
        maybe("routing", 1, Just(json!({"skip_after_failures": 3}))),
    ];
    (any::<bool>(), optional(fields), mutation()).prop_map(|(dev, fields, change)| {
        let mut config = if dev {
            json!({"dev": true})
        } else {
            json!({"issuer": {"url": "https://issuer.example.com", "audience": "sts.amazonaws.com"}})
        };
        config.as_object_mut().unwrap().extend(fields);
        mutate(&mut config, change);
        config
    })
}

/// `value` as TOML text: nulls (which TOML lacks) left out, a non-table root put under a key.
fn to_toml(value: Value) -> String {
    fn strip(value: Value) -> Option<Value> {
        match value {
            Value::Null => None,
            Value::Array(items) => Some(Value::Array(items.into_iter().filter_map(strip).collect())),
            Value::Object(map) => {
                Some(Value::Object(map.into_iter().filter_map(|(k, v)| Some((k, strip(v)?))).collect()))
            }
            other => Some(other),
        }
    }
    let root = match strip(value) {
        Some(Value::Object(map)) => Value::Object(map),
        other => json!({ "dev": other.unwrap_or(json!(true)) }),
    };
    let table = toml::Table::try_from(root).expect("JSON without nulls is TOML");
    toml::to_string(&table).expect("a table serialises")
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    if let Err(error) = Config::from_toml(text) {
        prop_assert!(!error.errors.is_empty(), "an error without a problem");
        for problem in &error.errors {
            prop_assert!(!problem.path.is_empty(), "no path: {}", problem.message);
            prop_assert!(!problem.message.is_empty(), "no message at {}", problem.path);
        }
        prop_assert!(error.to_string().starts_with("invalid configuration"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn config_never_panics_and_every_error_has_a_path(config in config_value()) {
        check_config(&to_toml(config))?;
    }

    #[test]
    fn config_arbitrary_text_never_panics(text in prop_oneof![
        ".{0,200}",
        "(\\[[a-z]{1,8}\\]\n)?([a-z_]{1,12} = (\"[^\"\n]{0,12}\"|[0-9]{1,6}|true|\\[\\]|\\{\\})\n){0,6}",
    ]) {
        check_config(&text)?;
    }
}

#[test]
fn the_counting_allocator_is_installed() {
    // Otherwise every memory bound above would hold for nothing.
    let (_, peak) = peak_of(|| vec![0u8; 1 << 20]);
    assert!(peak >= 1 << 20, "peak {peak}");
}

/// Where the generated requests and configurations end: the generators must reach the conversion
/// and its model rules (not stop at the parser), and still produce refusals.
#[test]
fn the_generators_reach_success_and_refusal_alike() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut draw = |strategy: &dyn Fn() -> BoxedStrategy<(Value, &'static str)>| {
        strategy().new_tree(&mut runner).expect("a value").current()
    };
    let (mut chat, mut anthropic, mut config) = ([0usize; 2], [0usize; 2], [0usize; 2]);
    for _ in 0..300 {
        let (request, model) = draw(&|| (chat_request(), family()).boxed());
        let rules = &catalog().by_family(model).unwrap().rules;
        let body = serde_json::to_vec(&request).unwrap();
        let converted = parse_request(&body).and_then(|r| to_anthropic(&r, Target { name: model, rules }).map(|_| ()));
        chat[usize::from(converted.is_ok())] += 1;

        let (request, model) = draw(&|| (messages_request(), family()).boxed());
        let rules = &catalog().by_family(model).unwrap().rules;
        let body = serde_json::to_vec(&request).unwrap();
        let converted = messages::parse(&body).and_then(|r| messages::to_bedrock_body(&r, model, rules, &[]));
        anthropic[usize::from(converted.is_ok())] += 1;

        let (value, _) = draw(&|| config_value().prop_map(|v| (v, "")).boxed());
        config[usize::from(Config::from_toml(&to_toml(value)).is_ok())] += 1;
    }
    eprintln!("refused/converted: chat {chat:?}, messages {anthropic:?}, config {config:?}");
    for (what, [refused, converted]) in [("chat", chat), ("messages", anthropic), ("config", config)] {
        assert!(converted >= 60 && refused >= 30, "{what}: {converted} converted, {refused} refused of 300");
    }
}
