//! Tools and structured output: OpenAI function tools → Anthropic tools (strict tool use and
//! fine-grained tool streaming where the model has them), `tool_choice`, and `response_format` →
//! native structured output (`output_config.format`) on models that support it, else a tool the
//! model is asked to call (forced where the model allows a forced choice on this request).

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::params::Reasoning;
use super::{CacheCounter, Target, invalid, unsupported};
use crate::error::ApiError;
use crate::models::ToolStreaming;
use crate::wire::anthropic::{OutputFormat, Tool, ToolChoice, ToolChoiceKind};
use crate::wire::bounded::is_json_object;
use crate::wire::openai::{ChatCompletionRequest, ResponseFormat, StringOr, ToolChoiceObject};

/// Tool name used to carry `response_format: {"type":"json_object"}`.
pub const JSON_OBJECT_TOOL: &str = "json_object";

pub(super) fn check_tool_name(name: &str, param: impl FnOnce() -> String) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(invalid(param(), format!("invalid tool name `{name}`: use 1-64 characters of a-z, A-Z, 0-9, _ and -")))
    }
}

/// Function tools. `strict: true` is kept where the model has strict tool use (dropped elsewhere:
/// the SDKs set it on every parsed tool); each tool's arguments stream as generated where the
/// model takes `eager_input_streaming` (models on the beta get it from [`super::params::betas`]
/// in streams). The field is sent on unary requests too: a tool definition is part of the prompt
/// the cache keys on, so it stays the same bytes whether or not a turn streams.
pub(super) fn convert_tools<'a>(
    req: &'a ChatCompletionRequest,
    model: Target<'_>,
    caches: &mut CacheCounter<'a>,
) -> Result<Vec<Tool<'a>>, ApiError> {
    let Some(tools) = &req.tools else { return Ok(Vec::new()) };
    let mut converted: Vec<Tool<'a>> = Vec::with_capacity(tools.len());
    let mut names: HashSet<&str> = HashSet::with_capacity(tools.len());
    let eager = (model.rules.tool_streaming == ToolStreaming::Eager).then_some(true);
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
        let input_schema = object_schema(function.parameters.as_deref()).ok_or_else(|| {
            invalid(format!("tools[{i}].function.parameters"), "parameters must be a JSON schema object")
        })?;
        let cache_control = caches.check(tool.cache_control.as_ref(), || format!("tools[{i}]"))?;
        converted.push(Tool {
            name: &function.name,
            description: function.description.as_deref().filter(|text| !text.is_empty()),
            input_schema,
            strict: (function.strict == Some(true) && model.rules.strict_tools).then_some(true),
            eager_input_streaming: eager,
            cache_control,
        });
    }
    Ok(converted)
}

/// How the answer's shape is constrained: natively, or through a tool.
pub(super) struct Structured<'a> {
    pub format: Option<OutputFormat<'a>>,
    pub response_tool: Option<Tool<'a>>,
}

/// `response_format` (or Anthropic's own `output_config.format`): `json_schema` becomes native
/// structured output where the model has it; elsewhere, and for `json_object` (an open object no
/// native schema expresses), a tool the model is asked to call.
pub(super) fn structured_output<'a>(
    req: &'a ChatCompletionRequest,
    model: Target<'_>,
    tools: &[Tool<'a>],
) -> Result<Structured<'a>, ApiError> {
    let native = model.rules.structured_outputs;
    if let Some(format) = req.output_config.as_ref().and_then(|config| config.format.as_ref()) {
        if req.response_format.as_ref().is_some_and(|f| !matches!(f, ResponseFormat::Text)) {
            return Err(invalid("output_config.format", "send response_format or output_config.format, not both"));
        }
        if format.kind != "json_schema" {
            return Err(invalid("output_config.format.type", "output_config.format.type must be `json_schema`"));
        }
        if !native {
            return Err(unsupported(
                "output_config.format",
                format!("model {} does not support structured outputs; use response_format", model.name),
            ));
        }
        let schema = object_schema(format.schema.as_deref()).ok_or_else(|| {
            invalid("output_config.format.schema", "the schema must describe a JSON object (type object)")
        })?;
        return Ok(Structured { format: Some(OutputFormat { schema }), response_tool: None });
    }
    let tool = match &req.response_format {
        None | Some(ResponseFormat::Text) => return Ok(Structured { format: None, response_tool: None }),
        Some(ResponseFormat::JsonObject) => Tool {
            name: JSON_OBJECT_TOOL,
            description: Some("Respond by calling this tool with the answer as a JSON object."),
            input_schema: object_schema(None).ok_or_else(|| invalid("response_format", "internal schema"))?,
            strict: None,
            eager_input_streaming: None,
            cache_control: None,
        },
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            check_tool_name(&json_schema.name, || "response_format.json_schema.name".to_owned())?;
            let schema = object_schema(json_schema.schema.as_deref()).ok_or_else(|| {
                unsupported(
                    "response_format.json_schema.schema",
                    "the schema must describe a JSON object (type object) for anthropic models",
                )
            })?;
            if native {
                return Ok(Structured { format: Some(OutputFormat { schema }), response_tool: None });
            }
            Tool {
                name: &json_schema.name,
                description: Some(
                    json_schema
                        .description
                        .as_deref()
                        .unwrap_or("Respond by calling this tool; its input is the final answer."),
                ),
                input_schema: schema,
                strict: None,
                eager_input_streaming: None,
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
    Ok(Structured { format: None, response_tool: Some(tool) })
}

/// Tools (with the response tool, if any), the tool choice, and the response tool's name.
pub(super) struct ToolSetup<'a> {
    pub tools: Vec<Tool<'a>>,
    pub choice: Option<ToolChoice<'a>>,
    pub response_tool: Option<&'a str>,
}

/// `tool_choice` and `parallel_tool_calls`. A forced choice (`required`, a named function) must be
/// one the model accepts on this request; a model that thinks by default but may stop does so for
/// it when the client did not ask for reasoning. The response tool is forced where allowed, else
/// left to the model (`auto`, asked for by the tool's description).
pub(super) fn tool_choice<'a>(
    req: &'a ChatCompletionRequest,
    model: Target<'_>,
    mut tools: Vec<Tool<'a>>,
    response_tool: Option<Tool<'a>>,
    reasoning: &mut Reasoning,
) -> Result<ToolSetup<'a>, ApiError> {
    let rules = model.rules;
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
    let forced = |choice: &Option<ToolChoice<'_>>| {
        choice.as_ref().is_some_and(|choice| matches!(choice.kind, ToolChoiceKind::Any | ToolChoiceKind::Tool))
    };
    if forced(&choice) && !rules.allow_forced_tool_choice(&mut reasoning.plan, reasoning.chosen) {
        rules.check_forced_tool_choice(model.name, &reasoning.plan, "tool_choice")?;
    }

    let response_name = response_tool.as_ref().map(|tool| tool.name);
    if let Some(response_tool) = response_tool {
        let user_tools_usable = !tools.is_empty() && choice.as_ref().is_none_or(|c| c.kind != ToolChoiceKind::None);
        tools.push(response_tool);
        let wanted = if !user_tools_usable {
            Some(ToolChoice { kind: ToolChoiceKind::Tool, name: response_name, disable_parallel_tool_use: None })
        } else if choice.as_ref().is_none_or(|c| c.kind == ToolChoiceKind::Auto) {
            // Either call a real tool or answer through the response tool.
            Some(ToolChoice { kind: ToolChoiceKind::Any, name: None, disable_parallel_tool_use: None })
        } else {
            choice.clone()
        };
        choice = if forced(&wanted) && !rules.allow_forced_tool_choice(&mut reasoning.plan, reasoning.chosen) {
            // The model is asked (by the tool's description) to answer through the tool; a plain
            // text answer passes through as text.
            Some(ToolChoice { kind: ToolChoiceKind::Auto, name: None, disable_parallel_tool_use: None })
        } else {
            wanted
        };
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
    Ok(ToolSetup { tools, choice, response_tool: response_name })
}

/// An input schema with `"type":"object"` at the top, as Anthropic requires (added when absent);
/// `None` if it cannot be one. Only the top-level `type` is read: the schema stays raw text.
fn object_schema(schema: Option<&RawValue>) -> Option<Cow<'_, RawValue>> {
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<&'a RawValue>,
    }
    let object = || RawValue::from_string(r#"{"type":"object"}"#.to_owned()).ok().map(Cow::Owned);
    let Some(raw) = schema else { return object() };
    let text = raw.get().trim();
    if text == "null" {
        return object();
    }
    if !is_json_object(text) {
        return None;
    }
    let top: Top<'_> = serde_json::from_str(text).ok()?;
    match top.kind.map(RawValue::get) {
        Some(r#""object""#) => Some(Cow::Borrowed(raw)),
        Some(_) => None,
        None => {
            // `{` + `"type":"object"` + the rest (`}` or `, more members`).
            let rest = text[1..].trim_start();
            let joined = if rest.starts_with('}') {
                r#"{"type":"object"}"#.to_owned()
            } else {
                format!(r#"{{"type":"object",{rest}"#)
            };
            RawValue::from_string(joined).ok().map(Cow::Owned)
        }
    }
}
