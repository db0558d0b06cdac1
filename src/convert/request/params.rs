//! Parameters: reasoning (`reasoning_effort`, Anthropic's `thinking` and `output_config.effort`),
//! `max_tokens`, sampling, stop sequences, `user`, `anthropic_beta`. Every per-model decision is a
//! rule of the model catalog ([`crate::models::rules`]); this module only reads the OpenAI fields.

use std::borrow::Cow;

use super::messages::last_tool_turn_lacks_thinking;
use super::{Target, invalid};
use crate::error::ApiError;
use crate::models::rules::parse_effort;
use crate::models::{ReasoningLevel, ReasoningPlan, Sampling, TOOL_STREAMING_BETA, ThinkingRequest, ToolStreaming};
use crate::wire::anthropic::{Message, Metadata};
use crate::wire::openai::{ChatCompletionRequest, OneOrMany};

/// Longest `user` forwarded as `metadata.user_id`.
pub const MAX_USER_ID_LEN: usize = 256;

/// The reasoning of a request: the plan, and whether the client chose it (any of
/// `reasoning_effort`, `thinking`, `output_config.effort`) or it is the model's default.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reasoning {
    pub plan: ReasoningPlan,
    pub chosen: bool,
    /// The client's field the plan came from, for errors that concern it.
    pub param: &'static str,
}

/// Reasoning from `thinking` (wins), else `reasoning_effort`, with `output_config.effort`.
pub(super) fn reasoning(
    req: &ChatCompletionRequest,
    model: Target<'_>,
    messages: &[Message<'_>],
) -> Result<Reasoning, ApiError> {
    let effort =
        req.output_config.as_ref().and_then(|config| config.effort.as_deref()).map(parse_effort).transpose()?;
    let level = match req.reasoning_effort.as_deref() {
        None => None,
        Some(value) => Some(ReasoningLevel::parse(value).ok_or_else(|| {
            invalid(
                "reasoning_effort",
                format!("unknown reasoning_effort `{value}`; use none, minimal, low, medium, high, xhigh or max"),
            )
        })?),
    };
    if let (Some(effort), Some(level)) = (effort, level)
        && level.as_str() != effort.as_str()
    {
        return Err(invalid(
            "output_config.effort",
            format!("output_config.effort `{effort}` contradicts reasoning_effort `{level}`; send one of them"),
        ));
    }
    let rules = model.rules;
    let (mut plan, param) = if let Some(thinking) = &req.thinking {
        let request =
            ThinkingRequest::parse(Some(&thinking.kind), thinking.budget_tokens, thinking.display.as_deref())?;
        (rules.plan_thinking(model.name, Some(request), effort.map(|e| (e, "output_config.effort")), true)?, "thinking")
    } else if let Some(level) = level {
        (rules.plan_reasoning(model.name, level, "reasoning_effort")?, "reasoning_effort")
    } else {
        (rules.plan_thinking(model.name, None, effort.map(|e| (e, "output_config.effort")), true)?, "output_config")
    };
    let chosen = req.thinking.is_some() || level.is_some() || effort.is_some();
    if plan.thinks
        && rules.thinking_default == crate::models::ThinkingDefault::Off
        && last_tool_turn_lacks_thinking(messages)
    {
        // Anthropic refuses a tool-use continuation whose assistant turn does not start with its
        // thinking block; a client that did not keep the blocks gets an answer without thinking
        // (and an effort the model takes without it).
        rules.drop_thinking(&mut plan);
    }
    Ok(Reasoning { plan, chosen, param })
}

/// `max_completion_tokens` (wins) or `max_tokens`, capped by the model; budget thinking fitted in.
pub(super) fn max_tokens(
    req: &ChatCompletionRequest,
    model: Target<'_>,
    reasoning: &mut Reasoning,
) -> Result<u32, ApiError> {
    let (param, requested) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(value), _) => ("max_completion_tokens", Some(value)),
        (None, Some(value)) => ("max_tokens", Some(value)),
        (None, None) => ("max_tokens", None),
    };
    if requested == Some(0) {
        return Err(invalid(param, format!("{param} must be at least 1")));
    }
    let max_tokens = model.rules.max_tokens(requested, &reasoning.plan);
    model.rules.fit_budget(model.name, max_tokens, &mut reasoning.plan, reasoning.param)
}

pub(super) fn sampling(req: &ChatCompletionRequest) -> Sampling {
    Sampling { temperature: req.temperature, top_p: req.top_p, top_k: req.top_k }
}

pub(super) fn stop_sequences(req: &ChatCompletionRequest) -> Result<Vec<&str>, ApiError> {
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

pub(super) fn user_metadata(req: &ChatCompletionRequest) -> Result<Option<Metadata<'_>>, ApiError> {
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

/// The client's `anthropic_beta` (each one checked against the model), plus the betas the gateway
/// adds itself: fine-grained tool streaming on models that need its beta, and the thinking token
/// count where the model reports it.
pub(super) fn betas<'a>(
    req: &'a ChatCompletionRequest,
    model: Target<'_>,
    plan: &ReasoningPlan,
    streams_tools: bool,
) -> Result<Vec<Cow<'a, str>>, ApiError> {
    let asked: Vec<&str> = req.anthropic_beta.iter().flatten().map(String::as_str).collect();
    model.rules.check_betas(model.name, &asked, "anthropic_beta")?;
    let mut betas: Vec<Cow<'a, str>> = Vec::with_capacity(asked.len() + 2);
    for beta in req.anthropic_beta.iter().flatten() {
        if !betas.iter().any(|b| b == beta) {
            betas.push(Cow::Borrowed(beta));
        }
    }
    let mut add = |beta: &str| {
        if !betas.iter().any(|b| b == beta) {
            betas.push(Cow::Owned(beta.to_owned()));
        }
    };
    if streams_tools && model.rules.tool_streaming == ToolStreaming::Beta {
        add(TOOL_STREAMING_BETA);
    }
    if plan.thinks
        && let Some(beta) = &model.rules.reasoning_usage_beta
    {
        add(beta);
    }
    Ok(betas)
}
