//! Bedrock-native passthrough: what byollm needs to relay Bedrock Runtime's own operations
//! (`InvokeModel`, `InvokeModelWithResponseStream`, `CountTokens`, `Converse`, `ConverseStream`)
//! for clients that speak Bedrock (Claude Code in Bedrock mode, `AnthropicBedrock`, the AWS SDKs).
//!
//! Owns: the operations and the IAM action each needs ([`Operation`]), which request headers are
//! forwarded and which answer headers are relayed, the body check (a JSON object, read without
//! building it), the usage read
//! from relayed answers without changing them ([`UsageMeter`]), and `ListInferenceProfiles`
//! answered from the configuration ([`inference_profiles`]). HTTP handlers are in [`routes`].
//!
//! Must never: alter a relayed body (bytes in, re-signed, bytes out), log bodies or usage text,
//! or pick credentials. Depends on `config`, `error`, `models` and `upstream::eventstream`.

use base64::Engine;
use http::{HeaderMap, HeaderName, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::ApiError;
use crate::wire::eventstream::FrameDecoder;
pub use crate::wire::usage::Usage;

/// A Bedrock Runtime model operation, by its URL path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Invoke,
    InvokeStream,
    CountTokens,
    Converse,
    ConverseStream,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Operation::Invoke,
        Operation::InvokeStream,
        Operation::CountTokens,
        Operation::Converse,
        Operation::ConverseStream,
    ];

    /// `invoke`, `invoke-with-response-stream`, `count-tokens`, `converse`, `converse-stream`.
    pub fn path_segment(self) -> &'static str {
        match self {
            Operation::Invoke => "invoke",
            Operation::InvokeStream => "invoke-with-response-stream",
            Operation::CountTokens => "count-tokens",
            Operation::Converse => "converse",
            Operation::ConverseStream => "converse-stream",
        }
    }

    pub fn parse(segment: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.path_segment() == segment)
    }

    /// The IAM action the call needs (what an `AccessDeniedException` means).
    pub fn iam_action(self) -> &'static str {
        match self {
            Operation::Invoke | Operation::Converse => "bedrock:InvokeModel",
            Operation::InvokeStream | Operation::ConverseStream => "bedrock:InvokeModelWithResponseStream",
            Operation::CountTokens => "bedrock:CountTokens",
        }
    }

    /// The answer is an `application/vnd.amazon.eventstream`.
    pub fn streams(self) -> bool {
        matches!(self, Operation::InvokeStream | Operation::ConverseStream)
    }
}

/// Request headers forwarded to Bedrock (and signed): the body's type, what the client accepts,
/// and Bedrock's own `x-amzn-bedrock-*` options (trace, guardrails, performance config, ...).
/// Everything else (the client's `Authorization`, `x-byollm-*`, `anthropic-*`, cookies) stays here.
pub fn forwarded_headers(client: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(4);
    for (name, value) in client {
        let keep =
            name == header::CONTENT_TYPE || name == header::ACCEPT || name.as_str().starts_with("x-amzn-bedrock-");
        if keep {
            out.append(name.clone(), value.clone());
        }
    }
    if !out.contains_key(header::CONTENT_TYPE) {
        out.insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    }
    out
}

/// Whether an answer header from Bedrock reaches the client: its content type, `x-amzn-*` (request
/// id, error type, token counts, latency) and `retry-after`. Connection-level headers are hyper's.
pub fn is_relayed_header(name: &HeaderName) -> bool {
    name == header::CONTENT_TYPE || name == header::RETRY_AFTER || name.as_str().starts_with("x-amzn-")
}

/// The body byollm forwards must be one JSON object; checked without building it.
pub fn check_body(body: &[u8]) -> Result<(), ApiError> {
    let is_object = std::str::from_utf8(body).is_ok_and(crate::wire::bounded::is_json_object);
    if is_object {
        Ok(())
    } else {
        Err(ApiError::invalid_request("", "invalid_json", "the request body must be one JSON object"))
    }
}

/// The Bedrock exception an error of byollm's own is reported as (`x-amzn-ErrorType`), chosen by
/// status so the AWS SDKs raise the exception a client already handles.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UnrecognizedClientException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 | 504 => "ModelTimeoutException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        400..=499 => "ValidationException",
        _ => "InternalServerException",
    }
}

/// The JSON body of a Bedrock error: `{"message": ...}`.
pub fn error_body(error: &ApiError) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        message: &'a str,
    }
    serde_json::to_string(&Body { message: &error.message }).unwrap_or_else(|_| "{}".to_owned())
}

/// Largest non-streamed `Converse` answer kept aside to read its `usage`; larger ones are relayed
/// without being counted.
const MAX_METERED_JSON: usize = 1 << 20;

/// Reads usage from an answer as it is relayed: from `InvokeModel`'s token-count headers,
/// `Converse`'s `usage`, the `chunk` events of `InvokeModelWithResponseStream` (Anthropic's
/// `message_start` / `message_delta` usage and Bedrock's `amazon-bedrock-invocationMetrics`) and
/// `ConverseStream`'s `metadata` event. It sees copies of the bytes; the relayed bytes are not
/// touched. A frame it cannot read is skipped: metering never fails a relay. It also notes whether
/// a stream reached its end: `message_stop`, `messageStop` or an exception frame.
pub struct UsageMeter {
    usage: Usage,
    decoder: Option<FrameDecoder>,
    json: Option<Vec<u8>>,
    ended: bool,
}

impl UsageMeter {
    /// For an answer of `operation` with these headers (status 2xx).
    pub fn new(operation: Operation, headers: &HeaderMap) -> UsageMeter {
        let count =
            |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        let usage = Usage {
            input_tokens: count("x-amzn-bedrock-input-token-count"),
            output_tokens: count("x-amzn-bedrock-output-token-count"),
            cache_read_input_tokens: count("x-amzn-bedrock-cache-read-input-token-count"),
            cache_creation_input_tokens: count("x-amzn-bedrock-cache-write-input-token-count"),
            reasoning_tokens: None,
        };
        UsageMeter {
            usage,
            decoder: operation.streams().then(FrameDecoder::new),
            json: (operation == Operation::Converse).then(Vec::new),
            ended: false,
        }
    }

    /// For a stream: whether its last event (`message_stop`, `messageStop`, or an exception frame,
    /// which carries its own error) went by. `None` when not a stream, or when an unreadable frame
    /// stopped the reading (then nothing is known).
    pub fn complete(&self) -> Option<bool> {
        self.decoder.as_ref().map(|_| self.ended)
    }

    /// A piece of the relayed body.
    pub fn observe(&mut self, bytes: &[u8]) {
        if let Some(json) = &mut self.json {
            if json.len() + bytes.len() <= MAX_METERED_JSON {
                json.extend_from_slice(bytes);
            } else {
                self.json = None;
            }
            return;
        }
        let Some(decoder) = &mut self.decoder else { return };
        decoder.push(bytes);
        loop {
            let found = match decoder.next_frame() {
                Ok(Some(frame)) => match (frame.message_type(), frame.event_type()) {
                    (Some("event"), Some("chunk")) => chunk_event(frame.payload()).and_then(|event| {
                        self.ended |= is_message_stop(&event);
                        event_usage(&event)
                    }),
                    (Some("event"), Some("metadata")) => converse_usage(frame.payload()),
                    (Some("event"), Some("messageStop")) | (Some("exception" | "error"), _) => {
                        self.ended = true;
                        None
                    }
                    _ => None,
                },
                Ok(None) => break,
                Err(_) => {
                    self.decoder = None;
                    break;
                }
            };
            if let Some(found) = found {
                self.usage.merge(found);
            }
        }
    }

    /// The usage seen, once the body ended (or the client left).
    pub fn finish(mut self) -> Usage {
        if let Some(json) = self.json.take()
            && let Some(found) = converse_usage(&json)
        {
            self.usage.merge(found);
        }
        self.usage
    }
}

/// `{"usage": {"inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"}}`:
/// a `Converse` answer or a `ConverseStream` `metadata` event.
fn converse_usage(json: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Counts {
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
        cache_read_input_tokens: Option<u64>,
        cache_write_input_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Envelope {
        usage: Option<Counts>,
    }
    let counts = serde_json::from_slice::<Envelope>(json).ok()?.usage?;
    Some(Usage {
        input_tokens: counts.input_tokens,
        output_tokens: counts.output_tokens,
        cache_read_input_tokens: counts.cache_read_input_tokens,
        cache_creation_input_tokens: counts.cache_write_input_tokens,
        reasoning_tokens: None,
    })
}

/// The payload of a `chunk` event: `{"bytes": "<base64 of one Anthropic event>", "p": "..."}`.
#[derive(Deserialize)]
struct PayloadPart<'a> {
    #[serde(borrow)]
    bytes: Option<std::borrow::Cow<'a, str>>,
}

/// The `bytes` of a chunk payload in the exact shape Bedrock sends, `{"bytes":"<base64>"}` or
/// `{"bytes":"<base64>","p":"<padding>"}` with no escapes, read without a JSON parser; anything
/// else is `None` and goes through serde. Not checked as UTF-8: the base64 decoder refuses
/// anything but its alphabet (the check cost about 1,300 instructions per event).
fn chunk_bytes(payload: &[u8]) -> Option<&[u8]> {
    let rest = payload.strip_prefix(br#"{"bytes":""#)?;
    // memchr: a byte-at-a-time search cost about 1,200 instructions per event (callgrind).
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    let (encoded, rest) = rest.split_at(end);
    let tail = rest.strip_prefix(b"\"")?;
    let plain = |text: &[u8]| !text.iter().any(|b| *b == b'"' || *b == b'\\' || *b < 0x20);
    let well_formed =
        tail == b"}" || tail.strip_prefix(br#","p":""#).and_then(|p| p.strip_suffix(br#""}"#)).is_some_and(plain);
    if !well_formed {
        return None;
    }
    Some(encoded)
}

/// The base64 Anthropic event of one `chunk` of `InvokeModelWithResponseStream`, its payload
/// being `{"bytes": "<base64>"}`: read without a JSON parser in Bedrock's own shape, else with
/// serde. `Ok(None)`: a payload without `bytes`; `Err`: not JSON.
pub fn chunk_base64(payload: &[u8]) -> Result<Option<std::borrow::Cow<'_, [u8]>>, serde_json::Error> {
    use std::borrow::Cow;
    match chunk_bytes(payload) {
        Some(encoded) => Ok(Some(Cow::Borrowed(encoded))),
        None => serde_json::from_slice::<PayloadPart<'_>>(payload).map(|part| {
            part.bytes.map(|bytes| match bytes {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            })
        }),
    }
}

/// `{"type":"content_bloc` in base64 (21 bytes, so 28 characters that do not depend on what
/// follows): the start of every `content_block_start`, `_delta` and `_stop` event as Anthropic
/// writes them, `type` first. Those carry no usage and do not end the stream
/// (<https://docs.anthropic.com/en/api/messages-streaming>), so the meter skips them without
/// decoding; an event written another way is decoded and read.
const CONTENT_BLOCK_BASE64: &str = "eyJ0eXBlIjoiY29udGVudF9ibG9j";

/// The Anthropic event of one `chunk`, decoded, unless it is a content block's (see
/// [`CONTENT_BLOCK_BASE64`]) or unreadable.
fn chunk_event(payload: &[u8]) -> Option<Vec<u8>> {
    let encoded = chunk_base64(payload).ok()??;
    if encoded.starts_with(CONTENT_BLOCK_BASE64.as_bytes()) {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(&encoded).ok()
}

/// Whether an Anthropic stream event is `message_stop` (parsed only when the name is in it).
fn is_message_stop(event: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    memchr::memmem::find(event, b"message_stop").is_some()
        && serde_json::from_slice::<Kind<'_>>(event).is_ok_and(|event| event.kind.as_deref() == Some("message_stop"))
}

/// The usage one Anthropic stream event reports: `message_start`'s, `message_delta`'s, or
/// Bedrock's `amazon-bedrock-invocationMetrics` on `message_stop` (which wins: it is the total).
pub fn event_usage(event: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct AnthropicUsage {
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
        cache_read_input_tokens: Option<u64>,
        cache_creation_input_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Message {
        usage: Option<AnthropicUsage>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InvocationMetrics {
        input_token_count: Option<u64>,
        output_token_count: Option<u64>,
        cache_read_input_token_count: Option<u64>,
        cache_write_input_token_count: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Event {
        message: Option<Message>,
        usage: Option<AnthropicUsage>,
        #[serde(rename = "amazon-bedrock-invocationMetrics")]
        metrics: Option<InvocationMetrics>,
    }
    let event: Event = serde_json::from_slice(event).ok()?;
    if let Some(metrics) = event.metrics {
        return Some(Usage {
            input_tokens: metrics.input_token_count,
            output_tokens: metrics.output_token_count,
            cache_read_input_tokens: metrics.cache_read_input_token_count,
            cache_creation_input_tokens: metrics.cache_write_input_token_count,
            reasoning_tokens: None,
        });
    }
    let usage = event.message.and_then(|m| m.usage).or(event.usage)?;
    Some(Usage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_read_input_tokens: usage.cache_read_input_tokens,
        cache_creation_input_tokens: usage.cache_creation_input_tokens,
        reasoning_tokens: None,
    })
}

/// `type` of an inference profile (`ListInferenceProfiles`' `typeEquals`).
pub const PROFILE_TYPES: [&str; 2] = ["SYSTEM_DEFINED", "APPLICATION"];

/// One entry of `ListInferenceProfiles`, in Bedrock's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSummary {
    pub inference_profile_name: String,
    pub inference_profile_id: String,
    pub inference_profile_arn: String,
    pub description: String,
    pub models: Vec<ProfileModel>,
    pub status: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileModel {
    pub model_arn: String,
}

/// The configured models that are inference profiles (a cross-region profile id like
/// `us.anthropic.…`, or an inference-profile ARN), as `ListInferenceProfiles` would list them in
/// `region`, filtered by `kind` (`SYSTEM_DEFINED` or `APPLICATION`) when given, of the models
/// named in `allowed` (what the caller's routing policy lets it use) only. Accounts are not known
/// for system-defined profiles; their ARNs use the partition's form without one.
pub fn inference_profiles(
    config: &Config,
    region: &str,
    kind: Option<&str>,
    allowed: &[String],
) -> Vec<ProfileSummary> {
    let mut out: Vec<ProfileSummary> = Vec::new();
    for (name, model) in config.models.iter().filter(|(name, _)| allowed.contains(name)) {
        let (summary_kind, id, arn) = match model.id.strip_prefix("arn:") {
            Some(rest) => {
                let resource = rest.splitn(5, ':').nth(4).unwrap_or_default();
                match resource.split_once('/') {
                    Some(("application-inference-profile", id)) => ("APPLICATION", id.to_owned(), model.id.clone()),
                    Some(("inference-profile", id)) => ("SYSTEM_DEFINED", id.to_owned(), model.id.clone()),
                    _ => continue,
                }
            }
            None => match crate::aws::split_model_id(&model.id) {
                (Some(_), Some(_)) => (
                    "SYSTEM_DEFINED",
                    model.id.clone(),
                    format!("arn:aws:bedrock:{region}::inference-profile/{}", model.id),
                ),
                _ => continue,
            },
        };
        if kind.is_some_and(|kind| kind != summary_kind) || out.iter().any(|p| p.inference_profile_id == id) {
            continue;
        }
        let base = model.entry().map(|entry| entry.base_id.clone());
        let display = model.entry().map_or(name.as_str(), |entry| entry.display_name.as_str());
        out.push(ProfileSummary {
            inference_profile_name: display.to_owned(),
            inference_profile_id: id,
            inference_profile_arn: arn,
            description: format!("served by byollm as {name}"),
            models: base
                .map(|base| {
                    vec![ProfileModel { model_arn: format!("arn:aws:bedrock:{region}::foundation-model/{base}") }]
                })
                .unwrap_or_default(),
            status: "ACTIVE",
            kind: summary_kind,
        });
    }
    out
}

#[cfg(test)]
#[path = "bedrock_tests.rs"]
mod tests;
