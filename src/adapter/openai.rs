//! OpenAI Chat Completions wire types: what clients send and what they get back.
//!
//! Serde only, no behaviour: deciding what a field means for Bedrock is `request.rs`'s job. Request
//! types keep every field a client may send, including the ones we refuse, so the converter can name
//! the offending `param`; anything we do not know lands in an `extra` map and is rejected there.
//! Response types borrow where they can, since chunks are serialised once per token.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Extension (not OpenAI): passed to Anthropic's `top_k`.
    pub top_k: Option<u32>,
    pub stop: Option<OneOrMany<String>>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub tools: Option<Vec<Tool>>,
    pub tool_choice: Option<StringOr<ToolChoiceObject>>,
    pub parallel_tool_calls: Option<bool>,
    pub reasoning_effort: Option<String>,
    /// Extension (LiteLLM-style): Anthropic's own `thinking` object, wins over `reasoning_effort`.
    pub thinking: Option<ThinkingParam>,
    /// Extension: Anthropic's own `output_config` (`effort`, `format`).
    pub output_config: Option<OutputConfigParam>,
    /// Extension: Anthropic beta features, checked against the model's accepted betas.
    pub anthropic_beta: Option<Vec<String>>,
    pub response_format: Option<ResponseFormat>,
    pub user: Option<String>,
    pub safety_identifier: Option<String>,
    pub metadata: Option<Value>,
    pub store: Option<bool>,
    pub n: Option<u32>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub audio: Option<Value>,
    pub modalities: Option<Vec<String>>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub seed: Option<i64>,
    pub logit_bias: Option<Map<String, Value>>,
    pub prediction: Option<Value>,
    pub service_tier: Option<String>,
    pub prompt_cache_key: Option<String>,
    pub prompt_cache_retention: Option<String>,
    pub verbosity: Option<String>,
    pub web_search_options: Option<Value>,
    pub functions: Option<Value>,
    pub function_call: Option<Value>,
    /// Every field not listed above; the converter rejects them by name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
    pub include_obfuscation: Option<bool>,
}

/// One entry of `messages`. Fields are a union over the roles; the converter checks which apply.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Option<StringOr<Vec<ContentPart>>>,
    pub name: Option<String>,
    pub tool_calls: Option<Vec<ToolCall>>,
    pub tool_call_id: Option<String>,
    pub refusal: Option<String>,
    /// Reasoning text the gateway returned earlier (replayed only together with `reasoning_signature`).
    pub reasoning_content: Option<String>,
    /// Extension: the signature of the single thinking block whose text is `reasoning_content`.
    pub reasoning_signature: Option<String>,
    /// LiteLLM's convention: the thinking blocks exactly as returned, replayed unchanged.
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
    /// Anthropic prompt caching on the whole message (applied to its last block).
    pub cache_control: Option<CacheControl>,
    pub audio: Option<Value>,
    pub function_call: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A content part. `input_audio` and `file` parse so the converter can refuse them by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
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
    InputAudio {},
    File {},
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    pub detail: Option<String>,
}

/// Anthropic's `cache_control`, accepted verbatim: `{"type":"ephemeral","ttl":"5m"|"1h"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CacheControl {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

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

/// A thinking block as returned in `message.thinking_blocks` and accepted back on assistant messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
    pub parameters: Option<Value>,
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
pub struct ThinkingParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub budget_tokens: Option<u32>,
    pub display: Option<String>,
}

/// Anthropic's `output_config`: effort and native structured output.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputConfigParam {
    pub effort: Option<String>,
    pub format: Option<OutputFormatParam>,
}

/// `output_config.format`: `{"type": "json_schema", "schema": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputFormatParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub schema: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Clone, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    pub description: Option<String>,
    pub schema: Option<Value>,
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
    Many(Vec<T>),
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
        match StringOr::<Vec<T>>::deserialize(deserializer)? {
            StringOr::Other(many) => Ok(OneOrMany::Many(many)),
            StringOr::String(one) => {
                T::deserialize(de::value::StringDeserializer::<D::Error>::new(one)).map(OneOrMany::One)
            }
        }
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
    pub cached_tokens: u64,
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
    pub created: u64,
    pub owned_by: String,
}

impl ModelList {
    pub fn new(data: Vec<ModelObject>) -> Self {
        ModelList { object: "list", data }
    }
}

impl ModelObject {
    pub fn new(id: impl Into<String>, created: u64, owned_by: impl Into<String>) -> Self {
        ModelObject { id: id.into(), object: "model", created, owned_by: owned_by.into() }
    }
}
