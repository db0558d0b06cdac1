//! Prompt-cache breakpoints for chat-completions clients, which have no way to place Anthropic's
//! `cache_control` themselves (the policy's `prompt_cache = "auto"`). Pure: the converted body
//! goes in, the same body with markers comes out; no content is ever changed, only markers added.
//!
//! Where: an agent resends the same tools, system prompt and history every turn, growing at the
//! end. Claude caches the prefix up to a breakpoint and, at the next request, reads it if that
//! request has a breakpoint at the same place (or within the 20 blocks after it). So each request
//! gets, in order of value:
//! 1. the *tail*: the last cacheable block of the conversation (a final assistant prefill left
//!    out: its bytes change once the answer is complete). It writes this turn's prompt.
//! 2. the *previous tail*: where the previous turn's tail was — the last cacheable block before the
//!    newest assistant turn. It reads everything the previous request wrote, however many blocks
//!    the newest turns added (the lookback alone fails past 20 blocks: many parallel tool calls).
//! 3. the end of the system prompt, and 4. the last tool: prefixes other conversations of the same
//!    agent share.
//!
//! Never: more than [`MAX_CACHE_BREAKPOINTS`] with the client's own markers (which are kept, and
//! counted); a breakpoint on a block the client already marked; a breakpoint whose prefix is below
//! the model's minimum cacheable length (an estimate that errs low: a quarter of the non-blank
//! bytes of the text, tool and schema fields, images and thinking counted as nothing); a `1h`
//! breakpoint after a `5m` one (Anthropic and Bedrock refuse it); a TTL the model does not take;
//! anything at all on a model the catalog gives no `prompt_cache`.

use std::sync::LazyLock;

use super::MAX_CACHE_BREAKPOINTS;
use crate::models::{CacheTtl, ModelRules};
use crate::wire::anthropic::{AnthropicRequest, ContentBlock, Role};
use crate::wire::openai::CacheControl;

/// `{"type": "ephemeral"}`: five minutes, the default TTL (sent without `ttl`).
static FIVE_MINUTES: LazyLock<CacheControl> =
    LazyLock::new(|| CacheControl { kind: "ephemeral".to_owned(), ttl: None });
/// `{"type": "ephemeral", "ttl": "1h"}`.
static ONE_HOUR: LazyLock<CacheControl> =
    LazyLock::new(|| CacheControl { kind: "ephemeral".to_owned(), ttl: Some(CacheTtl::OneHour.as_str().to_owned()) });

/// Where a block is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Tool(usize),
    System(usize),
    /// (message, content block).
    Message(usize, usize),
}

/// One block of the prompt, in the order Claude reads it (tools, system, messages).
struct Block {
    slot: Slot,
    /// Can carry `cache_control` (thinking blocks cannot).
    cacheable: bool,
    /// The client's own breakpoint on it (or on a block inside it), with its TTL.
    marked: Option<CacheTtl>,
    /// Estimated tokens of the prompt up to and including this block.
    tokens_through: u64,
}

/// Adds breakpoints to `body` for a model with `rules`, at `ttl` where the model takes it (else
/// five minutes); returns how many were added.
pub fn place_breakpoints(body: &mut AnthropicRequest<'_>, rules: &ModelRules, ttl: CacheTtl) -> usize {
    let Some(rule) = &rules.prompt_cache else { return 0 };
    let ttl = if rule.ttls.contains(&ttl) { ttl } else { CacheTtl::FiveMinutes };
    let blocks = blocks(body);
    let client = blocks.iter().filter(|block| block.marked.is_some()).count();
    let mut budget = MAX_CACHE_BREAKPOINTS.saturating_sub(client);
    let mut placed: Vec<(usize, CacheTtl)> = Vec::new();
    for candidate in candidates(body, &blocks) {
        if budget == 0 {
            break;
        }
        let Some(at) = candidate else { continue };
        let block = &blocks[at];
        if !block.cacheable
            || block.marked.is_some()
            || block.tokens_through < u64::from(rule.min_tokens)
            || placed.iter().any(|(other, _)| *other == at)
        {
            continue;
        }
        // TTLs may not increase along the prompt: after a client's 5m marker, 5m; none before a
        // client's 1h marker unless it is 1h too.
        let ttl = if blocks[..at].iter().any(|b| b.marked == Some(CacheTtl::FiveMinutes)) {
            CacheTtl::FiveMinutes
        } else {
            ttl
        };
        if blocks[at + 1..].iter().any(|b| b.marked.is_some_and(|later| later > ttl)) {
            continue;
        }
        placed.push((at, ttl));
        budget -= 1;
    }
    for (at, ttl) in &placed {
        let marker: &'static CacheControl = match ttl {
            CacheTtl::FiveMinutes => &FIVE_MINUTES,
            CacheTtl::OneHour => &ONE_HOUR,
        };
        mark(body, blocks[*at].slot, marker);
    }
    placed.len()
}

/// The candidate positions (indexes into `blocks`), most valuable first.
fn candidates(body: &AnthropicRequest<'_>, blocks: &[Block]) -> [Option<usize>; 4] {
    let position = |slot: Slot| blocks.iter().position(|block| block.slot == slot);
    let last_cacheable = |end: usize| -> Option<usize> {
        // A final assistant turn is a prefill: its text changes once the answer is complete.
        let end = match body.messages[..end].last() {
            Some(last) if last.role == Role::Assistant => end - 1,
            _ => end,
        };
        blocks
            .iter()
            .rposition(|block| block.cacheable && matches!(block.slot, Slot::Message(message, _) if message < end))
    };
    let messages = body.messages.len();
    let tail = last_cacheable(messages);
    let newest_answer = match body.messages.last() {
        Some(last) if last.role == Role::Assistant => messages - 1,
        _ => messages,
    };
    let previous = body.messages[..newest_answer]
        .iter()
        .rposition(|message| message.role == Role::Assistant)
        .and_then(last_cacheable);
    let system = body.system.len().checked_sub(1).and_then(|last| position(Slot::System(last)));
    let tools = body.tools.len().checked_sub(1).and_then(|last| position(Slot::Tool(last)));
    [tail, previous, system, tools]
}

/// Every block of the prompt with its estimated running token count.
fn blocks(body: &AnthropicRequest<'_>) -> Vec<Block> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut push = |slot: Slot, cacheable: bool, marked: Option<CacheTtl>, fields: &[&str]| {
        bytes += fields.iter().map(|field| non_blank(field)).sum::<u64>();
        out.push(Block { slot, cacheable, marked, tokens_through: bytes / 4 });
    };
    for (i, tool) in body.tools.iter().enumerate() {
        let fields = [tool.name, tool.description.unwrap_or_default(), tool.input_schema.get()];
        push(Slot::Tool(i), true, ttl_of(tool.cache_control), &fields);
    }
    for (i, block) in body.system.iter().enumerate() {
        push(Slot::System(i), true, ttl_of(block.cache_control), &[&block.text]);
    }
    for (m, message) in body.messages.iter().enumerate() {
        for (b, block) in message.content.iter().enumerate() {
            let slot = Slot::Message(m, b);
            match block {
                ContentBlock::Text { text, cache_control } => push(slot, true, ttl_of(*cache_control), &[text]),
                ContentBlock::Image { cache_control, .. } => push(slot, true, ttl_of(*cache_control), &[]),
                ContentBlock::ToolUse { id, name, input, cache_control } => {
                    push(slot, true, ttl_of(*cache_control), &[id, name, input.get()])
                }
                ContentBlock::ToolResult { tool_use_id, content, cache_control } => {
                    let marked =
                        content.iter().map(|inner| ttl_of(inner.cache_control)).chain([ttl_of(*cache_control)]);
                    let marked = marked.flatten().min();
                    let mut fields: Vec<&str> = content.iter().map(|inner| inner.text.as_ref()).collect();
                    fields.push(tool_use_id);
                    push(slot, true, marked, &fields);
                }
                // Earlier turns' thinking may not count towards the cached prefix: nothing.
                ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => push(slot, false, None, &[]),
            }
        }
    }
    out
}

/// Bytes that are not whitespace: a lower bound of four times Claude's token count of the text.
fn non_blank(text: &str) -> u64 {
    text.bytes().filter(|byte| !byte.is_ascii_whitespace()).count() as u64
}

/// The TTL of a client's marker (validated when it was read: `5m`, `1h` or none).
fn ttl_of(cache_control: Option<&CacheControl>) -> Option<CacheTtl> {
    cache_control.map(|cache| cache.ttl.as_deref().and_then(CacheTtl::parse).unwrap_or(CacheTtl::FiveMinutes))
}

fn mark<'a>(body: &mut AnthropicRequest<'a>, slot: Slot, marker: &'a CacheControl) {
    match slot {
        Slot::Tool(i) => body.tools[i].cache_control = Some(marker),
        Slot::System(i) => body.system[i].cache_control = Some(marker),
        Slot::Message(m, b) => match &mut body.messages[m].content[b] {
            ContentBlock::Text { cache_control, .. }
            | ContentBlock::Image { cache_control, .. }
            | ContentBlock::ToolUse { cache_control, .. }
            | ContentBlock::ToolResult { cache_control, .. } => *cache_control = Some(marker),
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::convert::request::{Target, parse_request, to_anthropic};
    use crate::models::{apply_overrides, catalog};

    /// Claude Sonnet 4.5's rules (5m and 1h), with a small minimum so short texts can be cached.
    fn rules(min_tokens: u32, ttls: &str) -> ModelRules {
        let entry = catalog().by_family("claude-sonnet-4-5").unwrap();
        let overrides = format!("prompt_cache = {{ min_tokens = {min_tokens}, ttls = {ttls} }}");
        apply_overrides(&entry.rules, overrides.parse().unwrap()).unwrap()
    }

    /// Converts and places breakpoints; the body as JSON and how many were placed.
    fn place(request: &Value, rules: &ModelRules, ttl: CacheTtl) -> (Value, usize) {
        let bytes = serde_json::to_vec(request).unwrap();
        let parsed = parse_request(&bytes).unwrap();
        let mut prepared = to_anthropic(&parsed, Target { name: "claude-test", rules }).unwrap();
        let placed = place_breakpoints(&mut prepared.body, rules, ttl);
        (serde_json::to_value(&prepared.body).unwrap(), placed)
    }

    /// Where the markers are: `tools[i]`, `system[i]`, `messages[m][b]`, with their TTL.
    fn markers(body: &Value) -> Vec<(String, &'static str)> {
        let ttl = |block: &Value| if block["cache_control"]["ttl"] == "1h" { "1h" } else { "5m" };
        let mut out = Vec::new();
        for (i, tool) in body["tools"].as_array().into_iter().flatten().enumerate() {
            if tool.get("cache_control").is_some() {
                out.push((format!("tools[{i}]"), ttl(tool)));
            }
        }
        for (i, block) in body["system"].as_array().into_iter().flatten().enumerate() {
            if block.get("cache_control").is_some() {
                out.push((format!("system[{i}]"), ttl(block)));
            }
        }
        for (m, message) in body["messages"].as_array().unwrap().iter().enumerate() {
            for (b, block) in message["content"].as_array().unwrap().iter().enumerate() {
                if block.get("cache_control").is_some() {
                    out.push((format!("messages[{m}][{b}]"), ttl(block)));
                }
            }
        }
        out
    }

    fn at(places: &[&str]) -> Vec<(String, &'static str)> {
        places.iter().map(|place| (place.to_string(), "5m")).collect()
    }

    fn tool(name: &str) -> Value {
        json!({"type": "function", "function": {"name": name, "description": "Looks something up in the records",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}})
    }

    /// An agent conversation after `turns` tool-using turns, waiting for the model's next move.
    fn agent(turns: usize) -> Value {
        let mut messages = vec![
            json!({"role": "system", "content": "You are a careful agent. Use the tools to answer."}),
            json!({"role": "user", "content": "Find the records of the three oldest customers."}),
        ];
        for turn in 0..turns {
            let id = format!("call_{turn}");
            messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"customers\"}"}}]}));
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": format!("result {turn}: forty rows")}));
        }
        json!({"model": "claude", "tools": [tool("lookup"), tool("search")], "messages": messages})
    }

    /// The body without markers.
    fn unmarked(body: &Value) -> Value {
        let mut body = body.clone();
        strip(&mut body);
        body
    }

    fn strip(value: &mut Value) {
        match value {
            Value::Object(object) => {
                object.remove("cache_control");
                object.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }

    #[test]
    fn an_agent_turn_gets_its_tail_the_previous_tail_the_system_prompt_and_the_tools() {
        let rules = rules(10, r#"["5m", "1h"]"#);
        let (body, placed) = place(&agent(3), &rules, CacheTtl::FiveMinutes);
        assert_eq!(placed, 4);
        // messages: user, (assistant, user with the tool result) x3; the newest result is the tail,
        // the one before the newest assistant turn the previous tail.
        assert_eq!(markers(&body), at(&["tools[1]", "system[0]", "messages[4][0]", "messages[6][0]"]));
        // The first turn has no previous tail: three.
        let (body, placed) = place(&agent(0), &rules, CacheTtl::FiveMinutes);
        assert_eq!((placed, markers(&body)), (3, at(&["tools[1]", "system[0]", "messages[0][0]"])));
    }

    #[test]
    fn the_next_turn_reads_where_this_one_wrote_and_changes_nothing_but_markers() {
        let rules = rules(10, r#"["5m"]"#);
        let mut previous: Option<Value> = None;
        for turns in 0..8 {
            let (body, _) = place(&agent(turns), &rules, CacheTtl::FiveMinutes);
            assert!(markers(&body).len() <= MAX_CACHE_BREAKPOINTS);
            if let Some(previous) = &previous {
                let tail = markers(previous).into_iter().map(|(place, _)| place).next_back().unwrap();
                assert!(markers(&body).iter().any(|(place, _)| *place == tail), "turn {turns}: {tail} marked again");
                let (old, new) = (unmarked(previous), unmarked(&body));
                assert_eq!((&old["tools"], &old["system"]), (&new["tools"], &new["system"]));
                let old = old["messages"].as_array().unwrap();
                assert_eq!(old[..], new["messages"].as_array().unwrap()[..old.len()], "turn {turns}");
            }
            previous = Some(body);
        }
    }

    #[test]
    fn a_long_turn_still_reads_the_previous_one() {
        // Thirty parallel calls: far more than the 20 blocks the lookback reaches.
        let mut request = agent(1);
        let messages = request["messages"].as_array_mut().unwrap();
        let calls: Vec<Value> = (0..30)
            .map(|i| json!({"id": format!("p{i}"), "type": "function", "function": {"name": "lookup", "arguments": "{}"}}))
            .collect();
        messages.push(json!({"role": "assistant", "content": "Looking at all of them.", "tool_calls": calls}));
        for i in 0..30 {
            messages.push(json!({"role": "tool", "tool_call_id": format!("p{i}"), "content": format!("row {i}")}));
        }
        let (body, _) = place(&request, &rules(10, r#"["5m"]"#), CacheTtl::FiveMinutes);
        assert_eq!(markers(&body), at(&["tools[1]", "system[0]", "messages[2][0]", "messages[4][29]"]));
    }

    #[test]
    fn nothing_below_the_minimum_and_nothing_for_a_model_without_caching() {
        let request = agent(2);
        let small = rules(10, r#"["5m"]"#);
        let bytes = serde_json::to_vec(&request).unwrap();
        let parsed = parse_request(&bytes).unwrap();
        let prepared = to_anthropic(&parsed, Target { name: "claude-test", rules: &small }).unwrap();
        let estimates = blocks(&prepared.body);
        let (tools, system, tail) =
            (estimates[1].tokens_through, estimates[2].tokens_through, estimates.last().unwrap());
        assert!(tools < system && system < tail.tokens_through, "{tools} {system} {}", tail.tokens_through);
        // A minimum above the system prompt's prefix and below the whole prompt: the turns only.
        let (body, placed) = place(&request, &rules(system as u32 + 1, r#"["5m"]"#), CacheTtl::FiveMinutes);
        assert_eq!((placed, markers(&body)), (2, at(&["messages[2][0]", "messages[4][0]"])));
        let (body, placed) =
            place(&request, &rules(tail.tokens_through as u32 + 1, r#"["5m"]"#), CacheTtl::FiveMinutes);
        assert_eq!((placed, markers(&body)), (0, vec![]));
        let mut none = small.clone();
        none.prompt_cache = None;
        assert_eq!(place(&request, &none, CacheTtl::FiveMinutes).1, 0);
        assert_eq!(place(&request, &catalog().unknown, CacheTtl::FiveMinutes).1, 0);
        // The estimate errs low: a quarter of the non-blank bytes of what the blocks say.
        let text = "word ".repeat(400);
        let one = json!({"model": "claude", "messages": [{"role": "user", "content": text}]});
        let bytes = serde_json::to_vec(&one).unwrap();
        let parsed = parse_request(&bytes).unwrap();
        let prepared = to_anthropic(&parsed, Target { name: "claude-test", rules: &small }).unwrap();
        assert_eq!(blocks(&prepared.body)[0].tokens_through, 400);
    }

    #[test]
    fn client_markers_are_kept_and_counted() {
        let rules = rules(10, r#"["5m", "1h"]"#);
        let mut request = agent(3);
        request["messages"][0]["cache_control"] = json!({"type": "ephemeral"});
        request["tools"][0]["cache_control"] = json!({"type": "ephemeral"});
        let (body, placed) = place(&request, &rules, CacheTtl::FiveMinutes);
        assert_eq!(placed, 2, "two of four were the client's");
        assert_eq!(markers(&body), at(&["tools[0]", "system[0]", "messages[4][0]", "messages[6][0]"]));
        // The client marked the tail itself: it is not marked twice, the others fill the room.
        let mut request = agent(3);
        request["messages"][7]["cache_control"] = json!({"type": "ephemeral"});
        let (body, placed) = place(&request, &rules, CacheTtl::FiveMinutes);
        assert_eq!(placed, 3);
        assert_eq!(markers(&body), at(&["tools[1]", "system[0]", "messages[4][0]", "messages[6][0]"]));
        // Four of the client's own: none added.
        let mut request = agent(3);
        for m in [1, 3, 5, 7] {
            request["messages"][m]["content"] =
                json!([{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]);
        }
        assert_eq!(place(&request, &rules, CacheTtl::FiveMinutes).1, 0);
    }

    #[test]
    fn ttls_follow_the_policy_where_the_model_takes_them_and_never_increase() {
        let request = agent(2);
        let (body, _) = place(&request, &rules(10, r#"["5m", "1h"]"#), CacheTtl::OneHour);
        assert!(markers(&body).iter().all(|(_, ttl)| *ttl == "1h"), "{:?}", markers(&body));
        assert_eq!(body["system"][0]["cache_control"], json!({"type": "ephemeral", "ttl": "1h"}));
        let (body, _) = place(&request, &rules(10, r#"["5m"]"#), CacheTtl::OneHour);
        assert!(markers(&body).iter().all(|(_, ttl)| *ttl == "5m"), "a model without 1h gets 5m");
        assert_eq!(body["system"][0]["cache_control"], json!({"type": "ephemeral"}), "5m is sent without ttl");
        // A client's 5m on the system prompt: the turns after it are 5m, the tools before it 1h.
        let mut request = agent(2);
        request["messages"][0]["cache_control"] = json!({"type": "ephemeral", "ttl": "5m"});
        let (body, _) = place(&request, &rules(10, r#"["5m", "1h"]"#), CacheTtl::OneHour);
        assert_eq!(
            markers(&body),
            vec![
                ("tools[1]".to_owned(), "1h"),
                ("system[0]".to_owned(), "5m"),
                ("messages[2][0]".to_owned(), "5m"),
                ("messages[4][0]".to_owned(), "5m")
            ]
        );
        // A client's 1h at the end: no 5m marker may come before it.
        let mut request = agent(2);
        request["messages"][5]["cache_control"] = json!({"type": "ephemeral", "ttl": "1h"});
        let (body, placed) = place(&request, &rules(10, r#"["5m", "1h"]"#), CacheTtl::FiveMinutes);
        assert_eq!((placed, markers(&body)), (0, vec![("messages[4][0]".to_owned(), "1h")]));
    }

    #[test]
    fn a_prefill_and_thinking_blocks_are_never_marked() {
        let rules = rules(10, r#"["5m"]"#);
        let mut request = agent(1);
        request["messages"].as_array_mut().unwrap().push(json!({"role": "assistant", "content": "The records are"}));
        let (body, _) = place(&request, &rules, CacheTtl::FiveMinutes);
        // The tail is the tool result before the prefill; the previous tail the first question.
        assert_eq!(markers(&body), at(&["tools[1]", "system[0]", "messages[0][0]", "messages[2][0]"]));
        let mut request = agent(1);
        request["messages"][2]["thinking_blocks"] = json!([{"type": "thinking", "thinking": "t", "signature": "s"}]);
        let (body, _) = place(&request, &rules, CacheTtl::FiveMinutes);
        assert_eq!(body["messages"][1]["content"][0]["type"], "thinking");
        assert!(body["messages"][1]["content"][0].get("cache_control").is_none());
    }
}
