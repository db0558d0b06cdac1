//! HTTP edge of the Anthropic Messages API: `POST /v1/messages` (also `?beta=true`),
//! `POST /v1/messages/count_tokens`, and `GET /v1/models` in Anthropic's shape (when the request
//! carries `anthropic-version`).
//!
//! Authentication by `x-api-key` or `Authorization: Bearer` (cloud: the API key, then the run's
//! identity from the `x-byollm-*` headers through [`crate::authz`]; local: the session key). The
//! model's routes come from the routing policy ([`crate::routing::Routing::start_on`], surface
//! `Messages`), the body from [`super::messages`] (with the catalog's rules), and each route is
//! tried in turn until one answers, failover only before the first byte: a Bedrock route
//! (`InvokeModel*` on its id, region and role) or the direct Anthropic API (the same body, model
//! renamed, Bedrock specifics as headers). OpenAI-compatible routes are set aside (no faithful
//! conversion), listed in the attempts. The answer comes back in Anthropic's format with
//! `x-byollm-route`: the message JSON, or SSE events named as Anthropic names them, with a `ping`
//! whenever the upstream is silent for 15 s, and errors as `{"type":"error","error":{...}}`
//! before and inside streams. `count_tokens` goes to Bedrock's `CountTokens` over the model's
//! Bedrock routes. Every request leaves one audit line.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::attempt::{self, AttemptError};
use super::messages::{self, PING, header_betas, to_bedrock_body, write_sse_error, write_sse_event};
use super::routed::{AuditGuard, HEADER_ROUTE, first_answer, within_request_timeout};
use super::routes::{CallContext, ChatState, context};
use crate::config::ModelConfig;
use crate::error::ApiError;
use crate::http::ApiBody;
use crate::metrics::Metrics;
use crate::native::{Usage, event_usage};
use crate::routing::failover::class_of_bedrock;
use crate::routing::policy::valid_model_name;
use crate::routing::{BedrockRoute, FailureClass, Route, RouteError, Surface, Upstream};
use crate::upstream::anthropic::{AnthropicAnswer, AnthropicEvents};
use crate::upstream::buffered::BufferedAnswer;
use crate::upstream::{BedrockFailure, EventStream, RawRequest, model_path};

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

/// One model in Anthropic's shape (`models.list`, `models.retrieve`).
pub fn anthropic_model_object(state: &ChatState, name: &str) -> serde_json::Value {
    let display = crate::models::find_by_name(&state.config.models, name)
        .and_then(|(_, model)| model.entry())
        .map_or(name, |entry| entry.display_name.as_str());
    serde_json::json!({"type": "model", "id": name, "display_name": display, "created_at": "1970-01-01T00:00:00Z"})
}

/// `GET /v1/models` in Anthropic's shape: `models`, the ones the caller's policy allows here.
pub fn anthropic_model_list(state: &ChatState, models: &[String]) -> Response {
    let data: Vec<serde_json::Value> = models.iter().map(|name| anthropic_model_object(state, name)).collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    axum::Json(serde_json::json!({"data": data, "has_more": false, "first_id": first, "last_id": last})).into_response()
}

/// Run `serve` within the request timeout (boxed there at once, see [`within_request_timeout`]).
fn within_timeout<F>(chat: &ChatState, serve: F) -> impl Future<Output = Result<Response, ApiError>> + use<F>
where
    F: Future<Output = Result<Response, ApiError>>,
{
    within_request_timeout(chat.config.server.request_timeout, serve)
}

/// The response of a Messages API request: a refusal in Anthropic's shape, which finishes the
/// request's audit line.
fn respond(chat: &ChatState, audit: &mut AuditGuard, result: Result<Response, ApiError>, started: Instant) -> Response {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(status = error.status.as_u16(), code = error.code, "messages request refused");
            audit.finish(error.status.as_u16(), Some(error.code));
            error_response(&error)
        }
    };
    chat.metrics.messages_requests.inc(crate::metrics::outcome(response.status().as_u16()));
    tracing::debug!(
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "messages request answered"
    );
    response
}

/// `POST /v1/messages`.
pub async fn create_message(State(chat): State<ChatState>, headers: HeaderMap, body: ApiBody) -> Response {
    let started = Instant::now();
    let mut audit = AuditGuard::new(&chat, "messages");
    let result = within_timeout(&chat, create(&chat, &headers, body, &mut audit)).await;
    respond(&chat, &mut audit, result, started)
}

/// A parsed request, its routes and the `InvokeModel` body every route starts from.
struct Prepared<'a> {
    context: CallContext,
    model: &'a ModelConfig,
    /// Anthropic on Bedrock, with the model's rules applied.
    body: Bytes,
    stream: bool,
}

/// Authenticate, read and parse the request, and build the body; the audit record learns who
/// asked and for which model.
async fn prepare<'a>(
    chat: &'a ChatState,
    headers: &HeaderMap,
    body: ApiBody,
    audit: &mut AuditGuard,
) -> Result<(Prepared<'a>, String), ApiError> {
    let context = context(chat, headers)?;
    if let Some(record) = audit.record() {
        context.describe(record);
    }
    let body = body.read(&chat.config.server).await?;
    let request = messages::parse(&body)?;
    let stream = request.stream.unwrap_or(false);
    if let Some(record) = audit.record() {
        record.model = valid_model_name(&request.model).then(|| request.model.clone());
        record.stream = stream;
    }
    // Every model the Messages API can route has a `[models]` entry (its rules); one without is
    // served by OpenAI-compatible endpoints only.
    let Some((name, model)) = crate::models::find_by_name(&chat.config.models, &request.model) else {
        let policy = chat.routing.policy();
        let error = match policy.resolve(context.scope(), &request.model) {
            Err(error) => error,
            Ok(_) => RouteError::NotOnSurface { model: request.model.clone(), surface: Surface::Messages },
        };
        return Err(error.into());
    };
    let betas = header_betas(headers.get_all("anthropic-beta").iter().filter_map(|v| v.to_str().ok()));
    let upstream = to_bedrock_body(&request, name, &model.rules, &betas)?;
    let prepared = Prepared { context, model, body: Bytes::from(upstream), stream };
    Ok((prepared, name.to_owned()))
}

/// What a route produced once its upstream accepted the request.
enum Answer {
    /// Anthropic's `message` JSON (Bedrock's `InvokeModel` answer is that object too).
    Message(BufferedAnswer),
    Events(EventSource),
}

enum EventSource {
    Bedrock { events: EventStream, model_id: String },
    Anthropic { events: AnthropicEvents, model: String, key_from_request: bool },
}

impl EventSource {
    /// Write the next event into `out` as an SSE event and merge its usage; false at the end.
    /// `complete` turns true at `message_stop`.
    async fn next(&mut self, out: &mut BytesMut, usage: &mut Usage, complete: &mut bool) -> Result<bool, ApiError> {
        let mut write = |event: &[u8]| {
            if let Some(found) = event_usage(event) {
                usage.merge(found);
            }
            *complete |= write_sse_event(event, out);
        };
        match self {
            EventSource::Bedrock { events, model_id } => match events.next_event().await {
                Ok(Some(event)) => write(event),
                Ok(None) => return Ok(false),
                Err(failure) => {
                    tracing::warn!(code = %failure.code, "bedrock stream failed mid-way");
                    return Err(failure.to_api_error("bedrock:InvokeModelWithResponseStream", model_id));
                }
            },
            EventSource::Anthropic { events, model, key_from_request } => match events.next_event().await {
                Ok(Some(event)) => write(&event),
                Ok(None) => return Ok(false),
                Err(failure) => {
                    tracing::warn!("the anthropic api stream failed mid-way");
                    return Err(failure.to_api_error(model, *key_from_request));
                }
            },
        }
        Ok(true)
    }
}

async fn create(
    chat: &ChatState,
    headers: &HeaderMap,
    body: ApiBody,
    audit: &mut AuditGuard,
) -> Result<Response, ApiError> {
    let (prepared, name) = prepare(chat, headers, body, audit).await?;
    let mut failover = chat.routing.start_on(prepared.context.scope(), &name, Surface::Messages)?;
    let prepared = &prepared;
    let (route, answer) = first_answer(&mut failover, audit, |policy, route| async move {
        let result = attempt(chat, headers, prepared, &policy, &route).await;
        (route, result)
    })
    .await?;
    let mut response = match answer {
        Answer::Message(message) => {
            let usage = message_usage(&message).unwrap_or_default();
            crate::native::routes::record_usage(&chat.metrics, &usage);
            if let Some(record) = audit.record() {
                record.usage = audit_usage(&usage);
            }
            audit.first_byte();
            audit.finish(200, None);
            let mut response = Response::new(Body::new(message));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Answer::Events(events) => sse_response(events, chat.metrics.clone(), audit.take()),
    };
    set_route_header(&mut response, &route);
    Ok(response)
}

/// `x-byollm-route: <label>` on an answer.
pub fn set_route_header(response: &mut Response, route: &Route) {
    if let Ok(value) = HeaderValue::from_str(&route.label) {
        response.headers_mut().insert(HeaderName::from_static(HEADER_ROUTE), value);
    }
}

/// Try one route, up to the start of its answer.
async fn attempt(
    chat: &ChatState,
    headers: &HeaderMap,
    prepared: &Prepared<'_>,
    policy: &crate::routing::RoutingPolicy,
    route: &Route,
) -> Result<Answer, AttemptError> {
    match &route.upstream {
        Upstream::Bedrock(bedrock) => attempt_bedrock(chat, prepared, bedrock).await,
        Upstream::Anthropic(anthropic_route) => {
            let stream = prepared.stream;
            match attempt::anthropic(&chat.direct, policy, headers, anthropic_route, &prepared.body, stream).await? {
                (AnthropicAnswer::Message(message), _) => Ok(Answer::Message(message)),
                (AnthropicAnswer::Stream(events), key_from_request) => Ok(Answer::Events(EventSource::Anthropic {
                    events,
                    model: anthropic_route.model.clone(),
                    key_from_request,
                })),
            }
        }
        // Set aside by `start_on`; never reached.
        Upstream::OpenAi(_) => {
            Err((FailureClass::Request, ApiError::internal("an endpoint route reached the Messages API")))
        }
    }
}

/// A Bedrock failure, classed for failover, with the error for the client.
fn bedrock_attempt_error(
    context: &CallContext,
    failure: &BedrockFailure,
    action: &str,
    model_id: &str,
) -> AttemptError {
    let error = context.bedrock_error(failure, action, model_id);
    (class_of_bedrock(failure, error.status.as_u16()), error)
}

async fn attempt_bedrock(
    chat: &ChatState,
    prepared: &Prepared<'_>,
    route: &BedrockRoute,
) -> Result<Answer, AttemptError> {
    let context = &prepared.context;
    let (credentials, region) = context
        .credentials_for(&chat.config, route.role.as_ref(), route.region.as_deref())
        .await
        .map_err(|error| (FailureClass::Credentials, error))?;
    let model_id = &route.model_id;
    let body = prepared.body.clone();
    if prepared.stream {
        let action = "bedrock:InvokeModelWithResponseStream";
        let events = chat
            .bedrock
            .invoke_stream(&region, model_id, body, &credentials)
            .await
            .map_err(|f| bedrock_attempt_error(context, &f, action, model_id))?;
        return Ok(Answer::Events(EventSource::Bedrock { events, model_id: model_id.clone() }));
    }
    let action = "bedrock:InvokeModel";
    let message = chat
        .bedrock
        .invoke(&region, model_id, body, &credentials)
        .await
        .map_err(|f| bedrock_attempt_error(context, &f, action, model_id))?;
    Ok(Answer::Message(message))
}

/// The `usage` of a message object.
fn message_usage(message: &[u8]) -> Option<Usage> {
    let mut wrapped = Vec::with_capacity(message.len() + 32);
    wrapped.extend_from_slice(b"{\"message\":");
    wrapped.extend_from_slice(message);
    wrapped.push(b'}');
    event_usage(&wrapped)
}

/// Usage read from relayed answers, as the audit line holds it.
pub fn audit_usage(usage: &Usage) -> crate::audit::Usage {
    crate::audit::Usage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_read_input_tokens: usage.cache_read_input_tokens,
        cache_creation_input_tokens: usage.cache_creation_input_tokens,
        reasoning_tokens: None,
    }
}

struct Relay {
    events: EventSource,
    metrics: Arc<Metrics>,
    usage: Usage,
    out: BytesMut,
    complete: bool,
    done: bool,
    audit: AuditGuard,
}

impl Relay {
    /// The next bytes for the client: one event, a `ping` after [`PING_INTERVAL`] of silence, an
    /// `error` event if the upstream failed or stopped short (then the end).
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let next = self.events.next(&mut self.out, &mut self.usage, &mut self.complete);
        match tokio::time::timeout(PING_INTERVAL, next).await {
            Err(_) => Some(Bytes::from_static(PING)),
            Ok(Ok(true)) => {
                self.audit.first_byte();
                Some(self.out.split().freeze())
            }
            Ok(Ok(false)) if self.complete => {
                self.finish(None);
                None
            }
            Ok(Ok(false)) => {
                let error = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "upstream_stream_cut",
                    "the upstream stream ended before the model finished; the answer is incomplete",
                );
                write_sse_error(&error, &mut self.out);
                self.finish(Some(error.code));
                Some(self.out.split().freeze())
            }
            Ok(Err(error)) => {
                write_sse_error(&error, &mut self.out);
                self.finish(Some(error.code));
                Some(self.out.split().freeze())
            }
        }
    }

    fn finish(&mut self, error: Option<&'static str>) {
        self.done = true;
        if let Some(record) = self.audit.record() {
            record.usage = audit_usage(&self.usage);
        }
        self.audit.finish(200, error);
    }
}

impl Drop for Relay {
    /// The stream ended or the client left: the usage seen so far is counted and, if the line is
    /// not written yet, goes into it.
    fn drop(&mut self) {
        crate::native::routes::record_usage(&self.metrics, &self.usage);
        if let Some(record) = self.audit.record() {
            record.usage = audit_usage(&self.usage);
        }
    }
}

fn sse_response(events: EventSource, metrics: Arc<Metrics>, audit: AuditGuard) -> Response {
    let relay = Relay {
        events,
        metrics,
        usage: Usage::default(),
        out: BytesMut::with_capacity(1024),
        complete: false,
        done: false,
        audit,
    };
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
/// route, with the converted body, over the model's Bedrock routes (failover as for messages);
/// `{"input_tokens": n}`.
pub async fn count_tokens(State(chat): State<ChatState>, headers: HeaderMap, body: ApiBody) -> Response {
    let started = Instant::now();
    let mut audit = AuditGuard::new(&chat, "messages");
    if let Some(record) = audit.record() {
        record.operation = "count_tokens";
    }
    let result = within_timeout(&chat, count(&chat, &headers, body, &mut audit)).await;
    respond(&chat, &mut audit, result, started)
}

async fn count(
    chat: &ChatState,
    headers: &HeaderMap,
    body: ApiBody,
    audit: &mut AuditGuard,
) -> Result<Response, ApiError> {
    let (prepared, name) = prepare(chat, headers, body, audit).await?;
    let mut failover = chat.routing.start_on(prepared.context.scope(), &name, Surface::BedrockOnly)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&prepared.body);
    let request_body = Bytes::from(serde_json::json!({"input": {"invokeModel": {"body": encoded}}}).to_string());
    let prepared = &prepared;
    let (route, input_tokens) = first_answer(&mut failover, audit, |_, route| {
        let request_body = request_body.clone();
        async move {
            let result = match &route.upstream {
                Upstream::Bedrock(bedrock) => count_on(chat, prepared, bedrock, request_body).await,
                _ => {
                    Err((FailureClass::Request, ApiError::internal("a route other than Bedrock reached count_tokens")))
                }
            };
            (route, result)
        }
    })
    .await?;
    audit.first_byte();
    audit.finish(200, None);
    let mut response = axum::Json(serde_json::json!({"input_tokens": input_tokens})).into_response();
    set_route_header(&mut response, &route);
    Ok(response)
}

/// `CountTokens` on one Bedrock route: the number of input tokens.
async fn count_on(
    chat: &ChatState,
    prepared: &Prepared<'_>,
    route: &BedrockRoute,
    body: Bytes,
) -> Result<u64, AttemptError> {
    let context = &prepared.context;
    let (credentials, region) = context
        .credentials_for(&chat.config, route.role.as_ref(), route.region.as_deref())
        .await
        .map_err(|error| (FailureClass::Credentials, error))?;
    let model_id = crate::target::foundation_model_id(prepared.model, &route.model_id);
    let action = "bedrock:CountTokens";
    let path = model_path(model_id, "count-tokens");
    let mut forward = HeaderMap::new();
    forward.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let request = RawRequest { region: &region, method: Method::POST, path_and_query: &path, headers: forward, body };
    let answer = chat
        .bedrock
        .send(request, &credentials)
        .await
        .map_err(|f| bedrock_attempt_error(context, &f, action, model_id))?;
    let unreadable = |what: &str| {
        let error = ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "bedrock_error",
            format!("{what} answer from Bedrock"),
        );
        (FailureClass::Upstream, error)
    };
    let status = answer.status;
    let headers = answer.headers;
    let bytes = http_body_util::Limited::new(answer.body, 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| unreadable("unreadable"))?;
    if !status.is_success() {
        let failure = crate::upstream::error::failure_from_response(&headers, &bytes);
        return Err(bedrock_attempt_error(context, &failure, action, model_id));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Counted {
        input_tokens: u64,
    }
    let counted: Counted = serde_json::from_slice(&bytes).map_err(|_| unreadable("unexpected"))?;
    Ok(counted.input_tokens)
}
