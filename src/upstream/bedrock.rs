//! The Bedrock Runtime client: signed requests over the pooled HTTP client.
//!
//! - [`BedrockClient::send`]: the raw call for routes that relay bytes (invoke,
//!   invoke-with-response-stream, converse, converse-stream, count-tokens): any method and path,
//!   the body and extra headers as given, signed with the call's credentials; the answer's status,
//!   headers and body come back unread, whatever the status.
//! - [`BedrockClient::invoke`] and [`BedrockClient::invoke_stream`]: `InvokeModel` and
//!   `InvokeModelWithResponseStream` for the chat adapter, with Bedrock's errors read into a
//!   [`BedrockFailure`]. A stream's events are decoded only as the consumer asks for them; an
//!   `InvokeModel` answer is read whole, charged to the process-wide [`AnswerBudget`] as it arrives.
//!
//! No retries: throttling reaches the client as a 429 it can act on, never as a silent delay.

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::buffered::{AnswerBudget, BufferError, BufferedAnswer};
use super::client::{HttpClient, http_client};
use super::endpoint::Endpoints;
use super::error::{BedrockFailure, failure_from_frame, failure_from_response};
use super::signer::Signer;
use crate::aws::AwsCredentials;
use crate::wire::bedrock::chunk_base64;
use crate::wire::eventstream::FrameDecoder;

/// Longest silence inside a stream before it is failed: 5 minutes, the limit Claude Code itself
/// applies, and no shorter than Bedrock's own.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest `InvokeModel` answer read into memory (and never more than the whole answer budget).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Largest error body read (Bedrock's are a few hundred bytes).
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Headers the signer owns: a caller's values for them are dropped.
const RESERVED_HEADERS: [&str; 6] =
    ["authorization", "host", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256", "content-length"];
/// Hop-by-hop headers never forwarded upstream.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

const X_AMZN_BEDROCK_ACCEPT: HeaderName = HeaderName::from_static("x-amzn-bedrock-accept");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The path of a model operation with the model id URL-encoded as the AWS SDK encodes it
/// (everything but `A-Z a-z 0-9 - . _ ~` as `%XX`, so `:` and the `/` of ARNs too):
/// `model_path("anthropic.claude-x-v1:0", "invoke")` = `/model/anthropic.claude-x-v1%3A0/invoke`.
pub fn model_path(model_id: &str, operation: &str) -> String {
    let mut path = String::with_capacity(model_id.len() + operation.len() + 16);
    path.push_str("/model/");
    for byte in model_id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            path.push(byte as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            path.push('%');
            path.push(HEX[(byte >> 4) as usize] as char);
            path.push(HEX[(byte & 15) as usize] as char);
        }
    }
    path.push('/');
    path.push_str(operation);
    path
}

/// One raw call.
#[derive(Debug)]
pub struct RawRequest<'a> {
    pub region: &'a str,
    pub method: Method,
    /// Starts with `/`, already URL-encoded (see [`model_path`]).
    pub path_and_query: &'a str,
    /// Sent and signed as given (content type, accept, `x-amzn-bedrock-*`), except the headers
    /// the signer sets itself and hop-by-hop headers.
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Bedrock's answer, body unread.
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Read it at the pace the consumer wants; dropping it closes the upstream connection if the
    /// body was not finished.
    pub body: Incoming,
}

/// Bedrock Runtime for every region, one connection pool.
pub struct BedrockClient {
    endpoints: Endpoints,
    http: HttpClient,
    signer: Signer,
    /// Signing time; the system clock except in tests.
    now: fn() -> SystemTime,
    /// What `InvokeModel` answers are charged to.
    answers: AnswerBudget,
}

impl BedrockClient {
    /// `endpoint_url` overrides the regional endpoints (`bedrock.endpoint_url`,
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`).
    pub fn new(endpoint_url: Option<String>) -> BedrockClient {
        BedrockClient::with_clock(endpoint_url, SystemTime::now)
    }

    /// With a fixed signing clock, for tests that compare signatures.
    pub fn with_clock(endpoint_url: Option<String>, now: fn() -> SystemTime) -> BedrockClient {
        BedrockClient {
            endpoints: Endpoints::new(endpoint_url.as_deref()),
            http: http_client(),
            signer: Signer::new(),
            now,
            answers: AnswerBudget::new(crate::config::DEFAULT_ANSWER_BYTES_IN_FLIGHT),
        }
    }

    /// `InvokeModel` answers charged to `answers` (shared with the direct client) instead of a
    /// budget of its own.
    pub fn with_answer_budget(mut self, answers: AnswerBudget) -> BedrockClient {
        self.answers = answers;
        self
    }

    /// Signs and sends one request; any status is an `Ok` answer. Errors: the endpoint cannot be
    /// built (`InvalidEndpoint`), the request cannot be signed (`SigningFailed`), or Bedrock
    /// cannot be reached (`Dispatch`).
    pub async fn send(
        &self,
        request: RawRequest<'_>,
        credentials: &AwsCredentials,
    ) -> Result<RawResponse, BedrockFailure> {
        let RawRequest { region, method, path_and_query, mut headers, body } = request;
        for name in RESERVED_HEADERS.iter().chain(HOP_BY_HOP.iter()) {
            headers.remove(*name);
        }
        self.dispatch(region, method, path_and_query, headers, body, credentials).await
    }

    async fn dispatch(
        &self,
        region: &str,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        body: Bytes,
        credentials: &AwsCredentials,
    ) -> Result<RawResponse, BedrockFailure> {
        let endpoint =
            self.endpoints.for_region(region).map_err(|message| BedrockFailure::new("InvalidEndpoint", message))?;
        let uri = endpoint
            .uri(path_and_query)
            .map_err(|_| BedrockFailure::new("InvalidEndpoint", "the request path is not a valid URI path"))?;
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        self.signer
            .sign(&mut request, &body, credentials, region, (self.now)())
            .map_err(|error| BedrockFailure::new("SigningFailed", error.to_string()))?;
        // `host` is signed from the URI; hyper derives the same value.
        debug_assert!(request.headers().get(HOST).is_none());
        let (parts, ()) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let response = self.http.request(request).await.map_err(|error| {
            tracing::debug!(error = %error, connect = error.is_connect(), "bedrock request failed");
            BedrockFailure::dispatch()
        })?;
        let (parts, body) = response.into_parts();
        Ok(RawResponse { status: parts.status, headers: parts.headers, body })
    }

    async fn call(
        &self,
        region: &str,
        model_id: &str,
        operation: &str,
        accept: HeaderName,
        body: Bytes,
        credentials: &AwsCredentials,
    ) -> Result<RawResponse, BedrockFailure> {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(CONTENT_TYPE, APPLICATION_JSON);
        headers.insert(accept, APPLICATION_JSON);
        let path = model_path(model_id, operation);
        let response = self.dispatch(region, Method::POST, &path, headers, body, credentials).await?;
        if response.status.is_success() {
            return Ok(response);
        }
        let error_body = match Limited::new(response.body, MAX_ERROR_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        Err(failure_from_response(&response.headers, &error_body))
    }

    /// `InvokeModel`: the whole answer at once, charged to the answer budget until dropped. No
    /// call is made when the budget has no room (`ServerBusy`).
    pub async fn invoke(
        &self,
        region: &str,
        model_id: &str,
        body: Bytes,
        credentials: &AwsCredentials,
    ) -> Result<BufferedAnswer, BedrockFailure> {
        let mut buffer = self.answers.start(MAX_ANSWER_BYTES).map_err(answer_failure)?;
        let response = self.call(region, model_id, "invoke", ACCEPT, body, credentials).await?;
        let declared = response.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        buffer.expect(declared).map_err(answer_failure)?;
        let mut body = response.body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| answer_cut())?;
            if let Some(data) = frame.data_ref() {
                buffer.push(data).map_err(answer_failure)?;
            }
        }
        buffer.finish().map_err(answer_failure)
    }

    /// `InvokeModelWithResponseStream`: returns once Bedrock accepted the request.
    pub async fn invoke_stream(
        &self,
        region: &str,
        model_id: &str,
        body: Bytes,
        credentials: &AwsCredentials,
    ) -> Result<EventStream, BedrockFailure> {
        let response = self
            .call(region, model_id, "invoke-with-response-stream", X_AMZN_BEDROCK_ACCEPT, body, credentials)
            .await?;
        Ok(EventStream::new(response.body))
    }
}

/// An `InvokeModel` answer that could not be read whole: no room in the budget (`ServerBusy`,
/// a 503 the client may retry), or too large or broken (as before the budget existed).
fn answer_failure(error: BufferError) -> BedrockFailure {
    match error {
        BufferError::Busy => BedrockFailure::server_busy(),
        BufferError::TooLarge => unreadable(),
    }
}

/// The connection broke while an `InvokeModel` answer was being read.
fn answer_cut() -> BedrockFailure {
    BedrockFailure::new("AnswerCut", "the connection to Bedrock broke before the whole answer arrived")
}

fn unreadable() -> BedrockFailure {
    BedrockFailure::new("ResponseError", "unexpected response from Bedrock")
}

/// An `InvokeModelWithResponseStream` answer, decoded as it is read.
pub struct EventStream {
    body: Incoming,
    decoder: FrameDecoder,
    /// The current event's JSON.
    event: Vec<u8>,
    /// Re-armed lazily: only when it fires is it moved to `last_data + STREAM_IDLE_TIMEOUT`.
    idle: Pin<Box<tokio::time::Sleep>>,
    last_data: Instant,
    done: bool,
}

impl EventStream {
    fn new(body: Incoming) -> EventStream {
        EventStream {
            body,
            decoder: FrameDecoder::new(),
            event: Vec::with_capacity(512),
            idle: Box::pin(tokio::time::sleep(STREAM_IDLE_TIMEOUT)),
            last_data: Instant::now(),
            done: false,
        }
    }

    /// The next Anthropic event (its JSON), `None` once the stream ended cleanly. Reads from
    /// Bedrock only when no decoded event is waiting.
    pub async fn next_event(&mut self) -> Result<Option<&[u8]>, BedrockFailure> {
        if self.advance().await? { Ok(Some(&self.event)) } else { Ok(None) }
    }

    /// Fills `self.event`; false at the end.
    async fn advance(&mut self) -> Result<bool, BedrockFailure> {
        if self.done {
            return Ok(false);
        }
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => match (frame.message_type(), frame.event_type()) {
                    (Some("event"), Some("chunk")) => {
                        let encoded = chunk_base64(frame.payload()).map_err(|_| BedrockFailure::stream_cut())?;
                        if let Some(encoded) = encoded {
                            self.event.clear();
                            base64::engine::general_purpose::STANDARD
                                .decode_vec(&encoded, &mut self.event)
                                .map_err(|_| BedrockFailure::stream_cut())?;
                            return Ok(true);
                        }
                    }
                    // Events of other types are not ours to interpret.
                    (Some("event"), _) => {}
                    _ => {
                        self.done = true;
                        return Err(failure_from_frame(&frame));
                    }
                },
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, "bedrock event stream unreadable");
                    self.done = true;
                    return Err(BedrockFailure::stream_cut());
                }
            }
            match self.read().await {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return if self.decoder.has_partial_frame() {
                        Err(BedrockFailure::stream_cut())
                    } else {
                        Ok(false)
                    };
                }
                Err(failure) => {
                    self.done = true;
                    return Err(failure);
                }
            }
        }
    }

    /// Reads the next piece of the body into the decoder; false at its end.
    async fn read(&mut self) -> Result<bool, BedrockFailure> {
        loop {
            tokio::select! {
                biased;
                frame = self.body.frame() => {
                    return match frame {
                        Some(Ok(frame)) => {
                            if let Some(data) = frame.data_ref() {
                                self.last_data = Instant::now();
                                self.decoder.push(data);
                            }
                            Ok(true)
                        }
                        Some(Err(_)) => Err(BedrockFailure::stream_cut()),
                        None => Ok(false),
                    };
                }
                () = &mut self.idle => {
                    let deadline = self.last_data + STREAM_IDLE_TIMEOUT;
                    if Instant::now() >= deadline {
                        return Err(BedrockFailure::idle_timeout());
                    }
                    self.idle.as_mut().reset(deadline);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_encoded_like_the_sdk_encodes_labels() {
        assert_eq!(
            model_path("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "invoke"),
            "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
        );
        assert_eq!(
            model_path("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2", "converse-stream"),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2/converse-stream"
        );
        assert_eq!(model_path("a b~é", "count-tokens"), "/model/a%20b~%C3%A9/count-tokens");
    }
}
