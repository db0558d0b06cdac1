//! Anthropic stream events → OpenAI `chat.completion.chunk` server-sent events.
//!
//! [`StreamConverter`] is a small state machine fed one event at a time (the decoded bytes of one
//! Bedrock `chunk`). It writes complete `data: {...}\n\n` lines straight into the caller's buffer,
//! forwards every delta at once (no buffering of text or arguments) and never does I/O. It must
//! never emit a half-written line: a failed serialisation is cut off again.
//!
//! Delta fields beyond OpenAI's: `reasoning_content` (thinking text, as it streams) and
//! `thinking_blocks` (one complete block — `{"type":"thinking","thinking","signature"}` when its
//! signature arrives, or `{"type":"redacted_thinking","data"}` — to be sent back on the assistant
//! message in the next request).

use bytes::{BufMut, BytesMut};

use crate::adapter::anthropic::{self, BlockDelta, ResponseBlock, StreamEvent};
use crate::adapter::openai::{
    ChatCompletionChunk, ChunkChoice, Delta, FunctionDelta, ThinkingBlock, ToolCallDelta, Usage,
};
use crate::adapter::response::{finish_reason, upstream_error, usage};
use crate::error::ApiError;

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
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    response_tool: Option<String>,
    started: bool,
    done: bool,
    blocks: Vec<(u32, Block)>,
    next_tool_index: u32,
    thinking: String,
    answered_by_response_tool: bool,
    usage: anthropic::Usage,
}

impl StreamConverter {
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>, include_usage: bool) -> Self {
        StreamConverter {
            id: id.into(),
            created,
            model: model.into(),
            include_usage,
            response_tool: None,
            started: false,
            done: false,
            blocks: Vec::new(),
            next_tool_index: 0,
            thinking: String::new(),
            answered_by_response_tool: false,
            usage: anthropic::Usage::default(),
        }
    }

    /// The tool that carries `response_format` ([`crate::adapter::request::Prepared::response_tool`]):
    /// its arguments stream as `content` and its call finishes with `stop`.
    pub fn with_response_tool(mut self, name: Option<&str>) -> Self {
        self.response_tool = name.map(str::to_owned);
        self
    }

    /// Whether `[DONE]` has been written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Handles one event. On `Err` (an upstream `error` event or an undecodable event) the caller
    /// should send [`StreamConverter::error`] and stop.
    pub fn push(&mut self, event_json: &[u8], out: &mut BytesMut) -> Result<(), ApiError> {
        if self.done {
            return Ok(());
        }
        let event: StreamEvent<'_> = serde_json::from_slice(event_json).map_err(|error| {
            tracing::warn!(%error, "undecodable bedrock stream event");
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
                        let blocks = [ThinkingBlock::RedactedThinking { data }];
                        self.write_delta(out, Delta { thinking_blocks: Some(&blocks), ..Delta::default() })?;
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
                        let blocks = [ThinkingBlock::Thinking {
                            thinking: std::mem::take(&mut self.thinking),
                            signature: signature.into_owned(),
                        }];
                        self.write_delta(out, Delta { thinking_blocks: Some(&blocks), ..Delta::default() })?;
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
            StreamEvent::ContentBlockStop { .. }
            | StreamEvent::MessageStop {}
            | StreamEvent::Ping {}
            | StreamEvent::Other => {}
        }
        Ok(())
    }

    /// Ends a stream that completed: a usage chunk if asked for, then `[DONE]`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if self.include_usage {
            let usage = usage(&self.usage);
            if let Err(error) = self.write_usage(out, &usage) {
                tracing::error!(%error, "could not serialise the usage chunk");
            }
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
        match serde_json::to_writer((&mut *out).writer(), &err.body()) {
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

    fn write_delta(&self, out: &mut BytesMut, delta: Delta<'_>) -> Result<(), ApiError> {
        self.write_chunk(out, delta, None)
    }

    fn write_chunk(
        &self,
        out: &mut BytesMut,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
    ) -> Result<(), ApiError> {
        let choices = [ChunkChoice { index: 0, delta, logprobs: None, finish_reason }];
        let chunk = ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: self.include_usage.then_some(None),
        };
        write_event(out, &chunk)
    }

    fn write_usage(&self, out: &mut BytesMut, usage: &Usage) -> Result<(), ApiError> {
        let chunk = ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &[],
            usage: Some(Some(usage)),
        };
        write_event(out, &chunk)
    }
}

/// Writes one `data: <json>\n\n` line, or nothing at all.
fn write_event(out: &mut BytesMut, value: &impl serde::Serialize) -> Result<(), ApiError> {
    let start = out.len();
    out.put_slice(b"data: ");
    match serde_json::to_writer((&mut *out).writer(), value) {
        Ok(()) => {
            out.put_slice(b"\n\n");
            Ok(())
        }
        Err(error) => {
            out.truncate(start);
            tracing::error!(%error, "could not serialise a chunk");
            Err(ApiError::internal("could not encode a response chunk"))
        }
    }
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
}
