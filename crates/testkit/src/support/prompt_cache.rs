//! Claude's prompt cache as Anthropic and AWS describe it, for the fake Bedrock and the fake
//! Anthropic API: which `cache_control` breakpoints a request may carry, and what it reads from
//! and writes to the cache. Written from the documentation, never from byollm's placement code,
//! so the tests can judge that code.
//!
//! Sources: Anthropic, "Prompt caching" (platform docs, build-with-claude/prompt-caching); AWS,
//! "Prompt caching for faster model inference" (Bedrock user guide, prompt-caching) and the model
//! cards' "Prompt caching" tables; AWS CachePointBlock API reference (TTLs non-increasing).
//!
//! The rules modelled:
//! - The prompt is read in the order tools → system → messages. Each tool, each system block and
//!   each message content block is one block (a string `system` or `content` is one text block).
//! - `cache_control` on a block is a breakpoint: the prefix up to and including that block. At
//!   most [`MAX_BREAKPOINTS`] per request, more is a 400; `type` must be `ephemeral`, `ttl` `5m`
//!   (the default) or `1h`; a `1h` breakpoint may not come after a `5m` one; never on thinking
//!   blocks. A marker on a block inside a `tool_result`'s content marks that `tool_result`.
//! - A breakpoint whose prefix is shorter than the model's minimum caches nothing (no error).
//! - Each breakpoint looks the cache up at its own position and at the block boundaries before
//!   it, [`LOOKBACK`] positions in all; the longest prefix found anywhere is read.
//! - Entries are written at breakpoints only, and live for their TTL after their last use (a read
//!   refreshes them).
//! - `cache_read_input_tokens` is the prefix read; `cache_creation_input_tokens` runs from there to
//!   the last breakpoint that caches; `input_tokens` is the rest.
//! - What a prefix is: the blocks' content without `cache_control`; message blocks also depend on
//!   `tool_choice` and `thinking` (changing them invalidates message entries, not tools or system).
//! - Tokens: the fake's own count, one token per four bytes (rounded up) of each
//!   whitespace-separated piece of a block's JSON; an image is 1,600 tokens (a full-size image).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Most breakpoints in one request.
pub const MAX_BREAKPOINTS: usize = 4;
/// Positions each breakpoint looks at: its own and the 19 block boundaries before it.
pub const LOOKBACK: usize = 20;
/// Tokens of one image block.
const IMAGE_TOKENS: u64 = 1_600;

/// A cache lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ttl {
    FiveMinutes,
    OneHour,
}

impl Ttl {
    fn duration(self) -> Duration {
        match self {
            Ttl::FiveMinutes => Duration::from_secs(5 * 60),
            Ttl::OneHour => Duration::from_secs(60 * 60),
        }
    }
}

/// What one request did with the cache, in the fake's own tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheAccount {
    /// Breakpoints the request carried.
    pub breakpoints: usize,
    /// Tokens read from the cache (`cache_read_input_tokens`).
    pub read: u64,
    /// Tokens written to the cache (`cache_creation_input_tokens`).
    pub write: u64,
    /// Tokens neither read nor written (`input_tokens`).
    pub input: u64,
    /// Each block's prefix hash, in prompt order (hex).
    pub prefix_hashes: Vec<String>,
    /// Tokens of the prompt up to and including each block.
    pub cumulative_tokens: Vec<u64>,
}

impl CacheAccount {
    /// Every input token of the request.
    pub fn total(&self) -> u64 {
        self.cumulative_tokens.last().copied().unwrap_or(0)
    }

    /// Tokens of the prefix this request shares with `earlier` (same blocks, same order): what a
    /// cache could at best have served it.
    pub fn repeated_from(&self, earlier: &CacheAccount) -> u64 {
        let common = self.prefix_hashes.iter().zip(&earlier.prefix_hashes).take_while(|(a, b)| a == b).count();
        if common == 0 { 0 } else { self.cumulative_tokens[common - 1] }
    }
}

/// One request's blocks, as the cache sees them.
struct Block {
    hash: [u8; 32],
    tokens: u64,
    breakpoint: Option<Ttl>,
}

struct Entry {
    expires: Instant,
    ttl: Ttl,
}

/// The cache of one fake service: entries by (scope, prefix hash), and a clock tests can move.
#[derive(Default)]
pub struct PromptCache {
    entries: Mutex<HashMap<(String, [u8; 32]), Entry>>,
    skew: Mutex<Duration>,
}

impl PromptCache {
    /// Move the cache's clock forward (entries expire as if that much time had passed).
    pub fn advance(&self, by: Duration) {
        *self.skew.lock().unwrap() += by;
    }

    /// Forget every entry.
    pub fn clear(&self) {
        self.entries.lock().unwrap().clear();
    }

    fn now(&self) -> Instant {
        Instant::now() + *self.skew.lock().unwrap()
    }

    /// Checks the request's breakpoints (`Err`: the service's 400 message), then reads and
    /// writes the cache of `scope` (a model) as the service would for a model whose minimum
    /// cacheable prompt is `min_tokens`.
    pub fn account(&self, scope: &str, body: &Value, min_tokens: u64) -> Result<CacheAccount, String> {
        let blocks = blocks(body)?;
        let marked: Vec<usize> = (0..blocks.len()).filter(|&i| blocks[i].breakpoint.is_some()).collect();
        if marked.len() > MAX_BREAKPOINTS {
            return Err(format!(
                "A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {}.",
                marked.len()
            ));
        }
        let ttls: Vec<Ttl> = marked.iter().filter_map(|&i| blocks[i].breakpoint).collect();
        if ttls.windows(2).any(|pair| pair[0] < pair[1]) {
            return Err("a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block".into());
        }
        let mut cumulative = Vec::with_capacity(blocks.len());
        let mut total = 0;
        for block in &blocks {
            total += block.tokens;
            cumulative.push(total);
        }
        let now = self.now();
        let mut entries = self.entries.lock().unwrap();
        entries.retain(|_, entry| entry.expires > now);
        let key = |i: usize| (scope.to_owned(), blocks[i].hash);
        // Reads: for each breakpoint, the longest cached prefix within its lookback.
        let mut read_end: Option<usize> = None;
        for &at in &marked {
            let first = (at + 1).saturating_sub(LOOKBACK);
            if let Some(hit) = (first..=at).rev().find(|&i| entries.contains_key(&key(i))) {
                read_end = read_end.max(Some(hit));
            }
        }
        if let Some(hit) = read_end
            && let Some(entry) = entries.get_mut(&key(hit))
        {
            entry.expires = now + entry.ttl.duration();
        }
        // Writes: every breakpoint whose prefix is long enough.
        let caching: Vec<usize> = marked.iter().copied().filter(|&i| cumulative[i] >= min_tokens).collect();
        for &at in &caching {
            let ttl = blocks[at].breakpoint.unwrap_or(Ttl::FiveMinutes);
            let entry = entries.entry(key(at)).or_insert(Entry { expires: now, ttl });
            entry.ttl = entry.ttl.max(ttl);
            entry.expires = entry.expires.max(now + ttl.duration());
        }
        let read = read_end.map_or(0, |i| cumulative[i]);
        let written_to = caching.last().map_or(0, |&i| cumulative[i]);
        let write = written_to.saturating_sub(read);
        Ok(CacheAccount {
            breakpoints: marked.len(),
            read,
            write,
            input: total - read - write,
            prefix_hashes: blocks.iter().map(|b| hex(&b.hash)).collect(),
            cumulative_tokens: cumulative,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fake's token count of one block (its JSON without `cache_control`).
fn tokens(block: &Value) -> u64 {
    if block["type"] == "image" {
        return IMAGE_TOKENS;
    }
    block.to_string().split_whitespace().map(|piece| (piece.len() as u64).div_ceil(4)).sum::<u64>().max(1)
}

/// A block's `cache_control`, checked.
fn breakpoint(cache_control: Option<&Value>, at: &str) -> Result<Option<Ttl>, String> {
    let Some(cache_control) = cache_control.filter(|v| !v.is_null()) else { return Ok(None) };
    let Some(object) = cache_control.as_object() else {
        return Err(format!("{at}.cache_control: Input should be a valid dictionary"));
    };
    if object.get("type").and_then(Value::as_str) != Some("ephemeral") {
        return Err(format!("{at}.cache_control.type: Input should be 'ephemeral'"));
    }
    if let Some(key) = object.keys().find(|key| *key != "type" && *key != "ttl") {
        return Err(format!("{at}.cache_control.{key}: Extra inputs are not permitted"));
    }
    match object.get("ttl") {
        None => Ok(Some(Ttl::FiveMinutes)),
        Some(ttl) if ttl == "5m" => Ok(Some(Ttl::FiveMinutes)),
        Some(ttl) if ttl == "1h" => Ok(Some(Ttl::OneHour)),
        Some(_) => Err(format!("{at}.cache_control.ttl: Input should be '5m' or '1h'")),
    }
}

/// The block without its `cache_control` (and without those of the blocks inside it).
fn content_of(block: &Value) -> Value {
    let mut block = block.clone();
    if let Some(object) = block.as_object_mut() {
        object.remove("cache_control");
        if let Some(Value::Array(inner)) = object.get_mut("content") {
            for item in inner {
                if let Some(item) = item.as_object_mut() {
                    item.remove("cache_control");
                }
            }
        }
    }
    block
}

/// The request's blocks in prompt order, each with its prefix hash, tokens and breakpoint.
fn blocks(body: &Value) -> Result<Vec<Block>, String> {
    use aws_lc_rs::digest::{Context, SHA256};
    let mut out = Vec::new();
    let mut previous = [0u8; 32];
    let mut push = |salt: &[u8], block: &Value, breakpoint: Option<Ttl>| {
        let content = content_of(block);
        let mut context = Context::new(&SHA256);
        context.update(&previous);
        context.update(salt);
        context.update(content.to_string().as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(context.finish().as_ref());
        previous = hash;
        out.push(Block { hash, tokens: tokens(&content), breakpoint });
    };
    for (i, tool) in body["tools"].as_array().into_iter().flatten().enumerate() {
        push(b"tool", tool, breakpoint(tool.get("cache_control"), &format!("tools.{i}"))?);
    }
    match &body["system"] {
        Value::String(text) => push(b"system", &serde_json::json!({"type": "text", "text": text}), None),
        Value::Array(system) => {
            for (i, block) in system.iter().enumerate() {
                push(b"system", block, breakpoint(block.get("cache_control"), &format!("system.{i}"))?);
            }
        }
        _ => {}
    }
    // Message entries also depend on the request's tool choice and thinking settings.
    let settings = serde_json::json!({"tool_choice": body["tool_choice"], "thinking": body["thinking"]}).to_string();
    for (m, message) in body["messages"].as_array().into_iter().flatten().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        let salt = format!("{settings}{role}");
        match &message["content"] {
            Value::String(text) => push(salt.as_bytes(), &serde_json::json!({"type": "text", "text": text}), None),
            Value::Array(content) => {
                for (b, block) in content.iter().enumerate() {
                    let at = format!("messages.{m}.content.{b}");
                    let own = block.get("cache_control");
                    if matches!(block["type"].as_str(), Some("thinking" | "redacted_thinking")) && own.is_some() {
                        return Err(format!("{at}.cache_control: Extra inputs are not permitted"));
                    }
                    let mut marked = breakpoint(own, &at)?;
                    for (k, inner) in block["content"].as_array().into_iter().flatten().enumerate() {
                        if let Some(ttl) = breakpoint(inner.get("cache_control"), &format!("{at}.content.{k}"))? {
                            marked = marked.max(Some(ttl));
                        }
                    }
                    push(salt.as_bytes(), block, marked);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A text of about `tokens` fake tokens (one 4-byte word each).
    fn text(tokens: usize, tag: &str) -> String {
        let mut words = vec![tag.to_owned()];
        words.extend((1..tokens).map(|i| format!("w{:03}", i % 1000)));
        words.join(" ")
    }

    fn marker() -> Value {
        json!({"type": "ephemeral"})
    }

    fn turn(role: &str, text: &str, mark: bool) -> Value {
        let mut block = json!({"type": "text", "text": text});
        if mark {
            block["cache_control"] = marker();
        }
        json!({"role": role, "content": [block]})
    }

    #[test]
    fn reads_what_an_earlier_breakpoint_wrote_and_writes_the_rest() {
        let cache = PromptCache::default();
        let system = json!([{"type": "text", "text": text(1500, "sys"), "cache_control": marker()}]);
        let first = json!({"system": system, "messages": [turn("user", &text(300, "u1"), true)]});
        let one = cache.account("m", &first, 1024).unwrap();
        assert_eq!((one.read, one.breakpoints), (0, 2));
        assert_eq!(one.write, one.total(), "everything up to the last breakpoint is written");
        assert_eq!(one.input, 0);
        let second = json!({"system": system, "messages": [
            turn("user", &text(300, "u1"), true), turn("assistant", &text(50, "a1"), false),
            turn("user", &text(300, "u2"), true)]});
        let two = cache.account("m", &second, 1024).unwrap();
        assert_eq!(two.read, one.total(), "the previous turn is read whole");
        assert_eq!(two.read + two.write + two.input, two.total());
        assert_eq!(two.repeated_from(&one), one.total());
        // Another scope (model) shares nothing.
        assert_eq!(cache.account("other", &second, 1024).unwrap().read, 0);
    }

    #[test]
    fn the_lookback_reaches_twenty_positions_back() {
        let cache = PromptCache::default();
        let system = json!([{"type": "text", "text": text(1500, "sys"), "cache_control": marker()}]);
        let mut messages: Vec<Value> = vec![turn("user", "start", true)];
        let _ = cache.account("m", &json!({"system": system, "messages": messages}), 1024).unwrap();
        let written = 2; // system and the first message
        // 19 more positions: the breakpoint on the last one still sees the first message.
        for i in 0..19 {
            messages.push(turn(if i % 2 == 0 { "assistant" } else { "user" }, &format!("m{i}"), false));
        }
        let last = messages.len() - 1;
        messages[last]["content"][0]["cache_control"] = marker();
        messages[0]["content"][0].as_object_mut().unwrap().remove("cache_control");
        let body = json!({"system": system.clone(), "messages": messages.clone()});
        let near = cache.account("m", &body, 1024).unwrap();
        assert_eq!(near.read, near.cumulative_tokens[written - 1]);
        // One position further and only the system prompt's own breakpoint would find anything.
        let cache = PromptCache::default();
        let _ = cache.account("m", &json!({"system": system, "messages": [turn("user", "start", true)]}), 1024);
        messages.push(turn("assistant", "one more", true));
        messages[last]["content"][0].as_object_mut().unwrap().remove("cache_control");
        let unmarked = json!([{"type": "text", "text": text(1500, "sys")}]);
        let far = cache.account("m", &json!({"system": unmarked, "messages": messages}), 1024).unwrap();
        assert_eq!(far.read, 0, "21 positions back is out of reach");
    }

    #[test]
    fn short_prefixes_cache_nothing_and_entries_expire() {
        let cache = PromptCache::default();
        let short = json!({"messages": [turn("user", &text(500, "u"), true)]});
        assert_eq!(cache.account("m", &short, 1024).unwrap().write, 0);
        assert_eq!(cache.account("m", &short, 1024).unwrap().read, 0);
        let long = json!({"messages": [turn("user", &text(1200, "u"), true)]});
        assert!(cache.account("m", &long, 1024).unwrap().write > 0);
        cache.advance(Duration::from_secs(4 * 60));
        assert!(cache.account("m", &long, 1024).unwrap().read > 0, "a read refreshes the entry");
        cache.advance(Duration::from_secs(4 * 60));
        assert!(cache.account("m", &long, 1024).unwrap().read > 0);
        cache.advance(Duration::from_secs(6 * 60));
        assert_eq!(cache.account("m", &long, 1024).unwrap().read, 0, "expired after five idle minutes");
        let mut hour = long.clone();
        hour["messages"][0]["content"][0]["cache_control"] = json!({"type": "ephemeral", "ttl": "1h"});
        let _ = cache.account("m", &hour, 1024).unwrap();
        cache.advance(Duration::from_secs(50 * 60));
        assert!(cache.account("m", &long, 1024).unwrap().read > 0, "a 1h entry outlives five minutes");
    }

    #[test]
    fn refuses_what_the_service_refuses() {
        let cache = PromptCache::default();
        let five: Vec<Value> = (0..5).map(|i| turn(if i % 2 == 0 { "user" } else { "assistant" }, "x", true)).collect();
        let error = cache.account("m", &json!({"messages": five}), 1024).unwrap_err();
        assert!(error.contains("A maximum of 4 blocks"), "{error}");
        let order = json!({"system": [{"type": "text", "text": "s", "cache_control": marker()}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "u",
                "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]});
        assert!(cache.account("m", &order, 1024).unwrap_err().contains("must not come after"));
        let thinking = json!({"messages": [{"role": "assistant", "content": [
            {"type": "thinking", "thinking": "t", "signature": "s", "cache_control": marker()}]}]});
        assert!(cache.account("m", &thinking, 1024).is_err());
        let bad = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "u", "cache_control": {"type": "persistent"}}]}]});
        assert!(cache.account("m", &bad, 1024).is_err());
        // A marker inside a tool_result counts as the tool_result's.
        let nested = json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
            "content": [{"type": "text", "text": "r", "cache_control": marker()}]}]}]});
        assert_eq!(cache.account("m", &nested, 1024).unwrap().breakpoints, 1);
    }

    #[test]
    fn markers_are_not_part_of_the_prefix_but_settings_are() {
        let cache = PromptCache::default();
        let body = json!({"tools": [{"name": "f", "input_schema": {"type": "object"}, "description": text(1200, "d")}],
            "messages": [turn("user", "q", true)]});
        let marked = cache.account("m", &body, 1024).unwrap();
        let mut unmarked = body.clone();
        unmarked["messages"][0]["content"][0].as_object_mut().unwrap().remove("cache_control");
        unmarked["tools"][0]["cache_control"] = marker();
        let again = cache.account("m", &unmarked, 1024).unwrap();
        assert_eq!(marked.prefix_hashes, again.prefix_hashes);
        let mut other_choice = body.clone();
        other_choice["tool_choice"] = json!({"type": "any"});
        let changed = cache.account("m", &other_choice, 1024).unwrap();
        assert_eq!(changed.prefix_hashes[0], marked.prefix_hashes[0], "tools are unaffected");
        assert_ne!(changed.prefix_hashes[1], marked.prefix_hashes[1], "messages depend on tool_choice");
    }
}
