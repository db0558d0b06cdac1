//! Fake Anthropic Messages API (`POST /v1/messages`), for the direct Anthropic route.
//!
//! Behaves like api.anthropic.com as far as byollm can tell: the key in `x-api-key`, a required
//! `anthropic-version` header, betas in `anthropic-beta` (comma-separated), `model` in the body and
//! no Bedrock fields (`anthropic_version`, `anthropic_beta` in the body are refused as extra
//! inputs), JSON answers or server-sent events, and errors shaped
//! `{"type":"error","error":{"type","message"},"request_id"}` with Anthropic's statuses, and
//! Claude's prompt cache ([`PromptCache`]: breakpoints checked, reads and writes accounted per
//! model). Its tables are its own (from Anthropic's "Errors", "Streaming messages" and "Prompt
//! caching" pages), not byollm's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{CacheAccount, PromptCache, ServerTask, random_string, serve};

/// The `anthropic-version` values the API accepts.
const VERSIONS: [&str; 2] = ["2023-06-01", "2023-01-01"];

/// Minimum cacheable prompt by model (Anthropic, "Prompt caching"); 1,024 for the others.
const CACHE_MIN_TOKENS: [(&str, u64); 4] = [
    ("claude-opus-4-7", 4096),
    ("claude-opus-4-6", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-haiku-4-5-20251001", 4096),
];

/// Error types of the Anthropic API and their HTTP statuses (Anthropic docs, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnthropicErrorKind {
    InvalidRequest,
    Authentication,
    Billing,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    Api,
    Overloaded,
}

impl AnthropicErrorKind {
    pub fn error_type(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Billing => "billing_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::RequestTooLarge => "request_too_large",
            Self::RateLimit => "rate_limit_error",
            Self::Api => "api_error",
            Self::Overloaded => "overloaded_error",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Authentication => 401,
            Self::Billing => 402,
            Self::Permission => 403,
            Self::NotFound => 404,
            Self::RequestTooLarge => 413,
            Self::RateLimit => 429,
            Self::Api => 500,
            Self::Overloaded => 529,
        }
    }

    pub fn default_message(self) -> &'static str {
        match self {
            Self::InvalidRequest => "Invalid request",
            Self::Authentication => "invalid x-api-key",
            Self::Billing => "Your credit balance is too low to access the Anthropic API.",
            Self::Permission => "Your API key does not have permission to use the specified resource.",
            Self::NotFound => "Not found",
            Self::RequestTooLarge => "Request exceeds the maximum allowed number of bytes.",
            Self::RateLimit => "Number of request tokens has exceeded your per-minute rate limit",
            Self::Api => "Internal server error",
            Self::Overloaded => "Overloaded",
        }
    }
}

/// One content block of a scripted reply, with its streaming pieces.
#[derive(Debug, Clone)]
pub enum AnthropicBlock {
    Text(Vec<String>),
    Thinking { pieces: Vec<String>, signature: String },
    ToolUse { id: String, name: String, json_pieces: Vec<String> },
}

/// A scripted answer: a message (as JSON or SSE, as the request asks) or an error.
#[derive(Debug, Clone)]
pub struct AnthropicReply {
    pub blocks: Vec<AnthropicBlock>,
    pub stop_reason: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    /// Pause before the answer starts (headers included).
    pub delay: Duration,
    /// Answer with this HTTP error instead.
    pub error: Option<(AnthropicErrorKind, String)>,
    /// In a stream: after this many events, an `error` event, then the stream ends.
    pub stream_error_after: Option<(usize, AnthropicErrorKind)>,
}

impl Default for AnthropicReply {
    fn default() -> Self {
        AnthropicReply {
            blocks: vec![],
            stop_reason: None,
            input_tokens: 21,
            output_tokens: 0,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
            delay: Duration::ZERO,
            error: None,
            stream_error_after: None,
        }
    }
}

fn strings(pieces: &[&str]) -> Vec<String> {
    pieces.iter().map(|s| s.to_string()).collect()
}

impl AnthropicReply {
    pub fn text(pieces: &[&str]) -> AnthropicReply {
        AnthropicReply::default().with_text(pieces)
    }

    pub fn error(kind: AnthropicErrorKind) -> AnthropicReply {
        AnthropicReply::error_with(kind, kind.default_message())
    }

    pub fn error_with(kind: AnthropicErrorKind, message: &str) -> AnthropicReply {
        AnthropicReply { error: Some((kind, message.into())), ..AnthropicReply::default() }
    }

    pub fn with_text(mut self, pieces: &[&str]) -> AnthropicReply {
        self.blocks.push(AnthropicBlock::Text(strings(pieces)));
        self
    }

    pub fn with_thinking(mut self, pieces: &[&str], signature: &str) -> AnthropicReply {
        self.blocks.push(AnthropicBlock::Thinking { pieces: strings(pieces), signature: signature.into() });
        self
    }

    pub fn with_tool_call(mut self, id: &str, name: &str, json_pieces: &[&str]) -> AnthropicReply {
        self.blocks.push(AnthropicBlock::ToolUse {
            id: id.into(),
            name: name.into(),
            json_pieces: strings(json_pieces),
        });
        self
    }

    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> AnthropicReply {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }

    pub fn cache(mut self, read_input_tokens: u64, creation_input_tokens: u64) -> AnthropicReply {
        self.cache_read_input_tokens = read_input_tokens;
        self.cache_creation_input_tokens = creation_input_tokens;
        self
    }

    pub fn delay(mut self, delay: Duration) -> AnthropicReply {
        self.delay = delay;
        self
    }

    pub fn stream_error_after(mut self, events: usize, kind: AnthropicErrorKind) -> AnthropicReply {
        self.stream_error_after = Some((events, kind));
        self
    }

    fn stop_reason(&self) -> String {
        self.stop_reason.clone().unwrap_or_else(|| {
            let tools = self.blocks.iter().any(|b| matches!(b, AnthropicBlock::ToolUse { .. }));
            if tools { "tool_use" } else { "end_turn" }.into()
        })
    }

    fn output_tokens(&self) -> u64 {
        if self.output_tokens > 0 {
            return self.output_tokens;
        }
        let pieces: usize = self
            .blocks
            .iter()
            .map(|b| match b {
                AnthropicBlock::Text(p) => p.len(),
                AnthropicBlock::Thinking { pieces, .. } => pieces.len(),
                AnthropicBlock::ToolUse { json_pieces, .. } => json_pieces.len(),
            })
            .sum();
        pieces.max(1) as u64
    }

    fn usage_json(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    }

    /// The non-streaming answer.
    pub fn message(&self, id: &str, model: &str) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| match b {
                AnthropicBlock::Text(p) => json!({"type": "text", "text": p.concat()}),
                AnthropicBlock::Thinking { pieces, signature } => {
                    json!({"type": "thinking", "thinking": pieces.concat(), "signature": signature})
                }
                AnthropicBlock::ToolUse { id, name, json_pieces } => json!({
                    "type": "tool_use", "id": id, "name": name,
                    "input": serde_json::from_str::<Value>(&json_pieces.concat()).unwrap_or(json!({})),
                }),
            })
            .collect();
        json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": self.stop_reason(), "stop_sequence": null,
            "usage": self.usage_json(self.output_tokens()),
        })
    }

    /// The stream events, `message_start` .. `message_stop`, with a `ping` after the start.
    pub fn events(&self, id: &str, model: &str) -> Vec<Value> {
        let mut events = vec![
            json!({
                "type": "message_start",
                "message": {
                    "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": null, "stop_sequence": null, "usage": self.usage_json(1),
                }
            }),
            json!({"type": "ping"}),
        ];
        for (index, block) in self.blocks.iter().enumerate() {
            let (start, deltas): (Value, Vec<Value>) = match block {
                AnthropicBlock::Text(pieces) => (
                    json!({"type": "text", "text": ""}),
                    pieces.iter().map(|t| json!({"type": "text_delta", "text": t})).collect(),
                ),
                AnthropicBlock::Thinking { pieces, signature } => (
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    pieces
                        .iter()
                        .map(|t| json!({"type": "thinking_delta", "thinking": t}))
                        .chain([json!({"type": "signature_delta", "signature": signature})])
                        .collect(),
                ),
                AnthropicBlock::ToolUse { id, name, json_pieces } => (
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    json_pieces.iter().map(|j| json!({"type": "input_json_delta", "partial_json": j})).collect(),
                ),
            };
            events.push(json!({"type": "content_block_start", "index": index, "content_block": start}));
            events
                .extend(deltas.into_iter().map(|d| json!({"type": "content_block_delta", "index": index, "delta": d})));
            events.push(json!({"type": "content_block_stop", "index": index}));
        }
        events.push(json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason(), "stop_sequence": null},
            "usage": {"output_tokens": self.output_tokens()},
        }));
        events.push(json!({"type": "message_stop"}));
        events
    }
}

#[derive(Debug, Clone)]
pub struct FakeAnthropicOptions {
    /// Keys accepted in `x-api-key`.
    pub api_keys: Vec<String>,
    /// Model ids the account may use; anything else is a 404 `not_found_error`.
    pub models: Vec<String>,
    /// Answer when the script is empty.
    pub default_reply: AnthropicReply,
    /// Report `input_tokens` and the cache counts from the fake's prompt cache instead of the
    /// reply's. Breakpoints are checked and the cache is kept either way.
    pub cache_usage: bool,
}

impl Default for FakeAnthropicOptions {
    fn default() -> Self {
        FakeAnthropicOptions {
            api_keys: vec!["sk-ant-api03-test-key".into()],
            models: vec!["claude-sonnet-4-5".into(), "claude-sonnet-4-5-20250929".into(), "claude-opus-4-7".into()],
            default_reply: AnthropicReply::text(&["Hello", " from", " FakeAnthropic."]),
            cache_usage: false,
        }
    }
}

/// A request the fake answered (authenticated or not).
#[derive(Debug, Clone)]
pub struct AnthropicRequest {
    pub path: String,
    /// The `x-api-key` sent, if any.
    pub api_key: Option<String>,
    pub version: Option<String>,
    /// `anthropic-beta` values, split on commas.
    pub betas: Vec<String>,
    pub model: Option<String>,
    pub stream: bool,
    pub body: Value,
    pub status: u16,
    /// What the request read from and wrote to the prompt cache, when it was answered.
    pub cache: Option<CacheAccount>,
}

#[derive(Default)]
struct State {
    requests: Vec<AnthropicRequest>,
    script: VecDeque<AnthropicReply>,
}

struct Inner {
    options: FakeAnthropicOptions,
    state: Mutex<State>,
    cache: PromptCache,
}

pub struct FakeAnthropic {
    url: String,
    inner: Arc<Inner>,
    _task: ServerTask,
}

impl FakeAnthropic {
    pub async fn start(options: FakeAnthropicOptions) -> FakeAnthropic {
        let inner = Arc::new(Inner { options, state: Mutex::default(), cache: PromptCache::default() });
        let handler_inner = inner.clone();
        let router = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let inner = handler_inner.clone();
            async move { handle(inner, method, uri, headers, body).await }
        });
        let (url, task) = serve(router).await;
        FakeAnthropic { url, inner, _task: task }
    }

    /// Base URL, as `ANTHROPIC_BASE_URL` takes it (no `/v1`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn requests(&self) -> Vec<AnthropicRequest> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    /// The fake's prompt cache (move its clock, clear it).
    pub fn prompt_cache(&self) -> &PromptCache {
        &self.inner.cache
    }

    /// Replace the queue of replies; each accepted request consumes one, then `default_reply`.
    pub fn set_script(&self, replies: Vec<AnthropicReply>) {
        self.inner.state.lock().unwrap().script = replies.into();
    }
}

fn request_id() -> String {
    format!("req_011C{}", random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 20))
}

/// Anthropic's error body and status.
pub fn anthropic_error(kind: AnthropicErrorKind, message: &str) -> Response {
    let id = request_id();
    let body = json!({"type": "error", "error": {"type": kind.error_type(), "message": message}, "request_id": id});
    let mut response = (
        StatusCode::from_u16(kind.status()).unwrap(),
        [(header::CONTENT_TYPE, "application/json".to_string()), (header::HeaderName::from_static("request-id"), id)],
        body.to_string(),
    )
        .into_response();
    if kind == AnthropicErrorKind::RateLimit {
        response.headers_mut().insert(header::RETRY_AFTER, "7".parse().unwrap());
    }
    if kind == AnthropicErrorKind::Authentication || kind == AnthropicErrorKind::Permission {
        response.headers_mut().insert("x-should-retry", "false".parse().unwrap());
    }
    response
}

async fn handle(inner: Arc<Inner>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut record = AnthropicRequest {
        path: uri.path().to_owned(),
        api_key: header_str("x-api-key"),
        version: header_str("anthropic-version"),
        betas: header_str("anthropic-beta")
            .map(|v| v.split(',').map(|b| b.trim().to_owned()).filter(|b| !b.is_empty()).collect())
            .unwrap_or_default(),
        model: json_body.get("model").and_then(Value::as_str).map(str::to_owned),
        stream: json_body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        body: json_body.clone(),
        status: 0,
        cache: None,
    };
    let (response, cache) = answer(&inner, &method, &uri, &record, &body).await;
    record.status = response.status().as_u16();
    record.cache = cache;
    inner.state.lock().unwrap().requests.push(record);
    response
}

async fn answer(
    inner: &Arc<Inner>,
    method: &Method,
    uri: &Uri,
    request: &AnthropicRequest,
    raw: &[u8],
) -> (Response, Option<CacheAccount>) {
    use AnthropicErrorKind::*;
    if uri.path() != "/v1/messages" {
        return (anthropic_error(NotFound, "Not Found"), None);
    }
    if method != Method::POST {
        return (anthropic_error(InvalidRequest, &format!("Method Not Allowed: {method}")), None);
    }
    // Authentication comes before anything else, as the API checks it first.
    match &request.api_key {
        None => return (anthropic_error(Authentication, "x-api-key header is required"), None),
        Some(key) if !inner.options.api_keys.contains(key) => {
            return (anthropic_error(Authentication, "invalid x-api-key"), None);
        }
        Some(_) => {}
    }
    match request.version.as_deref() {
        None => return (anthropic_error(InvalidRequest, "anthropic-version: header is required"), None),
        Some(v) if !VERSIONS.contains(&v) => {
            return (anthropic_error(InvalidRequest, &format!("anthropic-version: invalid version: {v}")), None);
        }
        Some(_) => {}
    }
    if serde_json::from_slice::<Value>(raw).is_err() {
        return (anthropic_error(InvalidRequest, "There was an error parsing the body of your request"), None);
    }
    if let Err(message) = validate_body(&request.body) {
        return (anthropic_error(InvalidRequest, &message), None);
    }
    let model = request.model.clone().unwrap_or_default();
    if !inner.options.models.contains(&model) {
        return (anthropic_error(NotFound, &format!("model: {model}")), None);
    }
    let minimum = CACHE_MIN_TOKENS.iter().find(|(name, _)| *name == model).map_or(1024, |(_, min)| *min);
    let account = match inner.cache.account(&model, &request.body, minimum) {
        Ok(account) => account,
        Err(message) => return (anthropic_error(InvalidRequest, &message), None),
    };
    let mut reply =
        inner.state.lock().unwrap().script.pop_front().unwrap_or_else(|| inner.options.default_reply.clone());
    tokio::time::sleep(reply.delay).await;
    if let Some((kind, message)) = &reply.error {
        return (anthropic_error(*kind, message), None);
    }
    if inner.options.cache_usage {
        reply.input_tokens = account.input;
        reply.cache_read_input_tokens = account.read;
        reply.cache_creation_input_tokens = account.write;
    }
    let account = Some(account);
    let id = format!("msg_01{}", random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 22));
    if !request.stream {
        return (
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (header::HeaderName::from_static("request-id"), request_id()),
                ],
                reply.message(&id, &model).to_string(),
            )
                .into_response(),
            account,
        );
    }
    let events = reply.events(&id, &model);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for (index, event) in events.iter().enumerate() {
            if let Some((after, kind)) = reply.stream_error_after
                && index == after
            {
                let error =
                    json!({"type": "error", "error": {"type": kind.error_type(), "message": kind.default_message()}});
                let _ = tx.send(Ok(sse_event("error", &error))).await;
                return;
            }
            let name = event["type"].as_str().unwrap_or("unknown").to_owned();
            if tx.send(Ok(sse_event(&name, event))).await.is_err() {
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8".to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::HeaderName::from_static("request-id"), request_id()),
        ],
        Body::from_stream(body),
    )
        .into_response();
    (response, account)
}

fn sse_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The body checks of the Messages API that matter to a gateway: required fields, no Bedrock
/// fields, alternating non-empty turns.
fn validate_body(body: &Value) -> Result<(), String> {
    let Some(object) = body.as_object() else {
        return Err("Input should be a valid dictionary".into());
    };
    for extra in ["anthropic_version", "anthropic_beta"] {
        if object.contains_key(extra) {
            return Err(format!("{extra}: Extra inputs are not permitted"));
        }
    }
    for required in ["model", "max_tokens", "messages"] {
        if !object.contains_key(required) {
            return Err(format!("{required}: Field required"));
        }
    }
    if !object["model"].is_string() {
        return Err("model: Input should be a valid string".into());
    }
    if object["max_tokens"].as_u64().is_none_or(|n| n < 1) {
        return Err("max_tokens: Input should be greater than or equal to 1".into());
    }
    if let Some(stream) = object.get("stream")
        && !stream.is_boolean()
    {
        return Err("stream: Input should be a valid boolean".into());
    }
    let Some(messages) = object["messages"].as_array() else {
        return Err("messages: Input should be a valid list".into());
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for (index, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{index}.role: Input should be 'user' or 'assistant'"));
        }
        let empty = match &message["content"] {
            Value::String(text) => text.is_empty(),
            Value::Array(blocks) => blocks.is_empty(),
            _ => return Err(format!("messages.{index}.content: Input should be a valid list")),
        };
        if empty && !(index == messages.len() - 1 && role == "assistant") {
            return Err(format!(
                "messages.{index}: all messages must have non-empty content except for the optional final assistant message"
            ));
        }
    }
    Ok(())
}
