//! HTTP edge of the Anthropic Messages API: `POST /v1/messages` (also `?beta=true`),
//! `POST /v1/messages/count_tokens`, and `GET /v1/models` in Anthropic's shape (when the request
//! carries `anthropic-version`).
//!
//! Authentication by `x-api-key` or `Authorization: Bearer` (cloud: the API key, then the run's
//! identity from the `x-byollm-*` headers through [`crate::authz`]; local: the session key). The
//! model name resolves through [`crate::target::bedrock_target`], the body through
//! [`super::messages`] (with the catalog's rules), and the answer comes back in Anthropic's format:
//! the message JSON, or SSE events named as Anthropic names them, with a `ping` whenever Bedrock
//! is silent for 15 s, and errors as `{"type":"error","error":{...}}` before and inside streams.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::messages::{self, PING, header_betas, to_bedrock_body, write_sse_error, write_sse_event};
use super::routes::{CallContext, ChatState, context};
use crate::error::ApiError;
use crate::http::ApiBody;
use crate::native::{Usage, event_usage};
use crate::target::{BedrockTarget, ModelRef, bedrock_target};
use crate::upstream::{EventStream, RawRequest, model_path};

/// Longest silence in a stream before a `ping` goes out.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// Paths whose refusals take Anthropic's error shape.
pub fn is_messages_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

/// A refusal in Anthropic's shape.
pub fn error_response(error: &ApiError) -> Response {
    let mut response = (error.status, messages::error_body(error)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(seconds) = error.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Anthropic's shape for `GET /v1/models` is asked for with `anthropic-version`.
pub fn wants_anthropic_shape(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

/// `GET /v1/models` in Anthropic's shape: the configured models.
pub fn anthropic_model_list(state: &ChatState) -> Response {
    let data: Vec<serde_json::Value> = state
        .config
        .models
        .iter()
        .map(|(name, model)| {
            let display = model.entry().map_or(name.as_str(), |entry| entry.display_name.as_str());
            serde_json::json!({"type": "model", "id": name, "display_name": display, "created_at": "1970-01-01T00:00:00Z"})
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    axum::Json(serde_json::json!({"data": data, "has_more": false, "first_id": first, "last_id": last})).into_response()
}

fn not_found(model: &str) -> ApiError {
    ApiError::not_found(
        "model_not_found",
        format!("model: {model} is not served here; GET /v1/models lists the models you may use"),
    )
    .with_param("model")
}

fn timed_out(limit: Duration) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_error",
        "request_timeout",
        format!("no answer started within server.request_timeout_secs ({}s)", limit.as_secs()),
    )
}

/// `POST /v1/messages`.
pub async fn create_message(State(chat): State<ChatState>, headers: HeaderMap, body: ApiBody) -> Response {
    let started = Instant::now();
    let limit = chat.config.server.request_timeout;
    let response = match tokio::time::timeout(limit, create(&chat, &headers, body)).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::info!(status = error.status.as_u16(), code = error.code, "messages request refused");
            error_response(&error)
        }
        Err(_) => error_response(&timed_out(limit)),
    };
    chat.metrics.messages_requests.inc(crate::metrics::outcome(response.status().as_u16()));
    tracing::debug!(
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "messages request answered"
    );
    response
}

/// Authenticated call, its target and the Bedrock body.
async fn prepare<'a>(
    chat: &'a ChatState,
    headers: &HeaderMap,
    body: ApiBody,
) -> Result<(CallContext, BedrockTarget<'a>, Vec<u8>, bool), ApiError> {
    let context = context(chat, headers)?;
    let body = body.read(&chat.config.server).await?;
    let request = messages::parse(&body)?;
    let target = bedrock_target(&chat.config, context.region(), ModelRef::Name(&request.model))
        .map_err(|r| not_found(&r.requested))?;
    crate::target::policy_allows(&chat.routing.policy(), context.scope(), target.name)?;
    let betas = header_betas(headers.get_all("anthropic-beta").iter().filter_map(|v| v.to_str().ok()));
    let upstream = to_bedrock_body(&request, target.name, &target.model.rules, &betas)?;
    Ok((context, target, upstream, request.stream.unwrap_or(false)))
}

async fn create(chat: &ChatState, headers: &HeaderMap, body: ApiBody) -> Result<Response, ApiError> {
    let (context, target, upstream, stream) = prepare(chat, headers, body).await?;
    let (credentials, region) = context.credentials(&chat.config).await?;
    if stream {
        let action = "bedrock:InvokeModelWithResponseStream";
        let events = chat
            .bedrock
            .invoke_stream(region, target.model_id, Bytes::from(upstream), &credentials)
            .await
            .map_err(|f| context.bedrock_error(&f, action, target.model_id))?;
        return Ok(sse_response(events, chat.clone(), target.model_id.to_owned()));
    }
    let action = "bedrock:InvokeModel";
    let answer = chat
        .bedrock
        .invoke(region, target.model_id, Bytes::from(upstream), &credentials)
        .await
        .map_err(|f| context.bedrock_error(&f, action, target.model_id))?;
    if let Some(usage) = message_usage(&answer) {
        crate::native::routes::record_usage(&chat.metrics, &usage);
    }
    // Bedrock's InvokeModel answer is Anthropic's message object: passed on as it is.
    let mut response = Response::new(Body::from(answer));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The `usage` of a message object.
fn message_usage(message: &[u8]) -> Option<Usage> {
    let mut wrapped = Vec::with_capacity(message.len() + 32);
    wrapped.extend_from_slice(b"{\"message\":");
    wrapped.extend_from_slice(message);
    wrapped.push(b'}');
    event_usage(&wrapped)
}

struct Relay {
    events: EventStream,
    chat: ChatState,
    model_id: String,
    usage: Usage,
    out: BytesMut,
    done: bool,
}

impl Relay {
    /// The next bytes for the client: one event, a `ping` after [`PING_INTERVAL`] of silence, an
    /// `error` event if Bedrock failed mid-way (then the end).
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        match tokio::time::timeout(PING_INTERVAL, self.events.next_event()).await {
            Err(_) => Some(Bytes::from_static(PING)),
            Ok(Ok(Some(event))) => {
                if let Some(found) = event_usage(event) {
                    self.usage.merge(found);
                }
                write_sse_event(event, &mut self.out);
                Some(self.out.split().freeze())
            }
            Ok(Ok(None)) => {
                self.done = true;
                None
            }
            Ok(Err(failure)) => {
                tracing::warn!(code = %failure.code, "bedrock stream failed mid-way");
                let error = failure.to_api_error("bedrock:InvokeModelWithResponseStream", &self.model_id);
                write_sse_error(&error, &mut self.out);
                self.done = true;
                Some(self.out.split().freeze())
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        crate::native::routes::record_usage(&self.chat.metrics, &self.usage);
    }
}

fn sse_response(events: EventStream, chat: ChatState, model_id: String) -> Response {
    let relay =
        Relay { events, chat, model_id, usage: Usage::default(), out: BytesMut::with_capacity(1024), done: false };
    let stream = futures_util::stream::unfold(relay, |mut relay| async move {
        relay.next().await.map(|bytes| (Ok::<Bytes, Infallible>(bytes), relay))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// `POST /v1/messages/count_tokens`: Bedrock's `CountTokens` on the foundation model behind the
/// configured one, with the converted body; `{"input_tokens": n}`.
pub async fn count_tokens(State(chat): State<ChatState>, headers: HeaderMap, body: ApiBody) -> Response {
    let limit = chat.config.server.request_timeout;
    let response = match tokio::time::timeout(limit, count(&chat, &headers, body)).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error_response(&error),
        Err(_) => error_response(&timed_out(limit)),
    };
    chat.metrics.messages_requests.inc(crate::metrics::outcome(response.status().as_u16()));
    response
}

async fn count(chat: &ChatState, headers: &HeaderMap, body: ApiBody) -> Result<Response, ApiError> {
    let (context, target, upstream, _) = prepare(chat, headers, body).await?;
    let (credentials, region) = context.credentials(&chat.config).await?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&upstream);
    let request_body = serde_json::json!({"input": {"invokeModel": {"body": encoded}}}).to_string();
    let model_id = target.foundation_model_id();
    let path = model_path(model_id, "count-tokens");
    let mut forward = HeaderMap::new();
    forward.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let request = RawRequest {
        region,
        method: Method::POST,
        path_and_query: &path,
        headers: forward,
        body: Bytes::from(request_body),
    };
    let answer = chat
        .bedrock
        .send(request, &credentials)
        .await
        .map_err(|f| context.bedrock_error(&f, "bedrock:CountTokens", model_id))?;
    let status = answer.status;
    let headers = answer.headers;
    let bytes =
        http_body_util::Limited::new(answer.body, 64 * 1024).collect().await.map(|c| c.to_bytes()).map_err(|_| {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", "bedrock_error", "unreadable answer from Bedrock")
        })?;
    if !status.is_success() {
        let failure = crate::upstream::error::failure_from_response(&headers, &bytes);
        return Err(context.bedrock_error(&failure, "bedrock:CountTokens", model_id));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Counted {
        input_tokens: u64,
    }
    let counted: Counted = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", "bedrock_error", "unexpected answer from Bedrock")
    })?;
    Ok(axum::Json(serde_json::json!({"input_tokens": counted.input_tokens})).into_response())
}
