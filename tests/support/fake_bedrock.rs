//! Fake Bedrock Runtime: `InvokeModel` and `InvokeModelWithResponseStream` for Anthropic Claude, with
//! SigV4 verification, Anthropic body validation and scripted replies (JSON or event-stream frames).

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
    CredentialStore, ServerTask, StoredCredential, hex, percent_decode, random_string, request_id, serve, unix_now,
    uri_encode,
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

    pub fn exception_after(mut self, after_events: usize, kind: StreamExceptionKind, message: &str) -> Reply {
        self.ending = Ending::Exception { after_events, kind, message: message.into() };
        self
    }

    pub fn cut_after(mut self, after_events: usize) -> Reply {
        self.ending = Ending::Cut { after_events };
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
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": output_tokens,
        })
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
        events.push(json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.effective_stop_reason(), "stop_sequence": null},
            "usage": {"output_tokens": output_tokens},
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
}

impl Default for FakeBedrockOptions {
    fn default() -> Self {
        FakeBedrockOptions {
            region: "us-east-1".into(),
            credentials: CredentialStore::new(),
            max_clock_skew: Duration::from_secs(15 * 60),
            default_reply: Reply::text(&["Hello", " from", " FakeBedrock."]),
        }
    }
}

/// A request that passed authentication.
#[derive(Debug, Clone)]
pub struct BedrockRequest {
    /// Decoded model id (`global.anthropic.claude-...-v1:0` or an ARN).
    pub model_id: String,
    pub streaming: bool,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    pub access_key_id: String,
    pub content_type: Option<String>,
    /// HTTP status answered (200 for streams, whatever happens inside them).
    pub status: u16,
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
}

pub struct FakeBedrock {
    url: String,
    inner: Arc<Inner>,
    _task: ServerTask,
}

impl FakeBedrock {
    pub async fn start(options: FakeBedrockOptions) -> FakeBedrock {
        let inner = Arc::new(Inner { options, state: Mutex::default(), disconnects: watch::channel(0).0 });
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
        let streaming = match op {
            "invoke" => false,
            "invoke-with-response-stream" => true,
            _ => return None,
        };
        Some((percent_decode(model, false)?, streaming))
    });
    let Some((model_id, streaming)) = route.filter(|_| method == Method::POST) else {
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
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let outcome = validate_model_id(&model_id).and_then(|_| validate_anthropic(&json_body));
    let reply = match outcome {
        Err(message) => Reply::error_with(BedrockErrorKind::Validation, &message),
        Ok(()) => inner.state.lock().unwrap().script.pop_front().unwrap_or_else(|| inner.options.default_reply.clone()),
    };
    let response = respond(&inner, reply, streaming).await;
    inner.state.lock().unwrap().requests.push(BedrockRequest {
        model_id,
        streaming,
        body: json_body,
        access_key_id: credential.access_key_id,
        content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from),
        status: response.status().as_u16(),
    });
    response
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
            Ending::Complete => {}
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
            Ending::Exception { after_events, .. } | Ending::Cut { after_events } => (*after_events).min(events.len()),
        };
        let disconnected = || inner.disconnects.send_modify(|c| *c += 1);
        for (i, event) in events[..stop_at].iter().enumerate() {
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
            Ending::Complete => None,
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

fn validate_anthropic(body: &Value) -> Result<(), String> {
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
    if obj["anthropic_version"] != "bedrock-2023-05-31" {
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
    let mut pending_tool_ids: Vec<String> = vec![];
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
        }
        if i == 0 && role != "user" {
            return Err("messages: first message must use the \"user\" role".into());
        }
        if i > 0 && messages[i - 1]["role"] == role {
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
            if kind == "text" && block["text"].as_str().is_none_or(str::is_empty) {
                return Err("messages: text content blocks must be non-empty".into());
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
                i - 1
            ));
        }
        pending_tool_ids = tool_use_ids;
    }
    Ok(())
}
