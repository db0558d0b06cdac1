//! The Anthropic Messages API: `POST /v1/messages` (also `?beta=true`) and
//! `POST /v1/messages/count_tokens`.
//!
//! Authentication by `x-api-key` or `Authorization: Bearer` (cloud: the API key, then the run's
//! identity from the `x-byollm-*` headers; local: the session key). The body is parsed at bounded
//! cost and put onto the `InvokeModel` body with the model's catalog rules
//! ([`crate::convert::messages`]); the dispatch tries the model's routes of a kind this API can use
//! (Bedrock and the direct Anthropic API; OpenAI-compatible endpoints are set aside, listed in the
//! attempts). The answer comes back in Anthropic's format with `x-byollm-route`: the message JSON,
//! or SSE events named as Anthropic names them, with a `ping` whenever the upstream is silent for
//! 15 s, and errors as `{"type":"error","error":{...}}` before and inside streams.
//! `count_tokens` is Bedrock's `CountTokens` over the model's Bedrock routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine;
use bytes::{Bytes, BytesMut};

use super::errors::{self, Shape, write_anthropic_sse_error};
use super::extract::{ApiBody, BodyOwner};
use crate::config::ModelConfig;
use crate::convert::messages::{self, PING, header_betas, to_bedrock_body, write_sse_event};
use crate::dispatch::attempt::{Answer, Payload, Request, attempt, read_count};
use crate::dispatch::failover::{Failure, first_answer};
use crate::dispatch::relay::{self, EventConverter};
use crate::dispatch::{Api, Call, Dispatch, Exchange, Reply};
use crate::error::ApiError;
use crate::routing::policy::valid_model_name;
use crate::routing::{FailureClass, RouteError, Surface};
use crate::wire::bedrock::{Operation, event_usage};
use crate::wire::usage::Usage;

/// `POST /v1/messages`.
pub async fn create_message(State(dispatch): State<Arc<Dispatch>>, headers: HeaderMap, body: ApiBody) -> Response {
    let result =
        dispatch.serve(Api::Messages, "", async |exchange| create(&dispatch, &headers, body, exchange).await).await;
    errors::respond(Shape::Anthropic, result)
}

/// `POST /v1/messages/count_tokens`: Bedrock's `CountTokens` on the foundation model behind the
/// route, with the converted body, over the model's Bedrock routes (failover as for messages);
/// `{"input_tokens": n}`.
pub async fn count_tokens(State(dispatch): State<Arc<Dispatch>>, headers: HeaderMap, body: ApiBody) -> Response {
    let result = dispatch
        .serve(Api::Messages, "count_tokens", async |exchange| count(&dispatch, &headers, body, exchange).await)
        .await;
    errors::respond(Shape::Anthropic, result)
}

/// A parsed request and the `InvokeModel` body every route starts from.
struct Prepared<'a> {
    call: Call,
    name: &'a str,
    model: &'a ModelConfig,
    /// Anthropic on Bedrock, with the model's rules applied.
    body: Bytes,
    /// Its `max_tokens`.
    max_tokens: Option<u64>,
    stream: bool,
}

/// Authenticate, read and parse the request, and build the body; the audit record learns who
/// asked and for which model.
async fn prepare<'a>(
    dispatch: &'a Dispatch,
    headers: &HeaderMap,
    body: ApiBody,
    exchange: &mut Exchange,
) -> Result<Prepared<'a>, ApiError> {
    let call = dispatch.source.call(headers)?;
    exchange.admit(&call).await?;
    let body = body.read(&dispatch.config.server, BodyOwner::of_call(&call)).await?;
    let request = messages::parse(&body)?;
    let stream = request.stream.unwrap_or(false);
    if let Some(record) = exchange.record() {
        record.model = valid_model_name(&request.model).then(|| request.model.clone());
        record.stream = stream;
    }
    // Every model the Messages API can route has a `[models]` entry (its rules); one without is
    // served by OpenAI-compatible endpoints only.
    let Some((name, model)) = crate::models::find_by_name(&dispatch.config.models, &request.model) else {
        let policy = dispatch.routing.policy();
        let error = match policy.resolve(call.scope(), &request.model) {
            Err(error) => error,
            Ok(_) => RouteError::NotOnSurface { model: request.model.clone(), surface: Surface::Messages },
        };
        return Err(error.into());
    };
    let betas = header_betas(headers.get_all("anthropic-beta").iter().filter_map(|v| v.to_str().ok()));
    let upstream = to_bedrock_body(&request, name, &model.rules, &betas)?;
    Ok(Prepared { call, name, model, body: Bytes::from(upstream.bytes), max_tokens: upstream.max_tokens, stream })
}

async fn create(
    dispatch: &Dispatch,
    headers: &HeaderMap,
    body: ApiBody,
    exchange: &mut Exchange,
) -> Result<Reply, ApiError> {
    let prepared = prepare(dispatch, headers, body, exchange).await?;
    let mut failover = dispatch.routing.start_on(prepared.call.scope(), prepared.name, Surface::Messages)?;
    let payload = Payload::Model {
        invoke: Some(&prepared.body),
        openai: None,
        max_tokens: prepared.max_tokens,
        stream: prepared.stream,
        public_model: prepared.name,
    };
    let request = &Request { call: &prepared.call, headers, payload };
    let (route, answer) = first_answer(&mut failover, exchange, request, |policy, route| async move {
        let result = attempt(dispatch, request, &policy, &route).await;
        (route, result)
    })
    .await?;
    let reply = match answer {
        Answer::Message(message) => {
            exchange.set_usage(message_usage(&message).unwrap_or_default());
            Reply::relayed_json(message)
        }
        Answer::Events(events) => {
            Reply::event_stream(relay::events(events, MessagesEvents::default(), exchange.take(), PING))
        }
        _ => return Err(ApiError::internal("an answer the Messages API cannot relay")),
    };
    Ok(reply.with_route(&route))
}

/// The `usage` of a message object.
fn message_usage(message: &[u8]) -> Option<Usage> {
    let mut wrapped = Vec::with_capacity(message.len() + 32);
    wrapped.extend_from_slice(b"{\"message\":");
    wrapped.extend_from_slice(message);
    wrapped.push(b'}');
    event_usage(&wrapped)
}

/// Anthropic events relayed as Anthropic SSE events, their usage read on the way.
#[derive(Default)]
struct MessagesEvents {
    usage: Usage,
    complete: bool,
}

impl EventConverter for MessagesEvents {
    fn push(&mut self, event: &[u8], out: &mut BytesMut) -> Result<(), ApiError> {
        if let Some(found) = event_usage(event) {
            self.usage.merge(found);
        }
        self.complete |= write_sse_event(event, out);
        Ok(())
    }

    fn completed(&self) -> bool {
        self.complete
    }

    fn finish(&mut self, _out: &mut BytesMut) {}

    fn error(&mut self, error: &ApiError, out: &mut BytesMut) {
        write_anthropic_sse_error(error, out);
    }

    fn usage(&self) -> Usage {
        self.usage
    }
}

async fn count(
    dispatch: &Dispatch,
    headers: &HeaderMap,
    body: ApiBody,
    exchange: &mut Exchange,
) -> Result<Reply, ApiError> {
    let prepared = prepare(dispatch, headers, body, exchange).await?;
    let mut failover = dispatch.routing.start_on(prepared.call.scope(), prepared.name, Surface::BedrockOnly)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&prepared.body);
    let count_body = Bytes::from(serde_json::json!({"input": {"invokeModel": {"body": encoded}}}).to_string());
    let mut forward = HeaderMap::new();
    forward.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let payload = Payload::Bedrock {
        operation: Operation::CountTokens,
        model: prepared.model,
        headers: &forward,
        body: &count_body,
    };
    let request = &Request { call: &prepared.call, headers, payload };
    let (route, input_tokens) = first_answer(&mut failover, exchange, request, |policy, route| async move {
        let result = match attempt(dispatch, request, &policy, &route).await {
            Ok(Answer::Raw(answer)) => read_count(answer).await,
            Ok(_) => Err(Failure::new(FailureClass::Request, ApiError::internal("count_tokens got another answer"))),
            Err(failure) => Err(failure),
        };
        (route, result)
    })
    .await?;
    Ok(Reply::json_of(&serde_json::json!({"input_tokens": input_tokens}))?.with_route(&route))
}
