//! OpenAI chat request → Anthropic-on-Bedrock body. Pure: no I/O, no clock, no credentials.
//!
//! Every refusal is a 400 whose `param` names the offending field (`messages[2].content[0]`,
//! `tools[1].function.name`, ...), so a client knows what to fix. The choices this converter makes
//! where the two APIs differ are listed in the [`crate::adapter`] module doc.

use std::borrow::Cow;
use std::collections::HashSet;

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Map, Value};

use crate::adapter::anthropic::{
    AnthropicRequest, BEDROCK_ANTHROPIC_VERSION, ContentBlock, ImageSource, Message, Metadata, Role, TextBlock,
    Thinking, Tool, ToolChoice, ToolChoiceKind,
};
use crate::adapter::openai::{
    CacheControl, ChatCompletionRequest, ContentPart, Message as OpenAiMessage, OneOrMany, ResponseFormat, StringOr,
    ThinkingBlock, ToolChoiceObject,
};
use crate::error::ApiError;

/// Largest decoded image Bedrock accepts for Claude (3.75 MB, counted in decimal bytes to stay safe).
pub const MAX_IMAGE_BYTES: usize = 3_750_000;
/// Anthropic allows at most four `cache_control` breakpoints per request.
pub const MAX_CACHE_BREAKPOINTS: usize = 4;
/// Smallest thinking budget Anthropic accepts.
pub const MIN_THINKING_BUDGET: u32 = 1024;
/// Text of the user turn inserted when a conversation does not start with a user message.
pub const PLACEHOLDER_USER_TURN: &str = "(conversation start)";
/// Tool name used to carry `response_format: {"type":"json_object"}`.
pub const JSON_OBJECT_TOOL: &str = "json_object";
/// Longest `user` forwarded as `metadata.user_id`.
pub const MAX_USER_ID_LEN: usize = 256;

/// Per-model limits and quirks, supplied by routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDefaults {
    /// `max_tokens` sent when the client sets none.
    pub max_tokens: u32,
    /// The model's output limit; larger client values are lowered to it.
    pub max_output_tokens: u32,
    /// Whether the model supports extended thinking.
    pub supports_thinking: bool,
    /// Newer Claude models (Sonnet 4.5, Haiku 4.5, Opus 4.1 and later) refuse `temperature` and
    /// `top_p` together.
    pub exclusive_sampling: bool,
}

impl Default for ModelDefaults {
    fn default() -> Self {
        ModelDefaults {
            max_tokens: 4096,
            max_output_tokens: 64_000,
            supports_thinking: true,
            exclusive_sampling: false,
        }
    }
}

/// Everything the caller needs to invoke Bedrock and convert the answer back.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared<'a> {
    /// The `InvokeModel` body (serialise with `serde_json::to_vec`).
    pub body: AnthropicRequest<'a>,
    /// Use `InvokeModelWithResponseStream`.
    pub stream: bool,
    /// Send a final usage chunk (`stream_options.include_usage`); never forwarded to Bedrock.
    pub include_usage: bool,
    /// Name of the tool that carries `response_format`; its call is returned as message content.
    pub response_tool: Option<&'a str>,
}

/// Parses a request body; a type error names the field it hit.
pub fn parse_request(body: &[u8]) -> Result<ChatCompletionRequest, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = format!("invalid request body: {inner}");
        if path == "." || path.is_empty() {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_body", message)
        } else {
            ApiError::invalid_request(path, "invalid_body", message)
        }
    })
}

/// Converts an OpenAI chat request into an Anthropic-on-Bedrock body.
pub fn to_anthropic<'a>(req: &'a ChatCompletionRequest, defaults: &ModelDefaults) -> Result<Prepared<'a>, ApiError> {
    reject_unsupported(req)?;
    let mut caches = CacheCounter::default();

    let tools = convert_tools(req, &mut caches)?;
    let response_format = convert_response_format(req, &tools)?;
    let (system, mut messages) = convert_messages(&req.messages, &mut caches)?;

    let mut budget = thinking_budget(req, defaults)?;
    if budget.is_some() && last_tool_turn_lacks_thinking(&messages) {
        // Anthropic refuses a tool-use continuation whose assistant turn does not start with its
        // thinking block; a client that did not keep the blocks gets an answer without thinking.
        budget = None;
    }
    let max_tokens = max_tokens(req, defaults)?;
    let (max_tokens, thinking) = match budget {
        Some(budget) => {
            let (max_tokens, budget) = fit_budget(max_tokens, budget, defaults)?;
            (max_tokens, Some(Thinking { budget_tokens: budget }))
        }
        None => (max_tokens, None),
    };

    let (temperature, top_p, top_k) = sampling(req, defaults, thinking.is_some())?;
    let stop_sequences = stop_sequences(req)?;
    let (tools, tool_choice, response_tool) = tool_choice(req, tools, response_format, thinking.is_some())?;
    let metadata = user_metadata(req)?;
    if let Some(last) = messages.last_mut().filter(|message| message.role == Role::Assistant) {
        trim_prefill(last);
        if last.content.is_empty() {
            messages.pop();
        }
    }
    if caches.count > MAX_CACHE_BREAKPOINTS {
        return Err(ApiError::invalid_request(
            caches.first_excess.unwrap_or_default(),
            "too_many_cache_breakpoints",
            format!("at most {MAX_CACHE_BREAKPOINTS} cache_control breakpoints are allowed per request"),
        ));
    }

    Ok(Prepared {
        body: AnthropicRequest {
            anthropic_version: BEDROCK_ANTHROPIC_VERSION,
            max_tokens,
            messages,
            system,
            temperature,
            top_p,
            top_k,
            stop_sequences,
            tools,
            tool_choice,
            thinking,
            metadata,
        },
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.as_ref().and_then(|options| options.include_usage).unwrap_or(false),
        response_tool,
    })
}

fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(param, "unsupported_parameter", message)
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(param, "invalid_value", message)
}

/// Fields Anthropic cannot honour. Ignored on purpose (harmless): `seed` (best effort in OpenAI too),
/// `service_tier`, `store`, `metadata`, `prompt_cache_key`, `prompt_cache_retention`, `verbosity`,
/// `stream_options.include_obfuscation`, `n: 1`, `logprobs: false`, zero penalties.
fn reject_unsupported(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    if let Some(key) = req.extra.keys().next() {
        return Err(unsupported(key, format!("unknown or unsupported parameter `{key}`")));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(unsupported("n", "only n=1 is supported: one choice is generated per request"));
    }
    if req.logprobs == Some(true) {
        return Err(unsupported("logprobs", "logprobs are not available for anthropic models"));
    }
    if req.top_logprobs.is_some_and(|n| n > 0) {
        return Err(unsupported("top_logprobs", "logprobs are not available for anthropic models"));
    }
    if req.audio.as_ref().is_some_and(|audio| !audio.is_null()) {
        return Err(unsupported("audio", "audio output is not supported"));
    }
    if let Some(modalities) = &req.modalities
        && modalities.iter().any(|modality| modality != "text")
    {
        return Err(unsupported("modalities", "only the text output modality is supported"));
    }
    for (param, value) in [("presence_penalty", req.presence_penalty), ("frequency_penalty", req.frequency_penalty)] {
        if value.is_some_and(|value| value != 0.0) {
            return Err(unsupported(param, format!("{param} is not supported by anthropic models")));
        }
    }
    if req.logit_bias.as_ref().is_some_and(|bias| !bias.is_empty()) {
        return Err(unsupported("logit_bias", "logit_bias is not supported by anthropic models"));
    }
    if req.prediction.as_ref().is_some_and(|value| !value.is_null()) {
        return Err(unsupported("prediction", "predicted outputs are not supported"));
    }
    if req.web_search_options.as_ref().is_some_and(|value| !value.is_null()) {
        return Err(unsupported("web_search_options", "web search is not supported"));
    }
    if req.functions.as_ref().is_some_and(|value| !value.is_null()) {
        return Err(unsupported("functions", "the `functions` parameter is deprecated and not supported; use `tools`"));
    }
    if req.function_call.as_ref().is_some_and(|value| !value.is_null()) {
        return Err(unsupported(
            "function_call",
            "the `function_call` parameter is deprecated and not supported; use `tool_choice`",
        ));
    }
    Ok(())
}

/// Counts `cache_control` breakpoints and validates each one.
#[derive(Default)]
struct CacheCounter {
    count: usize,
    first_excess: Option<String>,
}

impl CacheCounter {
    fn check<'a>(
        &mut self,
        cache_control: Option<&'a CacheControl>,
        param: impl FnOnce() -> String,
    ) -> Result<Option<&'a CacheControl>, ApiError> {
        let Some(cache) = cache_control else { return Ok(None) };
        let param = param();
        if cache.kind != "ephemeral" {
            return Err(invalid(format!("{param}.cache_control.type"), "cache_control type must be `ephemeral`"));
        }
        if let Some(ttl) = &cache.ttl
            && ttl != "5m"
            && ttl != "1h"
        {
            return Err(invalid(format!("{param}.cache_control.ttl"), "cache_control ttl must be `5m` or `1h`"));
        }
        self.count += 1;
        if self.count > MAX_CACHE_BREAKPOINTS && self.first_excess.is_none() {
            self.first_excess = Some(format!("{param}.cache_control"));
        }
        Ok(Some(cache))
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

type System<'a> = Vec<TextBlock<'a>>;

fn convert_messages<'a>(
    input: &'a [OpenAiMessage],
    caches: &mut CacheCounter,
) -> Result<(System<'a>, Vec<Message<'a>>), ApiError> {
    if input.is_empty() {
        return Err(invalid("messages", "messages must contain at least one message"));
    }
    let mut system: System<'a> = Vec::new();
    let mut turns: Vec<Message<'a>> = Vec::new();
    // Tool calls of the latest assistant message still waiting for a tool message: (id, message index).
    // Sets beside the ordered list keep every check linear in the size of the request.
    let mut pending: Vec<(&'a str, usize)> = Vec::new();
    let mut pending_ids: HashSet<&'a str> = HashSet::new();
    let mut answered: HashSet<&'a str> = HashSet::new();

    for (i, message) in input.iter().enumerate() {
        // `annotations` comes back from OpenAI answers, `parsed` from the SDKs' parse and stream
        // helpers (their message objects are sent back as they are).
        if let Some(key) = message.extra.keys().find(|key| !matches!(key.as_str(), "annotations" | "parsed")) {
            return Err(unsupported(
                &format!("messages[{i}].{key}"),
                format!("unknown or unsupported message field `{key}`"),
            ));
        }
        if message.audio.as_ref().is_some_and(|value| !value.is_null()) {
            return Err(unsupported(&format!("messages[{i}].audio"), "audio messages are not supported"));
        }
        if message.function_call.as_ref().is_some_and(|value| !value.is_null()) {
            return Err(unsupported(
                &format!("messages[{i}].function_call"),
                "the `function_call` field is deprecated and not supported; use `tool_calls`",
            ));
        }
        let role = message.role.as_str();
        if role != "tool" && role != "system" && role != "developer" {
            if let Some((id, at)) = pending.iter().find(|(id, _)| !answered.contains(id)) {
                return Err(invalid(
                    format!("messages[{at}].tool_calls"),
                    format!("tool call `{id}` has no tool message answering it"),
                ));
            }
            pending.clear();
            pending_ids.clear();
            answered.clear();
        }
        match role {
            "system" | "developer" => {
                let start = system.len();
                for_each_text(message, i, |text, cache_control| {
                    let cache_control = caches.check(cache_control.0, || cache_control.1)?;
                    if !text.trim().is_empty() {
                        system.push(TextBlock { text: Cow::Borrowed(text), cache_control });
                    }
                    Ok(())
                })?;
                if let Some(cache) = caches.check(message.cache_control.as_ref(), || format!("messages[{i}]"))?
                    && let Some(last) = system[start..].last_mut()
                {
                    last.cache_control = Some(cache);
                }
            }
            "user" => {
                let blocks = user_blocks(message, i, caches)?;
                push_turn(&mut turns, Role::User, blocks, message_cache(message, i, caches)?);
            }
            "assistant" => {
                let blocks = assistant_blocks(message, i, caches)?;
                for call in message.tool_calls.iter().flatten() {
                    pending.push((call.id.as_str(), i));
                    pending_ids.insert(call.id.as_str());
                }
                push_turn(&mut turns, Role::Assistant, blocks, message_cache(message, i, caches)?);
            }
            "tool" => {
                let Some(id) = message.tool_call_id.as_deref() else {
                    return Err(invalid(format!("messages[{i}].tool_call_id"), "tool messages need a tool_call_id"));
                };
                if !pending_ids.contains(id) {
                    return Err(invalid(
                        format!("messages[{i}].tool_call_id"),
                        format!("tool_call_id `{id}` does not match a tool call of the preceding assistant message"),
                    ));
                }
                answered.insert(id);
                let mut content = Vec::new();
                for_each_text(message, i, |text, cache_control| {
                    let cache_control = caches.check(cache_control.0, || cache_control.1)?;
                    if !text.is_empty() {
                        content.push(TextBlock { text: Cow::Borrowed(text), cache_control });
                    }
                    Ok(())
                })?;
                let cache_control = message_cache(message, i, caches)?;
                push_tool_result(
                    &mut turns,
                    ContentBlock::ToolResult { tool_use_id: sanitize_id(id), content, cache_control },
                );
            }
            "function" => {
                return Err(unsupported(
                    &format!("messages[{i}].role"),
                    "the `function` role is deprecated and not supported; use `tool`",
                ));
            }
            other => {
                return Err(invalid(
                    format!("messages[{i}].role"),
                    format!("unknown role `{other}`; expected system, developer, user, assistant or tool"),
                ));
            }
        }
    }
    if let Some((id, at)) = pending.iter().find(|(id, _)| !answered.contains(id)) {
        return Err(invalid(
            format!("messages[{at}].tool_calls"),
            format!("tool call `{id}` has no tool message answering it"),
        ));
    }
    if turns.first().is_none_or(|turn| turn.role != Role::User) {
        turns.insert(
            0,
            Message {
                role: Role::User,
                content: vec![ContentBlock::Text { text: Cow::Borrowed(PLACEHOLDER_USER_TURN), cache_control: None }],
            },
        );
    }
    Ok((system, turns))
}

type PartCache<'a> = (Option<&'a CacheControl>, String);

/// Calls `f` for each text piece of a message that may only hold text (system, developer, tool).
fn for_each_text<'a>(
    message: &'a OpenAiMessage,
    i: usize,
    mut f: impl FnMut(&'a str, PartCache<'a>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    match &message.content {
        None => Err(invalid(format!("messages[{i}].content"), format!("{} messages need content", message.role))),
        Some(StringOr::String(text)) => f(text, (None, String::new())),
        Some(StringOr::Other(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                match part {
                    ContentPart::Text { text, cache_control } => {
                        f(text, (cache_control.as_ref(), format!("messages[{i}].content[{j}]")))?
                    }
                    other => {
                        return Err(unsupported(
                            &format!("messages[{i}].content[{j}]"),
                            format!("{} messages accept only text parts, not {}", message.role, part_name(other)),
                        ));
                    }
                }
            }
            Ok(())
        }
    }
}

fn part_name(part: &ContentPart) -> &'static str {
    match part {
        ContentPart::Text { .. } => "text",
        ContentPart::ImageUrl { .. } => "image_url",
        ContentPart::Refusal { .. } => "refusal",
        ContentPart::InputAudio {} => "input_audio",
        ContentPart::File {} => "file",
    }
}

fn message_cache<'a>(
    message: &'a OpenAiMessage,
    i: usize,
    caches: &mut CacheCounter,
) -> Result<Option<&'a CacheControl>, ApiError> {
    caches.check(message.cache_control.as_ref(), || format!("messages[{i}]"))
}

fn user_blocks<'a>(
    message: &'a OpenAiMessage,
    i: usize,
    caches: &mut CacheCounter,
) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    match &message.content {
        None => Err(invalid(format!("messages[{i}].content"), "user messages need content")),
        Some(StringOr::String(text)) => Ok(text_block(text, None).into_iter().collect()),
        Some(StringOr::Other(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let param = || format!("messages[{i}].content[{j}]");
                match part {
                    ContentPart::Text { text, cache_control } => {
                        let cache_control = caches.check(cache_control.as_ref(), param)?;
                        blocks.extend(text_block(text, cache_control));
                    }
                    ContentPart::ImageUrl { image_url, cache_control } => {
                        let cache_control = caches.check(cache_control.as_ref(), param)?;
                        let source =
                            image_source(&image_url.url, &format!("messages[{i}].content[{j}].image_url.url"))?;
                        blocks.push(ContentBlock::Image { source, cache_control });
                    }
                    ContentPart::InputAudio {} => {
                        return Err(unsupported(&param(), "input_audio content parts are not supported"));
                    }
                    ContentPart::File {} => {
                        return Err(unsupported(&param(), "file content parts are not supported"));
                    }
                    ContentPart::Refusal { .. } => {
                        return Err(unsupported(&param(), "refusal parts are only allowed in assistant messages"));
                    }
                }
            }
            Ok(blocks)
        }
    }
}

/// A text block, or nothing for whitespace-only text (Anthropic refuses empty text blocks).
fn text_block<'a>(text: &'a str, cache_control: Option<&'a CacheControl>) -> Option<ContentBlock<'a>> {
    (!text.trim().is_empty()).then_some(ContentBlock::Text { text: Cow::Borrowed(text), cache_control })
}

fn assistant_blocks<'a>(
    message: &'a OpenAiMessage,
    i: usize,
    caches: &mut CacheCounter,
) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    let mut blocks = Vec::new();
    // Thinking first, unchanged: Anthropic checks the signatures.
    if let Some(thinking_blocks) = &message.thinking_blocks {
        for block in thinking_blocks {
            blocks.push(match block {
                ThinkingBlock::Thinking { thinking, signature } => ContentBlock::Thinking { thinking, signature },
                ThinkingBlock::RedactedThinking { data } => ContentBlock::RedactedThinking { data },
            });
        }
    } else if let (Some(thinking), Some(signature)) = (&message.reasoning_content, &message.reasoning_signature) {
        blocks.push(ContentBlock::Thinking { thinking, signature });
    }
    match &message.content {
        None => {
            if let Some(refusal) = &message.refusal {
                blocks.extend(text_block(refusal, None));
            }
        }
        Some(StringOr::String(text)) => blocks.extend(text_block(text, None)),
        Some(StringOr::Other(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let param = || format!("messages[{i}].content[{j}]");
                match part {
                    ContentPart::Text { text, cache_control } => {
                        let cache_control = caches.check(cache_control.as_ref(), param)?;
                        blocks.extend(text_block(text, cache_control));
                    }
                    ContentPart::Refusal { refusal } => blocks.extend(text_block(refusal, None)),
                    other => {
                        return Err(unsupported(
                            &param(),
                            format!("assistant messages accept only text and refusal parts, not {}", part_name(other)),
                        ));
                    }
                }
            }
        }
    }
    for (j, call) in message.tool_calls.iter().flatten().enumerate() {
        let param = format!("messages[{i}].tool_calls[{j}]");
        if call.kind.as_deref().is_some_and(|kind| kind != "function") {
            return Err(unsupported(&format!("{param}.type"), "only function tool calls are supported"));
        }
        if call.id.is_empty() {
            return Err(invalid(format!("{param}.id"), "tool call id must not be empty"));
        }
        check_tool_name(&call.function.name, || format!("{param}.function.name"))?;
        let arguments = call.function.arguments.trim();
        let input = if arguments.is_empty() {
            Value::Object(Map::new())
        } else {
            match serde_json::from_str::<Value>(arguments) {
                Ok(value @ Value::Object(_)) => value,
                Ok(_) => {
                    return Err(invalid(
                        format!("{param}.function.arguments"),
                        "tool call arguments must be a JSON object",
                    ));
                }
                Err(error) => {
                    return Err(invalid(
                        format!("{param}.function.arguments"),
                        format!("tool call arguments are not valid JSON: {error}"),
                    ));
                }
            }
        };
        blocks.push(ContentBlock::ToolUse {
            id: sanitize_id(&call.id),
            name: &call.function.name,
            input,
            cache_control: None,
        });
    }
    Ok(blocks)
}

/// Appends blocks as a turn, merging with the previous turn of the same role.
fn push_turn<'a>(
    turns: &mut Vec<Message<'a>>,
    role: Role,
    mut blocks: Vec<ContentBlock<'a>>,
    cache_control: Option<&'a CacheControl>,
) {
    if let Some(cache) = cache_control
        && let Some(last) = blocks.last_mut()
    {
        set_cache_control(last, cache);
    }
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.append(&mut blocks),
        _ => turns.push(Message { role, content: blocks }),
    }
}

/// Adds a `tool_result` to the current user turn, after earlier results and before any other content.
fn push_tool_result<'a>(turns: &mut Vec<Message<'a>>, block: ContentBlock<'a>) {
    match turns.last_mut() {
        Some(last) if last.role == Role::User => {
            let at = last.content.iter().take_while(|block| matches!(block, ContentBlock::ToolResult { .. })).count();
            last.content.insert(at, block);
        }
        _ => turns.push(Message { role: Role::User, content: vec![block] }),
    }
}

fn set_cache_control<'a>(block: &mut ContentBlock<'a>, cache: &'a CacheControl) {
    match block {
        ContentBlock::Text { cache_control, .. }
        | ContentBlock::Image { cache_control, .. }
        | ContentBlock::ToolUse { cache_control, .. }
        | ContentBlock::ToolResult { cache_control, .. } => *cache_control = Some(cache),
        ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
    }
}

/// Anthropic refuses a final assistant (prefill) turn ending in whitespace.
fn trim_prefill(message: &mut Message<'_>) {
    if let Some(ContentBlock::Text { text, .. }) = message.content.last_mut() {
        let trimmed_len = text.trim_end().len();
        if trimmed_len == 0 {
            message.content.pop();
        } else if trimmed_len < text.len() {
            match text {
                Cow::Borrowed(borrowed) => *borrowed = &borrowed[..trimmed_len],
                Cow::Owned(owned) => owned.truncate(trimmed_len),
            }
        }
    }
}

fn last_tool_turn_lacks_thinking(messages: &[Message<'_>]) -> bool {
    let Some(last) = messages.iter().rev().find(|message| message.role == Role::Assistant) else { return false };
    let has_tool_use = last.content.iter().any(|block| matches!(block, ContentBlock::ToolUse { .. }));
    let starts_with_thinking =
        matches!(last.content.first(), Some(ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. }));
    has_tool_use && !starts_with_thinking
}

/// Anthropic tool ids must match `^[a-zA-Z0-9_-]+$`; other characters become `_` (the same on
/// `tool_use` and `tool_result`, so pairs still match).
fn sanitize_id(id: &str) -> Cow<'_, str> {
    if id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-') {
        Cow::Borrowed(id)
    } else {
        Cow::Owned(id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect())
    }
}

fn check_tool_name(name: &str, param: impl FnOnce() -> String) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(invalid(param(), format!("invalid tool name `{name}`: use 1-64 characters of a-z, A-Z, 0-9, _ and -")))
    }
}

/// A `data:` URL → base64 image source. Remote URLs are refused: the gateway does not fetch.
fn image_source<'a>(url: &'a str, param: &str) -> Result<ImageSource<'a>, ApiError> {
    let lower_prefix = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower_prefix.starts_with("http://") || lower_prefix.starts_with("https://") {
        return Err(ApiError::invalid_request(
            param,
            "unsupported_image_url",
            "image urls are not fetched; send the image inline as a data url (data:image/png;base64,...)",
        ));
    }
    let Some((header, data)) =
        url.get(5..).filter(|_| lower_prefix.starts_with("data:")).and_then(|rest| rest.split_once(','))
    else {
        return Err(ApiError::invalid_request(
            param,
            "invalid_image_url",
            "image url must be a data url (data:image/png;base64,...)",
        ));
    };
    let Some(declared) = header.strip_suffix(";base64") else {
        return Err(ApiError::invalid_request(param, "invalid_image_url", "image data url must be base64-encoded"));
    };
    let declared = match declared.to_ascii_lowercase().as_str() {
        "image/jpeg" | "image/jpg" => "image/jpeg",
        "image/png" => "image/png",
        "image/gif" => "image/gif",
        "image/webp" => "image/webp",
        other => {
            return Err(ApiError::invalid_request(
                param,
                "unsupported_image_type",
                format!("unsupported image type `{other}`; use image/jpeg, image/png, image/gif or image/webp"),
            ));
        }
    };
    let decoded_len = base64_decoded_len(data)
        .ok_or_else(|| ApiError::invalid_request(param, "invalid_image_url", "image data is not valid base64"))?;
    if decoded_len > MAX_IMAGE_BYTES {
        return Err(ApiError::invalid_request(
            param,
            "image_too_large",
            format!("image is {decoded_len} bytes; the limit is {MAX_IMAGE_BYTES} bytes (3.75 MB)"),
        ));
    }
    // The real format wins over the declared one: Anthropic refuses a mismatch.
    let sniffed = sniff_image(data).ok_or_else(|| {
        ApiError::invalid_request(
            param,
            "invalid_image",
            format!("image data is not a jpeg, png, gif or webp image (declared {declared})"),
        )
    })?;
    Ok(ImageSource { media_type: sniffed, data })
}

/// Decoded length of standard, padded base64, or `None` if `data` is not that.
fn base64_decoded_len(data: &str) -> Option<usize> {
    let bytes = data.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let padding = bytes.iter().rev().take_while(|&&byte| byte == b'=').count();
    if padding > 2 {
        return None;
    }
    let body = &bytes[..bytes.len() - padding];
    if !body.iter().all(|&byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/') {
        return None;
    }
    Some(bytes.len() / 4 * 3 - padding)
}

fn sniff_image(data: &str) -> Option<&'static str> {
    let head = data.get(..16).unwrap_or(data);
    let bytes = base64::engine::general_purpose::STANDARD.decode(head).ok()?;
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        Some("image/png")
    } else if bytes.starts_with(b"GIF8") {
        Some("image/gif")
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

fn max_tokens(req: &ChatCompletionRequest, defaults: &ModelDefaults) -> Result<u32, ApiError> {
    let (param, requested) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(value), _) => ("max_completion_tokens", Some(value)),
        (None, Some(value)) => ("max_tokens", Some(value)),
        (None, None) => ("max_tokens", None),
    };
    if requested == Some(0) {
        return Err(invalid(param, format!("{param} must be at least 1")));
    }
    Ok(requested.unwrap_or(defaults.max_tokens).min(defaults.max_output_tokens).max(1))
}

fn thinking_budget(req: &ChatCompletionRequest, defaults: &ModelDefaults) -> Result<Option<u32>, ApiError> {
    let (param, budget) = if let Some(thinking) = &req.thinking {
        match (thinking.kind.as_str(), thinking.budget_tokens) {
            ("disabled", _) => ("thinking", None),
            ("enabled", Some(budget)) if budget >= MIN_THINKING_BUDGET => ("thinking", Some(budget)),
            ("enabled", _) => {
                return Err(invalid(
                    "thinking.budget_tokens",
                    format!("thinking.budget_tokens must be at least {MIN_THINKING_BUDGET}"),
                ));
            }
            _ => return Err(invalid("thinking.type", "thinking.type must be `enabled` or `disabled`")),
        }
    } else {
        let budget = match req.reasoning_effort.as_deref() {
            None | Some("none") | Some("minimal") => None,
            Some("low") => Some(1024),
            Some("medium") => Some(4096),
            Some("high") => Some(16_384),
            Some("xhigh") => Some(32_768),
            Some(other) => {
                return Err(invalid(
                    "reasoning_effort",
                    format!("unknown reasoning_effort `{other}`; use none, minimal, low, medium, high or xhigh"),
                ));
            }
        };
        ("reasoning_effort", budget)
    };
    if budget.is_some() && !defaults.supports_thinking {
        return Err(unsupported(param, "this model does not support reasoning"));
    }
    Ok(budget)
}

/// Makes `budget < max_tokens <= max_output_tokens`, raising `max_tokens` by the budget first so the
/// answer keeps the room the client asked for, then shrinking the budget if the model's limit bites.
fn fit_budget(max_tokens: u32, budget: u32, defaults: &ModelDefaults) -> Result<(u32, u32), ApiError> {
    let mut max_tokens = max_tokens;
    let mut budget = budget;
    if max_tokens <= budget {
        max_tokens = max_tokens.saturating_add(budget).min(defaults.max_output_tokens);
    }
    if budget >= max_tokens {
        budget = max_tokens / 4 * 3;
    }
    if budget < MIN_THINKING_BUDGET {
        return Err(unsupported(
            "reasoning_effort",
            format!("the model's output limit of {} tokens leaves no room for reasoning", defaults.max_output_tokens),
        ));
    }
    Ok((max_tokens, budget))
}

type Sampling = (Option<f64>, Option<f64>, Option<u32>);

fn sampling(req: &ChatCompletionRequest, defaults: &ModelDefaults, thinking: bool) -> Result<Sampling, ApiError> {
    let mut temperature = req.temperature;
    let top_p = req.top_p;
    if let Some(value) = temperature {
        if !(0.0..=2.0).contains(&value) {
            return Err(invalid("temperature", "temperature must be between 0 and 2"));
        }
        if value > 1.0 {
            return Err(invalid(
                "temperature",
                "anthropic models accept a temperature between 0 and 1; values above 1 are not supported",
            ));
        }
    }
    if let Some(value) = top_p
        && !(0.0..=1.0).contains(&value)
    {
        return Err(invalid("top_p", "top_p must be between 0 and 1"));
    }
    if thinking {
        match temperature {
            Some(value) if value != 1.0 => {
                return Err(unsupported("temperature", "temperature must be 1 or unset when reasoning is enabled"));
            }
            // 1 is Anthropic's default: leave it out.
            _ => temperature = None,
        }
        if top_p.is_some_and(|value| value < 0.95) {
            return Err(unsupported("top_p", "top_p must be between 0.95 and 1 when reasoning is enabled"));
        }
        if req.top_k.is_some() {
            return Err(unsupported("top_k", "top_k cannot be used when reasoning is enabled"));
        }
    }
    if defaults.exclusive_sampling && temperature.is_some() && top_p.is_some() {
        return Err(unsupported("top_p", "this model accepts temperature or top_p, not both"));
    }
    Ok((temperature, top_p, req.top_k))
}

fn stop_sequences(req: &ChatCompletionRequest) -> Result<Vec<&str>, ApiError> {
    let list: &[String] = match &req.stop {
        None => &[],
        Some(OneOrMany::One(one)) => std::slice::from_ref(one),
        Some(OneOrMany::Many(many)) => many,
    };
    let mut stops = Vec::with_capacity(list.len());
    for stop in list {
        if stop.is_empty() {
            continue;
        }
        if stop.trim().is_empty() {
            return Err(invalid("stop", "stop sequences must contain a non-whitespace character"));
        }
        stops.push(stop.as_str());
    }
    Ok(stops)
}

fn user_metadata(req: &ChatCompletionRequest) -> Result<Option<Metadata<'_>>, ApiError> {
    let (param, user) = match (&req.user, &req.safety_identifier) {
        (Some(user), _) => ("user", user),
        (None, Some(id)) => ("safety_identifier", id),
        (None, None) => return Ok(None),
    };
    if user.is_empty() {
        return Ok(None);
    }
    if user.len() > MAX_USER_ID_LEN {
        return Err(invalid(param, format!("{param} must be at most {MAX_USER_ID_LEN} characters")));
    }
    Ok(Some(Metadata { user_id: user }))
}

// ---------------------------------------------------------------------------------------------
// Tools and structured output
// ---------------------------------------------------------------------------------------------

fn convert_tools<'a>(req: &'a ChatCompletionRequest, caches: &mut CacheCounter) -> Result<Vec<Tool<'a>>, ApiError> {
    let Some(tools) = &req.tools else { return Ok(Vec::new()) };
    let mut converted: Vec<Tool<'a>> = Vec::with_capacity(tools.len());
    let mut names: HashSet<&str> = HashSet::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            return Err(unsupported(
                &format!("tools[{i}].type"),
                format!("tool type `{}` is not supported; only `function` tools are", tool.kind),
            ));
        }
        let Some(function) = &tool.function else {
            return Err(invalid(format!("tools[{i}].function"), "function tools need a `function` object"));
        };
        check_tool_name(&function.name, || format!("tools[{i}].function.name"))?;
        if !names.insert(function.name.as_str()) {
            return Err(invalid(
                format!("tools[{i}].function.name"),
                format!("tool name `{}` is used twice", function.name),
            ));
        }
        let input_schema = object_schema(function.parameters.as_ref()).ok_or_else(|| {
            invalid(format!("tools[{i}].function.parameters"), "parameters must be a JSON schema object")
        })?;
        let cache_control = caches.check(tool.cache_control.as_ref(), || format!("tools[{i}]"))?;
        converted.push(Tool {
            name: &function.name,
            description: function.description.as_deref().filter(|text| !text.is_empty()),
            input_schema,
            cache_control,
        });
    }
    Ok(converted)
}

/// An input schema with `"type":"object"` at the top, as Anthropic requires; `None` if it cannot be one.
fn object_schema(schema: Option<&Value>) -> Option<Cow<'_, Value>> {
    match schema {
        None | Some(Value::Null) => Some(Cow::Owned(serde_json::json!({"type": "object"}))),
        Some(Value::Object(map)) => match map.get("type") {
            Some(Value::String(kind)) if kind == "object" => Some(Cow::Borrowed(schema?)),
            None => {
                let mut map = map.clone();
                map.insert("type".to_owned(), Value::String("object".to_owned()));
                Some(Cow::Owned(Value::Object(map)))
            }
            Some(_) => None,
        },
        Some(_) => None,
    }
}

/// `response_format` as a tool the model is asked to call; `None` for text.
fn convert_response_format<'a>(
    req: &'a ChatCompletionRequest,
    tools: &[Tool<'a>],
) -> Result<Option<Tool<'a>>, ApiError> {
    let tool = match &req.response_format {
        None | Some(ResponseFormat::Text) => return Ok(None),
        Some(ResponseFormat::JsonObject) => Tool {
            name: JSON_OBJECT_TOOL,
            description: Some("Respond by calling this tool with the answer as a JSON object."),
            input_schema: Cow::Owned(serde_json::json!({"type": "object"})),
            cache_control: None,
        },
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            check_tool_name(&json_schema.name, || "response_format.json_schema.name".to_owned())?;
            let input_schema = object_schema(json_schema.schema.as_ref()).ok_or_else(|| {
                unsupported(
                    "response_format.json_schema.schema",
                    "the schema must describe a JSON object (type object) for anthropic models",
                )
            })?;
            Tool {
                name: &json_schema.name,
                description: Some(
                    json_schema
                        .description
                        .as_deref()
                        .unwrap_or("Respond by calling this tool; its input is the final answer."),
                ),
                input_schema,
                cache_control: None,
            }
        }
    };
    if tools.iter().any(|other| other.name == tool.name) {
        return Err(invalid(
            "response_format",
            format!("response_format name `{}` clashes with a tool of the same name", tool.name),
        ));
    }
    Ok(Some(tool))
}

type ToolSetup<'a> = (Vec<Tool<'a>>, Option<ToolChoice<'a>>, Option<&'a str>);

fn tool_choice<'a>(
    req: &'a ChatCompletionRequest,
    mut tools: Vec<Tool<'a>>,
    response_tool: Option<Tool<'a>>,
    thinking: bool,
) -> Result<ToolSetup<'a>, ApiError> {
    let mut choice = match &req.tool_choice {
        None => None,
        Some(StringOr::String(kind)) => Some(match kind.as_str() {
            "auto" => ToolChoiceKind::Auto,
            "none" => ToolChoiceKind::None,
            "required" => ToolChoiceKind::Any,
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!("unknown tool_choice `{other}`; use none, auto, required or a function object"),
                ));
            }
        })
        .map(|kind| ToolChoice { kind, name: None, disable_parallel_tool_use: None }),
        Some(StringOr::Other(ToolChoiceObject { kind, function })) => {
            if kind != "function" {
                return Err(unsupported("tool_choice.type", format!("tool_choice type `{kind}` is not supported")));
            }
            let Some(function) = function else {
                return Err(invalid("tool_choice.function", "tool_choice needs function.name"));
            };
            if !tools.iter().any(|tool| tool.name == function.name) {
                return Err(invalid(
                    "tool_choice.function.name",
                    format!("tool_choice names `{}`, which is not in tools", function.name),
                ));
            }
            Some(ToolChoice { kind: ToolChoiceKind::Tool, name: Some(&function.name), disable_parallel_tool_use: None })
        }
    };
    if tools.is_empty() {
        match choice.as_ref().map(|choice| choice.kind) {
            Some(ToolChoiceKind::Any) => {
                return Err(invalid("tool_choice", "tool_choice `required` needs at least one tool"));
            }
            _ => choice = None,
        }
    }
    if thinking
        && choice.as_ref().is_some_and(|choice| matches!(choice.kind, ToolChoiceKind::Any | ToolChoiceKind::Tool))
    {
        return Err(unsupported(
            "tool_choice",
            "reasoning cannot be combined with a forced tool choice; use auto or none, or turn reasoning off",
        ));
    }

    let response_name = response_tool.as_ref().map(|tool| tool.name);
    if let Some(response_tool) = response_tool {
        let user_tools_usable = !tools.is_empty() && choice.as_ref().is_none_or(|c| c.kind != ToolChoiceKind::None);
        tools.push(response_tool);
        if thinking {
            // A forced tool is not allowed with thinking: the model is asked (by the tool's
            // description) to answer through the tool; plain text answers pass through as text.
            choice = Some(ToolChoice { kind: ToolChoiceKind::Auto, name: None, disable_parallel_tool_use: None });
        } else if !user_tools_usable {
            choice =
                Some(ToolChoice { kind: ToolChoiceKind::Tool, name: response_name, disable_parallel_tool_use: None });
        } else if choice.as_ref().is_none_or(|c| c.kind == ToolChoiceKind::Auto) {
            // Either call a real tool or answer through the response tool.
            choice = Some(ToolChoice { kind: ToolChoiceKind::Any, name: None, disable_parallel_tool_use: None });
        }
    }

    if req.parallel_tool_calls == Some(false) && !tools.is_empty() {
        let choice = choice.get_or_insert(ToolChoice {
            kind: ToolChoiceKind::Auto,
            name: None,
            disable_parallel_tool_use: None,
        });
        if choice.kind != ToolChoiceKind::None {
            choice.disable_parallel_tool_use = Some(true);
        }
    }
    Ok((tools, choice, response_name))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const DEFAULTS: ModelDefaults =
        ModelDefaults { max_tokens: 1000, max_output_tokens: 8000, supports_thinking: true, exclusive_sampling: false };
    const PNG: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

    /// A request with one user message, overridden by `fields`.
    fn request(fields: Value) -> Value {
        let mut base = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(base), Value::Object(fields)) = (base.as_object_mut(), fields) {
            base.extend(fields);
        }
        base
    }

    fn convert_with(input: &Value, defaults: &ModelDefaults) -> Result<(Value, bool, bool, Option<String>), ApiError> {
        let bytes = serde_json::to_vec(input).unwrap();
        let req = parse_request(&bytes)?;
        let prepared = to_anthropic(&req, defaults)?;
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
        check_with(name, input, &DEFAULTS, expected)
    }

    fn check_with(name: &str, input: Value, defaults: &ModelDefaults, expected: Value) {
        let (body, ..) = convert_with(&input, defaults).unwrap_or_else(|error| panic!("{name}: {error}"));
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
        let error = convert_with(&input, &DEFAULTS).err().unwrap_or_else(|| panic!("{name}: accepted"));
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
            (
                "tool_choice without tools is dropped",
                request(json!({"tool_choice": "auto"})),
                json!({"tool_choice": null}),
            ),
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
                json!({"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 3000, "top_p": 0.95}),
            ),
            (
                "minimal effort means no thinking",
                request(json!({"reasoning_effort": "minimal"})),
                json!({"thinking": null}),
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
        let (body, stream, include_usage, response_tool) = convert_with(&input, &DEFAULTS).unwrap();
        assert!(stream && include_usage);
        assert_eq!(response_tool.as_deref(), Some("answer"));
        assert!(body.get("stream_options").is_none() && body.get("stream").is_none());
        let (_, stream, include_usage, response_tool) = convert_with(&request(json!({})), &DEFAULTS).unwrap();
        assert!(!stream && !include_usage && response_tool.is_none());
    }

    #[test]
    fn exclusive_sampling_models_refuse_both() {
        let defaults = ModelDefaults { exclusive_sampling: true, ..DEFAULTS };
        let error = convert_with(&request(json!({"temperature": 0.5, "top_p": 0.9})), &defaults).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("top_p"));
        check_with("one of them is fine", request(json!({"temperature": 0.5})), &defaults, json!({"temperature": 0.5}));
        let no_thinking = ModelDefaults { supports_thinking: false, ..DEFAULTS };
        let error = convert_with(&request(json!({"reasoning_effort": "low"})), &no_thinking).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("reasoning_effort"));
    }

    #[test]
    fn rejects_bad_input() {
        let image = |url: String| {
            request(
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}),
            )
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
            (
                "reasoning with temperature",
                request(json!({"reasoning_effort": "low", "temperature": 0.5})),
                "temperature",
            ),
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
}
