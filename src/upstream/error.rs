//! Bedrock's failures, read from where Bedrock puts them, and mapped to the one error body.
//!
//! Before a response body: a non-2xx status with `x-amzn-ErrorType` and a JSON body
//! `{"message": ...}`. Inside an event stream: a frame with `:message-type` `exception` (the
//! exception in `:exception-type`, the message in the JSON payload) or `error` (`:error-code`,
//! `:error-message`). Transport failures get the codes `Dispatch`, `Timeout`, `StreamCut`,
//! `AnswerCut` (a non-streamed answer broken off) and `IdleTimeout`; an answer the gateway had no
//! room to buffer, `ServerBusy`.

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::error::{ApiError, ErrorKind};
use crate::wire::eventstream::Frame;

/// What went wrong talking to Bedrock, already sorted by who can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockFailure {
    /// The exception name without its namespace, e.g. `ThrottlingException`.
    pub code: String,
    pub message: String,
}

impl BedrockFailure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> BedrockFailure {
        BedrockFailure { code: code.into(), message: message.into() }
    }

    /// Could not connect, or the connection failed before an answer.
    pub fn dispatch() -> BedrockFailure {
        BedrockFailure::new("Dispatch", "")
    }

    /// The stream broke (connection, framing) before Bedrock ended it.
    pub fn stream_cut() -> BedrockFailure {
        BedrockFailure::new("StreamCut", "")
    }

    /// Bedrock sent nothing for longer than the stream idle limit.
    pub fn idle_timeout() -> BedrockFailure {
        BedrockFailure::new("IdleTimeout", "")
    }

    /// The answer budget (`server.max_answer_bytes_in_flight`) had no room for the answer.
    pub fn server_busy() -> BedrockFailure {
        BedrockFailure::new("ServerBusy", "")
    }

    fn normalized(&self) -> String {
        self.code.to_ascii_lowercase()
    }

    /// Bedrock rejected the credentials themselves (expired or unknown).
    pub fn is_credential_problem(&self) -> bool {
        matches!(
            self.normalized().as_str(),
            "expiredtokenexception"
                | "unrecognizedclientexception"
                | "invalidsignatureexception"
                | "incompletesignatureexception"
                | "missingauthenticationtokenexception"
        )
    }

    /// The error for the client. `action` is the IAM action the call needed; `model_id` what it
    /// called.
    pub fn to_api_error(&self, action: &str, model_id: &str) -> ApiError {
        let said = if self.message.is_empty() { self.code.clone() } else { self.message.clone() };
        match self.normalized().as_str() {
            "throttlingexception" => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::RateLimit,
                "bedrock_throttled",
                format!("Bedrock is throttling requests to {model_id}; retry after a short wait ({said})"),
            )
            .with_retry_after(2),
            "servicequotaexceededexception" => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::RateLimit,
                "bedrock_quota_exceeded",
                format!(
                    "the account's Bedrock quota for {model_id} is exhausted; retry later or raise the quota ({said})"
                ),
            )
            .with_retry_after(10),
            "validationexception" => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidRequest,
                "bedrock_validation_error",
                format!("Bedrock rejected the request: {said}"),
            ),
            "accessdeniedexception" => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorKind::Permission,
                "bedrock_access_denied",
                format!(
                    "the AWS identity may not call {action} on {model_id}: grant {action} on the model's foundation-model and inference-profile ARNs (and enable model access in the Bedrock console) ({said})"
                ),
            ),
            "resourcenotfoundexception" => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorKind::NotFound,
                "model_not_enabled",
                format!(
                    "model {model_id} is not available in this region or account: enable it in Bedrock or pick another inference profile ({said})"
                ),
            ),
            "modeltimeoutexception" => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::Upstream,
                "bedrock_model_timeout",
                format!("the model took too long to answer ({said})"),
            ),
            "serviceunavailableexception" => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Upstream,
                "bedrock_unavailable",
                format!("Bedrock is unavailable; retry shortly ({said})"),
            )
            .with_retry_after(2),
            "modelnotreadyexception" => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Upstream,
                "bedrock_model_not_ready",
                format!("the model is not ready to serve yet; retry shortly ({said})"),
            )
            .with_retry_after(5),
            "timeout" => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::Upstream,
                "bedrock_timeout",
                "timed out waiting for Bedrock",
            ),
            "idletimeout" => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::Upstream,
                "upstream_idle_timeout",
                "Bedrock sent nothing for too long; the answer is incomplete",
            ),
            "streamcut" => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::Upstream,
                "upstream_stream_cut",
                "the Bedrock stream broke before the model finished; the answer is incomplete",
            ),
            "answercut" => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::Upstream,
                "upstream_answer_cut",
                "the connection to Bedrock broke before the whole answer arrived; nothing of it was sent on, so the request can be retried",
            ),
            "serverbusy" => super::buffered::busy_error("Bedrock"),
            "dispatch" => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::Upstream,
                "bedrock_unreachable",
                "could not connect to Bedrock Runtime",
            ),
            _ if self.is_credential_problem() => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::Upstream,
                "bedrock_credentials_rejected",
                format!("Bedrock rejected the credentials the gateway used ({})", self.code),
            ),
            _ => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::Upstream,
                "bedrock_error",
                format!("Bedrock failed: {}: {said}", self.code),
            ),
        }
    }
}

/// The fields of Bedrock's JSON error body (and of exception frame payloads) that matter.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(alias = "Message", alias = "errorMessage")]
    message: Option<String>,
    #[serde(rename = "__type", alias = "code")]
    kind: Option<String>,
}

/// `ValidationException:http://internal.amazon.com/...` and `com.amazon.bedrock#ValidationException`
/// both name `ValidationException`.
fn sanitize_code(raw: &str) -> &str {
    let raw = raw.split(':').next().unwrap_or(raw);
    raw.rsplit('#').next().unwrap_or(raw).trim()
}

/// A non-2xx answer: the code from `x-amzn-ErrorType` (else the body's `__type`/`code`), the
/// message from the body's `message`.
pub fn failure_from_response(headers: &HeaderMap, body: &[u8]) -> BedrockFailure {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let from_header = headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(sanitize_code);
    let code = from_header.or(parsed.kind.as_deref().map(sanitize_code)).filter(|code| !code.is_empty());
    BedrockFailure { code: code.unwrap_or("UnknownError").to_owned(), message: parsed.message.unwrap_or_default() }
}

/// A frame that is not an event: an `exception` (named as the AWS SDK names it, e.g.
/// `ThrottlingException`) or an `error`; anything else means the stream broke.
pub fn failure_from_frame(frame: &Frame<'_>) -> BedrockFailure {
    match frame.message_type() {
        Some("exception") => {
            let parsed: ErrorBody = serde_json::from_slice(frame.payload()).unwrap_or_default();
            let raw = frame.exception_type().unwrap_or("UnknownStreamError");
            // The SDK reports the exception by its shape name: the header's first letter upper-cased.
            let mut code = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            if let Some(first) = chars.next() {
                code.extend(first.to_uppercase());
                code.push_str(chars.as_str());
            }
            BedrockFailure { code, message: parsed.message.unwrap_or_default() }
        }
        Some("error") => BedrockFailure {
            code: frame.header_str(":error-code").unwrap_or("UnknownStreamError").to_owned(),
            message: frame.header_str(":error-message").unwrap_or_default().to_owned(),
        },
        _ => BedrockFailure::stream_cut(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: &str) -> BedrockFailure {
        BedrockFailure { code: code.into(), message: "details".into() }
    }

    #[test]
    fn maps_every_documented_exception() {
        let cases = [
            ("ThrottlingException", 429, "bedrock_throttled"),
            ("throttlingException", 429, "bedrock_throttled"),
            ("ServiceQuotaExceededException", 429, "bedrock_quota_exceeded"),
            ("ValidationException", 400, "bedrock_validation_error"),
            ("AccessDeniedException", 403, "bedrock_access_denied"),
            ("ResourceNotFoundException", 404, "model_not_enabled"),
            ("ModelTimeoutException", 504, "bedrock_model_timeout"),
            ("ServiceUnavailableException", 503, "bedrock_unavailable"),
            ("ModelNotReadyException", 503, "bedrock_model_not_ready"),
            ("InternalServerException", 502, "bedrock_error"),
            ("modelStreamErrorException", 502, "bedrock_error"),
            ("ExpiredTokenException", 502, "bedrock_credentials_rejected"),
            ("Dispatch", 502, "bedrock_unreachable"),
            ("Timeout", 504, "bedrock_timeout"),
            ("StreamCut", 502, "upstream_stream_cut"),
            ("AnswerCut", 502, "upstream_answer_cut"),
            ("IdleTimeout", 504, "upstream_idle_timeout"),
            ("ServerBusy", 503, "server_busy"),
        ];
        for (code, status, expected) in cases {
            let error = failure(code).to_api_error("bedrock:InvokeModel", "m");
            assert_eq!((error.status.as_u16(), error.code), (status, expected), "{code}");
        }
        let throttled = failure("ThrottlingException").to_api_error("bedrock:InvokeModel", "m");
        assert_eq!(throttled.retry_after, Some(2));
        assert_eq!(BedrockFailure::server_busy().to_api_error("bedrock:InvokeModel", "m").retry_after, Some(1));
        let denied = failure("AccessDeniedException").to_api_error("bedrock:InvokeModelWithResponseStream", "m");
        assert!(denied.message.contains("bedrock:InvokeModelWithResponseStream"));
        assert!(failure("UnrecognizedClientException").is_credential_problem());
    }

    #[test]
    fn error_responses_are_read_like_the_sdk_reads_them() {
        let headers = |value: &str| {
            let mut map = HeaderMap::new();
            map.insert("x-amzn-errortype", value.parse().unwrap());
            map
        };
        let cases = [
            (
                headers("ThrottlingException"),
                &br#"{"message":"Too many requests"}"#[..],
                "ThrottlingException",
                "Too many requests",
            ),
            (
                headers("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
                br#"{"Message":"bad"}"#,
                "ValidationException",
                "bad",
            ),
            (
                HeaderMap::new(),
                br#"{"__type":"com.amazon.bedrock#AccessDeniedException","message":"no"}"#,
                "AccessDeniedException",
                "no",
            ),
            (HeaderMap::new(), b"<html>bad gateway</html>", "UnknownError", ""),
        ];
        for (headers, body, code, message) in cases {
            assert_eq!(failure_from_response(&headers, body), BedrockFailure::new(code, message));
        }
    }
}
