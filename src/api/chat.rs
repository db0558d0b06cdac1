//! `POST /v1/chat/completions`: OpenAI chat completions, streamed as SSE or not.
//!
//! The surface reads what routing needs (the model, whether to stream), converts the body for
//! Bedrock and Anthropic routes (pure, [`crate::convert::request`], the model's catalog rules),
//! hands the request to the dispatch ([`crate::dispatch`]: routes, attempts, failover, the audit
//! record) and renders what answered: an Anthropic message as a `chat.completion`, Anthropic
//! events as `chat.completion.chunk` lines ([`StreamConverter`]), an OpenAI-compatible endpoint's
//! answer as it came. Refusals take OpenAI's error shape.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::errors::{self, Shape, write_openai_sse_error};
use super::extract::{ApiBody, BodyOwner};
use crate::convert::request::{Target, parse_request, place_breakpoints, to_anthropic};
use crate::convert::response::{to_chat_completion, upstream_error};
use crate::convert::stream::StreamConverter;
use crate::dispatch::attempt::{Answer, Payload, Request, attempt};
use crate::dispatch::failover::first_answer;
use crate::dispatch::relay::{self, EventConverter};
use crate::dispatch::{Api, Dispatch, Exchange, Reply};
use crate::error::ApiError;
use crate::routing::Upstream;
use crate::routing::policy::valid_model_name;
use crate::wire::anthropic::AnthropicResponse;
use crate::wire::openai::PARSED_ITEM_BYTES;
use crate::wire::usage::Usage;

/// An SSE comment line: SSE parsers (OpenAI's SDKs among them) skip it.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// `POST /v1/chat/completions`.
pub async fn chat_completions(State(dispatch): State<Arc<Dispatch>>, headers: HeaderMap, body: ApiBody) -> Response {
    let result =
        dispatch.serve(Api::Chat, "", async |exchange| complete(&dispatch, &headers, body, exchange).await).await;
    errors::respond(Shape::OpenAi, result)
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

/// Serve one chat completion through the routes of its model.
async fn complete(
    dispatch: &Dispatch,
    headers: &HeaderMap,
    body: ApiBody,
    exchange: &mut Exchange,
) -> Result<Reply, ApiError> {
    let call = dispatch.source.call(headers)?;
    exchange.admit(&call).await?;
    // Holds its share of the body budget until an upstream answered (the end of this function).
    let mut client_body = body.read(&dispatch.config.server, BodyOwner::of_call(&call)).await?;
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
    if let Some(record) = exchange.record() {
        record.model = Some(model.clone());
        record.stream = stream;
    }
    let mut failover = dispatch.routing.start(call.scope(), &model)?;

    // Bedrock and Anthropic routes need the conversion (and the model's rules).
    let converts = failover.pending().any(|route| !matches!(route.upstream, Upstream::OpenAi(_)));
    let request = if converts { Some(parse_request(&client_body)?) } else { None };
    if let Some(request) = &request {
        // The parsed request and its conversion are held while the answer is served.
        client_body.charge(request.parsed_items.saturating_mul(PARSED_ITEM_BYTES)).await?;
    }
    let model_config = crate::models::find_by_name(&dispatch.config.models, &model);
    let mut prepared = match (&request, model_config) {
        (Some(request), Some((name, config))) => Some(to_anthropic(request, Target { name, rules: &config.rules })?),
        _ => None,
    };
    if let (Some(prepared), Some((_, config)), Some(ttl)) =
        (&mut prepared, model_config, failover.policy.prompt_cache(call.scope(), &model))
    {
        place_breakpoints(&mut prepared.body, &config.rules, ttl);
    }
    let converted = match &prepared {
        Some(prepared) => Some(Bytes::from(
            serde_json::to_vec(&prepared.body).map_err(|_| ApiError::internal("could not encode the request"))?,
        )),
        None => None,
    };
    // The output the request may produce: as converted for Claude, else as the client asked
    // (an OpenAI-compatible route; `None` reserves the default).
    let max_tokens = match (&prepared, &request) {
        (Some(prepared), _) => Some(u64::from(prepared.body.max_tokens)),
        (None, Some(request)) => request.max_completion_tokens.or(request.max_tokens).map(u64::from),
        (None, None) => None,
    };
    let payload = Payload::Model {
        invoke: converted.as_ref(),
        openai: Some(&client_body.bytes),
        max_tokens,
        stream,
        public_model: &model,
    };
    let request = &Request { call: &call, headers, payload };
    let (route, answer) = first_answer(&mut failover, exchange, request, |policy, route| async move {
        let result = attempt(dispatch, request, &policy, &route).await;
        (route, result)
    })
    .await?;

    let id = completion_id();
    let created = crate::issuer::unix_now();
    let reply = match answer {
        Answer::Message(bytes) => {
            let message: AnthropicResponse = serde_json::from_slice(&bytes).map_err(|error| {
                // The serde message can quote model output: log only where it failed.
                tracing::warn!(category = ?error.classify(), line = error.line(), column = error.column(), "undecodable model answer");
                upstream_error("api_error", "the model's answer could not be decoded")
            })?;
            exchange.set_usage(Usage::from(&message.usage));
            if let Some(record) = exchange.record() {
                record.id = Some(id.clone());
            }
            let response_tool = prepared.as_ref().and_then(|p| p.response_tool);
            Reply::json_of(&to_chat_completion(&message, id, created, model.clone(), response_tool))?
        }
        Answer::Completion { body, usage } => {
            exchange.set_usage(usage.unwrap_or_default());
            Reply::relayed_json(body)
        }
        Answer::Events(events) => {
            let Some(prepared) = &prepared else {
                return Err(ApiError::internal("a converted route answered without a converted request"));
            };
            if let Some(record) = exchange.record() {
                record.id = Some(id.clone());
            }
            let converter = StreamConverter::new(&id, created, &model, prepared.include_usage)
                .with_response_tool(prepared.response_tool);
            Reply::event_stream(relay::events(events, ChatChunks(converter), exchange.take(), KEEP_ALIVE))
        }
        Answer::CompletionStream(stream) => {
            Reply::event_stream(relay::passthrough(stream, exchange.take(), write_openai_sse_error, KEEP_ALIVE))
        }
        Answer::Raw(_) => return Err(ApiError::internal("a relayed answer reached the chat API")),
    };
    Ok(reply.with_route(&route))
}

/// Anthropic events as `chat.completion.chunk` lines.
struct ChatChunks(StreamConverter);

impl EventConverter for ChatChunks {
    fn push(&mut self, event: &[u8], out: &mut BytesMut) -> Result<(), ApiError> {
        self.0.push(event, out)
    }

    fn completed(&self) -> bool {
        self.0.completed()
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.0.finish(out);
    }

    fn error(&mut self, error: &ApiError, out: &mut BytesMut) {
        self.0.error(error, out);
    }

    fn usage(&self) -> Usage {
        Usage::from(self.0.usage())
    }
}

/// `chatcmpl-` and 24 random hex digits.
fn completion_id() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    format!("chatcmpl-{}", crate::identity::auth::hex(&bytes))
}
