//! Errors and answers as HTTP responses: the one place each API's error shape is written.
//!
//! - OpenAI (chat completions, `/v1/models`, tokens, credentials, everything else):
//!   `{"error":{"message","type","param","code"}}`.
//! - Anthropic (`/v1/messages*`, `/v1/models` with `anthropic-version`):
//!   `{"type":"error","error":{"type","message"}}`, and as an SSE `error` event inside streams.
//! - Bedrock (`/model/*`, `/inference-profiles*`): `{"message"}` with `x-amzn-ErrorType`, the
//!   exception an AWS SDK raises for it.
//!
//! Every shape carries `Retry-After` when the error says when to come back, and the error's own
//! headers (a refused request's rate-limit headers).

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};

use crate::dispatch::{Reply, ReplyBody};
use crate::error::ApiError;
use crate::wire::{anthropic, bedrock, openai};

/// The error shape of an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
    Bedrock,
}

impl Shape {
    /// The shape of the API a path belongs to: Bedrock's for `/model/*` and `/inference-profiles*`,
    /// Anthropic's for `/v1/messages*`, else OpenAI's.
    pub fn of_path(path: &str) -> Shape {
        if path.starts_with("/model/") || path == "/inference-profiles" || path.starts_with("/inference-profiles/") {
            Shape::Bedrock
        } else if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Shape::Anthropic
        } else {
            Shape::OpenAi
        }
    }
}

/// `error` as a response in `shape`.
pub fn render(shape: Shape, error: &ApiError) -> Response {
    let (body, error_type) = match shape {
        Shape::OpenAi => (openai::error_body(error).to_string(), None),
        Shape::Anthropic => (anthropic::error_body(error), None),
        Shape::Bedrock => (bedrock::error_body(error), Some(bedrock::error_type(error.status))),
    };
    let mut response = (error.status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(error_type) = error_type {
        headers.insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    }
    if let Some(seconds) = error.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    for (name, value) in error.headers.iter().flat_map(|headers| headers.iter()) {
        headers.insert(name.clone(), value.clone());
    }
    response
}

/// An OpenAI-shaped error response (the default shape).
pub fn openai(error: &ApiError) -> Response {
    render(Shape::OpenAi, error)
}

/// A model request's outcome as a response: the answer, or the error in `shape`.
pub fn respond(shape: Shape, result: Result<Reply, ApiError>) -> Response {
    match result {
        Ok(reply) => into_response(reply),
        Err(error) => render(shape, &error),
    }
}

/// An answer as a response.
pub fn into_response(reply: Reply) -> Response {
    let body = match reply.body {
        ReplyBody::Full(bytes) => Body::from(bytes),
        ReplyBody::Buffered(answer) => Body::new(answer),
        ReplyBody::Stream(stream) => Body::from_stream(stream),
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    response
}

/// An error inside an Anthropic SSE stream, then the stream ends.
pub fn write_anthropic_sse_error(error: &ApiError, out: &mut BytesMut) {
    out.put_slice(b"event: error\ndata: ");
    out.put_slice(anthropic::error_body(error).as_bytes());
    out.put_slice(b"\n\n");
}

/// An error inside an OpenAI SSE stream (the SDKs raise it), then `[DONE]`.
pub fn write_openai_sse_error(error: &ApiError, out: &mut BytesMut) {
    out.put_slice(b"data: ");
    out.put_slice(openai::error_body(error).to_string().as_bytes());
    out.put_slice(b"\n\ndata: [DONE]\n\n");
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn one_error_in_each_shape() {
        let error = ApiError::forbidden("model_not_allowed", "model \"x\" is not served").with_retry_after(3);
        let openai = render(Shape::OpenAi, &error);
        assert_eq!((openai.status(), openai.headers()["retry-after"].to_str().unwrap()), (StatusCode::FORBIDDEN, "3"));
        assert_eq!(body_of(openai).await["error"]["code"], "model_not_allowed");

        let anthropic = render(Shape::Anthropic, &error);
        assert_eq!(anthropic.headers()["retry-after"], "3");
        assert_eq!(
            body_of(anthropic).await,
            serde_json::json!({"type": "error", "error": {"type": "permission_error", "message": "model \"x\" is not served"}})
        );

        let bedrock = render(Shape::Bedrock, &error);
        assert_eq!(bedrock.headers()["x-amzn-errortype"], "AccessDeniedException");
        assert_eq!(bedrock.headers()["retry-after"], "3");
        assert_eq!(body_of(bedrock).await, serde_json::json!({"message": "model \"x\" is not served"}));
    }

    #[test]
    fn paths_choose_their_shape() {
        assert_eq!(Shape::of_path("/model/x/invoke"), Shape::Bedrock);
        assert_eq!(Shape::of_path("/inference-profiles"), Shape::Bedrock);
        assert_eq!(Shape::of_path("/inference-profilesx"), Shape::OpenAi);
        assert_eq!(Shape::of_path("/v1/messages/count_tokens"), Shape::Anthropic);
        assert_eq!(Shape::of_path("/v1/models"), Shape::OpenAi);
    }

    #[test]
    fn exception_names_by_status() {
        assert_eq!(bedrock::error_type(StatusCode::BAD_REQUEST), "ValidationException");
        assert_eq!(bedrock::error_type(StatusCode::PAYLOAD_TOO_LARGE), "ValidationException");
        assert_eq!(bedrock::error_type(StatusCode::BAD_GATEWAY), "InternalServerException");
        assert_eq!(anthropic::error_type(StatusCode::SERVICE_UNAVAILABLE), "overloaded_error");
        assert_eq!(anthropic::error_type(StatusCode::GATEWAY_TIMEOUT), "timeout_error");
    }
}
