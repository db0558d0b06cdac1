//! Fake OpenAI-compatible server (`POST <prefix>/chat/completions`, JSON and SSE), standing for
//! OpenRouter, LiteLLM, vLLM, Ollama and the like behind byollm's OpenAI-compatible route.
//!
//! Checks `Authorization: Bearer <key>` when keys are configured, answers OpenAI's error shape
//! `{"error":{"message","type","param","code"}}`, streams `data: <chunk>` lines ending with
//! `data: [DONE]` (a usage chunk with empty `choices` first when `stream_options.include_usage`),
//! and can misbehave on purpose: redirects, oversized bodies, slow answers. Its tables are its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{ServerTask, random_string, serve};

/// What a scripted reply does.
#[derive(Debug, Clone)]
pub enum OpenAiBehaviour {
    /// A normal completion.
    Complete,
    /// An error: status, `type`, `code`, message.
    Error { status: u16, kind: String, code: Option<String>, message: String },
    /// `302 Found` to this location.
    Redirect(String),
    /// A 200 JSON body of at least this many bytes.
    Oversized(usize),
    /// In a stream: the connection drops after this many chunks.
    CutAfter(usize),
}

#[derive(Debug, Clone)]
pub struct OpenAiReply {
    pub pieces: Vec<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Pause before the response headers.
    pub delay: Duration,
    /// Pause between stream chunks.
    pub chunk_delay: Duration,
    pub behaviour: OpenAiBehaviour,
}

impl Default for OpenAiReply {
    fn default() -> Self {
        OpenAiReply {
            pieces: vec!["Hello".into(), " from".into(), " FakeOpenAI.".into()],
            prompt_tokens: 9,
            completion_tokens: 3,
            cached_tokens: 0,
            reasoning_tokens: 0,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            behaviour: OpenAiBehaviour::Complete,
        }
    }
}

impl OpenAiReply {
    pub fn text(pieces: &[&str]) -> OpenAiReply {
        OpenAiReply { pieces: pieces.iter().map(|s| s.to_string()).collect(), ..OpenAiReply::default() }
    }

    /// An error as OpenAI sends it.
    pub fn error(status: u16, kind: &str, code: Option<&str>, message: &str) -> OpenAiReply {
        OpenAiReply {
            behaviour: OpenAiBehaviour::Error {
                status,
                kind: kind.into(),
                code: code.map(str::to_owned),
                message: message.into(),
            },
            ..OpenAiReply::default()
        }
    }

    /// OpenAI's 429 for a rate limit.
    pub fn rate_limited() -> OpenAiReply {
        OpenAiReply::error(
            429,
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests. Please try again in 20s.",
        )
    }

    pub fn redirect(location: &str) -> OpenAiReply {
        OpenAiReply { behaviour: OpenAiBehaviour::Redirect(location.into()), ..OpenAiReply::default() }
    }

    pub fn oversized(bytes: usize) -> OpenAiReply {
        OpenAiReply { behaviour: OpenAiBehaviour::Oversized(bytes), ..OpenAiReply::default() }
    }

    pub fn cut_after(chunks: usize) -> OpenAiReply {
        OpenAiReply { behaviour: OpenAiBehaviour::CutAfter(chunks), ..OpenAiReply::default() }
    }

    pub fn usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> OpenAiReply {
        self.prompt_tokens = prompt_tokens;
        self.completion_tokens = completion_tokens;
        self
    }

    pub fn details(mut self, cached_tokens: u64, reasoning_tokens: u64) -> OpenAiReply {
        self.cached_tokens = cached_tokens;
        self.reasoning_tokens = reasoning_tokens;
        self
    }

    pub fn delay(mut self, delay: Duration) -> OpenAiReply {
        self.delay = delay;
        self
    }

    pub fn chunk_delay(mut self, delay: Duration) -> OpenAiReply {
        self.chunk_delay = delay;
        self
    }

    fn usage_json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        })
    }

    pub fn completion(&self, id: &str, model: &str, created: u64) -> Value {
        json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.pieces.concat(), "refusal": null},
                "logprobs": null, "finish_reason": "stop",
            }],
            "usage": self.usage_json(),
            "system_fingerprint": "fp_fake",
        })
    }

    /// The `chat.completion.chunk` objects of a stream (without `[DONE]`).
    pub fn chunks(&self, id: &str, model: &str, created: u64, include_usage: bool) -> Vec<Value> {
        let chunk = |delta: Value, finish: Value| {
            let mut value = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                value["usage"] = Value::Null;
            }
            value
        };
        let mut chunks = vec![chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null)];
        chunks.extend(self.pieces.iter().map(|piece| chunk(json!({"content": piece}), Value::Null)));
        chunks.push(chunk(json!({}), json!("stop")));
        if include_usage {
            chunks.push(json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_fake", "choices": [], "usage": self.usage_json(),
            }));
        }
        chunks
    }
}

#[derive(Debug, Clone)]
pub struct FakeOpenAiOptions {
    /// Accepted bearer keys; empty: no authentication (a local model server).
    pub api_keys: Vec<String>,
    /// Path prefix of the API, e.g. `/v1` (OpenAI, vLLM) or `/api/v1` (OpenRouter).
    pub prefix: String,
    /// Models served; anything else is a 404 `model_not_found`.
    pub models: Vec<String>,
    pub default_reply: OpenAiReply,
}

impl Default for FakeOpenAiOptions {
    fn default() -> Self {
        FakeOpenAiOptions {
            api_keys: vec!["sk-or-v1-test-key".into()],
            prefix: "/v1".into(),
            models: vec!["anthropic/claude-sonnet-4.5".into(), "z-ai/glm-4.6".into(), "llama3.1:8b".into()],
            default_reply: OpenAiReply::default(),
        }
    }
}

/// A request the fake answered.
#[derive(Debug, Clone)]
pub struct OpenAiRequest {
    pub path: String,
    /// The bearer key sent, if any.
    pub api_key: Option<String>,
    pub host: Option<String>,
    pub model: Option<String>,
    pub stream: bool,
    pub body: Value,
    pub status: u16,
}

#[derive(Default)]
struct State {
    requests: Vec<OpenAiRequest>,
    script: VecDeque<OpenAiReply>,
}

struct Inner {
    options: FakeOpenAiOptions,
    state: Mutex<State>,
}

pub struct FakeOpenAi {
    url: String,
    inner: Arc<Inner>,
    _task: ServerTask,
}

impl FakeOpenAi {
    pub async fn start(options: FakeOpenAiOptions) -> FakeOpenAi {
        let inner = Arc::new(Inner { options, state: Mutex::default() });
        let handler_inner = inner.clone();
        let router = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let inner = handler_inner.clone();
            async move { handle(inner, method, uri, headers, body).await }
        });
        let (url, task) = serve(router).await;
        FakeOpenAi { url, inner, _task: task }
    }

    /// The server's origin, `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        self.url.clone()
    }

    /// The API base URL as clients take it, `http://127.0.0.1:<port><prefix>`.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.url, self.inner.options.prefix)
    }

    pub fn requests(&self) -> Vec<OpenAiRequest> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    pub fn set_script(&self, replies: Vec<OpenAiReply>) {
        self.inner.state.lock().unwrap().script = replies.into();
    }
}

/// OpenAI's error body.
pub fn openai_error(status: u16, kind: &str, code: Option<&str>, message: &str, param: Option<&str>) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}}).to_string(),
    )
        .into_response()
}

async fn handle(inner: Arc<Inner>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let mut record = OpenAiRequest {
        path: uri.path().to_owned(),
        api_key: bearer,
        host: headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned),
        model: json_body.get("model").and_then(Value::as_str).map(str::to_owned),
        stream: json_body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        body: json_body,
        status: 0,
    };
    let response = answer(&inner, &method, &uri, &record).await;
    record.status = response.status().as_u16();
    inner.state.lock().unwrap().requests.push(record);
    response
}

async fn answer(inner: &Arc<Inner>, method: &Method, uri: &Uri, request: &OpenAiRequest) -> Response {
    let expected = format!("{}/chat/completions", inner.options.prefix);
    if uri.path() != expected || method != Method::POST {
        return openai_error(
            404,
            "invalid_request_error",
            None,
            &format!("Invalid URL ({method} {})", uri.path()),
            None,
        );
    }
    if !inner.options.api_keys.is_empty() {
        match &request.api_key {
            None => {
                return openai_error(
                    401,
                    "invalid_request_error",
                    None,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    None,
                );
            }
            Some(key) if !inner.options.api_keys.contains(key) => {
                let shown: String = key.chars().take(6).collect();
                return openai_error(
                    401,
                    "invalid_request_error",
                    Some("invalid_api_key"),
                    &format!("Incorrect API key provided: {shown}***."),
                    None,
                );
            }
            Some(_) => {}
        }
    }
    let Some(body) = request.body.as_object() else {
        return openai_error(
            400,
            "invalid_request_error",
            None,
            "We could not parse the JSON body of your request.",
            None,
        );
    };
    let Some(model) = request.model.clone() else {
        return openai_error(400, "invalid_request_error", None, "you must provide a model parameter", Some("model"));
    };
    if body.get("messages").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return openai_error(
            400,
            "invalid_request_error",
            Some("empty_array"),
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
        );
    }
    if !inner.options.models.contains(&model) {
        return openai_error(
            404,
            "invalid_request_error",
            Some("model_not_found"),
            &format!("The model `{model}` does not exist or you do not have access to it."),
            None,
        );
    }
    let reply = inner.state.lock().unwrap().script.pop_front().unwrap_or_else(|| inner.options.default_reply.clone());
    tokio::time::sleep(reply.delay).await;
    let id =
        format!("chatcmpl-{}", random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 29));
    let created = super::unix_now() as u64;
    match &reply.behaviour {
        OpenAiBehaviour::Error { status, kind, code, message } => {
            return openai_error(*status, kind, code.as_deref(), message, None);
        }
        OpenAiBehaviour::Redirect(location) => {
            return (StatusCode::FOUND, [(header::LOCATION, location.clone())], "").into_response();
        }
        OpenAiBehaviour::Oversized(bytes) => {
            let mut completion = reply.completion(&id, &model, created);
            completion["choices"][0]["message"]["content"] = json!("x".repeat(*bytes));
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], completion.to_string())
                .into_response();
        }
        OpenAiBehaviour::Complete | OpenAiBehaviour::CutAfter(_) => {}
    }
    if !request.stream {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            reply.completion(&id, &model, created).to_string(),
        )
            .into_response();
    }
    let include_usage =
        body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let chunks = reply.chunks(&id, &model, created, include_usage);
    let cut = match reply.behaviour {
        OpenAiBehaviour::CutAfter(n) => Some(n),
        _ => None,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for (index, chunk) in chunks.iter().enumerate() {
            if cut == Some(index) {
                let _ = tx.send(Err(std::io::Error::other("connection cut"))).await;
                return;
            }
            if index > 0 && !reply.chunk_delay.is_zero() {
                tokio::time::sleep(reply.chunk_delay).await;
            }
            if tx.send(Ok(Bytes::from(format!("data: {chunk}\n\n")))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        Body::from_stream(body),
    )
        .into_response()
}
