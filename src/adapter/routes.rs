//! HTTP edge of the adapter: `POST /v1/chat/completions` (streamed as SSE or not) and
//! `GET /v1/models`.
//!
//! A cloud run authenticates with its API key and names its principal in headers
//! (`x-byollm-actor`, `x-byollm-principal`, optional `x-byollm-team`, `x-byollm-agent`,
//! `x-byollm-run-id`), which [`crate::authz::authorize`] checks; the broker's credentials for that
//! run sign the Bedrock call. In local mode
//! the person's own AWS session signs it. Streams are pulled from Bedrock only as fast as the
//! client reads, and dropped the moment the client goes away.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};

use super::anthropic::AnthropicResponse;
use super::openai::ModelList;
use super::request::{Target, parse_request, to_anthropic};
use super::response::{model_object, to_chat_completion, upstream_error};
use super::stream::StreamConverter;
use crate::auth::Callers;
use crate::authz::{AuthorizedRun, Purpose, authorize};
use crate::broker::Broker;
use crate::broker::local::LocalSession;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{ApiBody, run_request_from_headers};
use crate::metrics::Metrics;
use crate::upstream::{BedrockClient, BedrockFailure, EventStream};

/// Whose AWS credentials sign Bedrock calls.
#[derive(Clone)]
pub enum CredentialSource {
    /// Cloud runs: per-run assumed-role credentials from the broker.
    Broker(Arc<Broker>),
    /// Interactive: the person's own AWS session, in `region`.
    Local { session: Arc<LocalSession>, region: String },
}

/// What the chat routes need.
#[derive(Clone)]
pub struct ChatState {
    pub config: Arc<Config>,
    pub callers: Arc<Callers>,
    pub metrics: Arc<Metrics>,
    pub bedrock: Arc<BedrockClient>,
    pub source: CredentialSource,
}

/// Credentials and region for one call. Authentication happens here, before the body is read.
/// Shared by every surface that calls Bedrock (chat, Messages API, native routes).
pub enum CallContext {
    Broker { broker: Arc<Broker>, run: AuthorizedRun },
    Local { session: Arc<LocalSession>, region: String },
}

/// A cloud run: the caller's API key, then the run identity from the `x-byollm-*` headers through
/// [`authorize`]. Local mode authenticates in its own layer (the session key).
pub fn context(state: &ChatState, headers: &HeaderMap) -> Result<CallContext, ApiError> {
    match &state.source {
        CredentialSource::Broker(broker) => {
            let caller = state.callers.authenticate(headers)?;
            let request = run_request_from_headers(headers)?;
            let run = authorize(&state.config, &caller, &request, Purpose::Run)?;
            Ok(CallContext::Broker { broker: broker.clone(), run })
        }
        CredentialSource::Local { session, region } => {
            Ok(CallContext::Local { session: session.clone(), region: region.clone() })
        }
    }
}

impl CallContext {
    /// The Bedrock region of the call: the run's team's, or the person's session's.
    pub fn region(&self) -> &str {
        match self {
            CallContext::Broker { run, .. } => &run.region,
            CallContext::Local { region, .. } => region,
        }
    }

    pub async fn credentials(&self, config: &Config) -> Result<(crate::broker::sts::AwsCredentials, &str), ApiError> {
        match self {
            CallContext::Broker { broker, run } => {
                let cached = broker.credentials(run).await.map_err(|e| e.to_api_error(config))?;
                Ok((cached.credentials.clone(), &run.region))
            }
            CallContext::Local { session, region } => {
                let credentials = session.credentials().await.map_err(|e| e.to_api_error())?;
                Ok((credentials, region))
            }
        }
    }

    /// Map a Bedrock failure; in local mode, rejected credentials mean the session lapsed.
    pub fn bedrock_error(&self, failure: &BedrockFailure, action: &str, model_id: &str) -> ApiError {
        if let CallContext::Local { session, .. } = self
            && failure.is_credential_problem()
        {
            return crate::broker::local::LocalError {
                profile: session.profile_name(),
                expired: true,
                summary: "Bedrock refused its credentials",
                detail: format!("Bedrock answered {}", failure.code),
                hint: session.hint(),
            }
            .to_api_error();
        }
        failure.to_api_error(action, model_id)
    }
}

pub async fn list_models(State(state): State<ChatState>, headers: HeaderMap) -> Response {
    let anthropic = super::messages_routes::wants_anthropic_shape(&headers);
    if let CredentialSource::Broker(_) = state.source
        && let Err(error) = state.callers.authenticate(&headers)
    {
        let error = ApiError::from(error);
        return if anthropic { super::messages_routes::error_response(&error) } else { error.into_response() };
    }
    if anthropic {
        return super::messages_routes::anthropic_model_list(&state);
    }
    let data = state.config.models.iter().map(|(name, model)| model_object(name, model)).collect();
    axum::Json(ModelList::new(data)).into_response()
}

/// `GET /v1/models/{model}` (the SDKs' `models.retrieve`): one entry of the list, or 404.
pub async fn retrieve_model(State(state): State<ChatState>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    if let CredentialSource::Broker(_) = state.source
        && let Err(error) = state.callers.authenticate(&headers)
    {
        return ApiError::from(error).into_response();
    }
    match crate::models::find_by_name(&state.config.models, &model) {
        Some((name, model)) => axum::Json(model_object(name, model)).into_response(),
        None => ApiError::not_found(
            "model_not_found",
            format!("model {model:?} is not served here; GET /v1/models lists the models you may use"),
        )
        .with_param("model")
        .into_response(),
    }
}

pub async fn chat_completions(State(state): State<ChatState>, headers: HeaderMap, body: ApiBody) -> Response {
    let started = Instant::now();
    let limit = state.config.server.request_timeout;
    let result = match tokio::time::timeout(limit, chat(&state, &headers, body)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_error",
            "request_timeout",
            format!("no answer started within server.request_timeout_secs ({}s)", limit.as_secs()),
        )),
    };
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(status = error.status.as_u16(), code = error.code, "chat completion refused");
            error.into_response()
        }
    };
    state.metrics.chat_requests.inc(crate::metrics::outcome(response.status().as_u16()));
    tracing::debug!(
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "chat completion answered"
    );
    response
}

async fn chat(state: &ChatState, headers: &HeaderMap, body: ApiBody) -> Result<Response, ApiError> {
    let context = context(state, headers)?;
    // Holds its share of the body budget until the upstream call is answered.
    let body = body.read(&state.config.server).await?;
    let request = parse_request(&body)?;
    let (name, model) = crate::models::find_by_name(&state.config.models, &request.model).ok_or_else(|| {
        ApiError::not_found(
            "model_not_found",
            format!("model {:?} is not served here; GET /v1/models lists the models you may use", request.model),
        )
        .with_param("model")
    })?;
    let prepared = to_anthropic(&request, Target { name, rules: &model.rules })?;
    let upstream_body = Bytes::from(
        serde_json::to_vec(&prepared.body).map_err(|_| ApiError::internal("could not encode the request"))?,
    );
    let (credentials, region) = context.credentials(&state.config).await?;
    let id = completion_id();
    let created = crate::issuer::unix_now();

    if prepared.stream {
        let action = "bedrock:InvokeModelWithResponseStream";
        let events = state
            .bedrock
            .invoke_stream(region, &model.id, upstream_body, &credentials)
            .await
            .map_err(|f| context.bedrock_error(&f, action, &model.id))?;
        let converter = StreamConverter::new(id, created, request.model.clone(), prepared.include_usage)
            .with_response_tool(prepared.response_tool);
        return Ok(sse_response(events, converter, model.id.clone()));
    }

    let action = "bedrock:InvokeModel";
    let bytes = state
        .bedrock
        .invoke(region, &model.id, upstream_body, &credentials)
        .await
        .map_err(|f| context.bedrock_error(&f, action, &model.id))?;
    let message: AnthropicResponse = serde_json::from_slice(&bytes).map_err(|error| {
        // The serde message can quote model output: log only where it failed.
        tracing::warn!(category = ?error.classify(), line = error.line(), column = error.column(), "undecodable bedrock response");
        upstream_error("api_error", "the model's answer could not be decoded")
    })?;
    let completion = to_chat_completion(&message, id, created, request.model.clone(), prepared.response_tool);
    Ok(axum::Json(completion).into_response())
}

fn completion_id() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    format!("chatcmpl-{}", crate::auth::hex(&bytes))
}

/// State of one SSE response, pulled by the HTTP body.
struct Relay {
    events: EventStream,
    converter: StreamConverter,
    model_id: String,
    out: BytesMut,
}

impl Relay {
    /// The next bytes to send, or `None` once `[DONE]` went out.
    async fn next(&mut self) -> Option<Bytes> {
        while !self.converter.is_done() {
            match self.events.next_event().await {
                Ok(Some(event)) => {
                    if let Err(error) = self.converter.push(event, &mut self.out) {
                        self.converter.error(&error, &mut self.out);
                    }
                }
                Ok(None) => {
                    if self.converter.completed() {
                        self.converter.finish(&mut self.out);
                    } else {
                        let error = ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            "upstream_error",
                            "upstream_stream_cut",
                            "the Bedrock stream ended before the model finished; the answer is incomplete",
                        );
                        self.converter.error(&error, &mut self.out);
                    }
                }
                Err(failure) => {
                    tracing::warn!(code = %failure.code, "bedrock stream failed mid-way");
                    let error = failure.to_api_error("bedrock:InvokeModelWithResponseStream", &self.model_id);
                    self.converter.error(&error, &mut self.out);
                }
            }
            if !self.out.is_empty() {
                return Some(self.out.split().freeze());
            }
        }
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }
}

fn sse_response(events: EventStream, converter: StreamConverter, model_id: String) -> Response {
    let relay = Relay { events, converter, model_id, out: BytesMut::with_capacity(1024) };
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
