//! Anthropic `message` → OpenAI `chat.completion` (non-streaming), plus the mappings the stream
//! converter shares: finish reasons and usage.
//!
//! Pure: the caller supplies id, creation time and the public model name; nothing here reads a
//! clock or knows the Bedrock model id.

use http::StatusCode;

use crate::error::{ApiError, ErrorKind};
use crate::models::{ModelConfig, ThinkingDefault, ThinkingMode};
use crate::wire::anthropic::{self, AnthropicResponse, ResponseBlock};
use crate::wire::openai::{
    AssistantMessage, ChatCompletion, Choice, CompletionTokensDetails, FunctionCallOut, ModelLifecycle, ModelObject,
    ModelReasoning, PromptTokensDetails, ThinkingBlock, ToolCallOut, Usage,
};

/// A served model as `GET /v1/models` lists it, with its catalog facts.
pub fn model_object(name: &str, model: &ModelConfig) -> ModelObject {
    let rules = &model.rules;
    let entry = model.entry();
    let lifecycle = entry.map(|entry| &entry.lifecycle);
    ModelObject {
        id: name.to_owned(),
        object: "model",
        created: lifecycle.and_then(|l| l.launched.as_deref()).and_then(unix_date).unwrap_or(0),
        owned_by: "byollm".to_owned(),
        display_name: entry.map(|entry| entry.display_name.clone()),
        family: model.family.clone(),
        context_window: rules.context_window,
        max_output_tokens: rules.max_output_tokens,
        reasoning: ModelReasoning {
            supported: rules.reasons(),
            thinking: match rules.thinking {
                ThinkingMode::None => "none",
                ThinkingMode::Budget => "budget",
                ThinkingMode::Adaptive => "adaptive",
                ThinkingMode::AdaptiveOnly => "adaptive_only",
            },
            always_on: rules.thinking_default == ThinkingDefault::On && !rules.thinking_disable,
            efforts: if rules.thinking == ThinkingMode::Budget {
                crate::models::catalog().budget_tokens.keys().map(|level| level.as_str()).collect()
            } else {
                rules.efforts.iter().map(|effort| effort.as_str()).collect()
            },
        },
        vision: rules.accepts_images(),
        lifecycle: lifecycle.map(|l| ModelLifecycle {
            status: l.status.as_str(),
            launched: l.launched.clone(),
            legacy_since: l.legacy_since.clone(),
            eol_not_before: l.eol_not_before.clone(),
            eol: l.eol.clone(),
        }),
    }
}

/// `YYYY-MM-DD` → Unix seconds at midnight UTC.
fn unix_date(date: &str) -> Option<u64> {
    let mut parts = date.splitn(3, '-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (parts.next()??, parts.next()??, parts.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    u64::try_from((era * 146_097 + day_of_era - 719_468) * 86_400).ok()
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, unknown future reasons.
        _ => "stop",
    }
}

/// Anthropic usage → OpenAI usage: prompt tokens include cache reads and writes, the reads are
/// `prompt_tokens_details.cached_tokens` and the writes `prompt_tokens_details.cache_write_tokens`
/// (when reported); thinking tokens, when Bedrock reports them, become
/// `completion_tokens_details.reasoning_tokens`.
pub fn usage(usage: &anthropic::Usage) -> Usage {
    let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
    let prompt_tokens = usage.input_tokens.unwrap_or(0) + cache_read + usage.cache_creation_input_tokens.unwrap_or(0);
    let completion_tokens = usage.output_tokens.unwrap_or(0);
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: cache_read,
            cache_write_tokens: usage.cache_creation_input_tokens,
        },
        completion_tokens_details: usage
            .output_tokens_details
            .and_then(|details| details.thinking_tokens)
            .map(|reasoning_tokens| CompletionTokensDetails { reasoning_tokens }),
    }
}

/// Converts a complete Anthropic message. `response_tool` is [`crate::convert::request::Prepared::response_tool`]:
/// a call to it becomes the message text, and if it was the only call the finish reason is `stop`.
pub fn to_chat_completion(
    message: &AnthropicResponse,
    id: impl Into<String>,
    created: u64,
    model: impl Into<String>,
    response_tool: Option<&str>,
) -> ChatCompletion {
    let mut content: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut answered_by_response_tool = false;

    for block in &message.content {
        match block {
            ResponseBlock::Text { text } => content.get_or_insert_with(String::new).push_str(text),
            ResponseBlock::ToolUse { name, input, .. } if Some(name.as_str()) == response_tool => {
                answered_by_response_tool = true;
                content.get_or_insert_with(String::new).push_str(&input.to_string());
            }
            ResponseBlock::ToolUse { id, name, input } => tool_calls.push(ToolCallOut {
                id: id.clone(),
                kind: "function",
                function: FunctionCallOut { name: name.clone(), arguments: input.to_string() },
            }),
            ResponseBlock::Thinking { thinking, signature } => {
                reasoning.get_or_insert_with(String::new).push_str(thinking);
                thinking_blocks
                    .push(ThinkingBlock::Thinking { thinking: thinking.clone(), signature: signature.clone() });
            }
            ResponseBlock::RedactedThinking { data } => {
                thinking_blocks.push(ThinkingBlock::RedactedThinking { data: data.clone() })
            }
            ResponseBlock::Other => {}
        }
    }

    let mut finish = finish_reason(message.stop_reason.as_deref());
    if answered_by_response_tool && tool_calls.is_empty() && finish == "tool_calls" {
        finish = "stop";
    }
    ChatCompletion {
        id: id.into(),
        object: "chat.completion",
        created,
        model: model.into(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                refusal: None,
                tool_calls,
                reasoning_content: reasoning,
                thinking_blocks,
            },
            finish_reason: finish,
            logprobs: None,
        }],
        usage: usage(&message.usage),
        system_fingerprint: None,
    }
}

/// An Anthropic error (`{"type":"error","error":{"type","message"}}`, in a body or a stream event)
/// as the error we send: the caller's own mistakes stay 4xx, the rest is the upstream's fault.
pub fn upstream_error(kind: &str, message: &str) -> ApiError {
    let message = if message.is_empty() { kind.to_owned() } else { message.to_owned() };
    match kind {
        "invalid_request_error" => {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest, "upstream_invalid_request", message)
        }
        "request_too_large" => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::InvalidRequest, "request_too_large", message)
        }
        "rate_limit_error" => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::RateLimit, "upstream_rate_limited", message)
        }
        "overloaded_error" => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Upstream, "upstream_overloaded", message)
        }
        "timeout_error" => ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorKind::Upstream, "upstream_timeout", message),
        _ => ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, "upstream_error", message),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Converts an Anthropic message and compares the whole `chat.completion`.
    fn check(message: Value, response_tool: Option<&str>, expected_message: Value, finish: &str, usage: Value) {
        let message: AnthropicResponse = serde_json::from_value(message).unwrap();
        let completion = to_chat_completion(&message, "chatcmpl-1", 1700000000, "claude-x", response_tool);
        assert_eq!(
            serde_json::to_value(&completion).unwrap(),
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "claude-x",
                "choices": [{"index": 0, "message": expected_message, "finish_reason": finish, "logprobs": null}],
                "usage": usage,
            })
        );
    }

    fn plain_usage(prompt: u64, completion: u64) -> Value {
        json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
               "prompt_tokens_details": {"cached_tokens": 0}})
    }

    fn message(content: Value, stop_reason: &str) -> Value {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": content,
               "stop_reason": stop_reason, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 5}})
    }

    #[test]
    fn converts_messages() {
        check(
            message(
                json!([{"type": "text", "text": "Hello"}, {"type": "text", "text": " world", "citations": null}]),
                "end_turn",
            ),
            None,
            json!({"role": "assistant", "content": "Hello world", "refusal": null}),
            "stop",
            plain_usage(10, 5),
        );
        check(
            message(
                json!([
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Paris", "n": 1}},
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}]),
                "tool_use",
            ),
            None,
            json!({"role": "assistant", "content": "Let me check.", "refusal": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Paris\",\"n\":1}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]}),
            "tool_calls",
            plain_usage(10, 5),
        );
        check(
            message(
                json!([
                {"type": "thinking", "thinking": "Think.", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "42"}]),
                "end_turn",
            ),
            None,
            json!({"role": "assistant", "content": "42", "refusal": null, "reasoning_content": "Think.",
                   "thinking_blocks": [{"type": "thinking", "thinking": "Think.", "signature": "sig=="},
                                       {"type": "redacted_thinking", "data": "opaque"}]}),
            "stop",
            plain_usage(10, 5),
        );
        check(
            message(json!([{"type": "tool_use", "id": "toolu_9", "name": "answer", "input": {"x": 1}}]), "tool_use"),
            Some("answer"),
            json!({"role": "assistant", "content": "{\"x\":1}", "refusal": null}),
            "stop",
            plain_usage(10, 5),
        );
        check(
            json!({"content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                   "usage": {"input_tokens": 3, "output_tokens": 2, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 50}}),
            None,
            json!({"role": "assistant", "content": "hi", "refusal": null}),
            "stop",
            json!({"prompt_tokens": 153, "completion_tokens": 2, "total_tokens": 155,
                   "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 100}}),
        );
        check(
            message(json!([{"type": "server_tool_use", "id": "s", "name": "web", "input": {}}]), "max_tokens"),
            None,
            json!({"role": "assistant", "content": null, "refusal": null}),
            "length",
            plain_usage(10, 5),
        );
    }

    #[test]
    fn model_objects_carry_catalog_facts() {
        assert_eq!(unix_date("1970-01-01"), Some(0));
        assert_eq!(unix_date("2026-09-22"), Some(1_790_035_200));
        assert_eq!(unix_date("2000-02-29"), Some(951_782_400));
        assert_eq!(unix_date("2026-13-01"), None);
        let models = crate::models::default_models();
        let opus = serde_json::to_value(model_object("claude-opus-5-5", &models["claude-opus-5-5"])).unwrap();
        assert_eq!(
            opus,
            json!({"id": "claude-opus-5-5", "object": "model", "created": 1_790_035_200u64, "owned_by": "byollm",
                   "display_name": "Claude Opus 5.5", "family": "claude-opus-5-5", "context_window": 1_000_000,
                   "max_output_tokens": 128_000, "vision": true,
                   "reasoning": {"supported": true, "thinking": "adaptive_only", "always_on": true,
                                 "efforts": ["low", "medium", "high", "xhigh", "max"]},
                   "lifecycle": {"status": "active", "launched": "2026-09-22", "eol_not_before": "2027-09-22"}})
        );
        let haiku = serde_json::to_value(model_object("h", &models["claude-haiku-4-5"])).unwrap();
        assert_eq!(haiku["reasoning"]["efforts"], json!(["minimal", "low", "medium", "high", "xhigh"]));
        assert_eq!(haiku["reasoning"]["thinking"], "budget");
    }

    #[test]
    fn maps_finish_reasons() {
        let cases = [
            (Some("end_turn"), "stop"),
            (Some("stop_sequence"), "stop"),
            (Some("pause_turn"), "stop"),
            (Some("max_tokens"), "length"),
            (Some("model_context_window_exceeded"), "length"),
            (Some("tool_use"), "tool_calls"),
            (Some("refusal"), "content_filter"),
            (None, "stop"),
        ];
        for (stop_reason, expected) in cases {
            assert_eq!(finish_reason(stop_reason), expected, "{stop_reason:?}");
        }
    }

    #[test]
    fn maps_upstream_errors() {
        let cases = [
            ("invalid_request_error", 400, ErrorKind::InvalidRequest),
            ("rate_limit_error", 429, ErrorKind::RateLimit),
            ("overloaded_error", 503, ErrorKind::Upstream),
            ("api_error", 502, ErrorKind::Upstream),
        ];
        for (kind, status, expected_kind) in cases {
            let error = upstream_error(kind, "boom");
            assert_eq!((error.status.as_u16(), error.kind, error.message.as_str()), (status, expected_kind, "boom"));
        }
    }
}
