//! The per-model rules as checks: one function per rule, called by every surface that builds a
//! request for Bedrock (the chat adapter, the Messages API, native routes), so each rule lives in
//! one place.
//!
//! Inputs are neutral (what the client asked, in any API's terms) and every refusal is a 400 whose
//! `param` is the caller's name for the field and whose message names the model.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Display, Effort, ModelRules, SamplingRule, ThinkingDefault, ThinkingMode, catalog};
use crate::error::ApiError;

/// Smallest thinking budget Anthropic accepts.
pub const MIN_THINKING_BUDGET: u32 = 1024;
/// `max_tokens` used with thinking on when the client set none (within the model's limit): room
/// for thinking and the answer.
pub const THINKING_DEFAULT_MAX_TOKENS: u32 = 16_384;

/// A reasoning level in any API's terms: OpenAI's `reasoning_effort` values and Anthropic's `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReasoningLevel {
    None,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
    Max,
}

impl ReasoningLevel {
    pub const ALL: [ReasoningLevel; 7] = [
        ReasoningLevel::None,
        ReasoningLevel::Minimal,
        ReasoningLevel::Low,
        ReasoningLevel::Medium,
        ReasoningLevel::High,
        ReasoningLevel::Xhigh,
        ReasoningLevel::Max,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningLevel::None => "none",
            ReasoningLevel::Minimal => "minimal",
            ReasoningLevel::Low => "low",
            ReasoningLevel::Medium => "medium",
            ReasoningLevel::High => "high",
            ReasoningLevel::Xhigh => "xhigh",
            ReasoningLevel::Max => "max",
        }
    }

    pub fn parse(value: &str) -> Option<ReasoningLevel> {
        ReasoningLevel::ALL.into_iter().find(|level| level.as_str() == value)
    }

    /// The effort of the same name (`none` and `minimal` have none).
    fn effort(self) -> Option<Effort> {
        Effort::parse(self.as_str())
    }
}

impl fmt::Display for ReasoningLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Anthropic's own `thinking` object, as a client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingRequest {
    Enabled { budget_tokens: Option<u32> },
    Adaptive { display: Option<Display> },
    Disabled,
}

/// The `thinking` object sent to Bedrock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingOut {
    Enabled {
        budget_tokens: u32,
    },
    Adaptive {
        #[serde(skip_serializing_if = "Option::is_none")]
        display: Option<Display>,
    },
    Disabled,
}

/// How a request reasons on a model: what to send, and whether the model may think.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasoningPlan {
    pub thinking: Option<ThinkingOut>,
    pub effort: Option<Effort>,
    /// The model may think on this request (asked for, or its default): forced tool choice is
    /// refused and sampling is limited.
    pub thinks: bool,
}

impl ReasoningPlan {
    /// Thinking budget, when the plan uses one.
    pub fn budget(&self) -> Option<u32> {
        match self.thinking {
            Some(ThinkingOut::Enabled { budget_tokens }) => Some(budget_tokens),
            _ => None,
        }
    }
}

/// Sampling parameters of a request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
}

/// The client's names for the sampling fields (the same in OpenAI's and Anthropic's APIs).
const TEMPERATURE: &str = "temperature";
const TOP_P: &str = "top_p";
const TOP_K: &str = "top_k";

fn refused(param: &str, message: String) -> ApiError {
    ApiError::invalid_request(param, "unsupported_parameter", message)
}

fn invalid(param: &str, message: String) -> ApiError {
    ApiError::invalid_request(param, "invalid_value", message)
}

fn list(efforts: &[Effort]) -> String {
    efforts.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
}

impl ModelRules {
    /// What thinking a reasoning level means on this model (`param` names the client's field).
    ///
    /// Adaptive models: `none` turns thinking off where the model allows it (or sends nothing when
    /// it does not think by default), else asks for the lowest effort; `minimal` is the lowest
    /// effort; the others are the effort of the same name, refused where the model lacks it. Budget
    /// models: `none` is no thinking, the others a budget from the catalog, `max` is refused.
    /// `display: summarized` is asked for where thinking text is omitted by default, so a client
    /// that asked for reasoning gets its text.
    pub fn plan_reasoning(&self, model: &str, level: ReasoningLevel, param: &str) -> Result<ReasoningPlan, ApiError> {
        let thinks_by_default = self.thinking_default == ThinkingDefault::On;
        match self.thinking {
            ThinkingMode::None if level == ReasoningLevel::None => Ok(ReasoningPlan::off()),
            ThinkingMode::None => Err(refused(param, format!("model {model} does not support reasoning"))),
            ThinkingMode::Budget => match level {
                ReasoningLevel::None => Ok(ReasoningPlan { thinking: None, effort: None, thinks: thinks_by_default }),
                level => match catalog().budget_tokens.get(&level) {
                    Some(&budget_tokens) => Ok(ReasoningPlan {
                        thinking: Some(ThinkingOut::Enabled { budget_tokens }),
                        effort: None,
                        thinks: true,
                    }),
                    None => Err(refused(
                        param,
                        format!(
                            "reasoning effort `{level}` is not available on model {model}, which thinks with a token budget; use none, minimal, low, medium, high or xhigh"
                        ),
                    )),
                },
            },
            ThinkingMode::Adaptive | ThinkingMode::AdaptiveOnly => {
                let effort = match level {
                    ReasoningLevel::None if !thinks_by_default => return Ok(ReasoningPlan::off()),
                    ReasoningLevel::None if self.thinking_disable => {
                        return Ok(ReasoningPlan {
                            thinking: Some(ThinkingOut::Disabled),
                            effort: None,
                            thinks: false,
                        });
                    }
                    ReasoningLevel::None | ReasoningLevel::Minimal => self.efforts.first().copied(),
                    level => {
                        let effort = level.effort();
                        match effort.filter(|e| self.efforts.contains(e)) {
                            Some(effort) => Some(effort),
                            None => {
                                return Err(refused(
                                    param,
                                    format!(
                                        "reasoning effort `{level}` is not available on model {model}; use none, minimal{}{}",
                                        if self.efforts.is_empty() { "" } else { ", " },
                                        list(&self.efforts)
                                    ),
                                ));
                            }
                        }
                    }
                };
                // `none` on a model that always thinks: the lowest effort, and no text asked for.
                let display = if level == ReasoningLevel::None { None } else { self.display_for_text() };
                Ok(ReasoningPlan { thinking: Some(ThinkingOut::Adaptive { display }), effort, thinks: true })
            }
        }
    }

    /// Anthropic's own `thinking` object (and `output_config.effort`), checked against the model.
    /// `want_text`: ask for thinking text where it is omitted by default (unless the client chose a
    /// display itself).
    pub fn plan_thinking(
        &self,
        model: &str,
        thinking: Option<ThinkingRequest>,
        effort: Option<(Effort, &str)>,
        want_text: bool,
    ) -> Result<ReasoningPlan, ApiError> {
        let thinks_by_default = self.thinking_default == ThinkingDefault::On;
        let mut plan = match thinking {
            None => ReasoningPlan { thinking: None, effort: None, thinks: thinks_by_default },
            Some(ThinkingRequest::Disabled) => {
                if !thinks_by_default {
                    // Nothing to turn off: thinking is off unless asked for.
                    ReasoningPlan::off()
                } else if self.thinking_disable {
                    ReasoningPlan { thinking: Some(ThinkingOut::Disabled), effort: None, thinks: false }
                } else {
                    return Err(refused(
                        "thinking.type",
                        format!(
                            "model {model} always thinks: thinking.type `disabled` is not accepted; use adaptive thinking with the lowest effort ({})",
                            self.efforts.first().map_or("low", |e| e.as_str())
                        ),
                    ));
                }
            }
            Some(ThinkingRequest::Enabled { budget_tokens }) => {
                match self.thinking {
                    ThinkingMode::None => {
                        return Err(refused("thinking", format!("model {model} does not support reasoning")));
                    }
                    ThinkingMode::AdaptiveOnly => {
                        return Err(refused(
                            "thinking.type",
                            format!(
                                "model {model} accepts only adaptive thinking: send thinking {{\"type\": \"adaptive\"}} with output_config.effort instead of `enabled` with budget_tokens"
                            ),
                        ));
                    }
                    ThinkingMode::Budget | ThinkingMode::Adaptive => {}
                }
                let budget_tokens = budget_tokens.filter(|b| *b >= MIN_THINKING_BUDGET).ok_or_else(|| {
                    invalid(
                        "thinking.budget_tokens",
                        format!("thinking.budget_tokens must be at least {MIN_THINKING_BUDGET}"),
                    )
                })?;
                ReasoningPlan { thinking: Some(ThinkingOut::Enabled { budget_tokens }), effort: None, thinks: true }
            }
            Some(ThinkingRequest::Adaptive { display }) => {
                match self.thinking {
                    ThinkingMode::None => {
                        return Err(refused("thinking", format!("model {model} does not support reasoning")));
                    }
                    ThinkingMode::Budget => {
                        return Err(refused(
                            "thinking.type",
                            format!(
                                "model {model} does not support adaptive thinking: send thinking {{\"type\": \"enabled\", \"budget_tokens\": N}} or reasoning_effort"
                            ),
                        ));
                    }
                    ThinkingMode::Adaptive | ThinkingMode::AdaptiveOnly => {}
                }
                let display = display.or(if want_text { self.display_for_text() } else { None });
                ReasoningPlan { thinking: Some(ThinkingOut::Adaptive { display }), effort: None, thinks: true }
            }
        };
        if let Some((effort, param)) = effort {
            if !self.efforts.contains(&effort) {
                return Err(refused(
                    param,
                    if self.efforts.is_empty() {
                        format!("model {model} does not take an effort level")
                    } else {
                        format!("effort `{effort}` is not available on model {model}; use {}", list(&self.efforts))
                    },
                ));
            }
            if matches!(plan.thinking, Some(ThinkingOut::Enabled { .. })) {
                return Err(refused(
                    param,
                    format!("effort cannot be combined with budget thinking on model {model}; use adaptive thinking"),
                ));
            }
            if !plan.thinks && !self.effort_allowed_without_thinking(effort) {
                return Err(refused(
                    param,
                    format!(
                        "effort `{effort}` needs thinking on model {model}: without thinking it accepts {}; lower the effort or send thinking {{\"type\": \"adaptive\"}}",
                        self.efforts_without_thinking.as_deref().map_or_else(|| list(&self.efforts), list)
                    ),
                ));
            }
            plan.effort = Some(effort);
        }
        Ok(plan)
    }

    /// Whether `effort` may be sent while the model does not think on the request.
    pub fn effort_allowed_without_thinking(&self, effort: Effort) -> bool {
        self.efforts_without_thinking.as_ref().is_none_or(|allowed| allowed.contains(&effort))
    }

    /// Turns thinking off on a plan (nothing sent, where the model does not think by default),
    /// lowering its effort to the highest one the model takes without thinking.
    pub fn drop_thinking(&self, plan: &mut ReasoningPlan) {
        plan.thinking = None;
        plan.thinks = false;
        if let Some(effort) = plan.effort
            && !self.effort_allowed_without_thinking(effort)
        {
            plan.effort = self
                .efforts_without_thinking
                .as_ref()
                .and_then(|allowed| allowed.iter().copied().filter(|e| *e <= effort).max());
        }
    }

    /// `display` to send so thinking text comes back, where the model omits it by default.
    fn display_for_text(&self) -> Option<Display> {
        (self.thinking_display == Display::Omitted).then_some(Display::Summarized)
    }

    /// `max_tokens` to send: the client's value capped at the model's limit, else the model's
    /// default (raised for thinking on adaptive models, which share max_tokens with the answer).
    pub fn max_tokens(&self, requested: Option<u32>, plan: &ReasoningPlan) -> u32 {
        let default = if plan.thinks && plan.budget().is_none() {
            self.default_max_tokens.max(THINKING_DEFAULT_MAX_TOKENS)
        } else {
            self.default_max_tokens
        };
        requested.unwrap_or(default).min(self.max_output_tokens).max(1)
    }

    /// Makes `budget < max_tokens <= max_output_tokens` for budget thinking: `max_tokens` is raised
    /// by the budget first (the answer keeps the room the client asked for), then the budget shrinks
    /// to ¾ of `max_tokens` if the model's limit bites. Returns the new `max_tokens`.
    pub fn fit_budget(
        &self,
        model: &str,
        max_tokens: u32,
        plan: &mut ReasoningPlan,
        param: &str,
    ) -> Result<u32, ApiError> {
        let Some(mut budget) = plan.budget() else { return Ok(max_tokens) };
        let mut max_tokens = max_tokens;
        if max_tokens <= budget {
            max_tokens = max_tokens.saturating_add(budget).min(self.max_output_tokens);
        }
        if budget >= max_tokens {
            budget = max_tokens / 4 * 3;
        }
        if budget < MIN_THINKING_BUDGET {
            return Err(refused(
                param,
                format!(
                    "the output limit of model {model} ({} tokens) leaves no room for reasoning",
                    self.max_output_tokens
                ),
            ));
        }
        plan.thinking = Some(ThinkingOut::Enabled { budget_tokens: budget });
        Ok(max_tokens)
    }

    /// Checks sampling parameters against the model's rule and thinking's limits. A value equal to
    /// the model's default is dropped; a refused one is a 400 naming the parameter and the model,
    /// unless `drop_unsupported_params` is set for the model (then it is dropped and logged).
    pub fn check_sampling(&self, model: &str, sampling: Sampling, thinks: bool) -> Result<Sampling, ApiError> {
        let mut out = sampling;
        if let Some(value) = out.temperature {
            if !(0.0..=2.0).contains(&value) {
                return Err(invalid(TEMPERATURE, "temperature must be between 0 and 2".into()));
            }
            if value > 1.0 {
                return Err(invalid(
                    TEMPERATURE,
                    "anthropic models accept a temperature between 0 and 1; values above 1 are not supported".into(),
                ));
            }
        }
        if out.top_p.is_some_and(|value| !(0.0..=1.0).contains(&value)) {
            return Err(invalid(TOP_P, "top_p must be between 0 and 1".into()));
        }
        let drop = |param: &str, why: String, slot: &mut bool| -> Result<(), ApiError> {
            if self.drop_unsupported_params {
                tracing::debug!(model, param, "dropped a sampling parameter the model refuses");
                *slot = true;
                Ok(())
            } else {
                Err(refused(
                    param,
                    format!("{why}; remove `{param}` (or the operator sets drop_unsupported_params for model {model})"),
                ))
            }
        };
        let (mut drop_temperature, mut drop_top_p, mut drop_top_k) = (false, false, false);
        match self.sampling {
            SamplingRule::Free => {}
            SamplingRule::Exclusive => {
                if out.temperature.is_some() && out.top_p.is_some() {
                    drop(TOP_P, format!("model {model} accepts `temperature` or `top_p`, not both"), &mut drop_top_p)?;
                }
            }
            SamplingRule::DefaultsOnly => {
                let defaults = self.sampling_defaults;
                for (param, value, default, slot) in [
                    (TEMPERATURE, out.temperature, defaults.temperature, &mut drop_temperature),
                    (TOP_P, out.top_p, defaults.top_p, &mut drop_top_p),
                ] {
                    match (value, default) {
                        (None, _) => {}
                        (Some(value), Some(default)) if value == default => *slot = true,
                        (Some(_), default) => {
                            let allowed =
                                default.map(|d| format!(" (only {d}, which is its default)")).unwrap_or_default();
                            drop(param, format!("model {model} does not accept `{param}`{allowed}"), slot)?;
                        }
                    }
                }
                if out.top_k.is_some() {
                    drop(TOP_K, format!("model {model} does not accept `top_k`"), &mut drop_top_k)?;
                }
            }
        }
        if drop_temperature {
            out.temperature = None;
        }
        if drop_top_p {
            out.top_p = None;
        }
        if drop_top_k {
            out.top_k = None;
        }
        if thinks {
            match out.temperature {
                Some(value) if value != 1.0 => {
                    drop(
                        TEMPERATURE,
                        format!("model {model} thinks on this request: temperature must be 1 or unset"),
                        &mut drop_temperature,
                    )?;
                    out.temperature = None;
                }
                // 1 is the default: leave it out.
                _ => out.temperature = None,
            }
            if out.top_p.is_some_and(|value| value < 0.95) {
                drop(
                    TOP_P,
                    format!("model {model} thinks on this request: top_p must be between 0.95 and 1"),
                    &mut drop_top_p,
                )?;
                out.top_p = None;
            }
            if out.top_k.is_some() {
                drop(TOP_K, format!("model {model} thinks on this request: top_k cannot be used"), &mut drop_top_k)?;
                out.top_k = None;
            }
        }
        Ok(out)
    }

    /// Checks `anthropic_beta` values: each must be one the model accepts.
    pub fn check_betas(&self, model: &str, betas: &[&str], param: &str) -> Result<(), ApiError> {
        let refused_betas: Vec<&str> =
            betas.iter().copied().filter(|beta| !self.betas.iter().any(|b| b == beta)).collect();
        if refused_betas.is_empty() {
            return Ok(());
        }
        let accepted = if self.betas.is_empty() { "none".to_owned() } else { self.betas.join(", ") };
        Err(refused(
            param,
            format!("model {model} does not accept anthropic_beta {} (accepted: {accepted})", refused_betas.join(", ")),
        ))
    }

    /// A forced tool choice (`any` / a named tool) on this request: refused while the model thinks,
    /// and on models that never take one.
    pub fn check_forced_tool_choice(&self, model: &str, plan: &ReasoningPlan, param: &str) -> Result<(), ApiError> {
        if !self.forced_tool_choice {
            return Err(refused(
                param,
                format!("model {model} does not accept a forced tool choice; use auto or none"),
            ));
        }
        if plan.thinks {
            return Err(refused(
                param,
                format!(
                    "reasoning cannot be combined with a forced tool choice on model {model}; use auto or none, or turn reasoning off"
                ),
            ));
        }
        Ok(())
    }

    /// Whether a forced tool choice can be used on this request, turning thinking off for it where
    /// the model thinks by default, may be switched off, and the client asked for nothing else.
    pub fn allow_forced_tool_choice(&self, plan: &mut ReasoningPlan, client_chose_thinking: bool) -> bool {
        if !self.forced_tool_choice {
            return false;
        }
        if !plan.thinks {
            return true;
        }
        if !client_chose_thinking
            && plan.thinking.is_none()
            && self.thinking_disable
            && plan.effort.is_none_or(|effort| self.effort_allowed_without_thinking(effort))
        {
            plan.thinking = Some(ThinkingOut::Disabled);
            plan.thinks = false;
            return true;
        }
        false
    }

    /// A final assistant (prefill) turn: only on models that take one, and while the model thinks
    /// only when the turn starts with its thinking block (Anthropic's rule).
    pub fn check_prefill(
        &self,
        model: &str,
        plan: &ReasoningPlan,
        starts_with_thinking: bool,
        param: &str,
    ) -> Result<(), ApiError> {
        if !self.prefill {
            return Err(refused(
                param,
                format!(
                    "model {model} does not accept a final assistant (prefill) message; end the conversation with a user or tool message"
                ),
            ));
        }
        if plan.thinks && !starts_with_thinking {
            return Err(refused(
                param,
                format!(
                    "model {model} thinks on this request, so a final assistant (prefill) message must start with its thinking block; turn reasoning off or end the conversation with a user message"
                ),
            ));
        }
        Ok(())
    }

    /// An image in the input.
    pub fn check_image(&self, model: &str, param: &str) -> Result<(), ApiError> {
        if self.accepts_images() {
            Ok(())
        } else {
            Err(refused(param, format!("model {model} does not accept image input")))
        }
    }
}

impl ReasoningPlan {
    /// No thinking, nothing sent.
    pub fn off() -> ReasoningPlan {
        ReasoningPlan { thinking: None, effort: None, thinks: false }
    }
}
