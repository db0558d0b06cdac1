//! The direct Anthropic API (`POST <base>/v1/messages`), behind the egress guard.
//!
//! The body is the one the adapter builds for Bedrock, minus the Bedrock specifics: `model` goes
//! into the body, `anthropic_version` becomes the `anthropic-version` header, `anthropic_beta`
//! becomes the `anthropic-beta` header, and a stream is asked for with `"stream": true` and comes
//! back as server-sent events carrying the same Anthropic events Bedrock wraps in event-stream
//! frames. The key (configured, or the request's `x-byollm-anthropic-key`) is used for this call
//! only: it is never logged, stored or put into an error.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::buffered::BufferedAnswer;
use super::direct::{DirectClient, DirectError, DirectRequest, Limits};
use super::egress::EgressPolicy;
use super::sse::SseReader;
use crate::error::{ApiError, ErrorKind};
use crate::secret::{self, Secret};

/// The API version byollm speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Largest error body read.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// Longest upstream error message passed on, in characters.
const MAX_MESSAGE_CHARS: usize = 512;
/// Most betas a request may carry.
const MAX_BETAS: usize = 32;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const ANTHROPIC_VERSION_HEADER: HeaderName = HeaderName::from_static("anthropic-version");
const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// A Messages API body made from a Bedrock `InvokeModel` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagesBody {
    pub body: Bytes,
    pub betas: Vec<String>,
}

/// Turn an `InvokeModel` body (Anthropic on Bedrock) into a Messages API body for `model`.
/// Only the top level is parsed; nested values pass through as raw JSON.
pub fn messages_body(bedrock_body: &[u8], model: &str, stream: bool) -> Result<MessagesBody, AnthropicFailure> {
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(bedrock_body)
        .map_err(|_| AnthropicFailure::Body("the request body is not a JSON object"))?;
    fields.remove("anthropic_version");
    let betas = match fields.remove("anthropic_beta") {
        None => Vec::new(),
        Some(raw) => {
            let betas: Vec<String> = serde_json::from_str(raw.get())
                .map_err(|_| AnthropicFailure::Body("anthropic_beta must be a list of strings"))?;
            if betas.len() > MAX_BETAS
                || betas.iter().any(|b| {
                    b.is_empty() || !b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
                })
            {
                return Err(AnthropicFailure::Body("anthropic_beta holds a value that is not a beta name"));
            }
            betas
        }
    };
    let model = serde_json::to_string(model).map_err(|_| AnthropicFailure::Body("the model name is not valid"))?;
    fields.insert(
        "model".into(),
        RawValue::from_string(model).map_err(|_| AnthropicFailure::Body("the model name is not valid"))?,
    );
    if stream {
        fields.insert(
            "stream".into(),
            RawValue::from_string("true".into()).map_err(|_| AnthropicFailure::Body("stream"))?,
        );
    } else {
        fields.remove("stream");
    }
    let body =
        serde_json::to_vec(&fields).map_err(|_| AnthropicFailure::Body("the request body could not be encoded"))?;
    Ok(MessagesBody { body: Bytes::from(body), betas })
}

/// Why a call failed. Holds no key and no URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnthropicFailure {
    /// The body could not be turned into a Messages API body (a bug or a bad request).
    Body(&'static str),
    /// No connection, a refused address, a redirect, a timeout, a broken or oversized answer.
    Transport(DirectError),
    /// The API answered an error: `{"type":"error","error":{"type","message"}}`.
    Api { status: u16, error_type: String, message: String, retry_after: Option<u64> },
}

impl fmt::Display for AnthropicFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnthropicFailure::Body(what) => f.write_str(what),
            AnthropicFailure::Transport(error) => write!(f, "{error}"),
            AnthropicFailure::Api { status, error_type, message, .. } => {
                write!(f, "the Anthropic API answered {status} {error_type}: {message}")
            }
        }
    }
}

impl AnthropicFailure {
    /// The error for the client. `key_from_request`: the key came in `x-byollm-anthropic-key`
    /// (so a refused key is the client's to fix).
    pub fn to_api_error(&self, model: &str, key_from_request: bool) -> ApiError {
        let (status, error_type, message, retry_after) = match self {
            AnthropicFailure::Body(what) => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorKind::InvalidRequest,
                    "anthropic_request_invalid",
                    *what,
                );
            }
            AnthropicFailure::Transport(error) => return error.to_api_error("the Anthropic API"),
            AnthropicFailure::Api { status, error_type, message, retry_after } => {
                (*status, error_type.as_str(), message, *retry_after)
            }
        };
        let said = if message.is_empty() { error_type.to_owned() } else { message.clone() };
        match error_type {
            "rate_limit_error" => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::RateLimit,
                "anthropic_rate_limited",
                format!("the Anthropic API is rate limiting requests to {model}; retry after a short wait ({said})"),
            )
            .with_retry_after(retry_after.unwrap_or(2)),
            "overloaded_error" => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Upstream,
                "anthropic_overloaded",
                format!("the Anthropic API is overloaded; retry shortly ({said})"),
            )
            .with_retry_after(retry_after.unwrap_or(2)),
            "authentication_error" if key_from_request => ApiError::invalid_request(
                "x-byollm-anthropic-key",
                "anthropic_key_refused",
                "the Anthropic API refused the key in x-byollm-anthropic-key: send a valid Anthropic API key",
            ),
            "authentication_error" => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::Upstream,
                "anthropic_key_refused",
                "the Anthropic API refused the gateway's key (routing.anthropic): the operator must replace it",
            ),
            "permission_error" => ApiError::forbidden(
                "anthropic_permission_denied",
                format!("the Anthropic API key may not use {model} ({said})"),
            ),
            "not_found_error" => ApiError::not_found(
                "anthropic_model_not_found",
                format!("the Anthropic API does not serve {model} to this key ({said})"),
            ),
            "billing_error" => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                ErrorKind::Billing,
                "anthropic_billing",
                format!("the Anthropic account cannot pay for this request ({said})"),
            ),
            _ if status >= 500 || status == 0 => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::Upstream,
                "anthropic_error",
                format!("the Anthropic API failed: {error_type}: {said}"),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidRequest,
                "anthropic_invalid_request",
                format!("the Anthropic API refused the request: {said}"),
            ),
        }
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

/// Read an Anthropic error body; anything else becomes an `api_error` named by its status. The
/// message is kept (it tells the client what to fix) with any copy of `secrets` (the key) scrubbed,
/// and an error type that is not a short identifier becomes `api_error`.
pub fn failure_from_body(status: u16, headers: &HeaderMap, body: &[u8], secrets: &[&str]) -> AnthropicFailure {
    let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let (error_type, message) = match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => (envelope.error.kind, envelope.error.message),
        Err(_) => ("api_error".to_owned(), format!("HTTP {status}")),
    };
    let identifier = error_type.len() <= 64 && error_type.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let error_type = if identifier { error_type } else { "api_error".to_owned() };
    let message = secret::redact_then_cut(&message, secrets, MAX_MESSAGE_CHARS);
    AnthropicFailure::Api { status, error_type, message, retry_after }
}

/// One call.
#[derive(Debug)]
pub struct AnthropicCall<'a> {
    pub base_url: &'a url::Url,
    pub key: &'a Secret,
    pub policy: EgressPolicy,
    pub limits: Limits,
    /// Whose request this is (the team uid), for the host lookup's share; `None` in local mode.
    pub team: Option<Arc<str>>,
    pub body: MessagesBody,
    pub stream: bool,
}

/// An answer that started.
#[derive(Debug)]
pub enum AnthropicAnswer {
    /// The `message` JSON, read whole (charged to the answer budget until dropped).
    Message(BufferedAnswer),
    /// The events of a stream.
    Stream(AnthropicEvents),
}

/// The Anthropic events of a streamed answer, as JSON, in order.
#[derive(Debug)]
pub struct AnthropicEvents {
    sse: SseReader,
}

impl AnthropicEvents {
    /// The next event's JSON; `None` at the end. An `error` event is a failure.
    pub async fn next_event(&mut self) -> Result<Option<Bytes>, AnthropicFailure> {
        loop {
            let Some(event) = self.sse.next().await.map_err(AnthropicFailure::Transport)? else {
                return Ok(None);
            };
            if event.name.as_deref() == Some("error") {
                return Err(failure_from_body(0, &HeaderMap::new(), &event.data, &[]));
            }
            if event.data.is_empty() {
                continue;
            }
            return Ok(Some(event.data));
        }
    }
}

/// The `<base>/v1/messages` URL.
pub fn messages_url(base_url: &url::Url) -> url::Url {
    super::direct::endpoint_url(base_url, "/v1/messages")
}

/// Send one Messages API call; returns once the answer started.
pub async fn send(client: &DirectClient, call: AnthropicCall<'_>) -> Result<AnthropicAnswer, AnthropicFailure> {
    let url = messages_url(call.base_url);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let accept = if call.stream { "text/event-stream" } else { "application/json" };
    headers.insert(ACCEPT, HeaderValue::from_static(accept));
    headers.insert(ANTHROPIC_VERSION_HEADER, HeaderValue::from_static(ANTHROPIC_VERSION));
    let mut key = HeaderValue::from_str(call.key.expose())
        .map_err(|_| AnthropicFailure::Body("the Anthropic API key is not a valid header value"))?;
    key.set_sensitive(true);
    headers.insert(X_API_KEY, key);
    if !call.body.betas.is_empty() {
        let betas =
            HeaderValue::from_str(&call.body.betas.join(",")).map_err(|_| AnthropicFailure::Body("anthropic_beta"))?;
        headers.insert(ANTHROPIC_BETA, betas);
    }
    // A message is read whole: its first KiB of the answer budget is taken before the call.
    let buffer = match call.stream {
        true => None,
        false => Some(client.start_answer(call.limits.max_response_bytes).map_err(AnthropicFailure::Transport)?),
    };
    let request = DirectRequest {
        url: &url,
        policy: call.policy,
        limits: call.limits,
        team: call.team,
        headers,
        body: call.body.body,
    };
    let response = client.post(request).await.map_err(AnthropicFailure::Transport)?;
    if response.status != StatusCode::OK {
        drop(buffer);
        let status = response.status.as_u16();
        let headers = response.headers;
        let body = response.body.read_all(MAX_ERROR_BYTES).await.ok();
        return Err(failure_from_body(status, &headers, body.as_deref().unwrap_or_default(), &[call.key.expose()]));
    }
    match buffer {
        None => Ok(AnthropicAnswer::Stream(AnthropicEvents { sse: SseReader::new(response.body) })),
        Some(buffer) => {
            let message = response.body.read_into(buffer).await.map_err(AnthropicFailure::Transport)?;
            Ok(AnthropicAnswer::Message(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn bedrock_specifics_become_headers_and_model_goes_into_the_body() {
        let bedrock = json!({
            "anthropic_version": "bedrock-2023-05-31",
            "anthropic_beta": ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"],
            "max_tokens": 100,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}],
        });
        let converted = messages_body(bedrock.to_string().as_bytes(), "claude-sonnet-4-5-20250929", true).unwrap();
        assert_eq!(converted.betas, ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]);
        let body: Value = serde_json::from_slice(&converted.body).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5-20250929",
                "stream": true,
                "max_tokens": 100,
                "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": "hi"}],
            })
        );
        let plain =
            messages_body(br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[]}"#, "m", false)
                .unwrap();
        assert!(plain.betas.is_empty());
        assert_eq!(
            serde_json::from_slice::<Value>(&plain.body).unwrap(),
            json!({"model": "m", "max_tokens": 5, "messages": []})
        );
    }

    #[test]
    fn bad_bodies_and_betas_are_refused() {
        for body in [&b"[1,2]"[..], br#"{"anthropic_beta":"x"}"#, br#"{"anthropic_beta":["a\r\nx-api-key: y"]}"#] {
            assert!(
                matches!(messages_body(body, "m", false), Err(AnthropicFailure::Body(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn errors_are_read_from_anthropics_shape() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let body =
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_1"}"#;
        assert_eq!(
            failure_from_body(429, &headers, body, &[]),
            AnthropicFailure::Api {
                status: 429,
                error_type: "rate_limit_error".into(),
                message: "slow down".into(),
                retry_after: Some(7)
            }
        );
        assert_eq!(
            failure_from_body(502, &HeaderMap::new(), b"<html>bad gateway</html>", &[]),
            AnthropicFailure::Api {
                status: 502,
                error_type: "api_error".into(),
                message: "HTTP 502".into(),
                retry_after: None
            }
        );
        // A proxy in front of the API that quotes the key: scrubbed before the client sees it.
        let key = "sk-ant-api03-secret";
        let body = format!(r#"{{"type":"error","error":{{"type":"permission_error","message":"key {key} may not"}}}}"#);
        let failure = failure_from_body(403, &HeaderMap::new(), body.as_bytes(), &[key]);
        let error = failure.to_api_error("m", false);
        assert!(!error.message.contains(key) && error.message.contains("[redacted]"), "{}", error.message);
        let long_type = format!(r#"{{"type":"error","error":{{"type":"{}","message":"x"}}}}"#, "e".repeat(100));
        let failure = failure_from_body(500, &HeaderMap::new(), long_type.as_bytes(), &[]);
        assert!(
            matches!(&failure, AnthropicFailure::Api { error_type, .. } if error_type == "api_error"),
            "{failure:?}"
        );
    }

    #[test]
    fn a_key_straddling_the_cut_is_redacted_before_it() {
        let key = "sk-ant-api03-0123456789abcdefghij0123456789";
        let message = format!("{}{key} may not", "m".repeat(490));
        let body = json!({"type": "error", "error": {"type": "permission_error", "message": message}}).to_string();
        let failure = failure_from_body(403, &HeaderMap::new(), body.as_bytes(), &[key]);
        let AnthropicFailure::Api { message, .. } = &failure else { panic!("{failure:?}") };
        // Cut first, then redacted, 22 of the key's characters would have been left.
        assert!(!message.contains("sk-ant-api03"), "{message}");
        assert_eq!(message, &format!("{}[redacted] may not", "m".repeat(490)));
    }

    #[test]
    fn the_messages_url_keeps_a_base_path() {
        for (base, expected) in [
            ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
            ("https://gw.example.com/anthropic/", "https://gw.example.com/anthropic/v1/messages"),
        ] {
            assert_eq!(messages_url(&url::Url::parse(base).unwrap()).as_str(), expected);
        }
    }
}
