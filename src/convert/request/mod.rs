//! OpenAI chat request → Anthropic-on-Bedrock body. Pure: no I/O, no clock, no credentials.
//!
//! Every refusal is a 400 whose `param` names the offending field (`messages[2].content[0]`,
//! `tools[1].function.name`, ...), so a client knows what to fix. The choices this converter makes
//! where the two APIs differ are listed in the [`crate::convert`] module doc; which rules apply to
//! which model comes from the model catalog ([`crate::models`]), never from the model's name.
//!
//! By concern: [`messages`] (turns, system prompt and system turns, tool results, thinking
//! replay), [`images`] (data URLs), [`params`] (reasoning, max tokens, sampling, stops, betas),
//! [`tools`] (tools, tool choice, structured output), [`cache`] (prompt-cache breakpoints the
//! policy places for the client, after the conversion).

mod cache;
mod images;
mod messages;
mod params;
mod tools;

use http::StatusCode;

use crate::error::{ApiError, ErrorKind};
use crate::models::ModelRules;
use crate::wire::anthropic::{
    AnthropicRequest, BEDROCK_ANTHROPIC_VERSION, ContentBlock, Message, OutputConfig, Role, TextBlock, Tool,
};
use crate::wire::openai::{CacheControl, ChatCompletionRequest};

pub use cache::place_breakpoints;
pub use images::MAX_IMAGE_BYTES;
pub use messages::PLACEHOLDER_USER_TURN;
pub use params::MAX_USER_ID_LEN;
pub use tools::JSON_OBJECT_TOOL;

/// Anthropic allows at most four `cache_control` breakpoints per request.
pub const MAX_CACHE_BREAKPOINTS: usize = 4;

/// The model a request is for: its public name (used in error messages) and its rules.
#[derive(Debug, Clone, Copy)]
pub struct Target<'m> {
    pub name: &'m str,
    pub rules: &'m ModelRules,
}

/// Everything the caller needs to invoke Bedrock and convert the answer back.
#[derive(Debug, Clone)]
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

/// Parses a request body; a type error names the field it hit. The cost is bounded by the body's
/// size: lists are capped (each field, and all together; see [`crate::wire::bounded`]), unknown
/// fields are refused by name before their value is read, ignored ones are skipped unbuilt.
pub fn parse_request(body: &[u8]) -> Result<ChatCompletionRequest, ApiError> {
    let fail = |path: String, message: String| {
        let message = crate::error::clip_parse_error(format!("invalid request body: {message}"));
        if path == "." || path.is_empty() {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest, "invalid_body", message)
        } else {
            ApiError::invalid_request(path, "invalid_body", message)
        }
    };
    let (parsed, items) = crate::wire::bounded::with_item_count(|| {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let request: ChatCompletionRequest = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| fail(error.path().to_string(), error.into_inner().to_string()))?;
        deserializer.end().map_err(|error| fail(String::new(), error.to_string()))?;
        Ok(request)
    });
    parsed.map(|request| ChatCompletionRequest { parsed_items: items, ..request })
}

/// Converts an OpenAI chat request into an Anthropic-on-Bedrock body for `model`.
pub fn to_anthropic<'a>(req: &'a ChatCompletionRequest, model: Target<'_>) -> Result<Prepared<'a>, ApiError> {
    reject_unsupported(req)?;
    let stream = req.stream.unwrap_or(false);
    let mut caches = CacheCounter::default();

    let (system, mut messages) = messages::convert(&req.messages, model, &mut caches)?;
    let mut reasoning = params::reasoning(req, model, &messages)?;
    let tools = tools::convert_tools(req, model, &mut caches)?;
    let structured = tools::structured_output(req, model, &tools)?;
    let setup = tools::tool_choice(req, model, tools, structured.response_tool, &mut reasoning)?;
    let max_tokens = params::max_tokens(req, model, &mut reasoning)?;
    let sampling = model.rules.check_sampling(model.name, params::sampling(req), reasoning.plan.thinks)?;
    let stop_sequences = params::stop_sequences(req)?;
    let metadata = params::user_metadata(req)?;
    let anthropic_beta = params::betas(req, model, &reasoning.plan, stream && !setup.tools.is_empty())?;
    messages::finish(&mut messages, req, model, &reasoning.plan)?;
    caches.check_sent(&setup.tools, &system, &messages)?;
    let output_config = (reasoning.plan.effort.is_some() || structured.format.is_some())
        .then_some(OutputConfig { effort: reasoning.plan.effort, format: structured.format });
    debug_assert!(messages.first().is_some_and(|m| m.role == Role::User));

    Ok(Prepared {
        body: AnthropicRequest {
            anthropic_version: BEDROCK_ANTHROPIC_VERSION,
            max_tokens,
            messages,
            system,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            top_k: sampling.top_k,
            stop_sequences,
            tools: setup.tools,
            tool_choice: setup.choice,
            thinking: reasoning.plan.thinking,
            output_config,
            metadata,
            anthropic_beta,
        },
        stream,
        include_usage: req.stream_options.as_ref().and_then(|options| options.include_usage).unwrap_or(false),
        response_tool: setup.response_tool,
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
    if req.n.is_some_and(|n| n != 1) {
        return Err(unsupported("n", "only n=1 is supported: one choice is generated per request"));
    }
    if req.logprobs == Some(true) {
        return Err(unsupported("logprobs", "logprobs are not available for anthropic models"));
    }
    if req.top_logprobs.is_some_and(|n| n > 0) {
        return Err(unsupported("top_logprobs", "logprobs are not available for anthropic models"));
    }
    if req.audio.is_some() {
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
    if req.logit_bias.is_some_and(|bias| bias.0) {
        return Err(unsupported("logit_bias", "logit_bias is not supported by anthropic models"));
    }
    if req.prediction.is_some() {
        return Err(unsupported("prediction", "predicted outputs are not supported"));
    }
    if req.web_search_options.is_some() {
        return Err(unsupported("web_search_options", "web search is not supported"));
    }
    if req.functions.is_some() {
        return Err(unsupported("functions", "the `functions` parameter is deprecated and not supported; use `tools`"));
    }
    if req.function_call.is_some() {
        return Err(unsupported(
            "function_call",
            "the `function_call` parameter is deprecated and not supported; use `tool_choice`",
        ));
    }
    Ok(())
}

/// Validates each `cache_control` as it is read, remembering where the client put it, then counts
/// the breakpoints the body actually sends: a part's and its message's land on one block (one
/// breakpoint), one on text that is dropped is not sent.
#[derive(Default)]
struct CacheCounter<'a> {
    /// Each `cache_control` read, with the client's name for where it was.
    seen: Vec<(&'a CacheControl, String)>,
}

impl<'a> CacheCounter<'a> {
    fn check(
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
        self.seen.push((cache, param));
        Ok(Some(cache))
    }

    /// At most [`MAX_CACHE_BREAKPOINTS`] in what is sent (tools, system, then messages, the order
    /// Anthropic reads them); the 400 names the first one past the limit as the client wrote it.
    fn check_sent(
        &self,
        tools: &[Tool<'_>],
        system: &[TextBlock<'_>],
        messages: &[Message<'_>],
    ) -> Result<(), ApiError> {
        if self.seen.len() <= MAX_CACHE_BREAKPOINTS {
            return Ok(());
        }
        let sent = tools
            .iter()
            .filter_map(|tool| tool.cache_control)
            .chain(system.iter().filter_map(|block| block.cache_control));
        let blocks = messages.iter().flat_map(|message| message.content.iter()).flat_map(|block| {
            let (own, nested): (_, &[TextBlock<'_>]) = match block {
                ContentBlock::Text { cache_control, .. }
                | ContentBlock::Image { cache_control, .. }
                | ContentBlock::ToolUse { cache_control, .. } => (*cache_control, &[]),
                ContentBlock::ToolResult { cache_control, content, .. } => (*cache_control, content),
                ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => (None, &[]),
            };
            nested.iter().filter_map(|block| block.cache_control).chain(own)
        });
        let Some(excess) = sent.chain(blocks).nth(MAX_CACHE_BREAKPOINTS) else { return Ok(()) };
        let param = self
            .seen
            .iter()
            .find(|(cache, _)| std::ptr::eq(*cache, excess))
            .map(|(_, param)| format!("{param}.cache_control"))
            .unwrap_or_default();
        Err(ApiError::invalid_request(
            param,
            "too_many_cache_breakpoints",
            format!("at most {MAX_CACHE_BREAKPOINTS} cache_control breakpoints are allowed per request"),
        ))
    }
}

#[cfg(test)]
mod tests;
