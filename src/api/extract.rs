//! What the edge reads from a request, bounded: the run identity headers, and bodies, read only
//! when a handler asks (after authentication), within `server.max_body_bytes`,
//! `server.body_read_timeout_secs` and the process-wide budget of body bytes in flight
//! (`server.max_body_bytes_in_flight`).
//!
//! [`close_if_body_unread`] marks an answer given before the request's body was read (a refusal)
//! `Connection: close`.
//!
//! Depends on the core only (config, authz, error); no state, no router, no `routes.rs`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::identity::authz::{self, FieldSource, RunRequest};

/// The run identity a request carries in `x-byollm-*` headers, as sent: a header that is absent is
/// `None`; one that is present is taken as it is (an empty value then fails [`crate::identity::authz`]'s
/// checks with a 400, never counting as absent). A value that is not visible ASCII, or a header
/// sent twice, is refused here.
pub fn run_request_from_headers(headers: &HeaderMap) -> Result<RunRequest, ApiError> {
    let read = |name: &'static str| -> Result<Option<String>, ApiError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err(ApiError::invalid_request(name, "duplicate_header", format!("send {name} once")));
        }
        let text = value
            .to_str()
            .map_err(|_| ApiError::invalid_request(name, "invalid_header", format!("{name} must be visible ASCII")))?;
        Ok(Some(text.trim().to_owned()))
    };
    Ok(RunRequest {
        team: read(authz::HEADER_TEAM)?,
        actor: read(authz::HEADER_ACTOR)?,
        principal: read(authz::HEADER_PRINCIPAL)?,
        agent: read(authz::HEADER_AGENT)?,
        run_id: read(authz::HEADER_RUN_ID)?,
        source: FieldSource::Headers,
    })
}

/// Mark a response that carries a secret as never to be cached.
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How long a body waits for room in the budget before the request is turned away.
const BUDGET_WAIT: Duration = Duration::from_secs(1);
/// The budget counts KiB (a semaphore's permits are `u32`).
const KIB: usize = 1024;

/// The process-wide budget of request-body bytes held at once. A body takes its share before it
/// is read (its `Content-Length`, or `server.max_body_bytes` when it has none, trimmed to what
/// arrived) and gives it back when the handler drops it; with no room within a second, the request
/// gets 503 with `Retry-After`. Handed to handlers as a request extension by the routers.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    semaphore: Arc<Semaphore>,
    total_kib: u32,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        let total_kib = u32::try_from(bytes.div_ceil(KIB)).unwrap_or(u32::MAX).min(Semaphore::MAX_PERMITS as u32);
        BodyBudget { semaphore: Arc::new(Semaphore::new(total_kib as usize)), total_kib }
    }

    /// KiB of the budget free right now.
    pub fn available_kib(&self) -> usize {
        self.semaphore.available_permits()
    }

    async fn take(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let kib = u32::try_from(bytes.div_ceil(KIB).max(1)).unwrap_or(u32::MAX).min(self.total_kib);
        match tokio::time::timeout(BUDGET_WAIT, self.semaphore.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "server_busy",
                "the gateway is holding as many request bodies as server.max_body_bytes_in_flight allows; retry shortly",
            )
            .with_retry_after(1)),
        }
    }
}

/// A request body as read: its bytes, and its share of the [`BodyBudget`] while they are held.
pub struct BoundedBytes {
    pub bytes: Bytes,
    share: Option<OwnedSemaphorePermit>,
    budget: Option<BodyBudget>,
}

impl BoundedBytes {
    /// Takes `bytes` more of the budget, held as long as the body: for what parsing the body built
    /// (a parsed request can cost many times its text). No room within a second is a 503.
    pub async fn charge(&mut self, bytes: usize) -> Result<(), ApiError> {
        if let (Some(budget), Some(share)) = (&self.budget, self.share.as_mut())
            && bytes > 0
        {
            share.merge(budget.take(bytes).await?);
        }
        Ok(())
    }
}

impl std::ops::Deref for BoundedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A body not read until the handler asks, so handlers authenticate first and an unauthenticated
/// client never gets the server to buffer (or budget) its body.
pub struct ApiBody {
    body: axum::body::Body,
    content_length: Option<u64>,
    budget: Option<BodyBudget>,
    json: bool,
}

impl ApiBody {
    /// Read the whole body within `server.max_body_bytes`, `server.body_read_timeout_secs` and the
    /// budget of bytes in flight.
    pub async fn read(self, server: &ServerConfig) -> Result<BoundedBytes, ApiError> {
        if self.content_length.is_some_and(|length| length > server.max_body_bytes as u64) {
            return Err(too_large());
        }
        let reserve = self.content_length.map_or(server.max_body_bytes, |length| length as usize);
        let mut share = match &self.budget {
            Some(budget) => Some(budget.take(reserve).await?),
            None => None,
        };
        let bytes = read_body(self.body, server).await?;
        // A body without Content-Length reserved the maximum: give back what it did not use.
        if let Some(permit) = share.as_mut() {
            let used = u32::try_from(bytes.len().div_ceil(KIB).max(1)).unwrap_or(u32::MAX) as usize;
            if permit.num_permits() > used {
                drop(permit.split(permit.num_permits() - used));
            }
        }
        Ok(BoundedBytes { bytes, share, budget: self.budget })
    }

    /// Was it sent as JSON (or with no content type)?
    pub fn is_json(&self) -> bool {
        self.json
    }
}

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers();
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/json") || v.contains("+json"));
        let content_length =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let budget = request.extensions().get::<BodyBudget>().cloned();
        Ok(ApiBody { body: request.into_body(), content_length, budget, json })
    }
}

/// A JSON body read (like [`ApiBody`]) only when the handler asks, parsed into `T`.
pub struct ApiJson<T> {
    body: ApiBody,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> ApiJson<T> {
    /// Read and parse; the body's share of the budget is given back once it is parsed.
    pub async fn read(self, server: &ServerConfig) -> Result<T, ApiError> {
        if !self.body.is_json() {
            return Err(ApiError::invalid_request("", "invalid_content_type", "send the body as application/json"));
        }
        let bytes = self.body.read(server).await?;
        serde_json::from_slice::<T>(&bytes).map_err(|e| {
            ApiError::invalid_request(
                "",
                "invalid_json",
                crate::error::clip_parse_error(format!("request body is not valid JSON for this endpoint: {e}")),
            )
        })
    }
}

impl<S: Send + Sync, T> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ApiJson { body: ApiBody::from_request(request, state).await?, _type: std::marker::PhantomData })
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "body_too_large",
        "request body is larger than server.max_body_bytes",
    )
}

/// Read a whole body, bounded in size (`server.max_body_bytes`) and in time
/// (`server.body_read_timeout_secs`).
pub async fn read_body(body: axum::body::Body, server: &ServerConfig) -> Result<Bytes, ApiError> {
    let timeout = server.body_read_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, server.max_body_bytes)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            while let Some(current) = source {
                if current.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    return Err(too_large());
                }
                source = current.source();
            }
            Err(ApiError::invalid_request("", "unreadable_body", "could not read the request body"))
        }
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "body_timeout",
            format!("the request body did not arrive within server.body_read_timeout_secs ({}s)", timeout.as_secs()),
        )),
    }
}

/// Middleware: an answer given before the request's whole body was read (a refusal of the caller,
/// the model or the body's size) gets `Connection: close`. hyper closes such a connection after
/// the answer, since the rest of the body is still on it; the header tells the client, so that a
/// client that pools connections does not send its next request on one that is closing (Python's
/// `http.client`, under boto3, sends the body after the head, and then saw "Remote end closed
/// connection without response" on the next call).
pub async fn close_if_body_unread(request: Request, next: axum::middleware::Next) -> Response {
    let headers = request.headers();
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::trim);
    let has_body = headers.contains_key(header::TRANSFER_ENCODING) || declared.is_some_and(|length| length != "0");
    if !has_body {
        return next.run(request).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let watched = read.clone();
    let request = request.map(|inner| axum::body::Body::new(WatchedBody { inner, read: watched }));
    let mut response = next.run(request).await;
    if !read.load(Ordering::Acquire) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records when it has been read to its end.
struct WatchedBody {
    inner: axum::body::Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_given_before_the_body_is_read_close_the_connection() {
        use axum::routing::post;
        use tower_service::Service;

        let mut app = axum::Router::new()
            .route("/refuse", post(|| async { StatusCode::UNAUTHORIZED }))
            .route("/read", post(|body: Bytes| async move { body.len().to_string() }))
            .layer(axum::middleware::from_fn(close_if_body_unread));
        let call = |path: &str, body: &'static str, declared: Option<&str>| {
            let mut request = Request::post(path);
            if let Some(length) = declared {
                request = request.header(header::CONTENT_LENGTH, length);
            }
            request.body(axum::body::Body::from(body)).unwrap()
        };
        for (path, body, declared, closes) in [
            ("/refuse", "{\"a\":1}", Some("7"), true),
            ("/read", "{\"a\":1}", Some("7"), false),
            // No body to leave unread.
            ("/refuse", "", Some("0"), false),
            ("/refuse", "", None, false),
        ] {
            let response = app.call(call(path, body, declared)).await.unwrap();
            let connection = response.headers().get(header::CONNECTION).map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(connection.as_deref() == Some("close"), closes, "{path} {declared:?}");
        }
    }

    #[test]
    fn identity_headers_present_but_empty_are_not_absent() {
        let mut headers = HeaderMap::new();
        headers.insert("x-byollm-actor", "user".parse().unwrap());
        headers.insert("x-byollm-principal", " alice ".parse().unwrap());
        headers.insert("x-byollm-agent", "".parse().unwrap());
        let request = run_request_from_headers(&headers).unwrap();
        assert_eq!(request.principal.as_deref(), Some("alice"));
        assert_eq!(request.agent.as_deref(), Some(""), "an empty header is a value for authz to refuse");
        assert_eq!((request.team, request.run_id, request.source), (None, None, FieldSource::Headers));

        headers.insert("x-byollm-run-id", HeaderValue::from_bytes(b"r\xff").unwrap());
        assert_eq!(run_request_from_headers(&headers).unwrap_err().code, "invalid_header");
        headers.remove("x-byollm-run-id");
        headers.append("x-byollm-team", "a".parse().unwrap());
        headers.append("x-byollm-team", "b".parse().unwrap());
        assert_eq!(run_request_from_headers(&headers).unwrap_err().code, "duplicate_header");
    }

    #[tokio::test]
    async fn body_errors_do_not_echo_a_whole_value() {
        #[derive(Debug, serde::Deserialize)]
        struct Shape {
            #[allow(dead_code)]
            lifetime_secs: Option<u64>,
        }
        let server = server(4 << 20);
        let text = serde_json::json!({"lifetime_secs": "A".repeat(1 << 20)}).to_string();
        let length = text.len();
        let mut body = body(0, false, &BodyBudget::new(8 << 20));
        body.body = axum::body::Body::from(text);
        body.content_length = Some(length as u64);
        let json = ApiJson::<Shape> { body, _type: std::marker::PhantomData };
        let error = json.read(&server).await.unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (400, "invalid_json"));
        assert!(error.message.len() < 2048, "{} bytes", error.message.len());
    }

    fn server(max_body: usize) -> ServerConfig {
        let mut config = crate::config::Config::from_toml("dev = true").unwrap().server;
        config.max_body_bytes = max_body;
        config
    }

    fn body(bytes: usize, declared: bool, budget: &BodyBudget) -> ApiBody {
        ApiBody {
            body: axum::body::Body::from(vec![b' '; bytes]),
            content_length: declared.then_some(bytes as u64),
            budget: Some(budget.clone()),
            json: true,
        }
    }

    #[tokio::test]
    async fn bodies_hold_their_share_of_the_budget_until_dropped() {
        let budget = BodyBudget::new(100 * KIB);
        let server = server(64 * KIB);
        let first = body(60 * KIB, true, &budget).read(&server).await.unwrap();
        assert_eq!(budget.available_kib(), 40);
        // No room for another 60 KiB: turned away after a short wait, with Retry-After.
        let error = match body(60 * KIB, true, &budget).read(&server).await {
            Err(error) => error,
            Ok(_) => panic!("the budget was overdrawn"),
        };
        assert_eq!((error.status.as_u16(), error.code, error.retry_after), (503, "server_busy", Some(1)));
        // Room for a small one.
        let small = body(10 * KIB, true, &budget).read(&server).await.unwrap();
        assert_eq!(budget.available_kib(), 30);
        drop(first);
        drop(small);
        assert_eq!(budget.available_kib(), 100);
        // Without Content-Length the maximum is reserved while reading, then trimmed to the size.
        let chunked = body(5 * KIB, false, &budget).read(&server).await.unwrap();
        assert_eq!((chunked.len(), budget.available_kib()), (5 * KIB, 95));
        // A declared size above the maximum is refused before anything is reserved or read.
        let error = body(65 * KIB, true, &budget).read(&server).await.err().unwrap();
        assert_eq!((error.status.as_u16(), budget.available_kib()), (413, 95));
    }

    #[tokio::test]
    async fn what_parsing_built_is_charged_to_the_budget_with_the_body() {
        let budget = BodyBudget::new(100 * KIB);
        let server = server(64 * KIB);
        let mut parsed = body(10 * KIB, true, &budget).read(&server).await.unwrap();
        parsed.charge(50 * KIB).await.unwrap();
        assert_eq!(budget.available_kib(), 40);
        // Another body's parse finds no room: turned away rather than overdrawn.
        let mut other = body(10 * KIB, true, &budget).read(&server).await.unwrap();
        let error = other.charge(40 * KIB).await.unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (503, "server_busy"));
        assert_eq!(budget.available_kib(), 30);
        // The charge goes back with the body.
        drop(parsed);
        drop(other);
        assert_eq!(budget.available_kib(), 100);
    }
}
