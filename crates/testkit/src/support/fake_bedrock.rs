//! Fake Bedrock Runtime: `InvokeModel`, `InvokeModelWithResponseStream`, `Converse`,
//! `ConverseStream` and `CountTokens` for Anthropic Claude, with SigV4 verification (a Bedrock API
//! key as `Authorization: Bearer` is refused: byollm must sign), Anthropic and Converse body
//! validation, Claude's prompt cache ([`PromptCache`]: breakpoints checked, reads and writes
//! accounted per model) and scripted replies (JSON or event-stream frames).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::{digest, hmac};
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::{
    CacheAccount, CredentialStore, PromptCache, ServerTask, StoredCredential, hex, percent_decode, random_string,
    request_id, serve, unix_now, uri_encode,
};

/// Errors Bedrock Runtime answers before any body, as `{"message": ...}` plus `x-amzn-ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BedrockErrorKind {
    Validation,
    AccessDenied,
    ResourceNotFound,
    Throttling,
    ServiceQuotaExceeded,
    ModelTimeout,
    ModelNotReady,
    ServiceUnavailable,
    InternalServer,
    ModelError,
    // Authentication layer.
    UnrecognizedClient,
    ExpiredToken,
    InvalidSignature,
    IncompleteSignature,
    MissingAuthenticationToken,
}

impl BedrockErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::Validation => "ValidationException",
            Self::AccessDenied => "AccessDeniedException",
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::Throttling => "ThrottlingException",
            Self::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            Self::ModelTimeout => "ModelTimeoutException",
            Self::ModelNotReady => "ModelNotReadyException",
            Self::ServiceUnavailable => "ServiceUnavailableException",
            Self::InternalServer => "InternalServerException",
            Self::ModelError => "ModelErrorException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::ExpiredToken => "ExpiredTokenException",
            Self::InvalidSignature => "InvalidSignatureException",
            Self::IncompleteSignature => "IncompleteSignatureException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::Validation | Self::ServiceQuotaExceeded | Self::IncompleteSignature => 400,
            Self::AccessDenied
            | Self::UnrecognizedClient
            | Self::ExpiredToken
            | Self::InvalidSignature
            | Self::MissingAuthenticationToken => 403,
            Self::ResourceNotFound => 404,
            Self::ModelTimeout => 408,
            Self::ModelError => 424,
            Self::Throttling | Self::ModelNotReady => 429,
            Self::InternalServer => 500,
            Self::ServiceUnavailable => 503,
        }
    }

    pub fn default_message(self) -> &'static str {
        match self {
            Self::Validation => "Malformed input request, please reformat your input and try again.",
            Self::AccessDenied => "You don't have access to the model with the specified model ID.",
            Self::ResourceNotFound => "Model not found.",
            Self::Throttling => "Too many requests, please wait before trying again.",
            Self::ServiceQuotaExceeded => "Too many tokens, please wait before trying again.",
            Self::ModelTimeout => "Model has timed out in processing the request. Try your request again.",
            Self::ModelNotReady => "Model is not ready for inference. Wait and try your request again.",
            Self::ServiceUnavailable => "Service unavailable. Try your request again.",
            Self::InternalServer => "The server encountered an internal error while processing the request.",
            Self::ModelError => "The model returned an error while processing the request.",
            Self::UnrecognizedClient => "The security token included in the request is invalid.",
            Self::ExpiredToken => "The security token included in the request is expired",
            Self::InvalidSignature => {
                "The request signature we calculated does not match the signature you provided. Check your AWS \
                 Secret Access Key and signing method. Consult the service documentation for details."
            }
            Self::IncompleteSignature => "Authorization header requires 'Credential' parameter.",
            Self::MissingAuthenticationToken => "Missing Authentication Token",
        }
    }

    pub const ALL_INVOKE: [BedrockErrorKind; 10] = [
        Self::Validation,
        Self::AccessDenied,
        Self::ResourceNotFound,
        Self::Throttling,
        Self::ServiceQuotaExceeded,
        Self::ModelTimeout,
        Self::ModelNotReady,
        Self::ServiceUnavailable,
        Self::InternalServer,
        Self::ModelError,
    ];
}

/// Exceptions Bedrock sends as `:message-type exception` frames inside the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamExceptionKind {
    Throttling,
    ModelStreamError,
    InternalServer,
    Validation,
    ServiceUnavailable,
    ModelTimeout,
}

impl StreamExceptionKind {
    /// The `:exception-type` header value.
    pub fn exception_type(self) -> &'static str {
        match self {
            Self::Throttling => "throttlingException",
            Self::ModelStreamError => "modelStreamErrorException",
            Self::InternalServer => "internalServerException",
            Self::Validation => "validationException",
            Self::ServiceUnavailable => "serviceUnavailableException",
            Self::ModelTimeout => "modelTimeoutException",
        }
    }

    /// What `InvokeModel` (no stream) answers instead.
    fn as_error(self) -> BedrockErrorKind {
        match self {
            Self::Throttling => BedrockErrorKind::Throttling,
            Self::ModelStreamError => BedrockErrorKind::ModelError,
            Self::InternalServer => BedrockErrorKind::InternalServer,
            Self::Validation => BedrockErrorKind::Validation,
            Self::ServiceUnavailable => BedrockErrorKind::ServiceUnavailable,
            Self::ModelTimeout => BedrockErrorKind::ModelTimeout,
        }
    }

    pub const ALL: [StreamExceptionKind; 6] = [
        Self::Throttling,
        Self::ModelStreamError,
        Self::InternalServer,
        Self::Validation,
        Self::ServiceUnavailable,
        Self::ModelTimeout,
    ];
}

/// One content block of a scripted Anthropic reply, with its streaming pieces.
#[derive(Debug, Clone)]
pub enum Block {
    Text(Vec<String>),
    Thinking {
        pieces: Vec<String>,
        signature: String,
    },
    /// `json_pieces` concatenate to the tool input JSON object.
    ToolUse {
        id: String,
        name: String,
        json_pieces: Vec<String>,
    },
}

/// How a streamed reply ends.
#[derive(Debug, Clone)]
pub enum Ending {
    Complete,
    /// After `after_events` Anthropic events, an exception frame, then the stream ends.
    Exception {
        after_events: usize,
        kind: StreamExceptionKind,
        message: String,
    },
    /// After `after_events` Anthropic events the connection is dropped (no `message_stop`).
    Cut {
        after_events: usize,
    },
    /// After `after_events` Anthropic events the body ends cleanly, with no `message_stop` (a
    /// proxy or load balancer that closes an answer as if it were whole).
    EndEarly {
        after_events: usize,
    },
}

/// A scripted answer: an Anthropic message (served as JSON or as a stream, by endpoint) or an error.
#[derive(Debug, Clone)]
pub struct Reply {
    pub blocks: Vec<Block>,
    pub stop_reason: Option<String>,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    /// Pause before every stream event after the first (and before the JSON answer).
    pub delay: Duration,
    pub ending: Ending,
    /// Answer with this HTTP error instead.
    pub error: Option<(BedrockErrorKind, String)>,
    /// Thinking tokens reported in `usage.output_tokens_details` (with the thinking-token-count beta).
    pub thinking_tokens: Option<u64>,
    /// `InvokeModelWithResponseStream`: every frame in one body chunk (a burst that arrives at
    /// once), instead of a chunk per frame.
    pub one_piece: bool,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            blocks: vec![],
            stop_reason: None,
            model: "claude-sonnet-4-5-20250929".into(),
            input_tokens: 12,
            output_tokens: 0,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
            delay: Duration::ZERO,
            ending: Ending::Complete,
            error: None,
            thinking_tokens: None,
            one_piece: false,
        }
    }
}

fn strings(pieces: &[&str]) -> Vec<String> {
    pieces.iter().map(|s| s.to_string()).collect()
}

impl Reply {
    /// A plain text answer streamed in these pieces.
    pub fn text(pieces: &[&str]) -> Reply {
        Reply::default().with_text(pieces)
    }

    pub fn error(kind: BedrockErrorKind) -> Reply {
        Reply::error_with(kind, kind.default_message())
    }

    pub fn error_with(kind: BedrockErrorKind, message: &str) -> Reply {
        Reply { error: Some((kind, message.into())), ..Reply::default() }
    }

    pub fn with_text(mut self, pieces: &[&str]) -> Reply {
        self.blocks.push(Block::Text(strings(pieces)));
        self
    }

    pub fn with_thinking(mut self, pieces: &[&str], signature: &str) -> Reply {
        self.blocks.push(Block::Thinking { pieces: strings(pieces), signature: signature.into() });
        self
    }

    pub fn with_tool_call(mut self, id: &str, name: &str, json_pieces: &[&str]) -> Reply {
        self.blocks.push(Block::ToolUse { id: id.into(), name: name.into(), json_pieces: strings(json_pieces) });
        self
    }

    pub fn stop_reason(mut self, reason: &str) -> Reply {
        self.stop_reason = Some(reason.into());
        self
    }

    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Reply {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }

    pub fn cache(mut self, read_input_tokens: u64, creation_input_tokens: u64) -> Reply {
        self.cache_read_input_tokens = read_input_tokens;
        self.cache_creation_input_tokens = creation_input_tokens;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Stream every frame in one body chunk ([`Reply::one_piece`]).
    pub fn in_one_piece(mut self) -> Reply {
        self.one_piece = true;
        self
    }

    pub fn exception_after(mut self, after_events: usize, kind: StreamExceptionKind, message: &str) -> Reply {
        self.ending = Ending::Exception { after_events, kind, message: message.into() };
        self
    }

    pub fn cut_after(mut self, after_events: usize) -> Reply {
        self.ending = Ending::Cut { after_events };
        self
    }

    /// Streams: the body ends cleanly after `after_events` events, without `message_stop`.
    pub fn end_after(mut self, after_events: usize) -> Reply {
        self.ending = Ending::EndEarly { after_events };
        self
    }

    fn effective_stop_reason(&self) -> String {
        self.stop_reason.clone().unwrap_or_else(|| {
            let tools = self.blocks.iter().any(|b| matches!(b, Block::ToolUse { .. }));
            if tools { "tool_use" } else { "end_turn" }.into()
        })
    }

    fn effective_output_tokens(&self) -> u64 {
        if self.output_tokens > 0 {
            return self.output_tokens;
        }
        let pieces: usize = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Text(p) => p.len(),
                Block::Thinking { pieces, .. } => pieces.len(),
                Block::ToolUse { json_pieces, .. } => json_pieces.len(),
            })
            .sum();
        pieces.max(1) as u64
    }

    fn usage_json(&self, output_tokens: u64) -> Value {
        let mut usage = json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": output_tokens,
        });
        if let Some(thinking_tokens) = self.thinking_tokens {
            usage["output_tokens_details"] = json!({"thinking_tokens": thinking_tokens});
        }
        usage
    }

    /// Thinking blocks keep their signature but lose their text, as Bedrock sends them when
    /// `display` is omitted.
    fn omit_thinking_text(mut self) -> Reply {
        for block in &mut self.blocks {
            if let Block::Thinking { pieces, .. } = block {
                pieces.clear();
            }
        }
        self
    }

    fn has_thinking(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b, Block::Thinking { .. }))
    }

    /// The Anthropic stream events, `message_start` .. `message_stop` (the last one carrying
    /// `amazon-bedrock-invocationMetrics`, as Bedrock adds it).
    pub fn events(&self, message_id: &str) -> Vec<Value> {
        let mut events = vec![json!({
            "type": "message_start",
            "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": self.usage_json(1),
            }
        })];
        for (index, block) in self.blocks.iter().enumerate() {
            let (start, deltas): (Value, Vec<Value>) = match block {
                Block::Text(pieces) => (
                    json!({"type": "text", "text": ""}),
                    pieces.iter().map(|t| json!({"type": "text_delta", "text": t})).collect(),
                ),
                Block::Thinking { pieces, signature } => (
                    json!({"type": "thinking", "thinking": ""}),
                    pieces
                        .iter()
                        .map(|t| json!({"type": "thinking_delta", "thinking": t}))
                        .chain([json!({"type": "signature_delta", "signature": signature})])
                        .collect(),
                ),
                Block::ToolUse { id, name, json_pieces } => (
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    json_pieces.iter().map(|j| json!({"type": "input_json_delta", "partial_json": j})).collect(),
                ),
            };
            events.push(json!({"type": "content_block_start", "index": index, "content_block": start}));
            events
                .extend(deltas.into_iter().map(|d| json!({"type": "content_block_delta", "index": index, "delta": d})));
            events.push(json!({"type": "content_block_stop", "index": index}));
        }
        let output_tokens = self.effective_output_tokens();
        let mut delta_usage = json!({"output_tokens": output_tokens});
        if let Some(thinking_tokens) = self.thinking_tokens {
            delta_usage["output_tokens_details"] = json!({"thinking_tokens": thinking_tokens});
        }
        events.push(json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.effective_stop_reason(), "stop_sequence": null},
            "usage": delta_usage,
        }));
        let mut metrics = json!({
            "inputTokenCount": self.input_tokens,
            "outputTokenCount": output_tokens,
            "invocationLatency": 1234,
            "firstByteLatency": 321,
        });
        if self.cache_read_input_tokens > 0 || self.cache_creation_input_tokens > 0 {
            metrics["cacheReadInputTokenCount"] = json!(self.cache_read_input_tokens);
            metrics["cacheWriteInputTokenCount"] = json!(self.cache_creation_input_tokens);
        }
        events.push(json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics}));
        events
    }

    /// The non-streaming `InvokeModel` body.
    pub fn message(&self, message_id: &str) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Text(p) => json!({"type": "text", "text": p.concat()}),
                Block::Thinking { pieces, signature } => {
                    json!({"type": "thinking", "thinking": pieces.concat(), "signature": signature})
                }
                Block::ToolUse { id, name, json_pieces } => json!({
                    "type": "tool_use", "id": id, "name": name,
                    "input": serde_json::from_str::<Value>(&json_pieces.concat()).unwrap_or(json!({})),
                }),
            })
            .collect();
        json!({
            "id": message_id, "type": "message", "role": "assistant", "model": self.model, "content": content,
            "stop_reason": self.effective_stop_reason(), "stop_sequence": null,
            "usage": self.usage_json(self.effective_output_tokens()),
        })
    }
}

#[derive(Debug, Clone)]
pub struct FakeBedrockOptions {
    pub region: String,
    /// Keys accepted; share it with [`super::FakeStsOptions::credentials`] to accept STS-issued ones.
    pub credentials: CredentialStore,
    /// Allowed distance between `x-amz-date` and now.
    pub max_clock_skew: Duration,
    /// Answer when the script is empty.
    pub default_reply: Reply,
    /// With an empty script, answer from the request instead of `default_reply`: a tool call to
    /// the first tool when the last turn is the user's and tools are offered, thinking first when
    /// the model thinks, then text naming the model.
    pub auto_reply: bool,
    /// Report `input_tokens`, `cache_read_input_tokens` and `cache_creation_input_tokens` from the
    /// fake's prompt cache ([`PromptCache`]) instead of the reply's. Breakpoints are checked and
    /// the cache is kept either way.
    pub cache_usage: bool,
}

impl Default for FakeBedrockOptions {
    fn default() -> Self {
        FakeBedrockOptions {
            region: "us-east-1".into(),
            credentials: CredentialStore::new(),
            max_clock_skew: Duration::from_secs(15 * 60),
            default_reply: Reply::text(&["Hello", " from", " FakeBedrock."]),
            auto_reply: false,
            cache_usage: false,
        }
    }
}

/// A request that passed authentication.
#[derive(Debug, Clone)]
pub struct BedrockRequest {
    /// Decoded model id (`global.anthropic.claude-...-v1:0` or an ARN).
    pub model_id: String,
    /// The path's operation: `invoke`, `invoke-with-response-stream`, `converse`,
    /// `converse-stream` or `count-tokens`.
    pub operation: String,
    pub streaming: bool,
    /// The body exactly as received.
    pub raw_body: Bytes,
    /// Names of the request's headers (lower case).
    pub header_names: Vec<String>,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    pub access_key_id: String,
    pub content_type: Option<String>,
    /// HTTP status answered (200 for streams, whatever happens inside them).
    pub status: u16,
    /// What an `InvokeModel*` request read from and wrote to the prompt cache, when it passed.
    pub cache: Option<CacheAccount>,
}

#[derive(Default)]
struct State {
    requests: Vec<BedrockRequest>,
    script: VecDeque<Reply>,
    streams_completed: usize,
}

struct Inner {
    options: FakeBedrockOptions,
    state: Mutex<State>,
    disconnects: watch::Sender<usize>,
    cache: PromptCache,
}

pub struct FakeBedrock {
    url: String,
    inner: Arc<Inner>,
    _task: ServerTask,
}

impl FakeBedrock {
    pub async fn start(options: FakeBedrockOptions) -> FakeBedrock {
        let inner = Arc::new(Inner {
            options,
            state: Mutex::default(),
            disconnects: watch::channel(0).0,
            cache: PromptCache::default(),
        });
        let handler_inner = inner.clone();
        let router = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let inner = handler_inner.clone();
            async move { handle(inner, method, uri, headers, body).await }
        });
        let (url, task) = serve(router).await;
        FakeBedrock { url, inner, _task: task }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn credentials(&self) -> CredentialStore {
        self.inner.options.credentials.clone()
    }

    pub fn add_static_key(&self, access_key_id: &str, secret_access_key: &str) {
        self.inner.options.credentials.add_static(access_key_id, secret_access_key);
    }

    pub fn requests(&self) -> Vec<BedrockRequest> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    /// Replace the queue of replies; each request consumes one, then `default_reply` is used.
    pub fn set_script(&self, replies: Vec<Reply>) {
        self.inner.state.lock().unwrap().script = replies.into();
    }

    /// Streams whose client went away before the stream was fully written.
    pub fn disconnects(&self) -> usize {
        *self.inner.disconnects.borrow()
    }

    /// Wait until at least `n` client disconnects were seen; false on timeout.
    pub async fn wait_for_disconnects(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.inner.disconnects.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await.is_ok_and(|r| r.is_ok())
    }

    /// The fake's prompt cache (move its clock, clear it).
    pub fn prompt_cache(&self) -> &PromptCache {
        &self.inner.cache
    }

    /// Streams written to their scripted end (complete, exception frame or cut), not abandoned by the client.
    pub fn streams_completed(&self) -> usize {
        self.inner.state.lock().unwrap().streams_completed
    }
}

fn error_response(kind: BedrockErrorKind, message: &str) -> Response {
    (
        StatusCode::from_u16(kind.status()).unwrap(),
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::HeaderName::from_static("x-amzn-errortype"), kind.code().to_string()),
            (header::HeaderName::from_static("x-amzn-requestid"), request_id()),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

async fn handle(inner: Arc<Inner>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let raw_path = uri.path();
    let route = raw_path.strip_prefix("/model/").and_then(|rest| {
        let (model, op) = rest.split_once('/')?;
        let op = Op::parse(op)?;
        Some((percent_decode(model, false)?, op))
    });
    let Some((model_id, op)) = route.filter(|_| method == Method::POST) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::HeaderName::from_static("x-amzn-errortype"), "UnknownOperationException")],
            "{}",
        )
            .into_response();
    };
    let credential = match verify_sigv4(&inner.options, &method, &uri, &headers, &body) {
        Ok(c) => c,
        Err((kind, message)) => return error_response(kind, &message),
    };
    let streaming = matches!(op, Op::InvokeStream | Op::ConverseStream);
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let record = |status: u16| BedrockRequest {
        model_id: model_id.clone(),
        operation: op.name().into(),
        streaming,
        raw_body: body.clone(),
        header_names: headers.keys().map(|k| k.as_str().to_owned()).collect(),
        body: json_body.clone(),
        access_key_id: credential.access_key_id.clone(),
        content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from),
        status,
        cache: None,
    };
    if op == Op::CountTokens {
        let response = count_tokens(&model_id, &json_body);
        inner.state.lock().unwrap().requests.push(record(response.status().as_u16()));
        return response;
    }
    let outcome = validate_model_id(&model_id).and_then(|_| fake_model(&model_id)).and_then(|model| {
        if matches!(op, Op::Converse | Op::ConverseStream) {
            validate_converse(&json_body).map(|_| (model, None))
        } else {
            validate_anthropic(&json_body, model)?;
            let minimum = model.map_or(DEFAULT_CACHE_MIN_TOKENS, |m| m.cache_min_tokens);
            let scope = model.map_or(model_id.as_str(), |m| m.base);
            inner.cache.account(scope, &json_body, minimum).map(|account| (model, Some(account)))
        }
    });
    let mut cache = None;
    let reply = match outcome {
        Err(message) => Reply::error_with(BedrockErrorKind::Validation, &message),
        Ok((model, account)) => {
            cache = account;
            let scripted = inner.state.lock().unwrap().script.pop_front();
            let reply = scripted.unwrap_or_else(|| {
                if inner.options.auto_reply {
                    auto_reply(&json_body, &model_id, model)
                } else {
                    inner.options.default_reply.clone()
                }
            });
            if matches!(op, Op::Converse | Op::ConverseStream) {
                reply
            } else {
                let reply = shape_reply(reply, &json_body, model);
                match &cache {
                    Some(account) if inner.options.cache_usage && reply.error.is_none() => Reply {
                        input_tokens: account.input,
                        cache_read_input_tokens: account.read,
                        cache_creation_input_tokens: account.write,
                        ..reply
                    },
                    _ => reply,
                }
            }
        }
    };
    let response = match op {
        Op::Converse | Op::ConverseStream => respond_converse(&inner, reply, streaming).await,
        _ => respond(&inner, reply, streaming).await,
    };
    let mut request = record(response.status().as_u16());
    request.cache = cache;
    inner.state.lock().unwrap().requests.push(request);
    response
}

/// The model operations, by their path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Invoke,
    InvokeStream,
    Converse,
    ConverseStream,
    CountTokens,
}

impl Op {
    fn parse(segment: &str) -> Option<Op> {
        Some(match segment {
            "invoke" => Op::Invoke,
            "invoke-with-response-stream" => Op::InvokeStream,
            "converse" => Op::Converse,
            "converse-stream" => Op::ConverseStream,
            "count-tokens" => Op::CountTokens,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Op::Invoke => "invoke",
            Op::InvokeStream => "invoke-with-response-stream",
            Op::Converse => "converse",
            Op::ConverseStream => "converse-stream",
            Op::CountTokens => "count-tokens",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Converse, ConverseStream, CountTokens (shapes from the Bedrock API reference: Converse request
// and response, the ConverseStream event union, CountTokens with its invokeModel/converse input).

/// The fake's token count for text: one token per whitespace-separated word, plus one.
fn fake_token_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64 + 1
}

/// `CountTokens`: base (foundation-model) ids only, as Bedrock counts; `{"inputTokens": n}`.
fn count_tokens(model_id: &str, body: &Value) -> Response {
    if model_id.split('.').next().is_some_and(|prefix| prefix != "anthropic") || model_id.starts_with("arn:") {
        return error_response(BedrockErrorKind::Validation, "The provided model doesn't support counting tokens.");
    }
    if let Err(message) = validate_model_id(model_id) {
        return error_response(BedrockErrorKind::Validation, &message);
    }
    let input = &body["input"];
    let text = match (input.get("invokeModel"), input.get("converse")) {
        (Some(invoke), None) => {
            let Some(decoded) = invoke["body"].as_str().and_then(|b| STANDARD.decode(b).ok()) else {
                return error_response(BedrockErrorKind::Validation, "input.invokeModel.body must be a base64 blob");
            };
            let Ok(anthropic) = serde_json::from_slice::<Value>(&decoded) else {
                return error_response(BedrockErrorKind::Validation, &malformed("#: expected type: JSONObject"));
            };
            if !anthropic["messages"].is_array() {
                return error_response(
                    BedrockErrorKind::Validation,
                    &malformed("#: required key [messages] not found"),
                );
            }
            format!("{} {}", anthropic["system"], anthropic["messages"])
        }
        (None, Some(converse)) => {
            if let Err(message) = validate_converse(converse) {
                return error_response(BedrockErrorKind::Validation, &message);
            }
            format!("{} {}", converse["system"], converse["messages"])
        }
        _ => {
            return error_response(
                BedrockErrorKind::Validation,
                "1 validation error detected: Value at 'input' failed to satisfy constraint: exactly one of invokeModel, converse",
            );
        }
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::HeaderName::from_static("x-amzn-requestid"), request_id()),
        ],
        json!({"inputTokens": fake_token_count(&text)}).to_string(),
    )
        .into_response()
}

const CONVERSE_BLOCKS: [&str; 8] =
    ["text", "image", "document", "toolUse", "toolResult", "reasoningContent", "cachePoint", "guardContent"];

/// A Converse request (or CountTokens' `converse` input): messages alternate, start with the user,
/// each content block is one of the union's members; `inferenceConfig.maxTokens` ≥ 1.
fn validate_converse(body: &Value) -> Result<(), String> {
    let validation = |detail: String| format!("1 validation error detected: {detail}");
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Err(validation("Value at 'messages' failed to satisfy constraint: Member must not be null".into()));
    };
    let mut previous = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(validation(format!(
                "Value at 'messages.{}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]",
                i + 1
            )));
        }
        if (i == 0 && role != "user") || previous == Some(role) {
            return Err(
                "A conversation must start with a user message and alternate between user and assistant roles.".into(),
            );
        }
        previous = Some(role);
        let Some(content) = message["content"].as_array().filter(|c| !c.is_empty()) else {
            return Err(validation(format!(
                "Value at 'messages.{}.member.content' failed to satisfy constraint: Member must not be null",
                i + 1
            )));
        };
        for block in content {
            let keys: Vec<&String> = block.as_object().map(|o| o.keys().collect()).unwrap_or_default();
            if keys.len() != 1 || !CONVERSE_BLOCKS.contains(&keys[0].as_str()) {
                return Err(validation("ContentBlock must be exactly one of its union members".into()));
            }
        }
    }
    if let Some(max_tokens) = body["inferenceConfig"].get("maxTokens")
        && max_tokens.as_i64().is_none_or(|m| m < 1)
    {
        return Err(validation("Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1".into()));
    }
    Ok(())
}

fn converse_stop_reason(reply: &Reply) -> String {
    reply.effective_stop_reason()
}

fn converse_usage(reply: &Reply, output_tokens: u64) -> Value {
    let mut usage = json!({
        "inputTokens": reply.input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": reply.input_tokens + output_tokens,
    });
    if reply.cache_read_input_tokens > 0 || reply.cache_creation_input_tokens > 0 {
        usage["cacheReadInputTokens"] = json!(reply.cache_read_input_tokens);
        usage["cacheWriteInputTokens"] = json!(reply.cache_creation_input_tokens);
    }
    usage
}

/// The ConverseStream events of a reply, as (`:event-type`, payload) pairs.
fn converse_events(reply: &Reply) -> Vec<(&'static str, Value)> {
    let mut events = vec![("messageStart", json!({"role": "assistant"}))];
    for (index, block) in reply.blocks.iter().enumerate() {
        match block {
            Block::Text(pieces) => {
                for piece in pieces {
                    events.push(("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"text": piece}})));
                }
            }
            Block::Thinking { pieces, signature } => {
                for piece in pieces {
                    events.push((
                        "contentBlockDelta",
                        json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"text": piece}}}),
                    ));
                }
                events.push((
                    "contentBlockDelta",
                    json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": signature}}}),
                ));
            }
            Block::ToolUse { id, name, json_pieces } => {
                events.push((
                    "contentBlockStart",
                    json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
                ));
                for piece in json_pieces {
                    events.push((
                        "contentBlockDelta",
                        json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}),
                    ));
                }
            }
        }
        events.push(("contentBlockStop", json!({"contentBlockIndex": index})));
    }
    events.push(("messageStop", json!({"stopReason": converse_stop_reason(reply)})));
    events.push((
        "metadata",
        json!({"usage": converse_usage(reply, reply.effective_output_tokens()), "metrics": {"latencyMs": 321}}),
    ));
    events
}

async fn respond_converse(inner: &Arc<Inner>, reply: Reply, streaming: bool) -> Response {
    if let Some((kind, message)) = &reply.error {
        return error_response(*kind, message);
    }
    if !streaming {
        tokio::time::sleep(reply.delay).await;
        let content: Vec<Value> = reply
            .blocks
            .iter()
            .map(|block| match block {
                Block::Text(pieces) => json!({"text": pieces.concat()}),
                Block::Thinking { pieces, signature } => {
                    json!({"reasoningContent": {"reasoningText": {"text": pieces.concat(), "signature": signature}}})
                }
                Block::ToolUse { id, name, json_pieces } => json!({"toolUse": {
                    "toolUseId": id, "name": name,
                    "input": serde_json::from_str::<Value>(&json_pieces.concat()).unwrap_or(json!({})),
                }}),
            })
            .collect();
        let body = json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": converse_stop_reason(&reply),
            "usage": converse_usage(&reply, reply.effective_output_tokens()),
            "metrics": {"latencyMs": 321},
        });
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (header::HeaderName::from_static("x-amzn-requestid"), request_id()),
            ],
            body.to_string(),
        )
            .into_response();
    }
    let events = converse_events(&reply);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let inner = inner.clone();
    tokio::spawn(async move {
        let disconnected = || inner.disconnects.send_modify(|c| *c += 1);
        let stop_at = match &reply.ending {
            Ending::Complete => events.len(),
            Ending::Exception { after_events, .. }
            | Ending::Cut { after_events }
            | Ending::EndEarly { after_events } => (*after_events).min(events.len()),
        };
        for (i, (kind, payload)) in events[..stop_at].iter().enumerate() {
            if i > 0 && !reply.delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(reply.delay) => {}
                    _ = tx.closed() => return disconnected(),
                }
            }
            let mut payload = payload.clone();
            payload["p"] = json!("abcdefghij");
            let bytes = frame(
                [(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")],
                payload.to_string(),
            );
            if tx.send(Ok(bytes)).await.is_err() {
                return disconnected();
            }
        }
        let last = match &reply.ending {
            Ending::Complete | Ending::EndEarly { .. } => None,
            Ending::Exception { kind, message, .. } => Some(Ok(exception_frame(*kind, message))),
            Ending::Cut { .. } => Some(Err(std::io::Error::other("connection cut"))),
        };
        if let Some(last) = last
            && tx.send(last).await.is_err()
        {
            return disconnected();
        }
        inner.state.lock().unwrap().streams_completed += 1;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/vnd.amazon.eventstream".to_string()),
            (header::HeaderName::from_static("x-amzn-requestid"), request_id()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn message_id() -> String {
    format!("msg_bdrk_01{}", random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 22))
}

async fn respond(inner: &Arc<Inner>, reply: Reply, streaming: bool) -> Response {
    if let Some((kind, message)) = &reply.error {
        return error_response(*kind, message);
    }
    let id = message_id();
    if !streaming {
        tokio::time::sleep(reply.delay).await;
        match &reply.ending {
            Ending::Complete | Ending::EndEarly { .. } => {}
            Ending::Exception { kind, message, .. } => return error_response(kind.as_error(), message),
            Ending::Cut { .. } => {
                // Headers then a truncated body: the client sees the connection drop.
                let partial = reply.message(&id).to_string()[..20].to_string();
                let stream = futures_util::stream::iter([
                    Ok::<_, std::io::Error>(Bytes::from(partial)),
                    Err(std::io::Error::other("connection cut")),
                ]);
                return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream))
                    .into_response();
            }
        }
        let output_tokens = reply.effective_output_tokens();
        let mut response = (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (header::HeaderName::from_static("x-amzn-requestid"), request_id()),
                (header::HeaderName::from_static("x-amzn-bedrock-invocation-latency"), "1234".into()),
                (header::HeaderName::from_static("x-amzn-bedrock-input-token-count"), reply.input_tokens.to_string()),
                (header::HeaderName::from_static("x-amzn-bedrock-output-token-count"), output_tokens.to_string()),
            ],
            reply.message(&id).to_string(),
        )
            .into_response();
        if reply.cache_read_input_tokens > 0 || reply.cache_creation_input_tokens > 0 {
            let h = response.headers_mut();
            h.insert("x-amzn-bedrock-cache-read-input-token-count", reply.cache_read_input_tokens.into());
            h.insert("x-amzn-bedrock-cache-write-input-token-count", reply.cache_creation_input_tokens.into());
        }
        return response;
    }

    let events = reply.events(&id);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let inner = inner.clone();
    tokio::spawn(async move {
        let stop_at = match &reply.ending {
            Ending::Complete => events.len(),
            Ending::Exception { after_events, .. }
            | Ending::Cut { after_events }
            | Ending::EndEarly { after_events } => (*after_events).min(events.len()),
        };
        let disconnected = || inner.disconnects.send_modify(|c| *c += 1);
        if reply.one_piece {
            let burst: Vec<u8> = events[..stop_at].iter().flat_map(|event| chunk_frame(event).to_vec()).collect();
            if tx.send(Ok(Bytes::from(burst))).await.is_err() {
                return disconnected();
            }
        }
        let each = if reply.one_piece { &events[..0] } else { &events[..stop_at] };
        for (i, event) in each.iter().enumerate() {
            if i > 0 && !reply.delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(reply.delay) => {}
                    _ = tx.closed() => return disconnected(),
                }
            }
            if tx.send(Ok(chunk_frame(event))).await.is_err() {
                return disconnected();
            }
        }
        let last = match &reply.ending {
            Ending::Complete | Ending::EndEarly { .. } => None,
            Ending::Exception { kind, message, .. } => Some(Ok(exception_frame(*kind, message))),
            Ending::Cut { .. } => Some(Err(std::io::Error::other("connection cut"))),
        };
        if let Some(last) = last
            && tx.send(last).await.is_err()
        {
            return disconnected();
        }
        inner.state.lock().unwrap().streams_completed += 1;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/vnd.amazon.eventstream".to_string()),
            (header::HeaderName::from_static("x-amzn-requestid"), request_id()),
            (header::HeaderName::from_static("x-amzn-bedrock-content-type"), "application/json".into()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn frame(headers: [(&'static str, &str); 3], payload: String) -> Bytes {
    let mut message = Message::new(payload.into_bytes());
    for (name, value) in headers {
        message = message.add_header(Header::new(name, HeaderValue::String(value.to_string().into())));
    }
    let mut buf = Vec::new();
    write_message_to(&message, &mut buf).expect("event-stream frame");
    buf.into()
}

/// `{"bytes": base64(event), "p": padding}` as Bedrock sends each chunk.
fn chunk_frame(event: &Value) -> Bytes {
    let padding = &"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[..(unix_now() % 40) as usize + 4];
    let payload = json!({"bytes": STANDARD.encode(event.to_string()), "p": padding}).to_string();
    frame([(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")], payload)
}

fn exception_frame(kind: StreamExceptionKind, message: &str) -> Bytes {
    let payload = json!({ "message": message }).to_string();
    frame(
        [
            (":exception-type", kind.exception_type()),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload,
    )
}

// ---------------------------------------------------------------------------------------------
// SigV4

type AuthError = (BedrockErrorKind, String);

fn auth_err(kind: BedrockErrorKind) -> AuthError {
    (kind, kind.default_message().into())
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes()).as_ref().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// `20260101T000000Z` -> unix seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    let iso = format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15]);
    aws_smithy_types::DateTime::from_str(&iso, aws_smithy_types::date_time::Format::DateTime).ok().map(|d| d.secs())
}

fn verify_sigv4(
    opts: &FakeBedrockOptions,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<StoredCredential, AuthError> {
    use BedrockErrorKind::*;
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header_str("authorization").ok_or_else(|| auth_err(MissingAuthenticationToken))?;
    let params = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| (IncompleteSignature, format!("Authorization header is invalid: '{authorization}'")))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in params.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        return Err(auth_err(IncompleteSignature));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, "aws4_request"] = scope[..] else {
        return Err((IncompleteSignature, format!("Credential is malformed: '{credential}'")));
    };
    if region != opts.region {
        return Err((InvalidSignature, "Credential should be scoped to a valid region.".into()));
    }
    if service != "bedrock" {
        return Err((InvalidSignature, "Credential should be scoped to correct service: 'bedrock'.".into()));
    }
    let stored = opts.credentials.get(akid).ok_or_else(|| auth_err(UnrecognizedClient))?;
    if stored.session_token.as_deref() != header_str("x-amz-security-token") {
        return Err(auth_err(UnrecognizedClient));
    }
    if stored.is_expired() {
        return Err(auth_err(ExpiredToken));
    }
    let amz_date = header_str("x-amz-date").ok_or_else(|| {
        (
            IncompleteSignature,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
        )
    })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| (IncompleteSignature, "Invalid X-Amz-Date".into()))?;
    if !amz_date.starts_with(date) {
        return Err((
            InvalidSignature,
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{}'",
                &amz_date[..8]
            ),
        ));
    }
    if (unix_now() - signed_at).unsigned_abs() > opts.max_clock_skew.as_secs() {
        return Err((
            InvalidSignature,
            format!("Signature expired: {amz_date} is now outside the allowed clock skew."),
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err((
            InvalidSignature,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    if !names.contains(&"x-amz-date") {
        return Err((InvalidSignature, "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.".into()));
    }
    let payload_hash = sha256_hex(body);
    let declared_hash = header_str("x-amz-content-sha256").unwrap_or(&payload_hash);
    if declared_hash != payload_hash && declared_hash != "UNSIGNED-PAYLOAD" {
        return Err((
            InvalidSignature,
            "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
        ));
    }

    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_uri = uri_encode(uri.path(), true);
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let enc = |s: &str| uri_encode(&percent_decode(s, false).unwrap_or_default(), false);
            (enc(k), enc(v))
        })
        .collect();
    query.sort();
    let canonical_query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{}\n{canonical_headers}\n{signed_headers}\n{declared_hash}",
        canonical_query.join("&")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac_sha256(format!("AWS4{}", stored.secret_access_key).as_bytes(), date);
    for part in [region, service, "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    if hex(&hmac_sha256(&key, &string_to_sign)) != signature {
        return Err(auth_err(InvalidSignature));
    }
    Ok(stored)
}

// ---------------------------------------------------------------------------------------------
// Request validation, Anthropic on Bedrock

fn validate_model_id(model_id: &str) -> Result<(), String> {
    let ok = model_id.starts_with("arn:aws:bedrock:")
        || model_id.split('.').any(|p| p == "anthropic") && model_id.contains("claude");
    if ok { Ok(()) } else { Err("The provided model identifier is invalid.".into()) }
}

fn malformed(detail: &str) -> String {
    format!("Malformed input request: {detail}, please reformat your input and try again.")
}

const BLOCK_TYPES: [&str; 8] =
    ["text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "search_result"];

/// The API version the Anthropic SDKs send by default from late 2026, also to Bedrock; Anthropic's
/// "Claude on Amazon Bedrock (legacy)" page: the ARN-versioned models (Opus 4.6 and earlier) refuse
/// it, the newer ones take it.
const NEW_API_VERSION: &str = "2026-10-21";
const ACCEPTS_NEW_API_VERSION: &[&str] = &[
    "anthropic.claude-opus-4-7",
    "anthropic.claude-opus-4-8",
    "anthropic.claude-opus-5",
    "anthropic.claude-sonnet-5",
    "anthropic.claude-opus-5-5",
    "anthropic.claude-sonnet-5-5",
    "anthropic.claude-haiku-5-5",
    "anthropic.claude-fable-5",
    "anthropic.claude-fable-5-1",
    "anthropic.claude-fable-5-2",
];

fn validate_anthropic(body: &Value, model: Option<&FakeModel>) -> Result<(), String> {
    let Some(obj) = body.as_object() else {
        return Err(malformed("#: expected type: JSONObject"));
    };
    for key in ["model", "stream"] {
        if obj.contains_key(key) {
            return Err(malformed(&format!("#: extraneous key [{key}] is not permitted")));
        }
    }
    for key in ["anthropic_version", "max_tokens", "messages"] {
        if !obj.contains_key(key) {
            return Err(malformed(&format!("#: required key [{key}] not found")));
        }
    }
    let version = obj["anthropic_version"].as_str().unwrap_or_default();
    let dated_ok = version == NEW_API_VERSION && model.is_some_and(|m| ACCEPTS_NEW_API_VERSION.contains(&m.base));
    if version != "bedrock-2023-05-31" && !dated_ok {
        return Err("Invalid API version".into());
    }
    let max_tokens = obj["max_tokens"].as_i64().ok_or_else(|| malformed("#/max_tokens: expected type: Integer"))?;
    if max_tokens < 1 {
        return Err("max_tokens: range: 1..".into());
    }
    if let Some(thinking) = obj.get("thinking").filter(|t| t["type"] == "enabled") {
        let budget = thinking["budget_tokens"].as_i64().unwrap_or(0);
        if budget < 1024 {
            return Err("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into());
        }
        if budget >= max_tokens {
            return Err("`max_tokens` must be greater than `thinking.budget_tokens`".into());
        }
    }
    let messages = obj["messages"].as_array().ok_or_else(|| malformed("#/messages: expected type: JSONArray"))?;
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let system_turns = model.is_some_and(|m| m.system_turns);
    let mut pending_tool_ids: Vec<String> = vec![];
    let mut previous: Option<&str> = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if role == "system" && system_turns {
            // Placement: right after a user turn, and last or followed by an assistant turn.
            let next = messages.get(i + 1).and_then(|m| m["role"].as_str());
            if previous != Some("user") || next.is_some_and(|next| next != "assistant") {
                return Err(format!(
                    "messages.{i}: a system message must follow a user message and be the last message or be followed by an assistant message"
                ));
            }
            if message["content"].as_array().is_some_and(|c| c.iter().any(|b| b["type"] != "text")) {
                return Err(format!("messages.{i}.content: system messages may only contain text blocks"));
            }
            continue;
        }
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
        }
        if i == 0 && role != "user" {
            return Err("messages: first message must use the \"user\" role".into());
        }
        if previous == Some(role) {
            return Err(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
            ));
        }
        let blocks: Vec<Value> = match &message["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            _ => return Err(format!("messages.{i}.content: Input should be a valid list")),
        };
        if blocks.is_empty() && !(i == messages.len() - 1 && role == "assistant") {
            return Err(format!(
                "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
            ));
        }
        let mut tool_use_ids = vec![];
        let mut tool_result_ids = vec![];
        for (j, block) in blocks.iter().enumerate() {
            let kind = block["type"].as_str().unwrap_or_default();
            if !BLOCK_TYPES.contains(&kind) {
                return Err(format!(
                    "messages.{i}.content.{j}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags"
                ));
            }
            // Anthropic's own checks, also inside a tool_result's content.
            let nested = block["content"].as_array().into_iter().flatten();
            for text in std::iter::once(block).chain(nested).filter(|b| b["type"] == "text") {
                match text["text"].as_str() {
                    None | Some("") => return Err("messages: text content blocks must be non-empty".into()),
                    Some(t) if t.trim().is_empty() => {
                        return Err("messages: text content blocks must contain non-whitespace text".into());
                    }
                    Some(_) => {}
                }
            }
            if kind == "tool_use" {
                if role != "assistant" {
                    return Err(format!(
                        "messages.{i}.content.{j}: tool_use blocks are only allowed in assistant messages"
                    ));
                }
                tool_use_ids.push(block["id"].as_str().unwrap_or_default().to_string());
            }
            if kind == "tool_result" {
                tool_result_ids.push(block["tool_use_id"].as_str().unwrap_or_default().to_string());
            }
        }
        if let Some(unexpected) = tool_result_ids.iter().find(|id| !pending_tool_ids.contains(id)) {
            return Err(format!(
                "messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {unexpected}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            ));
        }
        if let Some(missing) = pending_tool_ids.iter().find(|id| !tool_result_ids.contains(id)) {
            return Err(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                i.saturating_sub(1)
            ));
        }
        pending_tool_ids = tool_use_ids;
        previous = Some(role);
    }
    if let Some(model) = model {
        model.check(body)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Per-model rules, the fake's own table (written from the model cards, independently of the
// gateway's catalog, so the tests judge the catalog). Minimum cacheable prompts: Anthropic's
// "Prompt caching" page (Opus 4.7/4.6 and Haiku 4.5: 4,096; Sonnet 4.5, Opus 4.1, Sonnet 4:
// 1,024), Sonnet 4.6 as observed (2,048, anthropic-sdk-python issue 1194), the Fable 5 card
// (1,024) for Fable 5.2, and Opus 4.8's 1,024 taken for the 5.5 models, which no page gives.

#[derive(Debug, Clone, Copy, PartialEq)]
enum FakeThinking {
    /// `enabled` + `budget_tokens` only.
    BudgetOnly,
    /// `adaptive` (with `output_config.effort`) or the deprecated `enabled`.
    Both,
    /// `adaptive` only.
    AdaptiveOnly,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum FakeSampling {
    Any,
    /// `temperature` or `top_p`, not both.
    OneOf,
    /// Nothing but these values (or nothing); never `top_k`.
    Defaults {
        temperature: Option<f64>,
        top_p: Option<f64>,
    },
}

/// What Bedrock enforces for one Claude model.
#[derive(Debug, Clone, Copy)]
pub struct FakeModel {
    base: &'static str,
    /// Cross-region profile prefixes Bedrock has for it; the base id alone is refused on demand.
    profiles: &'static [&'static str],
    on_demand: bool,
    max_output: u64,
    thinking: FakeThinking,
    disabled_ok: bool,
    /// Thinks with no `thinking` in the request.
    thinks_unasked: bool,
    /// Thinking text is left out unless `display: summarized`.
    omits_thinking_text: bool,
    efforts: &'static [&'static str],
    /// Efforts accepted while the model does not think (empty: all of `efforts`).
    efforts_without_thinking: &'static [&'static str],
    sampling: FakeSampling,
    system_turns: bool,
    structured: bool,
    forced_tools: bool,
    prefill: bool,
    eager_tools: bool,
    betas: &'static [&'static str],
    /// Shortest prompt prefix a breakpoint caches.
    cache_min_tokens: u64,
}

/// The minimum cacheable prompt of models the table does not cover (Anthropic's smallest).
const DEFAULT_CACHE_MIN_TOKENS: u64 = 1024;

const FIVE_EFFORTS: &[&str] = &["low", "medium", "high", "xhigh", "max"];
const NEW_BETAS: &[&str] = &[
    "interleaved-thinking-2025-05-14",
    "tool-search-tool-2025-10-19",
    "thinking-token-count-2026-05-13",
    "context-management-2025-06-27",
    "fine-grained-tool-streaming-2025-05-14",
];
/// The beta with which Bedrock reports thinking tokens in usage.
pub const THINKING_TOKEN_COUNT_BETA: &str = "thinking-token-count-2026-05-13";

const FAKE_MODELS: &[FakeModel] = &[
    FakeModel {
        base: "anthropic.claude-opus-5-5",
        profiles: &["global", "us", "jp"],
        on_demand: false,
        max_output: 128_000,
        thinking: FakeThinking::AdaptiveOnly,
        disabled_ok: false,
        thinks_unasked: true,
        omits_thinking_text: true,
        efforts: FIVE_EFFORTS,
        efforts_without_thinking: &[],
        sampling: FakeSampling::Defaults { temperature: None, top_p: None },
        system_turns: true,
        structured: true,
        forced_tools: false,
        prefill: false,
        eager_tools: true,
        betas: NEW_BETAS,
        cache_min_tokens: 1024,
    },
    FakeModel {
        base: "anthropic.claude-sonnet-5-5",
        profiles: &["global", "us"],
        on_demand: false,
        max_output: 128_000,
        thinking: FakeThinking::AdaptiveOnly,
        disabled_ok: false,
        thinks_unasked: true,
        omits_thinking_text: true,
        efforts: FIVE_EFFORTS,
        efforts_without_thinking: &[],
        sampling: FakeSampling::Defaults { temperature: None, top_p: None },
        system_turns: false,
        structured: true,
        forced_tools: false,
        prefill: false,
        eager_tools: true,
        betas: NEW_BETAS,
        cache_min_tokens: 1024,
    },
    FakeModel {
        base: "anthropic.claude-haiku-5-5",
        profiles: &["global", "us"],
        on_demand: false,
        max_output: 128_000,
        thinking: FakeThinking::AdaptiveOnly,
        disabled_ok: true,
        thinks_unasked: true,
        omits_thinking_text: true,
        efforts: FIVE_EFFORTS,
        efforts_without_thinking: &["low", "medium", "high"],
        sampling: FakeSampling::Defaults { temperature: None, top_p: None },
        system_turns: false,
        structured: true,
        forced_tools: true,
        prefill: false,
        eager_tools: true,
        betas: NEW_BETAS,
        cache_min_tokens: 1024,
    },
    FakeModel {
        base: "anthropic.claude-fable-5-2",
        profiles: &["global", "us", "eu"],
        on_demand: false,
        max_output: 128_000,
        thinking: FakeThinking::AdaptiveOnly,
        disabled_ok: false,
        thinks_unasked: true,
        omits_thinking_text: true,
        efforts: FIVE_EFFORTS,
        efforts_without_thinking: &[],
        sampling: FakeSampling::Defaults { temperature: Some(1.0), top_p: Some(0.99) },
        system_turns: false,
        structured: true,
        forced_tools: false,
        prefill: false,
        eager_tools: true,
        betas: NEW_BETAS,
        cache_min_tokens: 1024,
    },
    FakeModel {
        base: "anthropic.claude-opus-4-7",
        profiles: &["global", "us", "eu", "jp"],
        on_demand: false,
        max_output: 128_000,
        thinking: FakeThinking::AdaptiveOnly,
        disabled_ok: false,
        thinks_unasked: false,
        omits_thinking_text: true,
        efforts: FIVE_EFFORTS,
        efforts_without_thinking: &[],
        sampling: FakeSampling::Defaults { temperature: None, top_p: None },
        system_turns: false,
        structured: true,
        forced_tools: true,
        prefill: false,
        eager_tools: true,
        betas: &[
            "interleaved-thinking-2025-05-14",
            "tool-search-tool-2025-10-19",
            "context-management-2025-06-27",
            "fine-grained-tool-streaming-2025-05-14",
        ],
        cache_min_tokens: 4096,
    },
    FakeModel {
        base: "anthropic.claude-opus-4-6-v1",
        profiles: &["global", "us", "eu", "jp", "apac"],
        on_demand: false,
        max_output: 128_000,
        thinking: FakeThinking::Both,
        disabled_ok: true,
        thinks_unasked: false,
        omits_thinking_text: false,
        efforts: &["low", "medium", "high", "max"],
        efforts_without_thinking: &[],
        sampling: FakeSampling::OneOf,
        system_turns: false,
        structured: true,
        forced_tools: true,
        prefill: false,
        eager_tools: true,
        betas: &[
            "interleaved-thinking-2025-05-14",
            "tool-search-tool-2025-10-19",
            "context-management-2025-06-27",
            "fine-grained-tool-streaming-2025-05-14",
        ],
        cache_min_tokens: 4096,
    },
    FakeModel {
        base: "anthropic.claude-sonnet-4-6",
        profiles: &["global", "us", "eu", "jp"],
        on_demand: false,
        max_output: 64_000,
        thinking: FakeThinking::Both,
        disabled_ok: true,
        thinks_unasked: false,
        omits_thinking_text: false,
        efforts: &["low", "medium", "high", "max"],
        efforts_without_thinking: &[],
        sampling: FakeSampling::OneOf,
        system_turns: false,
        structured: true,
        forced_tools: true,
        prefill: false,
        eager_tools: true,
        betas: &[
            "interleaved-thinking-2025-05-14",
            "tool-search-tool-2025-10-19",
            "context-management-2025-06-27",
            "fine-grained-tool-streaming-2025-05-14",
        ],
        cache_min_tokens: 2048,
    },
    FakeModel {
        base: "anthropic.claude-haiku-4-5-20251001-v1:0",
        profiles: &["global", "us", "eu", "jp", "apac"],
        on_demand: false,
        max_output: 64_000,
        thinking: FakeThinking::BudgetOnly,
        disabled_ok: true,
        thinks_unasked: false,
        omits_thinking_text: false,
        efforts: &[],
        efforts_without_thinking: &[],
        sampling: FakeSampling::OneOf,
        system_turns: false,
        structured: true,
        forced_tools: true,
        prefill: true,
        eager_tools: true,
        betas: &[
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27",
            "fine-grained-tool-streaming-2025-05-14",
        ],
        cache_min_tokens: 4096,
    },
    FakeModel {
        base: "anthropic.claude-sonnet-4-5-20250929-v1:0",
        profiles: &["global", "us", "eu", "jp"],
        on_demand: false,
        max_output: 64_000,
        thinking: FakeThinking::BudgetOnly,
        disabled_ok: true,
        thinks_unasked: false,
        omits_thinking_text: false,
        efforts: &[],
        efforts_without_thinking: &[],
        sampling: FakeSampling::OneOf,
        system_turns: false,
        structured: true,
        forced_tools: true,
        prefill: true,
        eager_tools: true,
        betas: &[
            "interleaved-thinking-2025-05-14",
            "context-1m-2025-08-07",
            "context-management-2025-06-27",
            "fine-grained-tool-streaming-2025-05-14",
        ],
        cache_min_tokens: 1024,
    },
    FakeModel {
        base: "anthropic.claude-opus-4-1-20250805-v1:0",
        profiles: &["us"],
        on_demand: false,
        max_output: 32_000,
        thinking: FakeThinking::BudgetOnly,
        disabled_ok: true,
        thinks_unasked: false,
        omits_thinking_text: false,
        efforts: &[],
        efforts_without_thinking: &[],
        sampling: FakeSampling::OneOf,
        system_turns: false,
        structured: false,
        forced_tools: true,
        prefill: true,
        eager_tools: false,
        betas: &["interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"],
        cache_min_tokens: 1024,
    },
    FakeModel {
        base: "anthropic.claude-sonnet-4-20250514-v1:0",
        profiles: &["global", "us", "eu", "apac"],
        on_demand: false,
        max_output: 64_000,
        thinking: FakeThinking::BudgetOnly,
        disabled_ok: true,
        thinks_unasked: false,
        omits_thinking_text: false,
        efforts: &[],
        efforts_without_thinking: &[],
        sampling: FakeSampling::Any,
        system_turns: false,
        structured: false,
        forced_tools: true,
        prefill: true,
        eager_tools: false,
        betas: &["interleaved-thinking-2025-05-14", "context-1m-2025-08-07", "fine-grained-tool-streaming-2025-05-14"],
        cache_min_tokens: 1024,
    },
];

/// The table entry for a model id (profile id, base id or ARN); `Ok(None)` for models the table
/// does not cover (checked by the generic rules only); `Err` for what Bedrock refuses outright.
fn fake_model(model_id: &str) -> Result<Option<&'static FakeModel>, String> {
    let id = match model_id.strip_prefix("arn:") {
        Some(rest) => match rest.splitn(5, ':').nth(4).and_then(|resource| resource.split_once('/')) {
            Some(("inference-profile", id)) | Some(("foundation-model", id)) => id,
            _ => return Ok(None),
        },
        None => model_id,
    };
    let (prefix, base) = match id.split_once('.') {
        Some((prefix, rest)) if prefix != "anthropic" => (Some(prefix), rest),
        _ => (None, id),
    };
    let Some(model) = FAKE_MODELS.iter().find(|m| m.base == base) else { return Ok(None) };
    match prefix {
        Some(prefix) if !model.profiles.contains(&prefix) => Err("The provided model identifier is invalid.".into()),
        None if !model.on_demand => Err(format!(
            "Invocation of model ID {base} with on-demand throughput isn’t supported. Retry your request with the ID or ARN of an inference profile that contains this model."
        )),
        _ => Ok(Some(model)),
    }
}

impl FakeModel {
    /// Whether the model thinks on this request.
    fn thinks(&self, body: &Value) -> bool {
        match body["thinking"]["type"].as_str() {
            Some("enabled" | "adaptive") => true,
            Some(_) => false,
            None => self.thinks_unasked,
        }
    }

    /// The model-specific checks, with Anthropic's wording.
    fn check(&self, body: &Value) -> Result<(), String> {
        let max_tokens = body["max_tokens"].as_u64().unwrap_or(0);
        if max_tokens > self.max_output {
            let name = self.base.trim_start_matches("anthropic.");
            return Err(format!(
                "max_tokens: {max_tokens} > {}, which is the maximum allowed number of output tokens for {name}",
                self.max_output
            ));
        }
        let thinking = &body["thinking"];
        match thinking["type"].as_str() {
            None => {}
            Some("enabled") if self.thinking == FakeThinking::AdaptiveOnly => {
                return Err("thinking.type.enabled is not supported for this model. Use thinking.type.adaptive and output_config.effort to control thinking behavior.".into());
            }
            Some("adaptive") if self.thinking == FakeThinking::BudgetOnly => {
                return Err("thinking.type: Input tag 'adaptive' found using 'type' does not match any of the expected tags: 'disabled', 'enabled'".into());
            }
            Some("disabled") if !self.disabled_ok => {
                return Err("thinking.type.disabled is not supported for this model. Use thinking.type.adaptive and output_config.effort to control thinking behavior.".into());
            }
            Some("enabled" | "adaptive" | "disabled") => {}
            Some(other) => {
                return Err(format!(
                    "thinking.type: Input tag '{other}' found using 'type' does not match any of the expected tags"
                ));
            }
        }
        if let Some(display) = thinking.get("display") {
            if thinking["type"] != "adaptive" {
                return Err("thinking.display: Extra inputs are not permitted".into());
            }
            if !matches!(display.as_str(), Some("summarized" | "omitted")) {
                return Err("thinking.adaptive.display: Input should be 'summarized' or 'omitted'".into());
            }
        }
        let output_config = &body["output_config"];
        if let Some(effort) = output_config.get("effort") {
            let effort = effort.as_str().unwrap_or_default();
            if self.efforts.is_empty() {
                return Err("output_config.effort: Extra inputs are not permitted".into());
            }
            if !self.efforts.contains(&effort) {
                let allowed: Vec<String> = self.efforts.iter().map(|e| format!("'{e}'")).collect();
                return Err(format!("output_config.effort: Input should be {}", allowed.join(", ")));
            }
            if thinking["type"] == "enabled" {
                return Err("output_config.effort cannot be used with thinking.type.enabled".into());
            }
            if !self.thinks(body)
                && !self.efforts_without_thinking.is_empty()
                && !self.efforts_without_thinking.contains(&effort)
            {
                return Err(format!(
                    "output_config.effort '{effort}' is not supported when thinking is disabled on this model. Use effort 'high' or below, or enable thinking."
                ));
            }
        }
        if output_config.get("format").is_some() {
            if !self.structured {
                return Err("output_config.format: Extra inputs are not permitted".into());
            }
            if output_config["format"]["type"] != "json_schema" || !output_config["format"]["schema"].is_object() {
                return Err("output_config.format: a json_schema format needs a schema object".into());
            }
        }
        let thinks = self.thinks(body);
        let given = |key: &str| body.get(key).filter(|v| !v.is_null());
        match self.sampling {
            FakeSampling::Any => {}
            FakeSampling::OneOf => {
                if given("temperature").is_some() && given("top_p").is_some() {
                    return Err(
                        "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
                            .into(),
                    );
                }
            }
            FakeSampling::Defaults { temperature, top_p } => {
                for (key, default) in [("temperature", temperature), ("top_p", top_p)] {
                    if let Some(value) = given(key)
                        && value.as_f64() != default
                    {
                        return Err(format!("`{key}` is deprecated for this model."));
                    }
                }
                if given("top_k").is_some() {
                    return Err("`top_k` is deprecated for this model.".into());
                }
                if given("temperature").is_some() && given("top_p").is_some() {
                    return Err(
                        "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
                            .into(),
                    );
                }
            }
        }
        if thinks {
            if given("temperature").is_some_and(|t| t.as_f64() != Some(1.0)) {
                return Err("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#important-considerations-when-using-extended-thinking".into());
            }
            if given("top_p").is_some_and(|p| p.as_f64().is_some_and(|p| p < 0.95)) {
                return Err("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled.".into());
            }
            if given("top_k").is_some() {
                return Err("`top_k` must be unset when thinking is enabled.".into());
            }
        }
        let forced = matches!(body["tool_choice"]["type"].as_str(), Some("any" | "tool"));
        if forced && !self.forced_tools {
            return Err("tool_choice: forced tool use is not supported for this model; use auto or none.".into());
        }
        if forced && thinks {
            return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
        }
        for (i, tool) in body["tools"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
            if tool.get("eager_input_streaming").is_some() && !self.eager_tools {
                return Err(format!("tools.{i}.custom.eager_input_streaming: Extra inputs are not permitted"));
            }
            if tool.get("strict").is_some() && !self.structured {
                return Err(format!("tools.{i}.custom.strict: Extra inputs are not permitted"));
            }
        }
        let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
        if !self.prefill && messages.last().is_some_and(|m| m["role"] == "assistant") {
            return Err(
                "This model does not support assistant message prefill. The conversation must end with a user message."
                    .into(),
            );
        }
        if let Some(last) = messages.last().filter(|m| m["role"] == "assistant")
            && thinking["type"] == "enabled"
            && !matches!(last["content"][0]["type"].as_str(), Some("thinking" | "redacted_thinking"))
        {
            return Err(format!(
                "messages.{}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`. When `thinking` is enabled, a final `assistant` message must start with a thinking block. We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`.",
                messages.len() - 1
            ));
        }
        if let Some(betas) = body.get("anthropic_beta") {
            let betas = betas.as_array().ok_or("anthropic_beta: Input should be a valid list")?;
            if betas.iter().any(|beta| !beta.as_str().is_some_and(|b| self.betas.contains(&b))) {
                return Err("invalid beta flag".into());
            }
        }
        Ok(())
    }
}

/// A reply made from the request (the matrix tests script nothing): a tool call to the first
/// tool when the conversation ends with the user's text and tools are offered; thinking first when
/// the model thinks; a text that names the model.
fn auto_reply(body: &Value, model_id: &str, model: Option<&FakeModel>) -> Reply {
    let thinks = model.map_or(body["thinking"]["type"] == "enabled", |m| m.thinks(body));
    let mut reply = Reply::default();
    if thinks {
        reply = reply.with_thinking(&["Weighing", " the question."], "sig-auto");
    }
    let last_is_user_text = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "user" && !m["content"].to_string().contains("tool_result"));
    match body["tools"].as_array().and_then(|tools| tools.first()).and_then(|tool| tool["name"].as_str()) {
        Some(name) if last_is_user_text && body["tool_choice"]["type"] != "none" => {
            reply.with_tool_call("toolu_auto", name, &["{\"ci", "ty\": \"Pa", "ris\"}"])
        }
        _ => reply.with_text(&["Answer from ", model_id, "."]),
    }
}

/// What the model does to any reply: thinking text omitted unless asked for, where the model
/// omits it by default; thinking tokens counted in usage when the beta asks for it.
fn shape_reply(mut reply: Reply, body: &Value, model: Option<&FakeModel>) -> Reply {
    if reply.error.is_some() {
        return reply;
    }
    if model.is_some_and(|m| m.omits_thinking_text) && body["thinking"]["display"] != "summarized" {
        reply = reply.omit_thinking_text();
    }
    let counts_thinking =
        body["anthropic_beta"].as_array().is_some_and(|betas| betas.iter().any(|b| b == THINKING_TOKEN_COUNT_BETA));
    if counts_thinking && reply.has_thinking() && reply.thinking_tokens.is_none() {
        let pieces: usize = reply
            .blocks
            .iter()
            .map(|b| if let Block::Thinking { pieces, .. } = b { pieces.len().max(1) } else { 0 })
            .sum();
        reply.thinking_tokens = Some(pieces as u64);
    }
    reply
}
