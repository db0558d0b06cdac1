//! The error a request ends with: its status, a stable machine-readable code, a message that
//! says what to fix (never a secret), and when to come back.
//!
//! Each boundary (config, issuer, auth, broker, routing, upstream) has its own error type; each
//! converts into [`ApiError`] here. What kind of failure it is ([`ErrorKind`]) is the core's own
//! word; each API's names for it (OpenAI's `type`, Anthropic's error type, Bedrock's exception) are
//! written at the edge (`crate::api::errors`, with the bodies in `crate::wire`).

use http::StatusCode;

/// What kind of failure an error is, whichever API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request cannot be served as sent.
    InvalidRequest,
    /// No or unknown credentials.
    Authentication,
    /// Authenticated, not allowed.
    Permission,
    NotFound,
    /// Too many requests (or tokens) for now: come back later.
    RateLimit,
    /// A budget is spent: no later time helps until it renews.
    Quota,
    /// The upstream account cannot pay.
    Billing,
    /// The upstream failed or could not be reached.
    Upstream,
    /// Our own failure.
    Internal,
}

/// An error ready to be sent to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: ErrorKind,
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
    pub fn new(status: StatusCode, kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code, retry_after: None, headers: None }
    }

    /// 400: the caller sent something we cannot accept; `param` names the field.
    pub fn invalid_request(param: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest, code, message).with_param(param)
    }

    /// 401: no or unknown credentials.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorKind::Authentication, code, message)
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, ErrorKind::Permission, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, code, message)
    }

    /// 500: our bug or local state; the message stays vague, the log says more.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Internal, "internal_error", message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
        self
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

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
