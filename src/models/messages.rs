//! The model rules applied to an Anthropic Messages-shaped body (as clients of `/v1/messages` or of
//! Bedrock's own `InvokeModel` send it), so those surfaces refuse and adjust exactly what the chat
//! API does: thinking and effort, structured output, sampling, `max_tokens`, betas, system turns,
//! prefill and forced tool choice.
//!
//! Adjusts only what is safe to adjust without changing the request's meaning: `max_tokens` is
//! capped at (or, when absent, set to) the model's limit or default, sampling values equal to the
//! model's defaults are removed (and refused ones too where the operator set
//! `drop_unsupported_params`). Everything else the model would refuse is a 400 naming the field.

use serde_json::{Map, Value};

use super::ModelRules;
use super::rules::{ReasoningPlan, Sampling, ThinkingRequest, parse_effort};
use crate::error::ApiError;

fn invalid(param: &str, message: String) -> ApiError {
    ApiError::invalid_request(param, "invalid_value", message)
}

fn refused(param: &str, message: String) -> ApiError {
    ApiError::invalid_request(param, "unsupported_parameter", message)
}

/// What the rules read of a request's message list, gathered without keeping the messages: how
/// many there are, where the first system turn is, and whether the last one is an assistant turn
/// (a prefill) starting with a thinking block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turns {
    pub count: usize,
    pub first_system: Option<usize>,
    /// `Some(starts_with_thinking)` when the last message is an assistant turn.
    pub prefill: Option<bool>,
}

impl Turns {
    /// Adds the next message, given its role and the `type` of its first content block.
    pub fn push(&mut self, role: &str, first_block: Option<&str>) {
        if role == "system" && self.first_system.is_none() {
            self.first_system = Some(self.count);
        }
        self.prefill = (role == "assistant").then_some(matches!(first_block, Some("thinking" | "redacted_thinking")));
        self.count += 1;
    }

    /// The turns of a message list already held as values.
    pub fn of(messages: &[Value]) -> Turns {
        let mut turns = Turns::default();
        for message in messages {
            let first_block = message.get("content").and_then(Value::as_array).and_then(|c| c.first());
            turns.push(
                message.get("role").and_then(Value::as_str).unwrap_or_default(),
                first_block.and_then(|b| b.get("type")).and_then(Value::as_str),
            );
        }
        turns
    }
}

/// Checks and adjusts `body` (the JSON object of a Messages request, its `messages` summarized in
/// `turns`) for model `name`. Returns the reasoning plan the body carries.
pub fn check_messages_body(
    name: &str,
    rules: &ModelRules,
    body: &mut Map<String, Value>,
    turns: &Turns,
) -> Result<ReasoningPlan, ApiError> {
    let thinking = match body.get("thinking") {
        None | Some(Value::Null) => None,
        Some(Value::Object(thinking)) => Some(ThinkingRequest::parse(
            thinking.get("type").and_then(Value::as_str),
            thinking.get("budget_tokens").and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()),
            thinking.get("display").and_then(Value::as_str),
        )?),
        Some(_) => return Err(invalid("thinking", "thinking must be an object".into())),
    };
    let output_config = body.get("output_config").and_then(Value::as_object);
    let effort = match output_config.and_then(|config| config.get("effort")) {
        None | Some(Value::Null) => None,
        Some(Value::String(value)) => Some(parse_effort(value)?),
        Some(_) => {
            return Err(invalid(
                "output_config.effort",
                "output_config.effort must be low, medium, high, xhigh or max".into(),
            ));
        }
    };
    if output_config.is_some_and(|config| config.get("format").is_some_and(|f| !f.is_null()))
        && !rules.structured_outputs
    {
        return Err(refused("output_config.format", format!("model {name} does not support structured outputs")));
    }
    let chose_thinking = thinking.is_some();
    let plan = rules.plan_thinking(name, thinking, effort.map(|e| (e, "output_config.effort")), false)?;

    let max_tokens = match body.get("max_tokens") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|v| *v >= 1)
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
                .ok_or_else(|| invalid("max_tokens", "max_tokens must be a positive integer".into()))?,
        ),
    };
    let max_tokens = rules.max_tokens(max_tokens, &plan);
    if plan.budget().is_some_and(|budget| budget >= max_tokens) {
        return Err(invalid(
            "thinking.budget_tokens",
            format!("thinking.budget_tokens must be below max_tokens ({max_tokens} for model {name})"),
        ));
    }
    body.insert("max_tokens".into(), Value::from(max_tokens));

    let number = |key: &str| body.get(key).and_then(Value::as_f64);
    let requested = Sampling {
        temperature: number("temperature"),
        top_p: number("top_p"),
        top_k: body.get("top_k").and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()),
    };
    let allowed = rules.check_sampling(name, requested, plan.thinks)?;
    for (key, before, after) in [
        ("temperature", requested.temperature.is_some(), allowed.temperature.is_some()),
        ("top_p", requested.top_p.is_some(), allowed.top_p.is_some()),
        ("top_k", requested.top_k.is_some(), allowed.top_k.is_some()),
    ] {
        if before && !after {
            body.remove(key);
        }
    }

    if let Some(betas) = body.get("anthropic_beta") {
        let betas: Vec<&str> = betas
            .as_array()
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .filter(|list: &Vec<&str>| Some(list.len()) == betas.as_array().map(Vec::len))
            .ok_or_else(|| invalid("anthropic_beta", "anthropic_beta must be a list of strings".into()))?;
        rules.check_betas(name, &betas, "anthropic_beta")?;
    }

    if !rules.system_turns
        && let Some(index) = turns.first_system
    {
        return Err(refused(
            &format!("messages[{index}].role"),
            format!("model {name} does not accept system turns inside messages; put the text in the top-level system"),
        ));
    }
    let forced = body
        .get("tool_choice")
        .and_then(|choice| choice.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|kind| kind == "any" || kind == "tool");
    let mut plan = plan;
    if forced {
        let before = plan.thinking;
        if !rules.allow_forced_tool_choice(&mut plan, chose_thinking) {
            rules.check_forced_tool_choice(name, &plan, "tool_choice")?;
        } else if plan.thinking != before {
            // The model thinks by default and may stop: it must, for a forced tool choice.
            body.insert("thinking".into(), serde_json::json!({"type": "disabled"}));
        }
    }
    if let Some(starts_with_thinking) = turns.prefill {
        rules.check_prefill(name, &plan, starts_with_thinking, &format!("messages[{}]", turns.count - 1))?;
    }
    Ok(plan)
}
