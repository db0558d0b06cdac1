//! OpenAI Chat Completions wire types: what clients send and what they get back.
//!
//! Serde only, no behaviour: deciding what a field means for Bedrock is `request`'s job. Request
//! types keep every field a client may send, including the ones we refuse, so the converter can name
//! the offending `param`; an unknown field is a parse error naming it.
//!
//! Parsing is bounded (see [`crate::wire::bounded`]): lists are capped, ignored and refused fields are
//! skipped without being built (`IgnoredAny`), schemas and tool-call arguments stay raw JSON text,
//! and no internally tagged enum or `flatten` buffers input. Response types borrow where they can,
//! since chunks are serialised once per token.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{ApiError, ErrorKind};
use crate::wire::bounded::{Bounded, NonEmpty};

/// Most messages in one request.
pub const MAX_MESSAGES: usize = 10_000;
/// What one list element of a parsed chat request costs while the request is served, rounded up:
/// the parsed element, its converted Anthropic form and its share of the body sent. Measured with
/// a counting allocator (`tests/bounded_parsing.rs`): about 760 bytes per tiny message, 240 per
/// tiny content part. Charged to `server.max_body_bytes_in_flight` on top of the body's bytes.
pub const PARSED_ITEM_BYTES: usize = 1024;
/// Most content parts in one message.
pub const MAX_CONTENT_PARTS: usize = 1_000;
/// Most tools in one request.
pub const MAX_TOOLS: usize = 512;
/// Most stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 16;
/// Most tool calls, and thinking blocks, in one assistant message.
pub const MAX_TOOL_CALLS: usize = 256;
/// Longest `function.arguments` of a tool call sent back, in bytes.
pub const MAX_TOOL_ARGUMENT_BYTES: usize = 4 << 20;
/// Most `anthropic_beta` values, and output `modalities`.
pub const MAX_SHORT_LIST: usize = 32;

/// `POST /v1/chat/completions` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    /// List elements the parse built (messages, parts, tools, …); not a field of the body. What
    /// the parsed request costs held in memory grows with it ([`PARSED_ITEM_BYTES`] each).
    #[serde(skip)]
    pub parsed_items: usize,
    pub model: String,
    pub messages: Bounded<Message, MAX_MESSAGES>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Extension (not OpenAI): passed to Anthropic's `top_k`.
    pub top_k: Option<u32>,
    pub stop: Option<OneOrMany<String>>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub tools: Option<Bounded<Tool, MAX_TOOLS>>,
    pub tool_choice: Option<StringOr<ToolChoiceObject>>,
    pub parallel_tool_calls: Option<bool>,
    pub reasoning_effort: Option<String>,
    /// Extension (LiteLLM-style): Anthropic's own `thinking` object, wins over `reasoning_effort`.
    pub thinking: Option<ThinkingParam>,
    /// Extension: Anthropic's own `output_config` (`effort`, `format`).
    pub output_config: Option<OutputConfigParam>,
    /// Extension: Anthropic beta features, checked against the model's accepted betas.
    pub anthropic_beta: Option<Bounded<String, MAX_SHORT_LIST>>,
    pub response_format: Option<ResponseFormat>,
    pub user: Option<String>,
    pub safety_identifier: Option<String>,
    pub n: Option<u32>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub modalities: Option<Bounded<String, MAX_SHORT_LIST>>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// Refused when present and not `null` (the value itself is never built).
    pub audio: Option<IgnoredAny>,
    pub logit_bias: Option<NonEmpty>,
    pub prediction: Option<IgnoredAny>,
    pub web_search_options: Option<IgnoredAny>,
    pub functions: Option<IgnoredAny>,
    pub function_call: Option<IgnoredAny>,
    /// Ignored (harmless): skipped without being built.
    pub seed: Option<IgnoredAny>,
    pub metadata: Option<IgnoredAny>,
    pub store: Option<IgnoredAny>,
    pub service_tier: Option<IgnoredAny>,
    pub prompt_cache_key: Option<IgnoredAny>,
    pub prompt_cache_retention: Option<IgnoredAny>,
    pub verbosity: Option<IgnoredAny>,
}

/// Other keys are skipped (without being built), as before: SDKs add options over time.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
    pub include_obfuscation: Option<IgnoredAny>,
}

/// One entry of `messages`. Fields are a union over the roles; the converter checks which apply.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: Option<StringOr<Bounded<ContentPart, MAX_CONTENT_PARTS>>>,
    pub name: Option<IgnoredAny>,
    pub tool_calls: Option<Bounded<ToolCall, MAX_TOOL_CALLS>>,
    pub tool_call_id: Option<String>,
    pub refusal: Option<String>,
    /// Reasoning text the gateway returned earlier (replayed only together with `reasoning_signature`).
    pub reasoning_content: Option<String>,
    /// Extension: the signature of the single thinking block whose text is `reasoning_content`.
    pub reasoning_signature: Option<String>,
    /// LiteLLM's convention: the thinking blocks exactly as returned, replayed unchanged.
    pub thinking_blocks: Option<Bounded<ThinkingBlock, MAX_TOOL_CALLS>>,
    /// Anthropic prompt caching on the whole message (applied to its last block).
    pub cache_control: Option<CacheControl>,
    /// Refused when present and not `null`.
    pub audio: Option<IgnoredAny>,
    pub function_call: Option<IgnoredAny>,
    /// Sent back by clients that keep the answer objects: `annotations` (OpenAI answers), `parsed`
    /// (the SDKs' parse helpers). Ignored.
    pub annotations: Option<IgnoredAny>,
    pub parsed: Option<IgnoredAny>,
}

/// A content part, parsed by its `type` without buffering the object. `input_audio` and `file`
/// parse so the converter can refuse them by name.
#[derive(Debug, Clone)]
pub enum ContentPart {
    Text {
        text: String,
        cache_control: Option<CacheControl>,
    },
    ImageUrl {
        image_url: ImageUrl,
        cache_control: Option<CacheControl>,
    },
    /// Only valid in assistant messages.
    Refusal {
        refusal: String,
    },
    InputAudio,
    File,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    pub detail: Option<IgnoredAny>,
}

/// Anthropic's `cache_control`, accepted verbatim: `{"type":"ephemeral","ttl":"5m"|"1h"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheControl {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// A tool call sent back on an assistant message. Other keys (`index`, the SDKs'
/// `parsed_arguments`) are skipped.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// A thinking block as returned in `message.thinking_blocks` and accepted back on assistant
/// messages (the `index` of streamed blocks is skipped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingBlock {
    Thinking { thinking: String, signature: String },
    RedactedThinking { data: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: Option<FunctionDefinition>,
    pub cache_control: Option<CacheControl>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionDefinition {
    pub name: String,
    pub description: Option<String>,
    /// The JSON schema, kept as its text.
    pub parameters: Option<Box<RawValue>>,
    pub strict: Option<bool>,
}

/// The object form of `tool_choice`: `{"type":"function","function":{"name":...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolChoiceObject {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: Option<ToolChoiceFunction>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ToolChoiceFunction {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThinkingParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub budget_tokens: Option<u32>,
    pub display: Option<String>,
}

/// Anthropic's `output_config`: effort and native structured output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfigParam {
    pub effort: Option<String>,
    pub format: Option<OutputFormatParam>,
}

/// `output_config.format`: `{"type": "json_schema", "schema": {...}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFormatParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub schema: Option<Box<RawValue>>,
}

/// `response_format`, parsed by its `type` without buffering the object.
#[derive(Debug, Clone)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Clone, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    pub description: Option<String>,
    /// The JSON schema, kept as its text.
    pub schema: Option<Box<RawValue>>,
    pub strict: Option<bool>,
}

/// A value that is either a bare string or something richer (`content`, `tool_choice`).
#[derive(Debug, Clone, PartialEq)]
pub enum StringOr<T> {
    String(String),
    Other(T),
}

/// `stop`: one string or a list of them.
#[derive(Debug, Clone, PartialEq)]
pub enum OneOrMany<T> {
    One(T),
    Many(Bounded<T, MAX_STOP_SEQUENCES>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StringOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringOrVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for StringOrVisitor<T> {
            type Value = StringOr<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, an array or an object")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(StringOr::String(value.to_owned()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
                Ok(StringOr::String(value))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                T::deserialize(SeqAccessDeserializer::new(seq)).map(StringOr::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(StringOr::Other)
            }
        }

        deserializer.deserialize_any(StringOrVisitor(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match StringOr::<Bounded<T, MAX_STOP_SEQUENCES>>::deserialize(deserializer)? {
            StringOr::Other(many) => Ok(OneOrMany::Many(many)),
            StringOr::String(one) => {
                T::deserialize(de::value::StringDeserializer::<D::Error>::new(one)).map(OneOrMany::One)
            }
        }
    }
}

/// Reads a JSON object whose `type` field picks what it is, in one pass and wherever `type`
/// stands: every other field is read (or skipped) by `field`, which answers whether it knew the key.
fn visit_tagged<'de, A: MapAccess<'de>>(
    mut map: A,
    mut field: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
    allow_unknown: bool,
) -> Result<String, A::Error> {
    let mut kind: Option<String> = None;
    while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
        if key == "type" {
            if kind.is_some() {
                return Err(de::Error::duplicate_field("type"));
            }
            kind = Some(map.next_value()?);
        } else if !field(&key, &mut map)? {
            if !allow_unknown {
                return Err(de::Error::custom(format_args!("unknown field `{key}`")));
            }
            map.next_value::<IgnoredAny>()?;
        }
    }
    kind.ok_or_else(|| de::Error::missing_field("type"))
}

fn set<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    key: &'static str,
    map: &mut A,
) -> Result<bool, A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(key));
    }
    *slot = Some(map.next_value()?);
    Ok(true)
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PartVisitor;

        impl<'de> Visitor<'de> for PartVisitor {
            type Value = ContentPart;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a content part object with a `type`")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ContentPart, A::Error> {
                let (mut text, mut image_url, mut cache_control, mut refusal) = (None, None, None, None);
                let kind = visit_tagged(
                    map,
                    |key, map| match key {
                        "text" => set(&mut text, "text", map),
                        "image_url" => set(&mut image_url, "image_url", map),
                        "cache_control" => set::<Option<CacheControl>, _>(&mut cache_control, "cache_control", map),
                        "refusal" => set(&mut refusal, "refusal", map),
                        // The payloads of parts that are refused by name.
                        "input_audio" | "file" => map.next_value::<IgnoredAny>().map(|_| true),
                        _ => Ok(false),
                    },
                    false,
                )?;
                let cache_control = cache_control.flatten();
                match kind.as_str() {
                    "text" => Ok(ContentPart::Text {
                        text: text.ok_or_else(|| de::Error::missing_field("text"))?,
                        cache_control,
                    }),
                    "image_url" => Ok(ContentPart::ImageUrl {
                        image_url: image_url.ok_or_else(|| de::Error::missing_field("image_url"))?,
                        cache_control,
                    }),
                    "refusal" => Ok(ContentPart::Refusal {
                        refusal: refusal.ok_or_else(|| de::Error::missing_field("refusal"))?,
                    }),
                    "input_audio" => Ok(ContentPart::InputAudio),
                    "file" => Ok(ContentPart::File),
                    other => {
                        Err(de::Error::unknown_variant(other, &["text", "image_url", "refusal", "input_audio", "file"]))
                    }
                }
            }
        }

        deserializer.deserialize_map(PartVisitor)
    }
}

impl<'de> Deserialize<'de> for ThinkingBlock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BlockVisitor;

        impl<'de> Visitor<'de> for BlockVisitor {
            type Value = ThinkingBlock;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a thinking block object with a `type`")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ThinkingBlock, A::Error> {
                let (mut thinking, mut signature, mut data) = (None, None, None);
                let kind = visit_tagged(
                    map,
                    |key, map| match key {
                        "thinking" => set(&mut thinking, "thinking", map),
                        "signature" => set(&mut signature, "signature", map),
                        "data" => set(&mut data, "data", map),
                        _ => Ok(false),
                    },
                    // `index` (streamed blocks) and whatever a client keeps beside them.
                    true,
                )?;
                match kind.as_str() {
                    "thinking" => Ok(ThinkingBlock::Thinking {
                        thinking: thinking.ok_or_else(|| de::Error::missing_field("thinking"))?,
                        signature: signature.ok_or_else(|| de::Error::missing_field("signature"))?,
                    }),
                    "redacted_thinking" => Ok(ThinkingBlock::RedactedThinking {
                        data: data.ok_or_else(|| de::Error::missing_field("data"))?,
                    }),
                    other => Err(de::Error::unknown_variant(other, &["thinking", "redacted_thinking"])),
                }
            }
        }

        deserializer.deserialize_map(BlockVisitor)
    }
}

impl<'de> Deserialize<'de> for ResponseFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FormatVisitor;

        impl<'de> Visitor<'de> for FormatVisitor {
            type Value = ResponseFormat;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a response_format object with a `type`")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ResponseFormat, A::Error> {
                let mut json_schema = None;
                let kind = visit_tagged(
                    map,
                    |key, map| match key {
                        "json_schema" => set(&mut json_schema, "json_schema", map),
                        _ => Ok(false),
                    },
                    false,
                )?;
                match kind.as_str() {
                    "text" => Ok(ResponseFormat::Text),
                    "json_object" => Ok(ResponseFormat::JsonObject),
                    "json_schema" => Ok(ResponseFormat::JsonSchema {
                        json_schema: json_schema.ok_or_else(|| de::Error::missing_field("json_schema"))?,
                    }),
                    other => Err(de::Error::unknown_variant(other, &["text", "json_object", "json_schema"])),
                }
            }
        }

        deserializer.deserialize_map(FormatVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// `chat.completion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: &'static str,
    /// Always `null`: log probabilities are not available.
    pub logprobs: Option<()>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thinking_blocks: Vec<ThinkingBlock>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallOut {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCallOut,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCallOut {
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the prompt cache (Anthropic's `cache_read_input_tokens`).
    pub cached_tokens: u64,
    /// Prompt tokens written to the prompt cache (Anthropic's `cache_creation_input_tokens`), when
    /// the upstream reports them; OpenAI's own name for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CompletionTokensDetails {
    /// Thinking tokens, when Bedrock reports them (counted in `completion_tokens` too).
    pub reasoning_tokens: u64,
}

/// `chat.completion.chunk`, borrowed: built and serialised once per upstream event.
#[derive(Debug, Serialize)]
pub struct ChatCompletionChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: &'a [ChunkChoice<'a>],
    /// Absent unless the client asked for usage; then `null` on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<&'a Usage>>,
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<&'a [ThinkingBlockDelta<'a>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<&'a [ToolCallDelta<'a>]>,
}

/// A complete thinking block in a stream, with its position among the answer's thinking blocks.
/// The `index` lets delta accumulators (the OpenAI SDKs' stream helpers merge lists of objects by
/// `index`, and the Python one fails on a second list without it) keep every block; requests
/// ignore it when the block is sent back.
#[derive(Debug, Serialize)]
pub struct ThinkingBlockDelta<'a> {
    pub index: u32,
    #[serde(flatten)]
    pub block: &'a ThinkingBlock,
}

#[derive(Debug, Serialize)]
pub struct ToolCallDelta<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Debug, Serialize)]
pub struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    /// Launch date of the model (Unix seconds), 0 when unknown.
    pub created: u64,
    pub owned_by: String,
    /// Extensions: what the model catalog knows about the model behind this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The catalog entry whose rules apply (absent when the id matched none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub reasoning: ModelReasoning,
    /// Takes image input.
    pub vision: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<ModelLifecycle>,
}

/// How a model reasons: `thinking` is `none`, `budget`, `adaptive` or `adaptive_only`; `efforts`
/// the `reasoning_effort` values it takes beyond `none` and `minimal`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReasoning {
    pub supported: bool,
    pub thinking: &'static str,
    pub always_on: bool,
    pub efforts: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelLifecycle {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launched: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eol_not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eol: Option<String>,
}

impl ModelList {
    pub fn new(data: Vec<ModelObject>) -> Self {
        ModelList { object: "list", data }
    }
}

/// OpenAI's `type` for a kind of error.
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Quota => "insufficient_quota",
        ErrorKind::Billing => "billing_error",
        ErrorKind::Upstream => "upstream_error",
        ErrorKind::Internal => "api_error",
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

/// OpenAI's error body, `{"error":{"message","type","param","code"}}`, as a response and as an SSE
/// event inside a stream.
pub fn error_body(error: &ApiError) -> serde_json::Value {
    let body = ErrorBody {
        message: &error.message,
        kind: error_type(error.kind),
        param: error.param.as_deref(),
        code: error.code,
    };
    serde_json::to_value(ErrorEnvelope { error: body }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_have_openais_shape() {
        let error = ApiError::invalid_request("principal_uid", "invalid_uid", "bad uid");
        assert_eq!(
            error_body(&error),
            serde_json::json!({"error": {"message": "bad uid", "type": "invalid_request_error", "param": "principal_uid", "code": "invalid_uid"}})
        );
        let spent = ApiError::new(http::StatusCode::TOO_MANY_REQUESTS, ErrorKind::Quota, "budget_exhausted", "spent");
        assert_eq!(error_body(&spent)["error"]["type"], "insufficient_quota");
    }
}
