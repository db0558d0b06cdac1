//! Anthropic Messages wire types as Bedrock's `InvokeModel` / `InvokeModelWithResponseStream` take
//! and return them (`anthropic_version: "bedrock-2023-05-31"`).
//!
//! Serde only, no behaviour, apart from [`StreamEvent::parse`] (serde, with a fast path for the
//! one event a stream is mostly made of). The request body has no `model` and no `stream` field:
//! Bedrock puts the model in the URL, picks streaming by operation, and rejects both keys. The
//! request borrows from the OpenAI request it was built from, so large strings (base64 images) are
//! never copied. Response and stream types ignore fields they do not know (Bedrock adds
//! `amazon-bedrock-invocationMetrics` to the last stream event; Anthropic adds fields over time).

use std::borrow::Cow;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::models::{Effort, ThinkingOut};
use crate::wire::openai::CacheControl;

/// The only `anthropic_version` Bedrock accepts in the body.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// The body of `InvokeModel` / `InvokeModelWithResponseStream`.
#[derive(Debug, Clone, Serialize)]
pub struct AnthropicRequest<'a> {
    pub anthropic_version: &'static str,
    pub max_tokens: u32,
    pub messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<TextBlock<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata<'a>>,
    /// Beta features, in the body as Bedrock takes them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anthropic_beta: Vec<Cow<'a, str>>,
}

/// `output_config`: effort level and native structured output.
#[derive(Debug, Clone, Serialize)]
pub struct OutputConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effort: Option<Effort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat<'a>>,
}

/// `output_config.format`: the answer is JSON matching `schema` (raw JSON text, as the client sent it).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "json_schema")]
pub struct OutputFormat<'a> {
    pub schema: Cow<'a, RawValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// A mid-conversation system turn, on models that accept one.
    System,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message<'a> {
    pub role: Role,
    pub content: Vec<ContentBlock<'a>>,
}

/// A `text` block, as used in `system` and in `tool_result` content.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "text")]
pub struct TextBlock<'a> {
    pub text: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<&'a CacheControl>,
}

/// Request content blocks. Thinking blocks carry no `cache_control`: Anthropic refuses it there.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock<'a> {
    Text {
        text: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a CacheControl>,
    },
    Image {
        source: ImageSource<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a CacheControl>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        /// The call's arguments: a JSON object, as raw text.
        input: Cow<'a, RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a CacheControl>,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        /// Omitted when the tool returned nothing (an empty result is allowed, an empty text block is not).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        content: Vec<TextBlock<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a CacheControl>,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

/// Only base64 sources are produced (no URL sources: Bedrock does not fetch).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "base64")]
pub struct ImageSource<'a> {
    pub media_type: &'static str,
    pub data: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tool<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// A JSON schema with `"type": "object"` at the top, as raw text.
    pub input_schema: Cow<'a, RawValue>,
    /// Strict tool use: the call's input matches the schema exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Fine-grained tool streaming: arguments stream as the model writes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eager_input_streaming: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<&'a CacheControl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceKind {
    Auto,
    Any,
    Tool,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolChoice<'a> {
    #[serde(rename = "type")]
    pub kind: ToolChoiceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metadata<'a> {
    pub user_id: &'a str,
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A non-streaming `message`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AnthropicResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub content: Vec<ResponseBlock>,
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

/// Content blocks in responses; kinds we do not convert (server tools, ...) are kept as `Other`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    #[serde(other)]
    Other,
}

/// Token counts; `message_delta` repeats some of them cumulatively, so all are optional there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    /// Thinking tokens within `output_tokens` (reported with the thinking-token-count beta).
    pub output_tokens_details: Option<OutputTokensDetails>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct OutputTokensDetails {
    pub thinking_tokens: Option<u64>,
}

/// One streaming event: the decoded bytes of one Bedrock `chunk`. Borrows text from those bytes.
/// Read it with [`StreamEvent::parse`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent<'a> {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: ResponseBlock,
    },
    ContentBlockDelta {
        index: u32,
        #[serde(borrow)]
        delta: BlockDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Usage,
    },
    MessageStop {},
    Ping {},
    Error {
        error: StreamError,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StartMessage {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta<'a> {
    TextDelta {
        #[serde(borrow)]
        text: Cow<'a, str>,
    },
    InputJsonDelta {
        #[serde(borrow)]
        partial_json: Cow<'a, str>,
    },
    ThinkingDelta {
        #[serde(borrow)]
        thinking: Cow<'a, str>,
    },
    SignatureDelta {
        #[serde(borrow)]
        signature: Cow<'a, str>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessageDeltaBody {
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StreamError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Reading stream events
// ---------------------------------------------------------------------------------------------

impl<'a> StreamEvent<'a> {
    /// Reads one event (the JSON of one Bedrock `chunk`, or of one Anthropic SSE `data` line),
    /// borrowing its strings where they have no escapes.
    ///
    /// A streamed answer is mostly `content_block_delta` events, which Bedrock and the Anthropic
    /// API write in one fixed form: `{"type":"content_block_delta","index":N,"delta":{"type":
    /// "text_delta","text":"…"}}` (or a thinking, input JSON or signature delta). Those are read
    /// by [`content_block_delta`] without the JSON parser: serde's internally tagged enums buffer
    /// every event into an owned tree before choosing the variant, about 4,800 instructions per
    /// text delta (callgrind), against about 400 here. Anything not in exactly that form
    /// (other key orders, whitespace, other events) goes through serde; the two agree on every
    /// event (tested).
    pub fn parse(json: &'a [u8]) -> Result<StreamEvent<'a>, serde_json::Error> {
        match content_block_delta(json) {
            Some(event) => Ok(event),
            None => serde_json::from_slice(json),
        }
    }
}

/// A `content_block_delta` in the exact compact form the upstreams write, or `None` for serde.
fn content_block_delta(json: &[u8]) -> Option<StreamEvent<'_>> {
    let rest = json.strip_prefix(br#"{"type":"content_block_delta","index":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    // JSON has no leading zeros; nine digits always fit a u32.
    if digits == 0 || digits > 9 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let index = rest[..digits].iter().fold(0u32, |n, digit| n * 10 + u32::from(digit - b'0'));
    let rest = rest[digits..].strip_prefix(br#","delta":{"type":""#)?;
    type Make = for<'t> fn(Cow<'t, str>) -> BlockDelta<'t>;
    let kinds: [(&[u8], Make); 4] = [
        (br#"text_delta","text":""#, |text| BlockDelta::TextDelta { text }),
        (br#"thinking_delta","thinking":""#, |thinking| BlockDelta::ThinkingDelta { thinking }),
        (br#"input_json_delta","partial_json":""#, |partial_json| BlockDelta::InputJsonDelta { partial_json }),
        (br#"signature_delta","signature":""#, |signature| BlockDelta::SignatureDelta { signature }),
    ];
    let (rest, make) = kinds.iter().find_map(|(prefix, make)| rest.strip_prefix(*prefix).map(|rest| (rest, *make)))?;
    // `rest` starts just after the string's opening quote.
    let plain = rest.iter().position(|b| matches!(b, b'"' | b'\\' | 0..0x20))?;
    let (text, tail) = if rest[plain] == b'"' {
        (Cow::Borrowed(std::str::from_utf8(&rest[..plain]).ok()?), &rest[plain + 1..])
    } else if rest[plain] == b'\\' {
        // Escapes: find the closing quote, then let serde unescape the string (and check it).
        let mut at = plain;
        loop {
            match *rest.get(at)? {
                b'"' => break,
                b'\\' => at += 2,
                _ => at += 1,
            }
        }
        let quoted = &json[json.len() - rest.len() - 1..json.len() - rest.len() + at + 1];
        (Cow::Owned(serde_json::from_slice::<String>(quoted).ok()?), &rest[at + 1..])
    } else {
        return None;
    };
    (tail == b"}}").then(|| StreamEvent::ContentBlockDelta { index, delta: make(text) })
}

/// Anthropic's error type for an error of byollm's own, by its status (as Anthropic's API uses
/// them: <https://docs.anthropic.com/en/api/errors>).
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// `{"type":"error","error":{"type","message"}}`.
pub fn error_body(error: &ApiError) -> String {
    serde_json::json!({"type": "error", "error": {"type": error_type(error.status), "message": error.message}})
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `content_block_delta` events as the upstreams write them, with every kind of string.
    fn wire_deltas() -> Vec<String> {
        let mut events = Vec::new();
        for (kind, field) in [
            ("text_delta", "text"),
            ("thinking_delta", "thinking"),
            ("input_json_delta", "partial_json"),
            ("signature_delta", "signature"),
        ] {
            for value in [
                r#""""#,
                r#""Hello""#,
                r#"" world, é ✓ 🦀""#,
                r#""a \"quoted\"\nline\t\\ end""#,
                r#""\u00e9\ud83e\udd80\/""#,
                r#""{\"city\": \"Pa""#,
                r#""ends with a backslash \\""#,
            ] {
                for index in ["0", "7", "123456789"] {
                    events.push(format!(
                        r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"{kind}","{field}":{value}}}}}"#
                    ));
                }
            }
        }
        events
    }

    #[test]
    fn content_block_deltas_in_wire_form_skip_the_json_parser() {
        for event in wire_deltas() {
            let fast = content_block_delta(event.as_bytes()).unwrap_or_else(|| panic!("not taken: {event}"));
            let derived: StreamEvent<'_> = serde_json::from_str(&event).unwrap();
            assert_eq!(fast, derived, "{event}");
        }
        let plain = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#;
        assert!(matches!(
            content_block_delta(plain),
            Some(StreamEvent::ContentBlockDelta {
                index: 0,
                delta: BlockDelta::TextDelta { text: Cow::Borrowed("Hello") }
            })
        ));
    }

    #[test]
    fn stream_events_parse_as_the_derived_enum_would() {
        let mut texts = wire_deltas();
        let values = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "content": [], "model": "claude", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t",
                "name": "get", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "sorted keys"}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "citations_delta", "citation": {}}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 5}}),
            json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 1}}),
            json!({"type": "ping"}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            json!({"type": "future_event"}),
            json!({"type": "content_block_delta", "index": 0}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}),
        ];
        texts.extend(values.iter().map(|value| value.to_string()));
        // Near misses of the wire form: serde decides, and both must agree.
        let delta =
            |index: &str, body: &str| format!(r#"{{"type":"content_block_delta","index":{index},"delta":{body}}}"#);
        texts.extend([
            delta("0", r#"{"type":"text_delta","text":"a"} "#),
            delta("0", r#"{"type":"text_delta","text":"a","extra":1}"#),
            delta("0", r#"{"type":"text_delta","text":"a"}}"#),
            delta("0", r#"{"type":"text_delta","text":"a"#),
            delta("0", r#"{"type":"text_delta","text":"a\"#),
            delta("0", r#"{"type":"text_delta","text":"a\q"}"#),
            delta("0", r#"{"type":"text_delta","text":"a\u12"}"#),
            delta("0", "{\"type\":\"text_delta\",\"text\":\"raw\ncontrol\"}"),
            delta("0", "{\"type\":\"text_delta\",\"text\":\"escaped \\n then raw\tcontrol\"}"),
            delta("0", r#"{"type":"text_delta","text":5}"#),
            delta("0", r#"{"type":"text_delta","text":null}"#),
            delta("0", r#"{"type":"other_delta","text":"a"}"#),
            delta("00", r#"{"type":"text_delta","text":"a"}"#),
            delta("01", r#"{"type":"text_delta","text":"a"}"#),
            delta("-1", r#"{"type":"text_delta","text":"a"}"#),
            delta("1.5", r#"{"type":"text_delta","text":"a"}"#),
            delta("4294967295", r#"{"type":"text_delta","text":"a"}"#),
            delta("4294967296", r#"{"type":"text_delta","text":"a"}"#),
            delta("1234567890", r#"{"type":"text_delta","text":"a"}"#),
            delta("", r#"{"type":"text_delta","text":"a"}"#),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},"index":1}"#.to_owned(),
            r#"{"type":"content_block_delta", "index":0,"delta":{"type":"text_delta","text":"a"}}"#.to_owned(),
            r#"{"type":"content_block_delta","index":0,"delta":{"text":"a","type":"text_delta"}}"#.to_owned(),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}"#.to_owned(),
            String::new(),
        ]);
        let mut checked = 0;
        for text in &texts {
            let ours = StreamEvent::parse(text.as_bytes());
            let derived = serde_json::from_str::<StreamEvent<'_>>(text);
            match (&ours, &derived) {
                (Ok(ours), Ok(derived)) => assert_eq!(ours, derived, "{text}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{text}: parse gave {ours:?}, serde {derived:?}"),
            }
            checked += 1;
        }
        // Invalid UTF-8 inside the text.
        let mut bytes = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"#.to_vec();
        bytes.extend_from_slice(&[0xff, b'"', b'}', b'}']);
        assert!(StreamEvent::parse(&bytes).is_err());
        assert!(serde_json::from_slice::<StreamEvent<'_>>(&bytes).is_err());
        assert!(checked > 100);
    }
}
