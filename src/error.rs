//! The error a request ends with: its status, a stable machine-readable code, a message that
//! says what to fix (never a secret), and when to come back.
//!
//! Each boundary (config, issuer, auth, broker, routing, upstream) has its own error type; each
//! converts into [`ApiError`] here. The edge renders it in the shape of the API that was called
//! (`crate::api::errors`: OpenAI, Anthropic or Bedrock); [`ApiError::body`] is OpenAI's.

use http::StatusCode;
use serde::Serialize;

/// An error ready to be sent to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `rate_limit_error`, `api_error`, `upstream_error`, ...
    pub kind: &'static str,
    pub param: Option<String>,
    /// Stable, machine-readable code (`invalid_uid`, `model_not_found`, `sts_trust_policy_mismatch`, ...).
    pub code: &'static str,
    /// Seconds for a `Retry-After` header, if the client should come back later (32 bits keep the
    /// error, and every `Result` carrying it, small).
    pub retry_after: Option<u32>,
    /// More headers the answer carries (the rate-limit headers of a refused request); boxed, so
    /// the error stays small where it is not needed.
    pub headers: Option<Box<Vec<(http::HeaderName, http::HeaderValue)>>>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code, retry_after: None, headers: None }
    }

    /// 400: the caller sent something we cannot accept; `param` names the field.
    pub fn invalid_request(param: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, message).with_param(param)
    }

    /// 401: no or unknown credentials.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", code, message)
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "permission_error", code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found_error", code, message)
    }

    /// 500: our bug or local state; the message stays vague, the log says more.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "internal_error", message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
        self
    }

    /// The JSON body, as also used for SSE `error` events inside a stream.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(ErrorEnvelope {
            error: ErrorBody { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code },
        })
        .unwrap_or_default()
    }
}

/// Longest description of a parse failure sent back: serde quotes a mistyped value in full, and a
/// client's 20 MiB string must not come back (and be held again) as a 20 MiB error.
pub const MAX_PARSE_ERROR_LEN: usize = 1024;

/// `message` cut to [`MAX_PARSE_ERROR_LEN`] bytes (at a character boundary), marked when cut.
pub fn clip_parse_error(message: String) -> String {
    if message.len() <= MAX_PARSE_ERROR_LEN {
        return message;
    }
    let mut end = MAX_PARSE_ERROR_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... (cut)", &message[..end])
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_openai_shape() {
        let error = ApiError::invalid_request("principal_uid", "invalid_uid", "bad uid");
        assert_eq!(
            error.body(),
            serde_json::json!({"error": {"message": "bad uid", "type": "invalid_request_error", "param": "principal_uid", "code": "invalid_uid"}})
        );
    }
}
