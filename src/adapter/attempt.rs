//! One attempt on a route, the parts the chat API and the Messages API share: the key the direct
//! Anthropic route uses (the request's `x-byollm-anthropic-key`, else the configured one) and the
//! call itself, with its failure classed for failover; header keys read as secrets; an upstream's
//! limits. Keys a request brings are used for that call only and never logged.
//!
//! Must never: decide routes (that is [`crate::routing`]) or shape an answer for a client.

use axum::http::HeaderMap;

use crate::error::ApiError;
use crate::routing::failover::class_of_anthropic;
use crate::routing::policy::HttpUpstream;
use crate::routing::{AnthropicRoute, FailureClass, RoutingPolicy};
use crate::secret::Secret;
use crate::upstream::anthropic::{self, AnthropicAnswer, AnthropicCall, messages_body};
use crate::upstream::direct::{DirectClient, Limits};

/// A request's own Anthropic API key, for the direct Anthropic route.
pub const HEADER_ANTHROPIC_KEY: &str = "x-byollm-anthropic-key";

/// A failed attempt: how failover classes it, and the error for the client.
pub type AttemptError = (FailureClass, ApiError);

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

/// The connect, total and size limits of a configured upstream.
pub fn limits_of(http: &HttpUpstream) -> Limits {
    Limits {
        connect_timeout: http.connect_timeout,
        total_timeout: http.timeout,
        max_response_bytes: http.max_response_bytes,
    }
}

/// The key for the Anthropic route, and whether the request brought it.
fn anthropic_key(headers: &HeaderMap, policy: &RoutingPolicy) -> Result<(Secret, bool), AttemptError> {
    match header_secret(headers, HEADER_ANTHROPIC_KEY) {
        Err(error) => Err((FailureClass::Request, error)),
        Ok(Some(key)) => Ok((key, true)),
        Ok(None) => match &policy.anthropic.key {
            Some(key) => Ok((key.clone(), false)),
            None => {
                let error = ApiError::invalid_request(
                    HEADER_ANTHROPIC_KEY,
                    "anthropic_key_missing",
                    "the Anthropic route needs a key: send x-byollm-anthropic-key (or the operator sets routing.anthropic.api_key_env)",
                );
                Err((FailureClass::ClientKey, error))
            }
        },
    }
}

/// Call the direct Anthropic API for `route` with an `InvokeModel` body (Anthropic on Bedrock,
/// the model's rules applied), up to the start of its answer. Returns the answer and whether the
/// key came from the request (so a refusal of it is the client's to fix).
pub async fn anthropic(
    direct: &DirectClient,
    policy: &RoutingPolicy,
    headers: &HeaderMap,
    route: &AnthropicRoute,
    bedrock_body: &[u8],
    stream: bool,
    team: Option<std::sync::Arc<str>>,
) -> Result<(AnthropicAnswer, bool), AttemptError> {
    let (key, key_from_request) = anthropic_key(headers, policy)?;
    let Some(base_url) = &policy.anthropic.base_url else {
        return Err((FailureClass::Refused, ApiError::internal("routing.anthropic.base_url is not set")));
    };
    let body = messages_body(bedrock_body, &route.model, stream)
        .map_err(|f| (class_of_anthropic(&f), f.to_api_error(&route.model, key_from_request)))?;
    let request = AnthropicCall {
        base_url,
        key: &key,
        policy: policy.anthropic.egress(policy.mode),
        limits: limits_of(&policy.anthropic),
        team,
        body,
        stream,
    };
    match anthropic::send(direct, request).await {
        Ok(answer) => Ok((answer, key_from_request)),
        Err(failure) => {
            let class = match class_of_anthropic(&failure) {
                // The request's own key was refused: not the route's fault.
                FailureClass::Credentials if key_from_request => FailureClass::ClientKey,
                class => class,
            };
            Err((class, failure.to_api_error(&route.model, key_from_request)))
        }
    }
}
