//! One attempt on one route, up to the start of its answer: the only place each kind of upstream
//! call is made — Bedrock's `InvokeModel*` with a converted body, Bedrock's own operations with
//! the client's bytes re-signed (the native relay, `CountTokens`), the direct Anthropic API, and
//! an OpenAI-compatible endpoint — with the route's credentials fetched once for every Bedrock
//! call ([`route_credentials`]) and every failure classed for failover.
//!
//! Keys a request brings (`x-byollm-anthropic-key`, `x-byollm-endpoint-key`) are used for that
//! call only and never logged. Must never: decide routes (that is [`crate::routing`]) or shape an
//! answer for a client.

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;

use super::Dispatch;
use super::context::Call;
use super::events::Events;
use super::failover::{Failure, Refusal};
use super::target::foundation_model_id;
use crate::aws::AwsCredentials;
use crate::config::ModelConfig;
use crate::error::{ApiError, ErrorKind};
use crate::routing::failover::{class_of_anthropic, class_of_bedrock, class_of_openai};
use crate::routing::policy::HttpUpstream;
use crate::routing::{AnthropicRoute, BedrockRoute, FailureClass, Mode, OpenAiRoute, Route, RoutingPolicy, Upstream};
use crate::secret::Secret;
use crate::upstream::anthropic::{self, AnthropicAnswer, AnthropicCall, messages_body};
use crate::upstream::buffered::BufferedAnswer;
use crate::upstream::direct::Limits;
use crate::upstream::openai_compat::{self, OpenAiAnswer, OpenAiCall, OpenAiStream};
use crate::upstream::{BedrockFailure, RawRequest, RawResponse, egress, model_path};
use crate::wire::bedrock::Operation;
use crate::wire::usage::Usage;

/// A request's own Anthropic API key, for the direct Anthropic route.
pub const HEADER_ANTHROPIC_KEY: &str = "x-byollm-anthropic-key";
/// A request's own base URL and key, for an endpoint configured with `per_request = true`.
pub const HEADER_ENDPOINT_URL: &str = "x-byollm-endpoint-url";
pub const HEADER_ENDPOINT_KEY: &str = "x-byollm-endpoint-key";

/// Largest Bedrock error body read (Bedrock's are a few hundred bytes).
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// What a request sends to a route.
pub enum Payload<'a> {
    /// A model request: the `InvokeModel` body (Anthropic on Bedrock, the model's rules applied)
    /// for Bedrock and Anthropic routes, and the client's own OpenAI body for endpoint routes.
    /// `max_tokens`: the output it asks for, as the surface read it (the limits reserve it).
    Model {
        invoke: Option<&'a Bytes>,
        openai: Option<&'a Bytes>,
        max_tokens: Option<u64>,
        stream: bool,
        public_model: &'a str,
    },
    /// A Bedrock operation of the client's, relayed: its bytes and forwarded headers, re-signed.
    Bedrock { operation: Operation, model: &'a ModelConfig, headers: &'a HeaderMap, body: &'a Bytes },
}

/// One request as every attempt on it needs it.
pub struct Request<'a> {
    pub call: &'a Call,
    /// The client's headers (keys and URLs a request brings for its route).
    pub headers: &'a HeaderMap,
    pub payload: Payload<'a>,
}

/// What an attempt produced once its upstream accepted the request.
pub enum Answer {
    /// An Anthropic `message` (Bedrock `InvokeModel` or the Anthropic API), read whole within
    /// the answer budget.
    Message(BufferedAnswer),
    /// Anthropic stream events.
    Events(Events),
    /// An OpenAI-compatible endpoint's `chat.completion`, as it sent it.
    Completion { body: BufferedAnswer, usage: Option<Usage> },
    /// An OpenAI-compatible endpoint's stream.
    CompletionStream(OpenAiStream),
    /// Bedrock accepted a relayed operation: status 2xx, body unread.
    Raw(RawResponse),
}

/// Try `route` for `request`, up to the start of its answer.
pub async fn attempt(
    dispatch: &Dispatch,
    request: &Request<'_>,
    policy: &RoutingPolicy,
    route: &Route,
) -> Result<Answer, Failure> {
    match (&route.upstream, &request.payload) {
        (Upstream::Bedrock(bedrock), Payload::Model { invoke: Some(body), stream, .. }) => {
            invoke_bedrock(dispatch, request.call, bedrock, body, *stream).await
        }
        (Upstream::Bedrock(bedrock), Payload::Bedrock { operation, model, headers, body }) => {
            let model_id = match operation {
                Operation::CountTokens => foundation_model_id(model, &bedrock.model_id),
                _ => &bedrock.model_id,
            };
            let raw = BedrockOperation { operation: *operation, model_id, headers, body };
            relay_bedrock(dispatch, request.call, bedrock, raw).await.map(Answer::Raw)
        }
        (Upstream::Anthropic(anthropic), Payload::Model { invoke: Some(body), stream, .. }) => {
            call_anthropic(dispatch, policy, request, anthropic, body, *stream).await
        }
        (Upstream::OpenAi(openai), Payload::Model { openai: Some(body), public_model, .. }) => {
            call_openai(dispatch, policy, request, openai, body, public_model).await
        }
        // Routes a surface cannot use are set aside by `Routing::start_on`; never reached.
        _ => Err(Failure::new(FailureClass::Request, ApiError::internal("a route this request cannot use"))),
    }
}

/// The one prologue of every Bedrock call: the route's credentials and region.
async fn route_credentials(
    dispatch: &Dispatch,
    call: &Call,
    route: &BedrockRoute,
) -> Result<(AwsCredentials, String), Failure> {
    dispatch
        .source
        .credentials(call, route.role.as_ref(), route.region.as_deref())
        .await
        .map_err(|error| Failure::new(credentials_class(&error), error))
}

/// How a failure to get a route's credentials fails over: STS throttling as throttling, an STS
/// outage as not the route's fault, anything else (a refused role, a bad trust policy) as the
/// route's credentials.
fn credentials_class(error: &ApiError) -> FailureClass {
    match error.code {
        crate::broker::STS_THROTTLED => FailureClass::Throttled,
        crate::broker::STS_UNAVAILABLE => FailureClass::StsUnavailable,
        _ => FailureClass::Credentials,
    }
}

/// A Bedrock failure, classed for failover, with the error for the client.
fn bedrock_failure(dispatch: &Dispatch, failure: &BedrockFailure, action: &str, model_id: &str) -> Failure {
    let error = dispatch.source.bedrock_error(failure, action, model_id);
    Failure::new(class_of_bedrock(failure, error.status.as_u16()), error)
}

/// `InvokeModel` or `InvokeModelWithResponseStream` with a converted body.
async fn invoke_bedrock(
    dispatch: &Dispatch,
    call: &Call,
    route: &BedrockRoute,
    body: &Bytes,
    stream: bool,
) -> Result<Answer, Failure> {
    let (credentials, region) = route_credentials(dispatch, call, route).await?;
    let model_id = &route.model_id;
    if stream {
        let action = "bedrock:InvokeModelWithResponseStream";
        let events = dispatch
            .bedrock
            .invoke_stream(&region, model_id, body.clone(), &credentials)
            .await
            .map_err(|f| bedrock_failure(dispatch, &f, action, model_id))?;
        return Ok(Answer::Events(Events::Bedrock { events, model_id: model_id.clone() }));
    }
    let message = dispatch
        .bedrock
        .invoke(&region, model_id, body.clone(), &credentials)
        .await
        .map_err(|f| bedrock_failure(dispatch, &f, "bedrock:InvokeModel", model_id))?;
    Ok(Answer::Message(message))
}

/// A Bedrock operation of the client's, for [`relay_bedrock`].
pub struct BedrockOperation<'a> {
    pub operation: Operation,
    /// What is invoked on this route.
    pub model_id: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

/// The client's bytes re-signed for the route's model, region and credentials, up to Bedrock's
/// status. A refusal is read whole (it is small) and travels with the failure, to be relayed as
/// Bedrock sent it when it is the answer.
async fn relay_bedrock(
    dispatch: &Dispatch,
    call: &Call,
    route: &BedrockRoute,
    raw: BedrockOperation<'_>,
) -> Result<RawResponse, Failure> {
    let (credentials, region) = route_credentials(dispatch, call, route).await?;
    let action = raw.operation.iam_action();
    let path = model_path(raw.model_id, raw.operation.path_segment());
    let request = RawRequest {
        region: &region,
        method: Method::POST,
        path_and_query: &path,
        headers: raw.headers.clone(),
        body: raw.body.clone(),
    };
    let answer = dispatch
        .bedrock
        .send(request, &credentials)
        .await
        .map_err(|f| bedrock_failure(dispatch, &f, action, raw.model_id))?;
    if answer.status.is_success() {
        return Ok(answer);
    }
    let body = match http_body_util::Limited::new(answer.body, MAX_ERROR_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let failure = crate::upstream::error::failure_from_response(&answer.headers, &body);
    let mut refused = bedrock_failure(dispatch, &failure, action, raw.model_id);
    tracing::info!(status = answer.status.as_u16(), code = %failure.code, route = %route.model_id, "bedrock refused a call");
    refused.refusal =
        Some(Box::new(Refusal { status: answer.status, headers: answer.headers, body, code: refused.error.code }));
    Err(refused)
}

/// A key sent in a header: visible ASCII, bounded.
pub fn header_secret(headers: &HeaderMap, name: &'static str) -> Result<Option<Secret>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let ok = !value.is_empty() && value.len() <= 4096 && value.as_bytes().iter().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(ApiError::invalid_request(
            name,
            "invalid_key",
            format!("{name} must be 1-4096 visible ASCII characters"),
        ));
    }
    Ok(value.to_str().ok().map(Secret::new))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The connect, total and size limits of a configured upstream.
pub fn limits_of(http: &HttpUpstream) -> Limits {
    Limits {
        connect_timeout: http.connect_timeout,
        total_timeout: http.timeout,
        max_response_bytes: http.max_response_bytes,
    }
}

/// The key for the Anthropic route, and whether the request brought it.
fn anthropic_key(headers: &HeaderMap, policy: &RoutingPolicy) -> Result<(Secret, bool), Failure> {
    match header_secret(headers, HEADER_ANTHROPIC_KEY) {
        Err(error) => Err(Failure::new(FailureClass::Request, error)),
        Ok(Some(key)) => Ok((key, true)),
        Ok(None) => match &policy.anthropic.key {
            Some(key) => Ok((key.clone(), false)),
            None => {
                let error = ApiError::invalid_request(
                    HEADER_ANTHROPIC_KEY,
                    "anthropic_key_missing",
                    "the Anthropic route needs a key: send x-byollm-anthropic-key (or the operator sets routing.anthropic.api_key_env)",
                );
                Err(Failure::new(FailureClass::ClientKey, error))
            }
        },
    }
}

/// The direct Anthropic API with an `InvokeModel` body (its Bedrock specifics moved into
/// headers, the model renamed).
async fn call_anthropic(
    dispatch: &Dispatch,
    policy: &RoutingPolicy,
    request: &Request<'_>,
    route: &AnthropicRoute,
    bedrock_body: &[u8],
    stream: bool,
) -> Result<Answer, Failure> {
    let (key, key_from_request) = anthropic_key(request.headers, policy)?;
    let Some(base_url) = &policy.anthropic.base_url else {
        return Err(Failure::new(FailureClass::Refused, ApiError::internal("routing.anthropic.base_url is not set")));
    };
    let body = messages_body(bedrock_body, &route.model, stream)
        .map_err(|f| Failure::new(class_of_anthropic(&f), f.to_api_error(&route.model, key_from_request)))?;
    let call = AnthropicCall {
        base_url,
        key: &key,
        policy: policy.anthropic.egress(policy.mode),
        limits: limits_of(&policy.anthropic),
        team: request.call.team(),
        body,
        stream,
    };
    match anthropic::send(&dispatch.direct, call).await {
        Ok(AnthropicAnswer::Message(bytes)) => Ok(Answer::Message(bytes)),
        Ok(AnthropicAnswer::Stream(events)) => {
            Ok(Answer::Events(Events::anthropic(events, route.model.clone(), key_from_request)))
        }
        Err(failure) => {
            let class = match class_of_anthropic(&failure) {
                // The request's own key was refused: not the route's fault.
                FailureClass::Credentials if key_from_request => FailureClass::ClientKey,
                class => class,
            };
            Err(Failure::new(class, failure.to_api_error(&route.model, key_from_request)))
        }
    }
}

/// The egress rules for a URL the request named: the strict ones, whatever the endpoint allows.
fn strict_egress(mode: Mode) -> egress::EgressPolicy {
    match mode {
        Mode::Local => egress::EgressPolicy::Local,
        Mode::Hosted => egress::EgressPolicy::Hosted { allow_http: false },
    }
}

/// An OpenAI-compatible endpoint with the client's own body, the model renamed.
async fn call_openai(
    dispatch: &Dispatch,
    policy: &RoutingPolicy,
    request: &Request<'_>,
    route: &OpenAiRoute,
    client_body: &Bytes,
    public_model: &str,
) -> Result<Answer, Failure> {
    let Some(endpoint) = policy.endpoints.get(&route.endpoint) else {
        return Err(Failure::new(
            FailureClass::Refused,
            ApiError::internal("the route names an endpoint that is gone"),
        ));
    };
    let headers = request.headers;
    let (base_url, url_from_request) = if endpoint.per_request {
        let Some(raw) = header_str(headers, HEADER_ENDPOINT_URL) else {
            let error = ApiError::invalid_request(
                HEADER_ENDPOINT_URL,
                "endpoint_url_missing",
                format!("endpoint {:?} takes its URL from the {HEADER_ENDPOINT_URL} header", route.endpoint),
            );
            return Err(Failure::new(FailureClass::Request, error));
        };
        match egress::check_url(raw, strict_egress(policy.mode)) {
            Ok(url) => (url, true),
            Err(error) => {
                let error = ApiError::forbidden("egress_refused", format!("{HEADER_ENDPOINT_URL}: {error}"))
                    .with_param(HEADER_ENDPOINT_URL);
                return Err(Failure::new(FailureClass::Request, error));
            }
        }
    } else {
        match &endpoint.http.base_url {
            Some(url) => (url.clone(), false),
            None => {
                return Err(Failure::new(FailureClass::Refused, ApiError::internal("the endpoint has no base_url")));
            }
        }
    };
    let egress_policy = if url_from_request { strict_egress(policy.mode) } else { endpoint.http.egress(policy.mode) };
    let (key, key_from_request) = match header_secret(headers, HEADER_ENDPOINT_KEY) {
        Err(error) => return Err(Failure::new(FailureClass::Request, error)),
        Ok(Some(key)) => (Some(key), true),
        Ok(None) => (endpoint.http.key.clone(), false),
    };
    let body = openai_compat::prepare_body(client_body, &route.model, &endpoint.fields).map_err(|f| {
        dispatch.metrics.count_refused_fields(&route.endpoint, &f);
        Failure::new(class_of_openai(&f), f.to_api_error(&route.endpoint, public_model, false))
    })?;
    let call = OpenAiCall {
        base_url: &base_url,
        key: key.as_ref(),
        policy: egress_policy,
        limits: limits_of(&endpoint.http),
        team: request.call.team(),
        url_from_request,
        body,
    };
    match openai_compat::send(&dispatch.direct, call).await {
        Ok(OpenAiAnswer::Completion { body, usage }) => Ok(Answer::Completion { body, usage: usage.map(Usage::from) }),
        Ok(OpenAiAnswer::Stream(stream)) => Ok(Answer::CompletionStream(stream)),
        Err(failure) => {
            let mut class = class_of_openai(&failure);
            if url_from_request && class == FailureClass::Refused {
                // The request named where to go: its fault, not the route's.
                class = FailureClass::Request;
            }
            if key_from_request && class == FailureClass::Credentials {
                class = FailureClass::ClientKey;
            }
            Err(Failure::new(class, failure.to_api_error(&route.endpoint, &route.model, key_from_request)))
        }
    }
}

/// Largest `CountTokens` answer read.
const MAX_COUNT_ANSWER: usize = 64 * 1024;

/// The `inputTokens` of Bedrock's `CountTokens` answer; an answer that cannot be read is the
/// route's failure (the next route is tried).
pub async fn read_count(answer: RawResponse) -> Result<u64, Failure> {
    let unreadable = |what: &str| {
        let error = ApiError::new(
            http::StatusCode::BAD_GATEWAY,
            ErrorKind::Upstream,
            "bedrock_error",
            format!("{what} answer from Bedrock"),
        );
        Failure::new(FailureClass::Upstream, error)
    };
    let bytes = http_body_util::Limited::new(answer.body, MAX_COUNT_ANSWER)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| unreadable("unreadable"))?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Counted {
        input_tokens: u64,
    }
    let counted: Counted = serde_json::from_slice(&bytes).map_err(|_| unreadable("unexpected"))?;
    Ok(counted.input_tokens)
}
