//! Anthropic stream events → OpenAI `chat.completion.chunk` server-sent events.
//!
//! [`StreamConverter`] is a small state machine fed one event at a time (the decoded bytes of one
//! Bedrock `chunk`). It writes complete `data: {...}\n\n` lines straight into the caller's buffer,
//! forwards every delta at once (no buffering of text or arguments) and never does I/O. It must
//! never emit a half-written line: a failed serialisation is cut off again.
//!
//! Every chunk of a stream starts with the same `id`, `object`, `created` and `model`: that head is
//! rendered once per stream and copied, and only the delta goes through serde (the chunks are
//! byte for byte what serialising [`ChatCompletionChunk`] gives; tested).
//!
//! Delta fields beyond OpenAI's: `reasoning_content` (thinking text, as it streams) and
//! `thinking_blocks` (one complete block — `{"index","type":"thinking","thinking","signature"}` when
//! its signature arrives, or `{"index","type":"redacted_thinking","data"}` — to be sent back on the
//! assistant message in the next request; `index` counts the answer's thinking blocks from 0, so
//! accumulators that merge list deltas by `index`, like the OpenAI SDKs' stream helpers, keep each).

use bytes::{BufMut, BytesMut};

use crate::convert::response::{finish_reason, upstream_error, usage};
use crate::error::ApiError;
use crate::wire::anthropic::{self, BlockDelta, ResponseBlock, StreamEvent};
use crate::wire::openai::{Delta, FunctionDelta, ThinkingBlock, ThinkingBlockDelta, ToolCallDelta, Usage};

/// What an Anthropic content block (by its stream index) turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call, with its dense OpenAI `tool_calls[].index`.
    Tool(u32),
    /// The `response_format` tool: its arguments stream as content.
    ResponseTool,
    Thinking,
    Other,
}

/// Converts one Anthropic stream into OpenAI chunks.
#[derive(Debug)]
pub struct StreamConverter {
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[`, the
    /// start of every chunk of this stream.
    head: Vec<u8>,
    include_usage: bool,
    response_tool: Option<String>,
    started: bool,
    stopped: bool,
    done: bool,
    blocks: Vec<(u32, Block)>,
    next_tool_index: u32,
    next_thinking_index: u32,
    thinking: String,
    answered_by_response_tool: bool,
    usage: anthropic::Usage,
}

impl StreamConverter {
    pub fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
        let mut head = Vec::with_capacity(96 + id.len() + model.len());
        head.extend_from_slice(b"data: {\"id\":");
        json_str(&mut head, id);
        head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        head.extend_from_slice(created.to_string().as_bytes());
        head.extend_from_slice(b",\"model\":");
        json_str(&mut head, model);
        head.extend_from_slice(b",\"choices\":[");
        StreamConverter {
            head,
            include_usage,
            response_tool: None,
            started: false,
            stopped: false,
            done: false,
            blocks: Vec::new(),
            next_tool_index: 0,
            next_thinking_index: 0,
            thinking: String::new(),
            answered_by_response_tool: false,
            usage: anthropic::Usage::default(),
        }
    }

    /// The tool that carries `response_format` ([`crate::convert::request::Prepared::response_tool`]):
    /// its arguments stream as `content` and its call finishes with `stop`.
    pub fn with_response_tool(mut self, name: Option<&str>) -> Self {
        self.response_tool = name.map(str::to_owned);
        self
    }

    /// Whether the upstream sent `message_stop`: a stream that ends without it was cut.
    pub fn completed(&self) -> bool {
        self.stopped
    }

    /// Whether `[DONE]` has been written.
    /// The usage reported so far (`message_start`, then each `message_delta`).
    pub fn usage(&self) -> &anthropic::Usage {
        &self.usage
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Handles one event. On `Err` (an upstream `error` event or an undecodable event) the caller
    /// should send [`StreamConverter::error`] and stop.
    pub fn push(&mut self, event_json: &[u8], out: &mut BytesMut) -> Result<(), ApiError> {
        if self.done {
            return Ok(());
        }
        let event = StreamEvent::parse(event_json).map_err(|error| {
            // The serde message can quote model output: log only where it failed.
            tracing::warn!(category = ?error.classify(), column = error.column(), "undecodable bedrock stream event");
            upstream_error("api_error", "the upstream model sent an event that could not be decoded")
        })?;
        match event {
            StreamEvent::MessageStart { message } => {
                merge_usage(&mut self.usage, &message.usage);
                self.start(out)?;
            }
            StreamEvent::ContentBlockStart { index, content_block } => {
                self.start(out)?;
                let block = match content_block {
                    ResponseBlock::Text { text } => {
                        if !text.is_empty() {
                            self.write_delta(out, Delta { content: Some(&text), ..Delta::default() })?;
                        }
                        Block::Text
                    }
                    ResponseBlock::ToolUse { name, .. } if self.response_tool.as_deref() == Some(name.as_str()) => {
                        self.answered_by_response_tool = true;
                        Block::ResponseTool
                    }
                    ResponseBlock::ToolUse { id, name, .. } => {
                        let tool_index = self.next_tool_index;
                        self.next_tool_index += 1;
                        let call = [ToolCallDelta {
                            index: tool_index,
                            id: Some(&id),
                            kind: Some("function"),
                            function: FunctionDelta { name: Some(&name), arguments: "" },
                        }];
                        self.write_delta(out, Delta { tool_calls: Some(&call), ..Delta::default() })?;
                        Block::Tool(tool_index)
                    }
                    ResponseBlock::Thinking { thinking, .. } => {
                        if !thinking.is_empty() {
                            self.write_delta(out, Delta { reasoning_content: Some(&thinking), ..Delta::default() })?;
                        }
                        self.thinking = thinking;
                        Block::Thinking
                    }
                    ResponseBlock::RedactedThinking { data } => {
                        self.write_thinking_block(out, &ThinkingBlock::RedactedThinking { data })?;
                        Block::Other
                    }
                    ResponseBlock::Other => Block::Other,
                };
                self.blocks.push((index, block));
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                self.start(out)?;
                let block = self.blocks.iter().rev().find(|(at, _)| *at == index).map(|(_, block)| *block);
                match delta {
                    BlockDelta::TextDelta { text } if !text.is_empty() => {
                        self.write_delta(out, Delta { content: Some(&text), ..Delta::default() })?;
                    }
                    BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => match block {
                        Some(Block::Tool(tool_index)) => {
                            let call = [ToolCallDelta {
                                index: tool_index,
                                id: None,
                                kind: None,
                                function: FunctionDelta { name: None, arguments: &partial_json },
                            }];
                            self.write_delta(out, Delta { tool_calls: Some(&call), ..Delta::default() })?;
                        }
                        Some(Block::ResponseTool) => {
                            self.write_delta(out, Delta { content: Some(&partial_json), ..Delta::default() })?;
                        }
                        _ => {}
                    },
                    BlockDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                        self.thinking.push_str(&thinking);
                        self.write_delta(out, Delta { reasoning_content: Some(&thinking), ..Delta::default() })?;
                    }
                    BlockDelta::SignatureDelta { signature } => {
                        let block = ThinkingBlock::Thinking {
                            thinking: std::mem::take(&mut self.thinking),
                            signature: signature.into_owned(),
                        };
                        self.write_thinking_block(out, &block)?;
                    }
                    _ => {}
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                merge_usage(&mut self.usage, &usage);
                if let Some(stop_reason) = delta.stop_reason.as_deref() {
                    self.start(out)?;
                    let mut finish = finish_reason(Some(stop_reason));
                    if finish == "tool_calls" && self.answered_by_response_tool && self.next_tool_index == 0 {
                        finish = "stop";
                    }
                    self.write_chunk(out, Delta::default(), Some(finish))?;
                }
            }
            StreamEvent::Error { error } => return Err(upstream_error(&error.kind, &error.message)),
            StreamEvent::MessageStop {} => self.stopped = true,
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping {} | StreamEvent::Other => {}
        }
        Ok(())
    }

    /// Ends a stream that completed: a usage chunk if asked for, then `[DONE]`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if self.include_usage {
            // A failure is logged where it happened; the stream still ends with `[DONE]`.
            let _ = self.write_usage(out, &usage(&self.usage));
        }
        out.put_slice(b"data: [DONE]\n\n");
        self.done = true;
    }

    /// Ends a stream that failed: an error event (which the OpenAI SDKs raise), then `[DONE]`.
    pub fn error(&mut self, err: &ApiError, out: &mut BytesMut) {
        if self.done {
            return;
        }
        let start = out.len();
        out.put_slice(b"data: ");
        match serde_json::to_writer((&mut *out).writer(), &crate::wire::openai::error_body(err)) {
            Ok(()) => out.put_slice(b"\n\n"),
            Err(error) => {
                tracing::error!(%error, "could not serialise a stream error");
                out.truncate(start);
            }
        }
        out.put_slice(b"data: [DONE]\n\n");
        self.done = true;
    }

    /// Sends the first chunk (`role: assistant`, empty content) once.
    fn start(&mut self, out: &mut BytesMut) -> Result<(), ApiError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        self.write_chunk(out, Delta { role: Some("assistant"), content: Some(""), ..Delta::default() }, None)
    }

    /// One complete thinking block, numbered among this answer's thinking blocks.
    fn write_thinking_block(&mut self, out: &mut BytesMut, block: &ThinkingBlock) -> Result<(), ApiError> {
        let blocks = [ThinkingBlockDelta { index: self.next_thinking_index, block }];
        self.next_thinking_index += 1;
        self.write_delta(out, Delta { thinking_blocks: Some(&blocks), ..Delta::default() })
    }

    fn write_delta(&self, out: &mut BytesMut, delta: Delta<'_>) -> Result<(), ApiError> {
        self.write_chunk(out, delta, None)
    }

    /// One chunk with one choice: what serialising a [`ChatCompletionChunk`] with
    /// `choices: [{"index": 0, delta, "logprobs": null, finish_reason}]` (and `usage: null` when
    /// usage was asked for) writes.
    fn write_chunk(
        &self,
        out: &mut BytesMut,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
    ) -> Result<(), ApiError> {
        let start = out.len();
        out.put_slice(&self.head);
        out.put_slice(b"{\"index\":0,\"delta\":");
        let written = serde_json::to_writer((&mut *out).writer(), &delta).and_then(|()| {
            out.put_slice(b",\"logprobs\":null,\"finish_reason\":");
            serde_json::to_writer((&mut *out).writer(), &finish_reason)
        });
        if let Err(error) = written {
            out.truncate(start);
            tracing::error!(%error, "could not serialise a chunk");
            return Err(ApiError::internal("could not encode a response chunk"));
        }
        out.put_slice(if self.include_usage { b"}],\"usage\":null}\n\n" } else { b"}]}\n\n" });
        Ok(())
    }

    /// The usage chunk: no choices.
    fn write_usage(&self, out: &mut BytesMut, usage: &Usage) -> Result<(), ApiError> {
        let start = out.len();
        out.put_slice(&self.head);
        out.put_slice(b"],\"usage\":");
        if let Err(error) = serde_json::to_writer((&mut *out).writer(), usage) {
            out.truncate(start);
            tracing::error!(%error, "could not serialise the usage chunk");
            return Err(ApiError::internal("could not encode a response chunk"));
        }
        out.put_slice(b"}\n\n");
        Ok(())
    }
}

/// A JSON string (quoted, escaped) as serde_json writes it.
fn json_str(out: &mut Vec<u8>, value: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Later counts win: `message_delta` repeats them cumulatively.
fn merge_usage(total: &mut anthropic::Usage, update: &anthropic::Usage) {
    let fields = [
        (&mut total.input_tokens, update.input_tokens),
        (&mut total.output_tokens, update.output_tokens),
        (&mut total.cache_creation_input_tokens, update.cache_creation_input_tokens),
        (&mut total.cache_read_input_tokens, update.cache_read_input_tokens),
    ];
    for (slot, value) in fields {
        if value.is_some() {
            *slot = value;
        }
    }
    if update.output_tokens_details.is_some() {
        total.output_tokens_details = update.output_tokens_details;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Feeds `events` (then `finish`, or `error` on the first failure) and compares every SSE line.
    /// `expected` holds the chunks' `choices[0]` objects (or a whole object for usage / error
    /// events) and the literal `"[DONE]"`.
    fn check(events: &[Value], include_usage: bool, response_tool: Option<&str>, expected: &[Value]) {
        let mut converter =
            StreamConverter::new("chatcmpl-1", 1700000000, "claude-x", include_usage).with_response_tool(response_tool);
        let mut out = BytesMut::new();
        for event in events {
            let bytes = serde_json::to_vec(event).unwrap();
            if let Err(error) = converter.push(&bytes, &mut out) {
                converter.error(&error, &mut out);
                break;
            }
        }
        converter.finish(&mut out);
        assert!(converter.is_done());
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let lines: Vec<&str> = text.split_terminator("\n\n").collect();
        let mut got = Vec::new();
        for line in &lines {
            let data = line.strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE data line: {line}"));
            if data == "[DONE]" {
                got.push(json!("[DONE]"));
                continue;
            }
            let chunk: Value = serde_json::from_str(data).unwrap();
            if chunk.get("error").is_some() {
                got.push(chunk);
                continue;
            }
            assert_eq!(chunk["id"], "chatcmpl-1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["created"], 1700000000);
            assert_eq!(chunk["model"], "claude-x");
            assert_eq!(chunk.get("usage").is_some(), include_usage, "usage key presence: {chunk}");
            match chunk["choices"].as_array().map(Vec::as_slice) {
                Some([choice]) => {
                    assert_eq!(chunk["usage"], Value::Null);
                    got.push(choice.clone());
                }
                Some([]) => got.push(json!({"usage": chunk["usage"]})),
                other => panic!("unexpected choices {other:?}"),
            }
        }
        assert_eq!(got, expected);
    }

    fn delta(delta: Value) -> Value {
        json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": null})
    }

    fn finish(reason: &str) -> Value {
        json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason})
    }

    fn role() -> Value {
        delta(json!({"role": "assistant", "content": ""}))
    }

    fn start(input_tokens: u64) -> Value {
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "content": [], "model": "claude", "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})
    }

    fn block_start(index: u32, block: Value) -> Value {
        json!({"type": "content_block_start", "index": index, "content_block": block})
    }

    fn block_delta(index: u32, delta: Value) -> Value {
        json!({"type": "content_block_delta", "index": index, "delta": delta})
    }

    fn stop(index: u32) -> Value {
        json!({"type": "content_block_stop", "index": index})
    }

    fn message_delta(reason: &str, output_tokens: u64) -> Value {
        json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
               "usage": {"output_tokens": output_tokens}})
    }

    fn message_stop() -> Value {
        json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 10,
            "outputTokenCount": 5, "invocationLatency": 100, "firstByteLatency": 50}})
    }

    fn done() -> Value {
        json!("[DONE]")
    }

    #[test]
    fn text_stream() {
        check(
            &[
                start(10),
                block_start(0, json!({"type": "text", "text": ""})),
                json!({"type": "ping"}),
                block_delta(0, json!({"type": "text_delta", "text": "Hello"})),
                block_delta(0, json!({"type": "text_delta", "text": " \"world\"\n"})),
                stop(0),
                message_delta("end_turn", 5),
                message_stop(),
            ],
            false,
            None,
            &[
                role(),
                delta(json!({"content": "Hello"})),
                delta(json!({"content": " \"world\"\n"})),
                finish("stop"),
                done(),
            ],
        );
    }

    #[test]
    fn text_stream_with_usage_and_cache() {
        check(
            &[
                json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3, "output_tokens": 1,
                    "cache_creation_input_tokens": 100, "cache_read_input_tokens": 50}}}),
                block_start(0, json!({"type": "text", "text": ""})),
                block_delta(0, json!({"type": "text_delta", "text": "Hi"})),
                stop(0),
                message_delta("max_tokens", 7),
                message_stop(),
            ],
            true,
            None,
            &[
                role(),
                delta(json!({"content": "Hi"})),
                finish("length"),
                json!({"usage": {"prompt_tokens": 153, "completion_tokens": 7, "total_tokens": 160,
                                 "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 100}}}),
                done(),
            ],
        );
    }

    #[test]
    fn tool_use_stream_with_two_calls() {
        let pieces = ["", "{\"ci", "ty\": \"Pa", "ris\"", "}"];
        let mut events = vec![
            start(10),
            block_start(0, json!({"type": "text", "text": ""})),
            block_delta(0, json!({"type": "text_delta", "text": "Checking."})),
            stop(0),
            block_start(1, json!({"type": "tool_use", "id": "toolu_a", "name": "get", "input": {}})),
        ];
        events.extend(
            pieces.iter().map(|piece| block_delta(1, json!({"type": "input_json_delta", "partial_json": piece}))),
        );
        events.push(stop(1));
        events.push(block_start(2, json!({"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}})));
        events.extend(
            ["{\"tz\":", "\"UTC\"}"]
                .iter()
                .map(|piece| block_delta(2, json!({"type": "input_json_delta", "partial_json": piece}))),
        );
        events.extend([stop(2), message_delta("tool_use", 40), message_stop()]);
        let args = |index: u32, arguments: &str| {
            delta(json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}))
        };
        check(
            &events,
            false,
            None,
            &[
                role(),
                delta(json!({"content": "Checking."})),
                delta(json!({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function",
                                             "function": {"name": "get", "arguments": ""}}]})),
                args(0, "{\"ci"),
                args(0, "ty\": \"Pa"),
                args(0, "ris\""),
                args(0, "}"),
                delta(json!({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function",
                                             "function": {"name": "now", "arguments": ""}}]})),
                args(1, "{\"tz\":"),
                args(1, "\"UTC\"}"),
                finish("tool_calls"),
                done(),
            ],
        );
    }

    #[test]
    fn thinking_stream_with_signature() {
        check(
            &[
                start(10),
                block_start(0, json!({"type": "thinking", "thinking": ""})),
                block_delta(0, json!({"type": "thinking_delta", "thinking": "Let me "})),
                block_delta(0, json!({"type": "thinking_delta", "thinking": "think."})),
                block_delta(0, json!({"type": "signature_delta", "signature": "EqQBCgIYAhIM=="})),
                stop(0),
                block_start(1, json!({"type": "redacted_thinking", "data": "EmwKAhgB"})),
                stop(1),
                block_start(2, json!({"type": "text", "text": ""})),
                block_delta(2, json!({"type": "text_delta", "text": "42"})),
                stop(2),
                message_delta("end_turn", 30),
                message_stop(),
            ],
            false,
            None,
            &[
                role(),
                delta(json!({"reasoning_content": "Let me "})),
                delta(json!({"reasoning_content": "think."})),
                delta(
                    json!({"thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "Let me think.", "signature": "EqQBCgIYAhIM=="}]}),
                ),
                delta(json!({"thinking_blocks": [{"index": 1, "type": "redacted_thinking", "data": "EmwKAhgB"}]})),
                delta(json!({"content": "42"})),
                finish("stop"),
                done(),
            ],
        );
    }

    #[test]
    fn response_format_tool_streams_as_content() {
        check(
            &[
                start(10),
                block_start(0, json!({"type": "tool_use", "id": "toolu_r", "name": "answer", "input": {}})),
                block_delta(0, json!({"type": "input_json_delta", "partial_json": "{\"x\""})),
                block_delta(0, json!({"type": "input_json_delta", "partial_json": ": 1}"})),
                stop(0),
                message_delta("tool_use", 9),
                message_stop(),
            ],
            false,
            Some("answer"),
            &[role(), delta(json!({"content": "{\"x\""})), delta(json!({"content": ": 1}"})), finish("stop"), done()],
        );
    }

    #[test]
    fn error_event_ends_the_stream() {
        check(
            &[
                start(10),
                block_start(0, json!({"type": "text", "text": ""})),
                block_delta(0, json!({"type": "text_delta", "text": "Hel"})),
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                block_delta(0, json!({"type": "text_delta", "text": "never sent"})),
            ],
            false,
            None,
            &[
                role(),
                delta(json!({"content": "Hel"})),
                json!({"error": {"message": "Overloaded", "type": "upstream_error", "param": null, "code": "upstream_overloaded"}}),
                done(),
            ],
        );
    }

    /// The pre-rendered head plus the delta is exactly what serde writes for the whole chunk.
    #[test]
    fn chunks_are_what_serialising_the_chunk_type_writes() {
        use crate::wire::openai::{ChatCompletionChunk, ChunkChoice};

        let serde_line = |id: &str, created: u64, model: &str, choices: &[ChunkChoice<'_>], usage| {
            let chunk = ChatCompletionChunk { id, object: "chat.completion.chunk", created, model, choices, usage };
            format!("data: {}\n\n", serde_json::to_string(&chunk).unwrap())
        };
        let thinking = ThinkingBlock::Thinking { thinking: "a \"b\"\n".into(), signature: "EqQ=".into() };
        let blocks = [ThinkingBlockDelta { index: 2, block: &thinking }];
        let call = [ToolCallDelta {
            index: 1,
            id: Some("toolu_1"),
            kind: Some("function"),
            function: FunctionDelta { name: Some("get"), arguments: "{\"a\":" },
        }];
        let deltas = || {
            [
                Delta { role: Some("assistant"), content: Some(""), ..Delta::default() },
                Delta { content: Some("Hello \"world\"\n\u{1}é🦀</script>"), ..Delta::default() },
                Delta { reasoning_content: Some("hm"), ..Delta::default() },
                Delta { thinking_blocks: Some(&blocks), ..Delta::default() },
                Delta { tool_calls: Some(&call), ..Delta::default() },
                Delta::default(),
            ]
        };
        let usage = usage(&anthropic::Usage { input_tokens: Some(3), output_tokens: Some(4), ..Default::default() });
        for (id, created, model) in [("chatcmpl-1", 1700000000, "claude-x"), ("id \"quoted\"", 0, "m\\odel\u{7f}")] {
            for include_usage in [false, true] {
                let converter = StreamConverter::new(id, created, model, include_usage);
                for finish in [None, Some("stop"), Some("tool_calls")] {
                    for (ours, theirs) in deltas().into_iter().zip(deltas()) {
                        let mut out = BytesMut::new();
                        converter.write_chunk(&mut out, ours, finish).unwrap();
                        let choices = [ChunkChoice { index: 0, delta: theirs, logprobs: None, finish_reason: finish }];
                        let expected = serde_line(id, created, model, &choices, include_usage.then_some(None));
                        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
                    }
                }
                let mut out = BytesMut::new();
                converter.write_usage(&mut out, &usage).unwrap();
                assert_eq!(std::str::from_utf8(&out).unwrap(), serde_line(id, created, model, &[], Some(Some(&usage))));
            }
        }
    }

    #[test]
    fn undecodable_event_is_an_error() {
        let mut converter = StreamConverter::new("id", 1, "m", false);
        let mut out = BytesMut::new();
        let error = converter.push(b"{not json", &mut out).unwrap_err();
        assert_eq!(error.status.as_u16(), 502);
        assert!(out.is_empty());
        converter.error(&error, &mut out);
        converter.finish(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(text.matches("[DONE]").count(), 1, "{text}");
        assert!(text.starts_with("data: {\"error\":"), "{text}");
        assert!(converter.push(br#"{"type":"ping"}"#, &mut out).is_ok());
    }
}
