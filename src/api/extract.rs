//! What the edge reads from a request, bounded: the run identity headers, and bodies, read only
//! when a handler asks (after authentication, so the read knows its owner: team and caller key),
//! within `server.max_body_bytes`, a pace ([`Pace`]: first byte, minimum rate, whole-body timeout)
//! and the budget of body bytes in flight ([`BodyBudget`]: process-wide, with a share per team and
//! per caller key), charged as bytes arrive, never on a declared length.
//!
//! [`close_if_body_unread`] marks an answer given before the request's body was read (a refusal)
//! `Connection: close`.
//!
//! Depends on the core only (config, auth, authz, error); no state, no router, no `routes.rs`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::dispatch::Call;
use crate::error::{ApiError, ErrorKind};
use crate::identity::auth::Caller;

/// Mark a response that carries a secret as never to be cached.
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How long a body waits for room in the budget (or in its owner's share) before it is turned away.
const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Whose body a read is: the tenant its bytes are charged to, within its team's and its caller
/// key's shares of the [`BodyBudget`]. Names a team and a caller, never a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyOwner(Option<Tenant>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Tenant {
    team: String,
    caller: String,
}

impl BodyOwner {
    /// A caller key of a team (`byollm serve`): held to `server.max_body_bytes_in_flight_per_team`
    /// and `server.max_body_bytes_in_flight_per_caller`.
    pub fn caller(team: &str, caller: &str) -> BodyOwner {
        BodyOwner(Some(Tenant { team: team.to_owned(), caller: caller.to_owned() }))
    }

    /// The caller a request authenticated as.
    pub fn of(caller: &Caller) -> BodyOwner {
        BodyOwner::caller(caller.team.as_str(), &caller.name)
    }

    /// The run a model request is for: its team and caller key (cloud), or the one person.
    pub fn of_call(call: &Call) -> BodyOwner {
        match (&call.run, &call.caller) {
            (Some(run), Some(caller)) => BodyOwner::caller(run.principal.team_uid.as_str(), caller),
            _ => BodyOwner::local(),
        }
    }

    /// `byollm local`: the one person it serves is the only tenant, held to the whole budget.
    pub fn local() -> BodyOwner {
        BodyOwner(None)
    }
}

/// The process-wide budget of request-body bytes held at once (`server.max_body_bytes_in_flight`),
/// and what each team and caller key holds of it. A body is charged as its bytes arrive (a
/// declared `Content-Length` reserves nothing) and gives them back when the handler drops it. A
/// chunk that finds no room waits up to a second: then 429 with `Retry-After` when its owner's
/// share is what is spent, 503 when the whole budget is. Handed to handlers as a request extension
/// by the routers; the shares come from the [`ServerConfig`] a read is given.
#[derive(Clone)]
pub struct BodyBudget {
    ledger: Arc<Ledger>,
}

struct Ledger {
    total: usize,
    held: Mutex<Held>,
    /// Woken whenever bytes are given back.
    released: Notify,
}

/// Bytes held now; a team or caller holding nothing has no entry, so the maps stay as small as the
/// requests in flight.
#[derive(Default)]
struct Held {
    all: usize,
    teams: HashMap<String, TeamHeld>,
}

#[derive(Default)]
struct TeamHeld {
    all: usize,
    callers: HashMap<String, usize>,
}

/// What a read holds its owner to.
#[derive(Clone, Copy)]
struct Shares {
    team: usize,
    caller: usize,
}

impl Shares {
    fn of(server: &ServerConfig) -> Shares {
        Shares { team: server.max_body_bytes_in_flight_per_team, caller: server.max_body_bytes_in_flight_per_caller }
    }
}

/// Which limit a charge found spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spent {
    All,
    Team,
    Caller,
}

impl Spent {
    fn error(self) -> ApiError {
        let (whose, setting) = match self {
            Spent::All => {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorKind::Internal,
                    "server_busy",
                    "the gateway is holding as many request bodies as server.max_body_bytes_in_flight allows; retry shortly",
                )
                .with_retry_after(1);
            }
            Spent::Team => ("this team's requests", "server.max_body_bytes_in_flight_per_team"),
            Spent::Caller => ("this caller key's requests", "server.max_body_bytes_in_flight_per_caller"),
        };
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::RateLimit,
            "body_share_exhausted",
            format!("{whose} are already sending as many request-body bytes as {setting} allows; retry shortly"),
        )
        .with_retry_after(1)
    }
}

impl std::fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBudget").field("total", &self.ledger.total).field("held", &self.held()).finish()
    }
}

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        BodyBudget {
            ledger: Arc::new(Ledger { total: bytes, held: Mutex::new(Held::default()), released: Notify::new() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every update leaves the counts whole, so one made before a panic elsewhere is still good.
        self.ledger.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes all requests hold right now.
    pub fn held(&self) -> usize {
        self.lock().all
    }

    /// Bytes `owner`'s team and `owner` hold right now (local mode: all of them, twice).
    pub fn held_by(&self, owner: &BodyOwner) -> (usize, usize) {
        let held = self.lock();
        match &owner.0 {
            None => (held.all, held.all),
            Some(tenant) => held
                .teams
                .get(&tenant.team)
                .map_or((0, 0), |team| (team.all, team.callers.get(&tenant.caller).copied().unwrap_or(0))),
        }
    }

    /// Take `bytes` now, or say which limit they do not fit in (the owner's first).
    fn try_take(&self, owner: &BodyOwner, shares: Shares, bytes: usize) -> Result<(), Spent> {
        let mut held = self.lock();
        let Some(tenant) = &owner.0 else {
            if held.all + bytes > self.ledger.total {
                return Err(Spent::All);
            }
            held.all += bytes;
            return Ok(());
        };
        let (team_held, caller_held) = held
            .teams
            .get(&tenant.team)
            .map_or((0, 0), |team| (team.all, team.callers.get(&tenant.caller).copied().unwrap_or(0)));
        if caller_held + bytes > shares.caller {
            return Err(Spent::Caller);
        }
        if team_held + bytes > shares.team {
            return Err(Spent::Team);
        }
        if held.all + bytes > self.ledger.total {
            return Err(Spent::All);
        }
        held.all += bytes;
        let team = match held.teams.get_mut(&tenant.team) {
            Some(team) => team,
            None => held.teams.entry(tenant.team.clone()).or_default(),
        };
        team.all += bytes;
        match team.callers.get_mut(&tenant.caller) {
            Some(caller) => *caller += bytes,
            None => {
                team.callers.insert(tenant.caller.clone(), bytes);
            }
        }
        Ok(())
    }

    /// Take `bytes`, waiting up to [`BUDGET_WAIT`] for room; true if it had to wait.
    async fn take(&self, owner: &BodyOwner, shares: Shares, bytes: usize) -> Result<bool, ApiError> {
        if self.try_take(owner, shares, bytes).is_ok() {
            return Ok(false);
        }
        let deadline = Instant::now() + BUDGET_WAIT;
        loop {
            let released = self.ledger.released.notified();
            tokio::pin!(released);
            // Registered before the retry, so bytes given back in between still wake it.
            released.as_mut().enable();
            let spent = match self.try_take(owner, shares, bytes) {
                Ok(()) => return Ok(true),
                Err(spent) => spent,
            };
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(spent.error());
            }
        }
    }

    fn give_back(&self, owner: &BodyOwner, bytes: usize) {
        {
            let mut held = self.lock();
            held.all = held.all.saturating_sub(bytes);
            if let Some(tenant) = &owner.0
                && let Some(team) = held.teams.get_mut(&tenant.team)
            {
                team.all = team.all.saturating_sub(bytes);
                if let Some(caller) = team.callers.get_mut(&tenant.caller) {
                    *caller = caller.saturating_sub(bytes);
                    if *caller == 0 {
                        team.callers.remove(&tenant.caller);
                    }
                }
                if team.all == 0 {
                    held.teams.remove(&tenant.team);
                }
            }
        }
        self.ledger.released.notify_waiters();
    }
}

/// What one body holds of the budget, given back when dropped.
struct Hold {
    budget: BodyBudget,
    owner: BodyOwner,
    shares: Shares,
    bytes: usize,
}

impl Hold {
    /// Take `bytes` more; true if it had to wait for room.
    async fn take(&mut self, bytes: usize) -> Result<bool, ApiError> {
        if bytes == 0 {
            return Ok(false);
        }
        let waited = self.budget.take(&self.owner, self.shares, bytes).await?;
        self.bytes += bytes;
        Ok(waited)
    }

    /// The most one body may hold: its caller's share (local mode: the whole budget), so that a
    /// body alone always fits.
    fn cap(&self) -> usize {
        match self.owner.0 {
            Some(_) => self.shares.caller.min(self.shares.team).min(self.budget.ledger.total),
            None => self.budget.ledger.total,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(&self.owner, self.bytes);
        }
    }
}

/// A request body as read: its bytes, and what it holds of the [`BodyBudget`] while they are held.
pub struct BoundedBytes {
    pub bytes: Bytes,
    hold: Option<Hold>,
}

impl BoundedBytes {
    /// Takes `bytes` more of the budget, held as long as the body: for what parsing the body built
    /// (a parsed request can cost many times its text). One body never holds more than its caller's
    /// share (what is above it is not charged); no room within a second is a 429 or a 503 as for
    /// the body's own bytes.
    pub async fn charge(&mut self, bytes: usize) -> Result<(), ApiError> {
        if let Some(hold) = self.hold.as_mut() {
            let room = hold.cap().saturating_sub(hold.bytes);
            hold.take(bytes.min(room)).await?;
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
    /// Read the whole body for `owner` (who authenticated first) within `server.max_body_bytes`,
    /// the pace [`Pace`] keeps and `owner`'s shares of the budget of bytes in flight, charged as
    /// they arrive.
    pub async fn read(self, server: &ServerConfig, owner: BodyOwner) -> Result<BoundedBytes, ApiError> {
        if self.content_length.is_some_and(|length| length > server.max_body_bytes as u64) {
            return Err(too_large());
        }
        let mut hold = self.budget.map(|budget| Hold { budget, owner, shares: Shares::of(server), bytes: 0 });
        let bytes = read_paced(self.body, server, self.content_length, hold.as_mut()).await?;
        Ok(BoundedBytes { bytes, hold })
    }

    /// Was it sent as JSON (or with no content type)?
    pub fn is_json(&self) -> bool {
        self.json
    }
}

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = std::convert::Infallible;

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
    /// Read for `owner` and parse; the body's share of the budget is given back once it is parsed.
    pub async fn read(self, server: &ServerConfig, owner: BodyOwner) -> Result<T, ApiError> {
        if !self.body.is_json() {
            return Err(ApiError::invalid_request("", "invalid_content_type", "send the body as application/json"));
        }
        let bytes = self.body.read(server, owner).await?;
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
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ApiJson { body: ApiBody::from_request(request, state).await?, _type: std::marker::PhantomData })
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::InvalidRequest,
        "body_too_large",
        "request body is larger than server.max_body_bytes",
    )
}

fn body_timeout(message: String) -> ApiError {
    ApiError::new(StatusCode::REQUEST_TIMEOUT, ErrorKind::InvalidRequest, "body_timeout", message)
}

/// The pace a body must keep once the handler reads it: its first byte within
/// `server.body_first_byte_timeout_secs`; then, in every `server.body_rate_window_secs` from that
/// byte on, at least `server.min_body_bytes_per_sec` per second (or what remains of its declared
/// length); all of it within `server.body_read_timeout_secs`. Else 408 `body_timeout`, so a body
/// that trickles cannot hold its share of the budget (or its connection) for long.
struct Pace {
    first_byte_by: Instant,
    ends_by: Instant,
    /// Bytes a whole window must bring; 0: no minimum.
    per_window: usize,
    window: Duration,
    /// From the first byte: when the current window started and what it brought.
    current: Option<(Instant, usize)>,
    /// What the declared length still expects.
    remaining: Option<u64>,
    first_byte_timeout: Duration,
    read_timeout: Duration,
    min_rate: usize,
}

impl Pace {
    fn new(server: &ServerConfig, declared: Option<u64>, now: Instant) -> Pace {
        let window_millis = server.body_rate_window.as_millis().max(1);
        let per_window = (server.min_body_bytes_per_sec as u128 * window_millis / 1000).min(usize::MAX as u128);
        Pace {
            first_byte_by: now + server.body_first_byte_timeout.min(server.body_read_timeout),
            ends_by: now + server.body_read_timeout,
            per_window: per_window as usize,
            window: Duration::from_millis(window_millis as u64),
            current: None,
            remaining: declared,
            first_byte_timeout: server.body_first_byte_timeout,
            read_timeout: server.body_read_timeout,
            min_rate: server.min_body_bytes_per_sec,
        }
    }

    /// When to stop waiting for the next chunk and call [`Pace::check`].
    fn deadline(&self) -> Instant {
        match self.current {
            None => self.first_byte_by,
            Some((start, _)) if self.per_window > 0 => (start + self.window).min(self.ends_by),
            Some(_) => self.ends_by,
        }
    }

    /// Has the body kept its pace up to `now`? Closes the windows that ended by then.
    fn check(&mut self, now: Instant) -> Result<(), ApiError> {
        if now >= self.ends_by {
            return Err(body_timeout(format!(
                "the request body did not arrive within server.body_read_timeout_secs ({}s)",
                self.read_timeout.as_secs()
            )));
        }
        let Some((start, brought)) = self.current.as_mut() else {
            if now >= self.first_byte_by {
                return Err(body_timeout(format!(
                    "the request body did not start within server.body_first_byte_timeout_secs ({}s)",
                    self.first_byte_timeout.as_secs()
                )));
            }
            return Ok(());
        };
        if self.per_window == 0 {
            return Ok(());
        }
        while now >= *start + self.window {
            // A window owes its full rate, or what remained of the declared length when it began.
            let owed = self.remaining.map_or(self.per_window, |left| (self.per_window as u64).min(left) as usize);
            if *brought < owed {
                return Err(body_timeout(format!(
                    "the request body arrived slower than server.min_body_bytes_per_sec ({} bytes/s) over server.body_rate_window_secs ({}s)",
                    self.min_rate,
                    self.window.as_secs()
                )));
            }
            if let Some(left) = self.remaining.as_mut() {
                *left = left.saturating_sub(*brought as u64);
            }
            *start += self.window;
            *brought = 0;
        }
        Ok(())
    }

    /// `bytes` arrived at `now` (after [`Pace::check`]); the first of them starts the windows.
    fn arrived(&mut self, now: Instant, bytes: usize) {
        let (_, brought) = self.current.get_or_insert((now, 0));
        *brought += bytes;
    }

    /// The gateway itself kept the body waiting (for room in the budget) until `now`: that time is
    /// not the client's, so a new window starts.
    fn restart(&mut self, now: Instant) {
        if let Some((start, brought)) = self.current.as_mut() {
            if let Some(left) = self.remaining.as_mut() {
                *left = left.saturating_sub(*brought as u64);
            }
            (*start, *brought) = (now, 0);
        }
    }
}

/// Read a whole body, bounded in size (`server.max_body_bytes`), in pace ([`Pace`]) and, chunk by
/// chunk as it arrives, in the budget `hold` draws on.
async fn read_paced(
    mut body: axum::body::Body,
    server: &ServerConfig,
    declared: Option<u64>,
    mut hold: Option<&mut Hold>,
) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;

    let mut pace = Pace::new(server, declared, Instant::now());
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let next = tokio::time::timeout_at(pace.deadline(), body.frame()).await;
        let now = Instant::now();
        let frame = match next {
            Err(_) => {
                pace.check(now)?;
                continue;
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(ApiError::invalid_request("", "unreadable_body", "could not read the request body"));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry no body bytes.
        let Ok(chunk) = frame.into_data() else { continue };
        if chunk.is_empty() {
            continue;
        }
        pace.check(now)?;
        total += chunk.len();
        if total > server.max_body_bytes {
            return Err(too_large());
        }
        pace.arrived(now, chunk.len());
        if let Some(hold) = hold.as_deref_mut()
            && hold.take(chunk.len()).await?
        {
            pace.restart(Instant::now());
        }
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut whole = BytesMut::with_capacity(total);
            for chunk in chunks {
                whole.extend_from_slice(&chunk);
            }
            whole.freeze()
        }
    })
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
    use axum::http::HeaderMap;

    use crate::identity::authz::{FieldSource, run_request_from_headers};

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
        let error = json.read(&server, BodyOwner::local()).await.unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (400, "invalid_json"));
        assert!(error.message.len() < 2048, "{} bytes", error.message.len());
    }

    const KIB: usize = 1024;

    fn server(max_body: usize) -> ServerConfig {
        let mut config = crate::config::Config::from_toml("dev = true").unwrap().server;
        config.max_body_bytes = max_body;
        config
    }

    /// `max_body` bytes a body, `team` and `caller` bytes the shares; 1 KiB/s over 5 s windows,
    /// the first byte within 10 s, the whole body within 60 s.
    fn shared(max_body: usize, team: usize, caller: usize) -> ServerConfig {
        let mut config = server(max_body);
        config.max_body_bytes_in_flight_per_team = team;
        config.max_body_bytes_in_flight_per_caller = caller;
        config.body_first_byte_timeout = Duration::from_secs(10);
        config.min_body_bytes_per_sec = KIB;
        config.body_rate_window = Duration::from_secs(5);
        config.body_read_timeout = Duration::from_secs(60);
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

    /// A body the test sends chunk by chunk (it ends when the sender is dropped).
    fn fed(declared: Option<usize>, budget: &BodyBudget) -> (ApiBody, tokio::sync::mpsc::UnboundedSender<Bytes>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), receiver))
        });
        let body = ApiBody {
            body: axum::body::Body::from_stream(chunks),
            content_length: declared.map(|d| d as u64),
            budget: Some(budget.clone()),
            json: true,
        };
        (body, sender)
    }

    fn spaces(bytes: usize) -> Bytes {
        Bytes::from(vec![b' '; bytes])
    }

    async fn read(body: ApiBody, server: &ServerConfig, owner: &BodyOwner) -> Result<BoundedBytes, ApiError> {
        body.read(server, owner.clone()).await
    }

    /// Wait (in paused time) until `budget` holds `bytes`.
    async fn until_held(budget: &BodyBudget, bytes: usize) {
        for _ in 0..1000 {
            if budget.held() == bytes {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the budget holds {} bytes, not {bytes}", budget.held());
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_are_charged_as_their_bytes_arrive_not_on_their_declared_length() {
        let budget = BodyBudget::new(100 * KIB);
        let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
        let team_a = BodyOwner::caller("a", "a1");
        // Declares 60 KiB, has sent 10: holds 10.
        let (slow, sender) = fed(Some(60 * KIB), &budget);
        let reading = tokio::spawn({
            let (server, owner) = (server.clone(), team_a.clone());
            async move { read(slow, &server, &owner).await.map(|b| (b.len(), b)) }
        });
        sender.send(spaces(10 * KIB)).unwrap();
        until_held(&budget, 10 * KIB).await;
        // So another body of 64 KiB fits beside it (a reservation of 60 would have left 40).
        let other = read(body(64 * KIB, true, &budget), &server, &BodyOwner::caller("b", "b1")).await.unwrap();
        assert_eq!((budget.held(), budget.held_by(&team_a)), (74 * KIB, (10 * KIB, 10 * KIB)));
        drop(other);
        sender.send(spaces(50 * KIB)).unwrap();
        drop(sender);
        let (length, whole) = reading.await.unwrap().unwrap();
        assert_eq!((length, budget.held()), (60 * KIB, 60 * KIB));
        drop(whole);
        assert_eq!(budget.held(), 0);
        assert!(budget.lock().teams.is_empty(), "owners holding nothing leave no entry");
        // Without Content-Length: what arrived, no more.
        let chunked = read(body(5 * KIB, false, &budget), &server, &team_a).await.unwrap();
        assert_eq!((chunked.len(), budget.held()), (5 * KIB, 5 * KIB));
        // A declared size above the maximum is refused before anything is read.
        let error = read(body(65 * KIB, true, &budget), &server, &team_a).await.err().unwrap();
        assert_eq!((error.status.as_u16(), error.code, budget.held()), (413, "body_too_large", 5 * KIB));
        // So is one that sends more than the maximum without declaring it; what it held goes back.
        let error = read(body(65 * KIB, false, &budget), &server, &team_a).await.err().unwrap();
        assert_eq!((error.status.as_u16(), budget.held()), (413, 5 * KIB));
    }

    #[tokio::test(start_paused = true)]
    async fn a_team_and_a_caller_key_hold_at_most_their_shares() {
        let budget = BodyBudget::new(100 * KIB);
        let server = shared(40 * KIB, 60 * KIB, 40 * KIB);
        let (a1, a2, b1) = (BodyOwner::caller("a", "a1"), BodyOwner::caller("a", "a2"), BodyOwner::caller("b", "b1"));
        let first = read(body(40 * KIB, true, &budget), &server, &a1).await.unwrap();
        // The caller key's share is spent: a 429 after a short wait, naming the setting.
        let started = Instant::now();
        let error = read(body(KIB, true, &budget), &server, &a1).await.err().unwrap();
        assert_eq!((error.status.as_u16(), error.code, error.retry_after), (429, "body_share_exhausted", Some(1)));
        assert_eq!(error.kind, crate::error::ErrorKind::RateLimit);
        assert!(error.message.contains("max_body_bytes_in_flight_per_caller"), "{}", error.message);
        assert!(started.elapsed() >= BUDGET_WAIT, "it waited for room first");
        // Another key of the team has the rest of the team's share, no more.
        let second = read(body(20 * KIB, true, &budget), &server, &a2).await.unwrap();
        let error = read(body(KIB, true, &budget), &server, &a2).await.err().unwrap();
        assert_eq!((error.status.as_u16(), error.code), (429, "body_share_exhausted"));
        assert!(error.message.contains("max_body_bytes_in_flight_per_team"), "{}", error.message);
        assert_eq!(budget.held_by(&a2), (60 * KIB, 20 * KIB));
        // Another team is unaffected.
        let third = read(body(40 * KIB, true, &budget), &server, &b1).await.unwrap();
        // The process is full: 503 for anyone.
        let error = read(body(KIB, true, &budget), &server, &BodyOwner::caller("c", "c1")).await.err().unwrap();
        assert_eq!((error.status.as_u16(), error.code, error.retry_after), (503, "server_busy", Some(1)));
        let error = read(body(KIB, true, &budget), &server, &BodyOwner::local()).await.err().unwrap();
        assert_eq!(error.status.as_u16(), 503);
        // Refused reads gave back what they had taken.
        assert_eq!(budget.held(), 100 * KIB);
        drop(first);
        assert_eq!((budget.held_by(&a1), budget.held()), ((20 * KIB, 0), 60 * KIB));
        drop((second, third));
        assert_eq!(budget.held(), 0);
        assert!(budget.lock().teams.is_empty());
        // Local mode's one tenant may use the whole budget.
        let local = BodyOwner::local();
        let (one, two) = (
            read(body(40 * KIB, true, &budget), &server, &local),
            read(body(40 * KIB, true, &budget), &server, &local),
        );
        let (one, two) = tokio::join!(one, two);
        assert!(one.is_ok() && two.is_ok());
        assert_eq!(budget.held(), 80 * KIB);
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunk_gets_bytes_given_back_while_it_waits() {
        let budget = BodyBudget::new(100 * KIB);
        let server = shared(40 * KIB, 60 * KIB, 40 * KIB);
        let a1 = BodyOwner::caller("a", "a1");
        let first = read(body(40 * KIB, true, &budget), &server, &a1).await.unwrap();
        let started = Instant::now();
        let waiting = tokio::spawn({
            let (server, budget, a1) = (server.clone(), budget.clone(), a1.clone());
            async move { read(body(10 * KIB, true, &budget), &server, &a1).await.map(|b| b.len()) }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(first);
        assert_eq!(waiting.await.unwrap().unwrap(), 10 * KIB);
        assert!(started.elapsed() < BUDGET_WAIT, "served when room was given back, {:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn what_parsing_built_is_charged_to_the_budget_with_the_body() {
        let budget = BodyBudget::new(100 * KIB);
        let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
        let local = BodyOwner::local();
        let mut parsed = read(body(10 * KIB, true, &budget), &server, &local).await.unwrap();
        parsed.charge(50 * KIB).await.unwrap();
        assert_eq!(budget.held(), 60 * KIB);
        // Another body's parse finds no room: turned away rather than overdrawn.
        let mut other = read(body(10 * KIB, true, &budget), &server, &local).await.unwrap();
        let error = other.charge(40 * KIB).await.unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (503, "server_busy"));
        assert_eq!(budget.held(), 70 * KIB);
        // The charge goes back with the body.
        drop(parsed);
        drop(other);
        assert_eq!(budget.held(), 0);
        // A tenant's body and its parse hold at most the caller key's share, so it always fits.
        let server = shared(20 * KIB, 60 * KIB, 40 * KIB);
        let a1 = BodyOwner::caller("a", "a1");
        let mut parsed = read(body(10 * KIB, true, &budget), &server, &a1).await.unwrap();
        parsed.charge(100 * KIB).await.unwrap();
        assert_eq!(budget.held_by(&a1), (40 * KIB, 40 * KIB));
        let error = read(body(KIB, true, &budget), &server, &a1).await.err().unwrap();
        assert_eq!(error.status.as_u16(), 429);
    }

    /// Reads `body` in paused time; what it answered and how long (virtual) it took.
    async fn timed(body: ApiBody, server: &ServerConfig) -> (Result<usize, ApiError>, Duration) {
        let started = Instant::now();
        let result = read(body, server, &BodyOwner::caller("a", "a1")).await.map(|b| b.len());
        (result, started.elapsed())
    }

    fn assert_cut(result: (Result<usize, ApiError>, Duration), after_secs: u64, says: &str) {
        let (result, elapsed) = result;
        let error = result.expect_err("cut");
        assert_eq!((error.status.as_u16(), error.code), (408, "body_timeout"));
        assert!(error.message.contains(says), "{}", error.message);
        let after = Duration::from_secs(after_secs);
        assert!(
            elapsed >= after && elapsed < after + Duration::from_millis(100),
            "cut after {elapsed:?}, not {after:?}"
        );
    }

    /// Sends `chunks` (at seconds from now) then keeps the body open, sending nothing more, until
    /// `open_secs`.
    fn feed(sender: tokio::sync::mpsc::UnboundedSender<Bytes>, chunks: Vec<(u64, usize)>, open_secs: u64) {
        let started = Instant::now();
        tokio::spawn(async move {
            for (at, bytes) in chunks {
                tokio::time::sleep_until(started + Duration::from_secs(at)).await;
                let _ = sender.send(spaces(bytes));
            }
            tokio::time::sleep_until(started + Duration::from_secs(open_secs)).await;
            drop(sender);
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_starts_is_cut_at_the_first_byte_timeout() {
        let budget = BodyBudget::new(100 * KIB);
        let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
        let (silent, sender) = fed(Some(20 * KIB), &budget);
        feed(sender, vec![], 120);
        assert_cut(timed(silent, &server).await, 10, "body_first_byte_timeout_secs");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_the_minimum_rate_is_cut_after_one_window() {
        let budget = BodyBudget::new(100 * KIB);
        let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
        // 512 bytes a second from t = 2 s: the window from the first byte (2..7 s) brings 2.5 KiB of 5.
        let (trickle, sender) = fed(Some(60 * KIB), &budget);
        feed(sender, (2..60).map(|at| (at, 512)).collect(), 120);
        assert_cut(timed(trickle, &server).await, 7, "min_body_bytes_per_sec");
        assert_eq!(budget.held(), 0, "what it held went back");
        // A burst, then nothing: the first window is kept, the second is not.
        let (stalled, sender) = fed(Some(60 * KIB), &budget);
        feed(sender, vec![(0, 20 * KIB)], 120);
        assert_cut(timed(stalled, &server).await, 10, "min_body_bytes_per_sec");
        // A small body owes what it declared within a window: 1 KiB, then the other 2 after 6 s.
        let (late, sender) = fed(Some(3 * KIB), &budget);
        feed(sender, vec![(0, KIB), (6, 2 * KIB)], 120);
        assert_cut(timed(late, &server).await, 5, "min_body_bytes_per_sec");
        // With no minimum rate, only the whole-body timeout cuts a trickle.
        let mut unpaced = server.clone();
        unpaced.min_body_bytes_per_sec = 0;
        let (trickle, sender) = fed(Some(60 * KIB), &budget);
        feed(sender, (0..100).map(|at| (at, 100)).collect(), 120);
        assert_cut(timed(trickle, &unpaced).await, 60, "body_read_timeout_secs");
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_that_keep_the_pace_are_read_whole() {
        let budget = BodyBudget::new(100 * KIB);
        let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
        // 2 KiB a second for 20 s, after a first byte at 9 s.
        let (steady, sender) = fed(None, &budget);
        feed(sender, (9..29).map(|at| (at, 2 * KIB)).collect(), 29);
        let (result, _) = timed(steady, &server).await;
        assert_eq!(result.unwrap(), 40 * KIB);
        // A small body whose rest comes within the window.
        let (small, sender) = fed(Some(3 * KIB), &budget);
        feed(sender, vec![(0, KIB), (4, 2 * KIB)], 4);
        assert_eq!(timed(small, &server).await.0.unwrap(), 3 * KIB);
    }

    #[test]
    fn time_the_gateway_kept_a_body_waiting_is_not_counted_against_it() {
        let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut pace = Pace::new(&server, Some(60 * KIB as u64), start);
        pace.arrived(at(0), KIB);
        assert!(pace.check(at(5)).is_err(), "1 KiB in a 5 s window is too slow");
        let mut pace = Pace::new(&server, Some(60 * KIB as u64), start);
        pace.arrived(at(0), KIB);
        // The budget kept it waiting until 4 s: its window starts again then.
        pace.restart(at(4));
        assert!(pace.check(at(8)).is_ok());
        assert_eq!(pace.deadline(), at(9));
        assert!(pace.check(at(9)).is_err());
    }
}
