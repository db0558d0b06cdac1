//! The chat completion served through the routing policy: one attempt per route (Bedrock, the
//! direct Anthropic API, an OpenAI-compatible endpoint) until one answers, failover only before
//! the first byte of an answer, the answer relayed with the `x-byollm-route` header, and one audit
//! line per request ([`AuditGuard`]).
//!
//! Bedrock and Anthropic routes get the same converted body (the adapter's `InvokeModel` body; the
//! Anthropic route moves its Bedrock specifics into headers); an OpenAI-compatible route gets the
//! client's own body with the model renamed. Keys a request brings (`x-byollm-anthropic-key`,
//! `x-byollm-endpoint-key`) are used for that call only and never logged.
//!
//! A streamed answer that has sent nothing for [`KEEP_ALIVE_INTERVAL`] gets an SSE comment
//! (`: keep-alive`), so proxies and clients with idle timeouts keep the connection while the model
//! is silent ([`sse_response`], the one place both kinds of stream go through).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::anthropic::{AnthropicResponse, Usage as AnthropicUsage};
use super::openai::PARSED_ITEM_BYTES;
use super::request::{Target, parse_request, to_anthropic};
use super::response::{to_chat_completion, upstream_error};
use super::routes::{CallContext, ChatState};
use super::stream::StreamConverter;
use crate::audit::{AttemptRecord, Audit, AuditRecord, Usage};
use crate::error::ApiError;
use crate::http::ApiBody;
use crate::metrics::InFlight;
use crate::routing::failover::{class_of_bedrock, class_of_openai};
use crate::routing::policy::valid_model_name;
use crate::routing::{BedrockRoute, Failover, FailureClass, Route, RoutingPolicy, Upstream};
use crate::upstream::anthropic::{AnthropicAnswer, AnthropicEvents};
use crate::upstream::buffered::BufferedAnswer;
use crate::upstream::openai_compat::{self, OpenAiAnswer, OpenAiCall, OpenAiStream, TokenUsage};
use crate::upstream::{EventStream, egress};

/// The response header naming the route that served.
pub const HEADER_ROUTE: &str = "x-byollm-route";
pub use super::attempt::HEADER_ANTHROPIC_KEY;
/// A request's own base URL and key, for an endpoint configured with `per_request = true`.
pub const HEADER_ENDPOINT_URL: &str = "x-byollm-endpoint-url";
pub const HEADER_ENDPOINT_KEY: &str = "x-byollm-endpoint-key";

/// One request's audit record, written once: when the answer is complete, when the request
/// failed, or when the client went away (dropped).
pub struct AuditGuard {
    inner: Option<AuditInner>,
}

struct AuditInner {
    audit: Audit,
    record: AuditRecord,
    started: Instant,
    _in_flight: InFlight,
}

impl AuditGuard {
    pub fn new(state: &ChatState, surface: &'static str) -> AuditGuard {
        let inner = AuditInner {
            audit: state.audit.clone(),
            record: AuditRecord::start(surface),
            started: Instant::now(),
            _in_flight: state.metrics.in_flight(surface),
        };
        AuditGuard { inner: Some(inner) }
    }

    pub fn record(&mut self) -> Option<&mut AuditRecord> {
        self.inner.as_mut().map(|inner| &mut inner.record)
    }

    /// The first byte of the answer goes out now.
    pub fn first_byte(&mut self) {
        if let Some(inner) = &mut self.inner
            && inner.record.ttfb_ms.is_none()
        {
            inner.record.ttfb_ms = Some(inner.started.elapsed().as_millis() as u64);
        }
    }

    /// Hand the record on (to a stream that finishes it later).
    pub fn take(&mut self) -> AuditGuard {
        AuditGuard { inner: self.inner.take() }
    }

    /// Write the line now.
    pub fn finish(&mut self, status: u16, error: Option<&'static str>) {
        if let Some(mut inner) = self.inner.take() {
            inner.record.status = status;
            inner.record.error = inner.record.error.or(error);
            inner.record.duration_ms = inner.started.elapsed().as_millis() as u64;
            inner.audit.emit(&inner.record);
        }
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        let status = self.inner.as_ref().map_or(0, |i| i.record.status);
        self.finish(if status == 0 { 499 } else { status }, Some("client_closed"));
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The fields read before routing: the model and whether a stream is asked for. Both stay raw
/// JSON until checked; every other field is skipped unbuilt.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
}

/// What an attempt produced once its upstream accepted the request.
enum Answer {
    /// An Anthropic `message` (Bedrock `InvokeModel` or the Anthropic API).
    Message(BufferedAnswer),
    /// Anthropic stream events.
    Events(EventSource),
    OpenAiCompletion {
        body: BufferedAnswer,
        usage: Option<TokenUsage>,
    },
    OpenAiStream(OpenAiStream),
}

enum EventSource {
    Bedrock {
        events: EventStream,
        model_id: String,
    },
    /// `current`: the last event read, which [`EventSource::next`] lends out.
    Anthropic {
        events: AnthropicEvents,
        model: String,
        key_from_request: bool,
        current: Bytes,
    },
}

impl EventSource {
    /// The next event's JSON, borrowed until the next call (a Bedrock event is decoded in place).
    async fn next(&mut self) -> Result<Option<&[u8]>, ApiError> {
        match self {
            EventSource::Bedrock { events, model_id } => match events.next_event().await {
                Ok(event) => Ok(event),
                Err(failure) => {
                    tracing::warn!(code = %failure.code, "bedrock stream failed mid-way");
                    Err(failure.to_api_error("bedrock:InvokeModelWithResponseStream", model_id))
                }
            },
            EventSource::Anthropic { events, model, key_from_request, current } => {
                match events.next_event().await.map_err(|failure| failure.to_api_error(model, *key_from_request))? {
                    Some(event) => {
                        *current = event;
                        Ok(Some(current))
                    }
                    None => Ok(None),
                }
            }
        }
    }

    fn upstream_name(&self) -> &'static str {
        match self {
            EventSource::Bedrock { .. } => "the Bedrock stream",
            EventSource::Anthropic { .. } => "the Anthropic API stream",
        }
    }
}

type AttemptResult = Result<Answer, (FailureClass, ApiError)>;

/// The request as every attempt needs it.
struct Call<'a> {
    state: &'a ChatState,
    context: &'a CallContext,
    headers: &'a HeaderMap,
    /// The client's body, for OpenAI-compatible routes.
    client_body: &'a Bytes,
    /// The converted `InvokeModel` body, for Bedrock and Anthropic routes.
    converted: Option<&'a Bytes>,
    stream: bool,
    public_model: &'a str,
}

/// Serve one chat completion through the routes of its model.
pub(super) async fn chat(
    state: &ChatState,
    headers: &HeaderMap,
    body: ApiBody,
    audit: &mut AuditGuard,
) -> Result<Response, ApiError> {
    let context = super::routes::context(state, headers)?;
    if let Some(record) = audit.record() {
        context.describe(record);
    }
    // Holds its share of the body budget until an upstream answered (the end of this function).
    let mut client_body = body.read(&state.config.server).await?;
    let peek: Peek = serde_json::from_slice(&client_body).map_err(|_| {
        ApiError::invalid_request("body", "invalid_json", "the body must be a JSON chat completion request")
    })?;
    let model = peek.model.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let Some(model) = model.filter(|m| valid_model_name(m)) else {
        return Err(ApiError::invalid_request(
            "model",
            "missing_model",
            "model must be the name of a served model (GET /v1/models lists them)",
        ));
    };
    let stream = peek.stream.is_some_and(|raw| raw.get() == "true");
    if let Some(record) = audit.record() {
        record.model = Some(model.clone());
        record.stream = stream;
    }
    let scope = context.scope();
    let mut failover = state.routing.start(scope, &model)?;

    // Bedrock and Anthropic routes need the adapter's conversion (and the model's rules).
    let converts = failover.pending().any(|route| !matches!(route.upstream, Upstream::OpenAi(_)));
    let request = if converts { Some(parse_request(&client_body)?) } else { None };
    if let Some(request) = &request {
        // The parsed request and its conversion are held while the answer is served.
        client_body.charge(request.parsed_items.saturating_mul(PARSED_ITEM_BYTES)).await?;
    }
    let model_config = crate::models::find_by_name(&state.config.models, &model);
    let prepared = match (&request, model_config) {
        (Some(request), Some((name, config))) => Some(to_anthropic(request, Target { name, rules: &config.rules })?),
        _ => None,
    };
    let converted = match &prepared {
        Some(prepared) => Some(Bytes::from(
            serde_json::to_vec(&prepared.body).map_err(|_| ApiError::internal("could not encode the request"))?,
        )),
        None => None,
    };
    let call = Call {
        state,
        context: &context,
        headers,
        client_body: &client_body.bytes,
        converted: converted.as_ref(),
        stream,
        public_model: &model,
    };

    let call = &call;
    let (route, answer) = first_answer(&mut failover, audit, |policy, route| async move {
        let result = attempt(call, &policy, &route).await;
        (route, result)
    })
    .await?;

    let id = super::routes::completion_id();
    let created = crate::issuer::unix_now();
    let mut response = match answer {
        Answer::Message(bytes) => {
            let message: AnthropicResponse = serde_json::from_slice(&bytes).map_err(|error| {
                // The serde message can quote model output: log only where it failed.
                tracing::warn!(category = ?error.classify(), line = error.line(), column = error.column(), "undecodable model answer");
                upstream_error("api_error", "the model's answer could not be decoded")
            })?;
            if let Some(record) = audit.record() {
                record.usage = usage_from_anthropic(&message.usage);
                record.id = Some(id.clone());
            }
            let response_tool = prepared.as_ref().and_then(|p| p.response_tool);
            let completion = to_chat_completion(&message, id, created, model.clone(), response_tool);
            audit.first_byte();
            audit.finish(200, None);
            axum::Json(completion).into_response()
        }
        Answer::OpenAiCompletion { body, usage } => {
            if let Some(record) = audit.record() {
                record.usage = usage.map(usage_from_openai).unwrap_or_default();
            }
            audit.first_byte();
            audit.finish(200, None);
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], Body::new(body)).into_response()
        }
        Answer::Events(events) => {
            let Some(prepared) = &prepared else {
                return Err(ApiError::internal("a converted route answered without a converted request"));
            };
            if let Some(record) = audit.record() {
                record.id = Some(id.clone());
            }
            let converter = StreamConverter::new(&id, created, &model, prepared.include_usage)
                .with_response_tool(prepared.response_tool);
            anthropic_sse(events, converter, audit.take())
        }
        Answer::OpenAiStream(stream) => openai_sse(stream, audit.take()),
    };
    if let Ok(value) = HeaderValue::from_str(&route.label) {
        response.headers_mut().insert(HeaderName::from_static(HEADER_ROUTE), value);
    }
    Ok(response)
}

/// Run `serve` within `server.request_timeout`; past it, the 504 every surface answers with.
///
/// `serve` is boxed here, before the handler's own future is built: it holds the whole request
/// (routing, conversion, the upstream call) and is several KiB, and axum and hyper move the
/// handler's future after it is made; moving a pointer is cheaper than copying it each time
/// (about 17 k instructions per chat request, measured with callgrind).
pub(crate) fn within_request_timeout<T>(
    limit: Duration,
    serve: impl Future<Output = Result<T, ApiError>>,
) -> impl Future<Output = Result<T, ApiError>> {
    let serve = Box::pin(serve);
    async move {
        tokio::time::timeout(limit, serve).await.unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                "request_timeout",
                format!("no answer started within server.request_timeout_secs ({}s)", limit.as_secs()),
            ))
        })
    }
}

/// Drives `failover` until a route answers: `attempt` runs on each route in turn (with the policy
/// the request started with) and hands the route back with its result; a failure the request
/// caused ends the request at once, and when every route failed, the one error listing them. The
/// attempts, and the route that served, go into the audit record either way.
pub(crate) async fn first_answer<T, F>(
    failover: &mut Failover<'_>,
    audit: &mut AuditGuard,
    mut attempt: impl FnMut(Arc<RoutingPolicy>, Route) -> F,
) -> Result<(Route, T), ApiError>
where
    F: Future<Output = (Route, Result<T, (FailureClass, ApiError)>)>,
{
    let policy = failover.policy.clone();
    while let Some(route) = failover.next_route() {
        let (route, result) = attempt(policy.clone(), route).await;
        match result {
            Ok(answer) => {
                failover.served(&route);
                record_attempts(audit, failover.attempts(), Some(&route));
                return Ok((route, answer));
            }
            Err((class, error)) => {
                if let Some(stop) = failover.failed(&route, class, error) {
                    record_attempts(audit, failover.attempts(), None);
                    return Err(stop);
                }
            }
        }
    }
    let error = failover.exhausted();
    record_attempts(audit, failover.attempts(), None);
    Err(error)
}

/// The attempts (and the route that served) into the request's audit record.
pub(crate) fn record_attempts(audit: &mut AuditGuard, attempts: &[crate::routing::Attempt], served: Option<&Route>) {
    let Some(record) = audit.record() else { return };
    record.attempts = attempts
        .iter()
        .map(|attempt| {
            let (result, status, code) = attempt.outcome.summary();
            AttemptRecord {
                route: attempt.route.clone(),
                upstream_model: attempt.upstream_model.clone(),
                result,
                status,
                code,
            }
        })
        .collect();
    if let Some(route) = served {
        record.route = Some(route.label.clone());
        record.upstream_model = Some(route.upstream.upstream_model().to_owned());
    }
}

fn usage_from_anthropic(usage: &AnthropicUsage) -> Usage {
    Usage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_read_input_tokens: usage.cache_read_input_tokens,
        cache_creation_input_tokens: usage.cache_creation_input_tokens,
        reasoning_tokens: usage.output_tokens_details.and_then(|d| d.thinking_tokens),
    }
}

fn usage_from_openai(usage: TokenUsage) -> Usage {
    Usage {
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
        cache_read_input_tokens: usage.cached_tokens,
        cache_creation_input_tokens: None,
        reasoning_tokens: usage.reasoning_tokens,
    }
}

/// Try one route, up to its first byte.
async fn attempt(call: &Call<'_>, policy: &crate::routing::RoutingPolicy, route: &Route) -> AttemptResult {
    match &route.upstream {
        Upstream::Bedrock(bedrock) => attempt_bedrock(call, bedrock).await,
        Upstream::Anthropic(anthropic_route) => {
            let Some(body) = call.converted else {
                return Err((
                    FailureClass::Request,
                    ApiError::internal("no converted request for the Anthropic route"),
                ));
            };
            let direct = &call.state.direct;
            match super::attempt::anthropic(direct, policy, call.headers, anthropic_route, body, call.stream).await? {
                (AnthropicAnswer::Message(bytes), _) => Ok(Answer::Message(bytes)),
                (AnthropicAnswer::Stream(events), key_from_request) => Ok(Answer::Events(EventSource::Anthropic {
                    events,
                    model: anthropic_route.model.clone(),
                    key_from_request,
                    current: Bytes::new(),
                })),
            }
        }
        Upstream::OpenAi(openai_route) => {
            let Some(endpoint) = policy.endpoints.get(&openai_route.endpoint) else {
                return Err((FailureClass::Refused, ApiError::internal("the route names an endpoint that is gone")));
            };
            let mode_policy = endpoint.http.egress(policy.mode);
            let (base_url, url_from_request) = if endpoint.per_request {
                let Some(raw) = header_str(call.headers, HEADER_ENDPOINT_URL) else {
                    let error = ApiError::invalid_request(
                        HEADER_ENDPOINT_URL,
                        "endpoint_url_missing",
                        format!(
                            "endpoint {:?} takes its URL from the {HEADER_ENDPOINT_URL} header",
                            openai_route.endpoint
                        ),
                    );
                    return Err((FailureClass::Request, error));
                };
                // The request's own URL gets the strict rules whatever the endpoint allows.
                let strict = match policy.mode {
                    crate::routing::Mode::Local => egress::EgressPolicy::Local,
                    crate::routing::Mode::Hosted => egress::EgressPolicy::Hosted { allow_http: false },
                };
                match egress::check_url(raw, strict) {
                    Ok(url) => (url, true),
                    Err(error) => {
                        let error = ApiError::forbidden("egress_refused", format!("{HEADER_ENDPOINT_URL}: {error}"))
                            .with_param(HEADER_ENDPOINT_URL);
                        return Err((FailureClass::Request, error));
                    }
                }
            } else {
                match &endpoint.http.base_url {
                    Some(url) => (url.clone(), false),
                    None => return Err((FailureClass::Refused, ApiError::internal("the endpoint has no base_url"))),
                }
            };
            let egress_policy = if url_from_request {
                match policy.mode {
                    crate::routing::Mode::Local => egress::EgressPolicy::Local,
                    crate::routing::Mode::Hosted => egress::EgressPolicy::Hosted { allow_http: false },
                }
            } else {
                mode_policy
            };
            let (key, key_from_request) = match super::attempt::header_secret(call.headers, HEADER_ENDPOINT_KEY) {
                Err(error) => return Err((FailureClass::Request, error)),
                Ok(Some(key)) => (Some(key), true),
                Ok(None) => (endpoint.http.key.clone(), false),
            };
            let body = openai_compat::prepare_body(call.client_body, &openai_route.model, &endpoint.fields)
                .inspect_err(|f| call.state.metrics.count_refused_fields(&openai_route.endpoint, f))
                .map_err(|f| (class_of_openai(&f), f.to_api_error(&openai_route.endpoint, call.public_model, false)))?;
            let request = OpenAiCall {
                base_url: &base_url,
                key: key.as_ref(),
                policy: egress_policy,
                limits: super::attempt::limits_of(&endpoint.http),
                body,
            };
            match openai_compat::send(&call.state.direct, request).await {
                Ok(OpenAiAnswer::Completion { body, usage }) => Ok(Answer::OpenAiCompletion { body, usage }),
                Ok(OpenAiAnswer::Stream(stream)) => Ok(Answer::OpenAiStream(stream)),
                Err(failure) => {
                    let mut class = class_of_openai(&failure);
                    if url_from_request && class == FailureClass::Refused {
                        // The request named where to go: its fault, not the route's.
                        class = FailureClass::Request;
                    }
                    if key_from_request && class == FailureClass::Credentials {
                        class = FailureClass::ClientKey;
                    }
                    let error = failure.to_api_error(&openai_route.endpoint, &openai_route.model, key_from_request);
                    Err((class, error))
                }
            }
        }
    }
}

async fn attempt_bedrock(call: &Call<'_>, route: &BedrockRoute) -> AttemptResult {
    let Some(body) = call.converted else {
        return Err((FailureClass::Request, ApiError::internal("no converted request for the Bedrock route")));
    };
    let (credentials, region) = call
        .context
        .credentials_for(&call.state.config, route.role.as_ref(), route.region.as_deref())
        .await
        .map_err(|error| (FailureClass::Credentials, error))?;
    let model_id = &route.model_id;
    let bedrock_error = |failure: &crate::upstream::BedrockFailure, action: &str| {
        let error = call.context.bedrock_error(failure, action, model_id);
        (class_of_bedrock(failure, error.status.as_u16()), error)
    };
    if call.stream {
        let events = call
            .state
            .bedrock
            .invoke_stream(&region, model_id, body.clone(), &credentials)
            .await
            .map_err(|f| bedrock_error(&f, "bedrock:InvokeModelWithResponseStream"))?;
        return Ok(Answer::Events(EventSource::Bedrock { events, model_id: model_id.clone() }));
    }
    let bytes = call
        .state
        .bedrock
        .invoke(&region, model_id, body.clone(), &credentials)
        .await
        .map_err(|f| bedrock_error(&f, "bedrock:InvokeModel"))?;
    Ok(Answer::Message(bytes))
}

/// Longest silence in a streamed chat completion before a keep-alive comment goes out.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// An SSE comment line: SSE parsers (OpenAI's SDKs among them) skip it.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// A streamed chat completion as the response: SSE headers, the stream's bytes as the client
/// pulls them, and [`KEEP_ALIVE`] whenever nothing went out for [`KEEP_ALIVE_INTERVAL`].
fn sse_response<S>(stream: S) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let now = tokio::time::Instant::now();
    let body = KeepAlive {
        inner: Box::pin(stream),
        ended: false,
        last_sent: now,
        timer: Box::pin(tokio::time::sleep_until(now + KEEP_ALIVE_INTERVAL)),
    };
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A stream with keep-alive comments in its silences. The inner stream is only ever polled, never
/// dropped mid-read, so a keep-alive cannot lose part of an event; and it is polled only when the
/// client reads, so a slow reader still pulls the upstream at its own pace.
struct KeepAlive<S> {
    inner: Pin<Box<S>>,
    ended: bool,
    /// When bytes last went out (at first: when the response started).
    last_sent: tokio::time::Instant,
    /// Fires no later than the next keep-alive is due. Moved on only when it fires, so an event
    /// costs a clock read, not a timer insert and removal.
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<S: Stream<Item = Bytes>> Stream for KeepAlive<S> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = this.inner.as_mut().poll_next(cx) {
            match &item {
                Some(_) => this.last_sent = tokio::time::Instant::now(),
                None => this.ended = true,
            }
            return Poll::Ready(item.map(Ok));
        }
        loop {
            ready!(this.timer.as_mut().poll(cx));
            let due = this.last_sent + KEEP_ALIVE_INTERVAL;
            let now = tokio::time::Instant::now();
            if now >= due {
                this.last_sent = now;
                this.timer.as_mut().reset(now + KEEP_ALIVE_INTERVAL);
                return Poll::Ready(Some(Ok(Bytes::from_static(KEEP_ALIVE))));
            }
            this.timer.as_mut().reset(due);
        }
    }
}

/// An Anthropic event stream (Bedrock or the Anthropic API) converted to chat completion chunks.
struct EventRelay {
    events: EventSource,
    converter: StreamConverter,
    out: BytesMut,
    audit: AuditGuard,
}

impl EventRelay {
    async fn next(&mut self) -> Option<Bytes> {
        while !self.converter.is_done() {
            match self.events.next().await {
                Ok(Some(event)) => {
                    if let Err(error) = self.converter.push(event, &mut self.out) {
                        self.converter.error(&error, &mut self.out);
                        self.fail(error.code);
                    }
                }
                Ok(None) => {
                    if self.converter.completed() {
                        self.converter.finish(&mut self.out);
                        self.done(None);
                    } else {
                        let error = ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            "upstream_error",
                            "upstream_stream_cut",
                            format!(
                                "{} ended before the model finished; the answer is incomplete",
                                self.events.upstream_name()
                            ),
                        );
                        self.converter.error(&error, &mut self.out);
                        self.done(Some(error.code));
                    }
                }
                Err(error) => {
                    self.converter.error(&error, &mut self.out);
                    self.done(Some(error.code));
                }
            }
            if !self.out.is_empty() {
                self.audit.first_byte();
                return Some(self.out.split().freeze());
            }
        }
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    fn fail(&mut self, code: &'static str) {
        self.done(Some(code));
    }

    fn done(&mut self, error: Option<&'static str>) {
        let usage = usage_from_anthropic(self.converter.usage());
        if let Some(record) = self.audit.record() {
            record.usage = usage;
        }
        self.audit.finish(200, error);
    }
}

impl Drop for EventRelay {
    /// The client went away mid-stream: the audit line still carries the usage seen so far.
    fn drop(&mut self) {
        let usage = usage_from_anthropic(self.converter.usage());
        if let Some(record) = self.audit.record() {
            record.usage = usage;
        }
    }
}

fn anthropic_sse(events: EventSource, converter: StreamConverter, audit: AuditGuard) -> Response {
    let relay = EventRelay { events, converter, out: BytesMut::with_capacity(1024), audit };
    sse_response(futures_util::stream::unfold(relay, |mut relay| async move {
        relay.next().await.map(|bytes| (bytes, relay))
    }))
}

/// An OpenAI-compatible stream relayed event by event.
struct OpenAiRelay {
    stream: OpenAiStream,
    audit: AuditGuard,
    ended: bool,
}

impl OpenAiRelay {
    async fn next(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        match self.stream.next().await {
            Ok(Some(bytes)) => {
                self.audit.first_byte();
                Some(bytes)
            }
            Ok(None) => {
                self.ended = true;
                if self.stream.finished() {
                    self.finish(None);
                    return None;
                }
                let error = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "upstream_stream_cut",
                    "the endpoint's stream ended before [DONE]; the answer may be incomplete",
                );
                self.finish(Some(error.code));
                Some(error_event(&error))
            }
            Err(failure) => {
                self.ended = true;
                let error = failure.to_api_error("the endpoint");
                self.finish(Some(error.code));
                Some(error_event(&error))
            }
        }
    }

    fn finish(&mut self, error: Option<&'static str>) {
        let usage = self.stream.usage().map(usage_from_openai).unwrap_or_default();
        if let Some(record) = self.audit.record() {
            record.usage = usage;
        }
        self.audit.finish(200, error);
    }
}

impl Drop for OpenAiRelay {
    /// The client went away mid-stream: the audit line still carries the usage seen so far.
    fn drop(&mut self) {
        let usage = self.stream.usage().map(usage_from_openai).unwrap_or_default();
        if let Some(record) = self.audit.record() {
            record.usage = usage;
        }
    }
}

/// An SSE error event followed by `[DONE]`, as the converted streams end on failure.
fn error_event(error: &ApiError) -> Bytes {
    Bytes::from(format!("data: {}\n\ndata: [DONE]\n\n", error.body()))
}

fn openai_sse(stream: OpenAiStream, audit: AuditGuard) -> Response {
    let relay = OpenAiRelay { stream, audit, ended: false };
    sse_response(futures_util::stream::unfold(relay, |mut relay| async move {
        relay.next().await.map(|bytes| (bytes, relay))
    }))
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::time::{Instant, sleep};

    use super::*;

    /// The body's pieces with the whole seconds (of the paused clock) at which each came out.
    async fn pieces(response: Response) -> Vec<(u64, String)> {
        let start = Instant::now();
        let mut body = response.into_body();
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            pieces.push((start.elapsed().as_secs(), String::from_utf8(data.to_vec()).unwrap()));
        }
        pieces
    }

    #[tokio::test(start_paused = true)]
    async fn silences_of_15_s_get_a_keep_alive_comment() {
        // Silent for 40 s (a long thinking phase), two chunks at once, 20 s of silence, a last one.
        let upstream = futures_util::stream::unfold(0, |step| async move {
            let (wait, text) = match step {
                0 => (40, "data: a\n\n"),
                1 => (0, "data: b\n\n"),
                2 => (20, "data: [DONE]\n\n"),
                _ => return None,
            };
            sleep(Duration::from_secs(wait)).await;
            Some((Bytes::from_static(text.as_bytes()), step + 1))
        });
        let response = sse_response(upstream);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        let keep_alive = ": keep-alive\n\n".to_owned();
        let expected = [
            (15, keep_alive.clone()),
            (30, keep_alive.clone()),
            (40, "data: a\n\n".to_owned()),
            (40, "data: b\n\n".to_owned()),
            // 15 s after the last chunk, not after the last keep-alive.
            (55, keep_alive),
            (60, "data: [DONE]\n\n".to_owned()),
        ];
        assert_eq!(pieces(response).await, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_keeps_talking_gets_no_keep_alive() {
        let upstream = futures_util::stream::unfold(0, |step| async move {
            if step == 10 {
                return None;
            }
            sleep(Duration::from_secs(14)).await;
            Some((Bytes::from_static(b"data: x\n\n"), step + 1))
        });
        let pieces = pieces(sse_response(upstream)).await;
        assert_eq!(pieces.len(), 10);
        assert!(pieces.iter().all(|(_, text)| text == "data: x\n\n"), "{pieces:?}");
        assert_eq!(pieces.last().map(|(at, _)| *at), Some(140));
    }

    #[tokio::test]
    async fn an_answer_not_started_within_the_request_timeout_is_a_504_naming_the_setting() {
        let limit = Duration::from_millis(10);
        let error = within_request_timeout(limit, std::future::pending::<Result<(), ApiError>>()).await.unwrap_err();
        assert_eq!((error.status, error.code), (StatusCode::GATEWAY_TIMEOUT, "request_timeout"));
        assert!(error.message.contains("server.request_timeout_secs"), "{}", error.message);
        assert_eq!(within_request_timeout(limit, async { Ok::<_, ApiError>(7) }).await.unwrap(), 7);
    }
}
