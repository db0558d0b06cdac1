//! Messages: OpenAI's role-tagged list → Anthropic's system prompt and alternating turns.
//!
//! Leading `system` / `developer` messages become the system prompt. Later ones become
//! mid-conversation `{"role": "system"}` turns on models that accept them (so the cached prompt
//! prefix stays intact), where Anthropic's placement rule allows (right after a user turn, and last
//! or followed by an assistant turn); everywhere else they are appended to the system prompt.
//! Same-role turns merge, tool messages become `tool_result` blocks, thinking blocks are replayed
//! first and unchanged.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::value::RawValue;

use super::tools::check_tool_name;
use super::{CacheCounter, Target, images, invalid, unsupported};
use crate::error::ApiError;
use crate::models::ReasoningPlan;
use crate::wire::anthropic::{ContentBlock, Message, Role, TextBlock};
use crate::wire::bounded::is_json_object;
use crate::wire::openai::{
    CacheControl, ChatCompletionRequest, ContentPart, MAX_TOOL_ARGUMENT_BYTES, Message as OpenAiMessage, StringOr,
    ThinkingBlock,
};

/// Text of the user turn inserted when a conversation does not start with a user message.
pub const PLACEHOLDER_USER_TURN: &str = "(conversation start)";

pub(super) type System<'a> = Vec<TextBlock<'a>>;

/// Converts the messages; the caller then checks the conversation's end with [`finish`].
pub(super) fn convert<'a>(
    input: &'a [OpenAiMessage],
    model: Target<'_>,
    caches: &mut CacheCounter<'a>,
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
        if message.audio.is_some() {
            return Err(unsupported(&format!("messages[{i}].audio"), "audio messages are not supported"));
        }
        if message.function_call.is_some() {
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
                let mut blocks = text_blocks(message, i, caches)?;
                if let Some(cache) = caches.check(message.cache_control.as_ref(), || format!("messages[{i}]"))?
                    && let Some(last) = blocks.last_mut()
                {
                    last.cache_control = Some(cache);
                }
                if turns.is_empty() || !model.rules.system_turns {
                    system.append(&mut blocks);
                } else if !blocks.is_empty() {
                    let content = blocks.into_iter().map(system_block).collect();
                    push_turn(&mut turns, Role::System, content, None);
                }
            }
            "user" => {
                let blocks = user_blocks(message, i, model, caches)?;
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
                let content = text_blocks(message, i, caches)?;
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
    place_system_turns(&mut system, &mut turns);
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

/// The text of a message that may only hold text (system, developer, tool), each part's
/// `cache_control` checked; whitespace-only text is dropped (Bedrock refuses such blocks).
fn text_blocks<'a>(
    message: &'a OpenAiMessage,
    i: usize,
    caches: &mut CacheCounter<'a>,
) -> Result<Vec<TextBlock<'a>>, ApiError> {
    let mut blocks = Vec::new();
    let mut push = |text: &'a str, cache_control: Option<&'a CacheControl>| {
        if !text.trim().is_empty() {
            blocks.push(TextBlock { text: Cow::Borrowed(text), cache_control });
        }
    };
    match &message.content {
        None => {
            return Err(invalid(format!("messages[{i}].content"), format!("{} messages need content", message.role)));
        }
        Some(StringOr::String(text)) => push(text, None),
        Some(StringOr::Other(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let param = || format!("messages[{i}].content[{j}]");
                match part {
                    ContentPart::Text { text, cache_control } => {
                        push(text, caches.check(cache_control.as_ref(), param)?)
                    }
                    other => {
                        return Err(unsupported(
                            &param(),
                            format!("{} messages accept only text parts, not {}", message.role, part_name(other)),
                        ));
                    }
                }
            }
        }
    }
    Ok(blocks)
}

fn part_name(part: &ContentPart) -> &'static str {
    match part {
        ContentPart::Text { .. } => "text",
        ContentPart::ImageUrl { .. } => "image_url",
        ContentPart::Refusal { .. } => "refusal",
        ContentPart::InputAudio => "input_audio",
        ContentPart::File => "file",
    }
}

fn message_cache<'a>(
    message: &'a OpenAiMessage,
    i: usize,
    caches: &mut CacheCounter<'a>,
) -> Result<Option<&'a CacheControl>, ApiError> {
    caches.check(message.cache_control.as_ref(), || format!("messages[{i}]"))
}

fn user_blocks<'a>(
    message: &'a OpenAiMessage,
    i: usize,
    model: Target<'_>,
    caches: &mut CacheCounter<'a>,
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
                        model.rules.check_image(model.name, &param())?;
                        let cache_control = caches.check(cache_control.as_ref(), param)?;
                        let source =
                            images::image_source(&image_url.url, &format!("messages[{i}].content[{j}].image_url.url"))?;
                        blocks.push(ContentBlock::Image { source, cache_control });
                    }
                    ContentPart::InputAudio => {
                        return Err(unsupported(&param(), "input_audio content parts are not supported"));
                    }
                    ContentPart::File => {
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
    caches: &mut CacheCounter<'a>,
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
        let param = || format!("{param}.function.arguments");
        if arguments.len() > MAX_TOOL_ARGUMENT_BYTES {
            return Err(invalid(
                param(),
                format!(
                    "tool call arguments are {} bytes; at most {MAX_TOOL_ARGUMENT_BYTES} are accepted",
                    arguments.len()
                ),
            ));
        }
        let input = if arguments.is_empty() {
            Cow::Owned(RawValue::from_string("{}".to_owned()).map_err(|_| invalid(param(), "tool call arguments"))?)
        } else if is_json_object(arguments) {
            // Checked just above: one JSON object, kept as its text.
            Cow::Borrowed(
                serde_json::from_str::<&RawValue>(arguments).map_err(|_| invalid(param(), "tool call arguments"))?,
            )
        } else {
            return Err(invalid(param(), "tool call arguments must be a JSON object"));
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

/// A system prompt block as a block of a system turn.
fn system_block(block: TextBlock<'_>) -> ContentBlock<'_> {
    ContentBlock::Text { text: block.text, cache_control: block.cache_control }
}

/// Keeps each mid-conversation system turn where Anthropic's placement rule allows it (right after
/// a user turn, and last or followed by an assistant turn); the others are appended to the system
/// prompt, and the turns around them merge again.
fn place_system_turns<'a>(system: &mut System<'a>, turns: &mut Vec<Message<'a>>) {
    if !turns.iter().any(|turn| turn.role == Role::System) {
        return;
    }
    let placed: Vec<bool> = (0..turns.len())
        .map(|k| {
            turns[k].role != Role::System
                || (k > 0
                    && turns[k - 1].role == Role::User
                    && turns.get(k + 1).is_none_or(|next| next.role == Role::Assistant))
        })
        .collect();
    let mut kept: Vec<Message<'a>> = Vec::with_capacity(turns.len());
    for (turn, placed) in std::mem::take(turns).into_iter().zip(placed) {
        if placed {
            push_turn(&mut kept, turn.role, turn.content, None);
            continue;
        }
        for block in turn.content {
            if let ContentBlock::Text { text, cache_control } = block {
                system.push(TextBlock { text, cache_control });
            }
        }
    }
    *turns = kept;
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

pub(super) fn last_tool_turn_lacks_thinking(messages: &[Message<'_>]) -> bool {
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

/// The end of the conversation: a final assistant (prefill) turn is right-trimmed (Anthropic
/// refuses trailing whitespace) and must be one the model accepts with this request's reasoning; a
/// prefill that trims to nothing is dropped.
pub(super) fn finish(
    messages: &mut Vec<Message<'_>>,
    req: &ChatCompletionRequest,
    model: Target<'_>,
    plan: &ReasoningPlan,
) -> Result<(), ApiError> {
    if let Some(last) = messages.last_mut().filter(|message| message.role == Role::Assistant) {
        trim_prefill(last);
        if last.content.is_empty() {
            messages.pop();
        } else {
            let starts_with_thinking = matches!(
                last.content.first(),
                Some(ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. })
            );
            let index = req.messages.iter().rposition(|m| m.role == "assistant").unwrap_or_default();
            model.rules.check_prefill(model.name, plan, starts_with_thinking, &format!("messages[{index}]"))?;
        }
    }
    Ok(())
}
