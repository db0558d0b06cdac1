//! The HTTP client for endpoints an admin or a request names (the direct Anthropic API,
//! OpenAI-compatible servers), behind the egress guard.
//!
//! Every request resolves its host through [`egress::resolve`] first, on behalf of the request's
//! team (the process's one [`Dns`]: asynchronous, cached, lookups capped per team), so a lookup
//! that cannot have a slot fails the request at once; every new connection then connects only to
//! the addresses the guard approved (pinned: a second DNS answer cannot move the connection
//! elsewhere); pooled connections were all made that way. Redirects are never followed (a 3xx is a failure), and every
//! answer is bounded: connect timeout, a total deadline covering headers and body (streams
//! included), an idle limit between chunks, and a byte budget; an answer read whole is also
//! charged to the process-wide [`AnswerBudget`] as it arrives. Errors never carry the URL or a key.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::buffered::{AnswerBudget, AnswerBuffer, BufferError, BufferedAnswer, busy_error};
use super::client::{POOL_IDLE_TIMEOUT, tls_config};
use super::dns::{Dns, RESOLVE_TIMEOUT};
use super::egress::{self, EgressError, EgressPolicy};
use crate::config::EgressConfig;
use crate::error::{ApiError, ErrorKind};

/// `path` (starting with `/`) appended to the base URL's own path (`https://gw/anthropic/` +
/// `/v1/messages` → `https://gw/anthropic/v1/messages`): the endpoint of a direct upstream.
pub fn endpoint_url(base_url: &url::Url, path: &str) -> url::Url {
    let mut url = base_url.clone();
    url.set_path(&format!("{}{path}", base_url.path().trim_end_matches('/')));
    url
}

/// Longest silence between two chunks of an answer.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long and how much an upstream may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// From sending the request to the last byte of the answer.
    pub total_timeout: Duration,
    pub max_response_bytes: u64,
}

/// Why a call to a direct endpoint failed before an answer could be read. Never holds the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectError {
    /// The egress guard refused the URL or the addresses its host resolves to.
    Refused(EgressError),
    /// The host's lookup could not start: the request's team (`team`) or the gateway has as many
    /// lookups under way as `[egress]` allows.
    LookupsBusy { team: bool },
    /// The endpoint answered with a redirect, which is not followed.
    Redirect(u16),
    /// No connection could be made (refused, TLS failure, unreachable).
    Unreachable,
    /// Connect, total or idle time ran out.
    Timeout,
    /// The answer is larger than the endpoint's `max_response_bytes`.
    TooLarge,
    /// The gateway holds as many buffered answers as `server.max_answer_bytes_in_flight` allows.
    Busy,
    /// The connection broke before the answer was complete.
    Cut,
    /// The request could not be built (a bug of ours).
    Internal,
}

impl fmt::Display for DirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectError::Refused(error) => write!(f, "{error}"),
            DirectError::LookupsBusy { team } => write!(f, "{}", EgressError::LookupsBusy { team: *team }),
            DirectError::Redirect(status) => {
                write!(f, "the upstream answered a redirect ({status}), which the gateway does not follow")
            }
            DirectError::Unreachable => f.write_str("could not connect to the upstream"),
            DirectError::Timeout => f.write_str("the upstream did not answer in time"),
            DirectError::TooLarge => f.write_str("the upstream's answer is larger than its max_response_bytes"),
            DirectError::Busy => f.write_str("the gateway has no room to buffer the answer now"),
            DirectError::Cut => f.write_str("the connection to the upstream broke before the answer was complete"),
            DirectError::Internal => f.write_str("the upstream request could not be built"),
        }
    }
}

impl std::error::Error for DirectError {}

impl From<BufferError> for DirectError {
    fn from(error: BufferError) -> DirectError {
        match error {
            BufferError::TooLarge => DirectError::TooLarge,
            BufferError::Busy => DirectError::Busy,
        }
    }
}

impl DirectError {
    /// The guard's verdict as a call failure: busy is not a refusal of the host.
    pub fn from_egress(error: EgressError) -> DirectError {
        match error {
            EgressError::LookupsBusy { team } => DirectError::LookupsBusy { team },
            error => DirectError::Refused(error),
        }
    }

    /// The error for the client; `upstream` names the endpoint as the configuration does
    /// (`the Anthropic API`, `endpoint "openrouter"`), never by its URL.
    pub fn to_api_error(&self, upstream: &str) -> ApiError {
        let message = format!("{upstream}: {self}");
        match self {
            DirectError::Refused(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, "egress_refused", message)
            }
            // The team's own share: 429, it can slow down. The gateway's: 503, not the caller's
            // doing. Slots free as lookups end, within RESOLVE_TIMEOUT.
            DirectError::LookupsBusy { team: true } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::RateLimit, "lookups_busy", message)
                    .with_retry_after(RESOLVE_TIMEOUT.as_secs())
            }
            DirectError::LookupsBusy { team: false } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Internal, "lookups_busy", message)
                    .with_retry_after(RESOLVE_TIMEOUT.as_secs())
            }
            DirectError::Redirect(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, "upstream_redirect", message)
            }
            DirectError::Unreachable => {
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, "upstream_unreachable", message)
            }
            DirectError::Timeout => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorKind::Upstream, "upstream_timeout", message)
            }
            DirectError::TooLarge => {
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, "upstream_answer_too_large", message)
            }
            DirectError::Cut => {
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, "upstream_stream_cut", message)
            }
            DirectError::Busy => busy_error(upstream),
            DirectError::Internal => ApiError::internal("the upstream request could not be built"),
        }
    }
}

/// Why the connector failed; the HTTP client wraps it, [`DirectError`] is read back from it.
#[derive(Debug)]
enum ConnectError {
    Refused(EgressError),
    Timeout,
    Unreachable,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Refused(error) => write!(f, "{error}"),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Unreachable => f.write_str("connect failed"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A TCP connector that resolves through the egress guard and connects only to what it approved.
#[derive(Clone)]
struct PinnedConnector {
    dns: Arc<Dns>,
    policy: EgressPolicy,
    connect_timeout: Duration,
}

impl tower_service::Service<Uri> for PinnedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = self.policy;
        let connect_timeout = self.connect_timeout;
        let dns = self.dns.clone();
        Box::pin(async move {
            let host = uri.host().ok_or(ConnectError::Refused(EgressError::InvalidUrl))?;
            let default_port = if uri.scheme_str() == Some("https") { 443 } else { 80 };
            let port = uri.port_u16().unwrap_or(default_port);
            // `post` resolved this host for the request's team a moment ago: this is its cached answer.
            let addresses = egress::resolve(&dns, host, port, policy, None).await.map_err(ConnectError::Refused)?;
            let mut failure = ConnectError::Unreachable;
            for address in addresses {
                match tokio::time::timeout(connect_timeout, TcpStream::connect(address)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(stream));
                    }
                    Ok(Err(_)) => failure = ConnectError::Unreachable,
                    Err(_) => failure = ConnectError::Timeout,
                }
            }
            Err(failure)
        })
    }
}

type PinnedClient = Client<HttpsConnector<PinnedConnector>, Full<Bytes>>;

/// One request to a direct endpoint.
#[derive(Debug)]
pub struct DirectRequest<'a> {
    /// The full URL to POST to (base URL plus the API path).
    pub url: &'a url::Url,
    pub policy: EgressPolicy,
    pub limits: Limits,
    /// Whose request this is (the team uid): its host lookups count against that team's share.
    /// `None` (local mode): the gateway's cap only.
    pub team: Option<Arc<str>>,
    /// Content type, keys and API headers, as the endpoint wants them.
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An answer whose headers arrived; the body is read within the call's limits.
#[derive(Debug)]
pub struct DirectResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BoundedBody,
}

/// A response body read within a deadline, an idle limit and a byte budget.
#[derive(Debug)]
pub struct BoundedBody {
    incoming: Incoming,
    deadline: Instant,
    remaining: u64,
    /// The answer's `Content-Length`, if it sent one.
    declared: Option<u64>,
    answers: AnswerBudget,
}

impl BoundedBody {
    /// The next chunk, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, DirectError> {
        loop {
            let wait = self.deadline.saturating_duration_since(Instant::now()).min(IDLE_TIMEOUT);
            let frame = match tokio::time::timeout(wait, self.incoming.frame()).await {
                Err(_) => return Err(DirectError::Timeout),
                Ok(None) => return Ok(None),
                Ok(Some(Err(_))) => return Err(DirectError::Cut),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            let size = data.len() as u64;
            if size > self.remaining {
                return Err(DirectError::TooLarge);
            }
            self.remaining -= size;
            return Ok(Some(data));
        }
    }

    /// The whole body, at most `max` bytes (and within the call's byte budget), charged to the
    /// answer budget as it arrives.
    pub async fn read_all(self, max: usize) -> Result<BufferedAnswer, DirectError> {
        let buffer = self.answers.start(max)?;
        self.read_into(buffer).await
    }

    /// The whole body into `buffer` (started before the call was made, see
    /// [`DirectClient::start_answer`]).
    pub async fn read_into(mut self, mut buffer: AnswerBuffer) -> Result<BufferedAnswer, DirectError> {
        buffer.expect(self.declared)?;
        while let Some(chunk) = self.chunk().await? {
            buffer.push(&chunk)?;
        }
        Ok(buffer.finish()?)
    }
}

/// Pooled clients, one per egress policy and connect timeout (a handful, set by configuration),
/// all resolving through one [`Dns`], and the budget their buffered answers share.
pub struct DirectClient {
    dns: Arc<Dns>,
    clients: Mutex<HashMap<(EgressPolicy, Duration), PinnedClient>>,
    answers: AnswerBudget,
}

impl Default for DirectClient {
    fn default() -> DirectClient {
        DirectClient::with_budget(AnswerBudget::new(crate::config::DEFAULT_ANSWER_BYTES_IN_FLIGHT))
    }
}

impl DirectClient {
    /// The client with the resolver `[egress]` describes, its buffered answers charged to
    /// `answers` (shared with the Bedrock client).
    pub fn new(config: &EgressConfig, answers: AnswerBudget) -> DirectClient {
        DirectClient::with_parts(Arc::new(Dns::from_config(config)), answers)
    }

    /// The default resolver, answers charged to `answers`.
    pub fn with_budget(answers: AnswerBudget) -> DirectClient {
        DirectClient::new(&EgressConfig::default(), answers)
    }

    /// Resolving through `dns`, with a budget of the default size.
    pub fn with_dns(dns: Arc<Dns>) -> DirectClient {
        DirectClient::with_parts(dns, AnswerBudget::new(crate::config::DEFAULT_ANSWER_BYTES_IN_FLIGHT))
    }

    pub fn with_parts(dns: Arc<Dns>, answers: AnswerBudget) -> DirectClient {
        DirectClient { dns, clients: Mutex::default(), answers }
    }

    /// The resolver every connection of this client uses.
    pub fn dns(&self) -> &Arc<Dns> {
        &self.dns
    }

    /// Start buffering an answer of at most `limit` bytes: before the call, so no call is made
    /// whose answer the budget has no room for.
    pub fn start_answer(&self, limit: u64) -> Result<AnswerBuffer, DirectError> {
        Ok(self.answers.start(usize::try_from(limit).unwrap_or(usize::MAX))?)
    }

    fn client(&self, policy: EgressPolicy, connect_timeout: Duration) -> PinnedClient {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry((policy, connect_timeout))
            .or_insert_with(|| {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls_config())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(PinnedConnector { dns: self.dns.clone(), policy, connect_timeout });
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .build(connector)
            })
            .clone()
    }

    /// POST the request; returns once the answer's headers arrived. A redirect is an error.
    pub async fn post(&self, request: DirectRequest<'_>) -> Result<DirectResponse, DirectError> {
        let url = egress::check_url(request.url.as_str(), request.policy).map_err(DirectError::Refused)?;
        let deadline = Instant::now() + request.limits.total_timeout;
        if let Some(url::Host::Domain(host)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            let lookup = egress::resolve(&self.dns, host, port, request.policy, request.team.as_ref());
            match tokio::time::timeout_at(deadline, lookup).await {
                Err(_) => return Err(DirectError::Timeout),
                Ok(Err(error)) => return Err(DirectError::from_egress(error)),
                Ok(Ok(_)) => {}
            }
        }
        let uri: Uri = url.as_str().parse().map_err(|_| DirectError::Refused(EgressError::InvalidUrl))?;
        let mut builder = Request::builder().method(Method::POST).uri(uri);
        if let Some(headers) = builder.headers_mut() {
            *headers = request.headers;
        }
        let http_request = builder.body(Full::new(request.body)).map_err(|_| DirectError::Internal)?;
        let client = self.client(request.policy, request.limits.connect_timeout);
        let response = match tokio::time::timeout_at(deadline, client.request(http_request)).await {
            Err(_) => return Err(DirectError::Timeout),
            Ok(Err(error)) => return Err(from_client_error(&error)),
            Ok(Ok(response)) => response,
        };
        let (parts, incoming) = response.into_parts();
        if parts.status.is_redirection() {
            return Err(DirectError::Redirect(parts.status.as_u16()));
        }
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let body = BoundedBody {
            incoming,
            deadline,
            remaining: request.limits.max_response_bytes,
            declared,
            answers: self.answers.clone(),
        };
        Ok(DirectResponse { status: parts.status, headers: parts.headers, body })
    }
}

/// Read the connector's error back out of the HTTP client's.
fn from_client_error(error: &hyper_util::client::legacy::Error) -> DirectError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = source {
        if let Some(connect) = current.downcast_ref::<ConnectError>() {
            return match connect {
                ConnectError::Refused(refused) => DirectError::from_egress(refused.clone()),
                ConnectError::Timeout => DirectError::Timeout,
                ConnectError::Unreachable => DirectError::Unreachable,
            };
        }
        source = current.source();
    }
    if error.is_connect() { DirectError::Unreachable } else { DirectError::Cut }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
    };

    /// A one-shot HTTP server on loopback answering `response` to the first request.
    async fn server(response: &'static str) -> (url::Url, tokio::task::JoinHandle<Vec<u8>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/v1/chat/completions", listener.local_addr().unwrap())).unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = vec![0u8; 4096];
            let n = stream.read(&mut received).await.unwrap();
            received.truncate(n);
            stream.write_all(response.as_bytes()).await.unwrap();
            let _ = stream.shutdown().await;
            received
        });
        (url, task)
    }

    fn request(url: &url::Url, policy: EgressPolicy) -> DirectRequest<'_> {
        let body = Bytes::from_static(b"{}");
        DirectRequest { url, policy, limits: LIMITS, team: None, headers: HeaderMap::new(), body }
    }

    const HOSTED_HTTPS: EgressPolicy = EgressPolicy::Hosted { allow_http: false };

    /// The client as `byollm` builds it: the system's DNS configuration and hosts file.
    fn client() -> DirectClient {
        DirectClient::with_budget(AnswerBudget::new(1 << 30))
    }

    #[tokio::test]
    async fn hosted_mode_never_connects_to_loopback_local_mode_does() {
        let (url, task) = server("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let client = client();
        let hosted = client.post(request(&url, EgressPolicy::Hosted { allow_http: true })).await.unwrap_err();
        assert_eq!(hosted, DirectError::Refused(EgressError::Address(egress::AddressClass::Loopback)));
        let response = client.post(request(&url, EgressPolicy::Local)).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body.read_all(1024).await.unwrap().bytes(), &Bytes::from_static(b"ok"));
        let received = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(received.starts_with("POST /v1/chat/completions HTTP/1.1"), "{received}");
    }

    #[tokio::test]
    async fn host_names_are_resolved_through_the_guard() {
        let (url, _task) = server("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let mut named = url.clone();
        named.set_host(Some("localhost")).unwrap();
        let client = client();
        let error = client.post(request(&named, EgressPolicy::Private { allow_http: false })).await.unwrap_err();
        assert!(matches!(error, DirectError::Refused(EgressError::Scheme { .. })), "{error:?}");
        let error = client.post(request(&named, EgressPolicy::Hosted { allow_http: true })).await.unwrap_err();
        assert_eq!(error, DirectError::Refused(EgressError::Address(egress::AddressClass::Loopback)));
        assert!(client.post(request(&named, EgressPolicy::Private { allow_http: true })).await.is_ok());
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (url, _task) =
            server("HTTP/1.1 307 Temporary Redirect\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n")
                .await;
        let error = client().post(request(&url, EgressPolicy::Local)).await.unwrap_err();
        assert_eq!(error, DirectError::Redirect(307));
        assert!(!error.to_string().contains("169.254"));
    }

    #[tokio::test]
    async fn answers_are_bounded_in_size_and_time() {
        let (url, _task) = server("HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n").await;
        let response = client().post(request(&url, EgressPolicy::Local)).await.unwrap();
        // Headers came, the promised body never does: the total deadline (or a cut) ends it.
        let started = std::time::Instant::now();
        let error = response.body.read_all(1 << 20).await.unwrap_err();
        assert!(matches!(error, DirectError::Cut | DirectError::Timeout), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(6));

        let big: &'static str =
            Box::leak(format!("HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n{}", "x".repeat(5000)).into_boxed_str());
        let (url, _task) = server(big).await;
        let response = client().post(request(&url, EgressPolicy::Local)).await.unwrap();
        assert_eq!(response.body.read_all(1000).await.unwrap_err(), DirectError::TooLarge);
    }

    #[tokio::test]
    async fn answers_read_whole_are_charged_to_the_shared_budget() {
        let big: &'static str =
            Box::leak(format!("HTTP/1.1 200 OK\r\ncontent-length: 6000\r\n\r\n{}", "x".repeat(6000)).into_boxed_str());
        let answers = AnswerBudget::new(16 * 1024);
        let client = DirectClient::with_budget(answers.clone());
        // Another answer holds 12 KiB: this one's 6,000 bytes find no room.
        let mut other = answers.start(1 << 20).unwrap();
        other.push(&[0; 12 * 1024]).unwrap();
        let (url, _task) = server(big).await;
        let response = client.post(request(&url, EgressPolicy::Local)).await.unwrap();
        assert_eq!(response.body.read_all(1 << 20).await.unwrap_err(), DirectError::Busy);
        assert_eq!(answers.available_bytes(), 4 * 1024, "the failed read gave its share back");
        drop(other);
        let (url, _task) = server(big).await;
        let response = client.post(request(&url, EgressPolicy::Local)).await.unwrap();
        let answer = response.body.read_all(1 << 20).await.unwrap();
        assert_eq!(answer.len(), 6000);
        assert_eq!(answers.available_bytes(), 10 * 1024, "held while the answer is");
        drop(answer);
        assert_eq!(answers.available_bytes(), 16 * 1024);

        let error = DirectError::Busy.to_api_error("endpoint \"gw\"");
        assert_eq!((error.status.as_u16(), error.code, error.retry_after), (503, "server_busy", Some(1)));
        assert!(error.message.contains("server.max_answer_bytes_in_flight"), "{}", error.message);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let _keep = tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let limits = Limits { total_timeout: Duration::from_millis(300), ..LIMITS };
        let request = DirectRequest { limits, ..request(&url, EgressPolicy::Local) };
        assert_eq!(client().post(request).await.unwrap_err(), DirectError::Timeout);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert_eq!(client().post(request(&url, EgressPolicy::Local)).await.unwrap_err(), DirectError::Unreachable);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_without_a_slot_fails_at_once_as_429_or_503_with_retry_after() {
        use futures_util::FutureExt;
        // A DNS that never answers; one lookup at a time for the gateway and for each team.
        let silent: super::super::dns::Query = Arc::new(|_: &str| std::future::pending().boxed());
        let client = Arc::new(DirectClient::with_dns(Arc::new(Dns::with_query(silent, 1, 1))));
        let url = url::Url::parse("https://a.never-answers.test/v1").unwrap();
        let team = |name: &str| Some(Arc::<str>::from(name));
        let first = {
            let (client, url) = (client.clone(), url.clone());
            // Longer than the lookup's own timeout, so that one ends it.
            let limits = Limits { total_timeout: Duration::from_secs(30), ..LIMITS };
            tokio::spawn(async move {
                client.post(DirectRequest { team: team("b"), limits, ..request(&url, HOSTED_HTTPS) }).await
            })
        };
        while client.dns().running() == 0 {
            tokio::task::yield_now().await;
        }
        let other = url::Url::parse("https://b.never-answers.test/v1").unwrap();
        let error = client.post(DirectRequest { team: team("b"), ..request(&other, HOSTED_HTTPS) }).await.unwrap_err();
        assert_eq!(error, DirectError::LookupsBusy { team: true });
        let api = error.to_api_error("endpoint \"byo\"");
        assert_eq!((api.status, api.code, api.retry_after), (StatusCode::TOO_MANY_REQUESTS, "lookups_busy", Some(5)));
        let error = client.post(DirectRequest { team: team("a"), ..request(&other, HOSTED_HTTPS) }).await.unwrap_err();
        assert_eq!(error, DirectError::LookupsBusy { team: false });
        let api = error.to_api_error("endpoint \"byo\"");
        assert_eq!((api.status, api.code, api.retry_after), (StatusCode::SERVICE_UNAVAILABLE, "lookups_busy", Some(5)));
        assert!(!api.message.contains("never-answers"), "no host in errors: {}", api.message);
        // The first lookup runs to its timeout: a failed lookup, not a busy one.
        assert_eq!(first.await.unwrap().unwrap_err(), DirectError::Refused(EgressError::ResolveTimeout));
    }
}
