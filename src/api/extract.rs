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
mod tests;
