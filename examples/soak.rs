//! Soak: `byollm serve` under a steady open-loop load for minutes while the fakes it calls
//! misbehave on a seeded schedule; every answer the client gets is checked and classified.
//!
//! ```text
//! cargo build --release && cargo run --release --example soak -- --secs 600 --rate 1000
//! ```
//!
//! * Gateway: `byollm serve` (API key, run identity headers) against a fake Bedrock and a fake
//!   STS in this process, with a routing policy of two Bedrock routes for the model (the `[models]`
//!   id, then an inference profile), so a throttled or failing first route fails over. Half the
//!   requests belong to a few long runs (credentials cached from the start), half to a run that
//!   changes every `--new-run-secs`, so STS is called again all along.
//! * Load: `--rate` requests per second started on a schedule whatever the answers do, for
//!   `--secs`: OpenAI chat completions (`--stream` of them streamed), and `--messages` / `--native`
//!   fractions of streamed `/v1/messages` and native `invoke-with-response-stream` calls.
//! * Faults (the fake decides from `--seed`, the request's number, written in its prompt, and the
//!   route, so a run is repeatable): ThrottlingException 429s, 5xx, answers cut mid-way (the
//!   connection aborted, the body ended early, or a Bedrock exception frame), slow streams (one
//!   frame every 80 ms), and STS outages (every STS call fails for `--sts-outage-secs` every minute).
//! * Every answer is classified: `ok` (the whole expected text: a valid JSON completion; SSE
//!   ending with `data: [DONE]` or `message_stop`, every data line valid JSON; event-stream
//!   frames ending with `message_stop`), `refused` (an error status with a well-formed body in the
//!   surface's shape; a stream ending with the surface's error event; a native stream cut where
//!   the fake cut Bedrock's answer, as Bedrock's own connection would be), or `lost` (a reset with
//!   no error, a truncated or malformed body, SSE with no terminal event, an answer past
//!   `CLIENT_TIMEOUT`). The run exits non-zero when any answer was lost.
//! * Every `--sample-secs`: the gateway's VmRSS, threads, open fds and the achieved rate; at the
//!   end the RSS drift (end vs one minute in, or half-way for runs under two minutes), and the
//!   gateway's audit lines counted, their attempts by route and outcome.
//!
//! Must never send anything beyond 127.0.0.1 or run unbounded: the load stops by itself after
//! `--secs` (at most one hour) plus the time the last answers take (at most `CLIENT_TIMEOUT`).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::{Value, json};

use common::{
    Cloud, answer_words, anthropic_message, event_frames, event_stream_frame, ready_connection, rss_kib,
    serve_in_thread, start_byollm_cloud, sts_credentials_xml,
};

const MODEL_ID: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// The second route's inference profile.
const PROFILE_ID: &str = "us.anthropic.claude-3-5-sonnet-20240620-v1:0";
const SECRET: &str = "soak-secret-access-key-not-checked-00001";
const API_KEY: &str = "byollm_soak_key_0123456789abcdef0123456";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/byollm-soak";
const WORDS: usize = 20;
/// Slow streams: one frame every this long (26 frames: about 2 s).
const SLOW_GAP: Duration = Duration::from_millis(80);
/// The gateway's `server.request_timeout_secs` in this run.
const REQUEST_TIMEOUT_SECS: u64 = 20;
/// An answer not finished this long after it was sent is lost.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS + 10);
/// Long runs: their credentials are fetched before the load and stay cached.
const LONG_RUNS: u64 = 4;
/// Examples of lost answers printed.
const EXAMPLES: usize = 5;
/// Connections the client opened (none idle in its pool at the time).
static CONNECTIONS_OPENED: AtomicU64 = AtomicU64::new(0);
/// Idle connections found closed by the gateway (its keep-alive timeout) and dropped unused.
static STALE_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

#[derive(Parser)]
struct Args {
    /// Requests started per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of load (at most 3600).
    #[arg(long, default_value_t = 600)]
    secs: u64,
    /// Fraction of chat completions that are streamed.
    #[arg(long, default_value_t = 0.5)]
    stream: f64,
    /// Fraction of all requests that are streamed `/v1/messages` calls.
    #[arg(long, default_value_t = 0.05)]
    messages: f64,
    /// Fraction of all requests that are native `invoke-with-response-stream` calls.
    #[arg(long, default_value_t = 0.05)]
    native: f64,
    /// Seed of the fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Per mille of upstream calls answered with a ThrottlingException (429).
    #[arg(long, default_value_t = 30)]
    throttle: u64,
    /// Per mille answered with a 500 or 503.
    #[arg(long, default_value_t = 10)]
    server_error: u64,
    /// Per mille cut mid-answer (aborted, ended early, or an exception frame, in turn).
    #[arg(long, default_value_t = 30)]
    cut: u64,
    /// Per mille answered slowly (a stream: one frame every 80 ms; non-streamed: 1 s late).
    #[arg(long, default_value_t = 30)]
    slow: u64,
    /// Seconds of STS outage in every minute of load (from second 15); 0: none.
    #[arg(long, default_value_t = 5)]
    sts_outage_secs: u64,
    /// A new run id this often (its first request calls STS).
    #[arg(long, default_value_t = 5)]
    new_run_secs: u64,
    /// Seconds between samples of the gateway process.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
}

// ---- the fault schedule ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Throttle,
    ServerError,
    /// The connection aborted after some frames (bytes).
    Abort,
    /// The body ends, cleanly, after some frames (bytes).
    EndEarly,
    /// A Bedrock exception frame after some frames (streams; non-streamed: an abort).
    Exception,
    Slow,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Schedule {
    seed: u64,
    throttle: u64,
    server_error: u64,
    cut: u64,
    slow: u64,
}

impl Schedule {
    /// What the fake does to request `n` on route `route` (0 or 1).
    fn fault(&self, n: u64, route: u64) -> Fault {
        let roll = mix(self.seed ^ mix(n.wrapping_mul(2).wrapping_add(route))) % 1000;
        let mut edge = self.throttle;
        if roll < edge {
            return Fault::Throttle;
        }
        edge += self.server_error;
        if roll < edge {
            return Fault::ServerError;
        }
        edge += self.cut;
        if roll < edge {
            return match n % 3 {
                0 => Fault::Abort,
                1 => Fault::EndEarly,
                _ => Fault::Exception,
            };
        }
        edge += self.slow;
        if roll < edge { Fault::Slow } else { Fault::None }
    }

    /// A number in 0..1 for request `n`'s own choices (kind, streaming).
    fn uniform(&self, n: u64, salt: u64) -> f64 {
        (mix(self.seed ^ mix(n ^ (salt << 56))) % 1_000_000) as f64 / 1e6
    }
}

// ---- the fakes ------------------------------------------------------------------------------------

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    throttle: AtomicU64,
    server_error: AtomicU64,
    abort: AtomicU64,
    end_early: AtomicU64,
    exception: AtomicU64,
    slow: AtomicU64,
    unnumbered: AtomicU64,
    sts_calls: AtomicU64,
    sts_refused: AtomicU64,
}

struct FakeState {
    schedule: Arc<Schedule>,
    message: Bytes,
    frames: Vec<Bytes>,
    counters: Arc<Counters>,
}

/// The request number written in a prompt ("soak request 123;").
fn request_number(body: &[u8]) -> Option<u64> {
    let needle = b"soak request ";
    let at = body.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let digits: Vec<u8> = body[at..].iter().copied().take_while(u8::is_ascii_digit).collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn route_of(id: &str) -> u64 {
    u64::from(id == PROFILE_ID)
}

fn bedrock_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json"), (header::HeaderName::from_static("x-amzn-errortype"), kind)],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

/// The fault as an answer, when it is refused before any byte of an answer.
fn refusal(fault: Fault, n: u64, counters: &Counters) -> Option<Response> {
    match fault {
        Fault::Throttle => {
            counters.throttle.fetch_add(1, Ordering::Relaxed);
            Some(bedrock_error(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                "Too many requests, please wait before trying again.",
            ))
        }
        Fault::ServerError => {
            counters.server_error.fetch_add(1, Ordering::Relaxed);
            Some(if n.is_multiple_of(2) {
                bedrock_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException", "internal error")
            } else {
                bedrock_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException", "service unavailable")
            })
        }
        _ => None,
    }
}

fn count_fault(fault: Fault, counters: &Counters) {
    let counter = match fault {
        Fault::Abort => &counters.abort,
        Fault::EndEarly => &counters.end_early,
        Fault::Exception => &counters.exception,
        Fault::Slow => &counters.slow,
        _ => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

type Chunks = Vec<Result<Bytes, std::io::Error>>;

fn answer(content_type: &'static str, chunks: Chunks, gap: Option<Duration>) -> Response {
    let body = match gap {
        None => Body::from_stream(futures_util::stream::iter(chunks)),
        Some(gap) => {
            Body::from_stream(futures_util::stream::unfold(chunks.into_iter(), move |mut chunks| async move {
                let chunk = chunks.next()?;
                tokio::time::sleep(gap).await;
                Some((chunk, chunks))
            }))
        }
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::HeaderName::from_static("x-amzn-requestid"), "00000000-0000-0000-0000-000000000000"),
            (header::HeaderName::from_static("x-amzn-bedrock-content-type"), "application/json"),
            (header::HeaderName::from_static("x-amzn-bedrock-input-token-count"), "12"),
            (header::HeaderName::from_static("x-amzn-bedrock-output-token-count"), "20"),
        ],
        body,
    )
        .into_response()
}

fn aborted() -> Result<Bytes, std::io::Error> {
    Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "soak: connection cut"))
}

fn exception_frame() -> Bytes {
    event_stream_frame(
        &[
            (":exception-type", "modelStreamErrorException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        br#"{"message":"soak: the model stream broke"}"#.to_vec(),
    )
}

async fn invoke(State(state): State<Arc<FakeState>>, UrlPath(id): UrlPath<String>, body: Bytes) -> Response {
    let counters = &state.counters;
    counters.calls.fetch_add(1, Ordering::Relaxed);
    let Some(n) = request_number(&body) else {
        counters.unnumbered.fetch_add(1, Ordering::Relaxed);
        return answer("application/json", vec![Ok(state.message.clone())], None);
    };
    let fault = state.schedule.fault(n, route_of(&id));
    if let Some(refused) = refusal(fault, n, counters) {
        return refused;
    }
    count_fault(fault, counters);
    let half = state.message.slice(..state.message.len() / 2);
    let rest = state.message.slice(state.message.len() / 2..);
    match fault {
        Fault::Abort | Fault::Exception => answer("application/json", vec![Ok(half), aborted()], None),
        Fault::EndEarly => answer("application/json", vec![Ok(half)], None),
        Fault::Slow => answer("application/json", vec![Ok(half), Ok(rest)], Some(Duration::from_millis(500))),
        _ => answer("application/json", vec![Ok(state.message.clone())], None),
    }
}

async fn invoke_stream(State(state): State<Arc<FakeState>>, UrlPath(id): UrlPath<String>, body: Bytes) -> Response {
    let counters = &state.counters;
    counters.calls.fetch_add(1, Ordering::Relaxed);
    const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";
    let frames = || state.frames.iter().cloned().map(Ok);
    let Some(n) = request_number(&body) else {
        counters.unnumbered.fetch_add(1, Ordering::Relaxed);
        return answer(EVENT_STREAM, frames().collect(), None);
    };
    let fault = state.schedule.fault(n, route_of(&id));
    if let Some(refused) = refusal(fault, n, counters) {
        return refused;
    }
    count_fault(fault, counters);
    // Cut after 1 to 20 frames (message_start is always sent).
    let keep = 1 + (mix(n) % 20) as usize;
    let mut chunks: Chunks = match fault {
        Fault::Abort | Fault::EndEarly | Fault::Exception => frames().take(keep).collect(),
        _ => frames().collect(),
    };
    match fault {
        Fault::Abort => chunks.push(aborted()),
        Fault::Exception => chunks.push(Ok(exception_frame())),
        _ => {}
    }
    answer(EVENT_STREAM, chunks, (fault == Fault::Slow).then_some(SLOW_GAP))
}

fn start_fake(schedule: Arc<Schedule>, counters: Arc<Counters>) -> Result<SocketAddr, String> {
    let state =
        Arc::new(FakeState { schedule, message: anthropic_message(WORDS), frames: event_frames(WORDS), counters });
    let app = Router::new()
        .route("/model/{id}/invoke", post(invoke))
        .route("/model/{id}/invoke-with-response-stream", post(invoke_stream))
        .with_state(state);
    serve_in_thread(app)
}

/// When STS is down: `outage_secs` from second 15 of every minute after `load_start` is set.
struct StsClock {
    load_start: Mutex<Option<Instant>>,
    outage_secs: u64,
}

impl StsClock {
    fn down(&self) -> bool {
        let Some(start) = *self.load_start.lock().unwrap_or_else(|e| e.into_inner()) else { return false };
        let second = start.elapsed().as_secs() % 60;
        (15..15 + self.outage_secs).contains(&second)
    }
}

fn start_fake_sts(clock: Arc<StsClock>, counters: Arc<Counters>) -> Result<SocketAddr, String> {
    let app = Router::new().fallback(move || {
        let (clock, counters) = (clock.clone(), counters.clone());
        async move {
            counters.sts_calls.fetch_add(1, Ordering::Relaxed);
            if clock.down() {
                counters.sts_refused.fetch_add(1, Ordering::Relaxed);
                let xml = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                           <Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>soak: STS outage</Message>\
                           </Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>";
                return (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "text/xml")], xml.to_owned());
            }
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], sts_credentials_xml(SECRET))
        }
    });
    serve_in_thread(app)
}

// ---- requests and their verdicts ------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Chat,
    ChatStream,
    Messages,
    Native,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Chat => "chat (non-stream)",
            Kind::ChatStream => "chat (stream)",
            Kind::Messages => "messages (stream)",
            Kind::Native => "native (stream)",
        }
    }
}

enum Verdict {
    Ok,
    /// Refused or broken off in the surface's own way; the label says how.
    Refused(String),
    Lost(String),
}

/// What came back for one request.
struct Got {
    status: u16,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
    /// The body (or the request) failed: a reset, a cut, a timeout.
    broken: Option<String>,
}

/// The prompt of request `n` (1, 2, ...; 0: a warm-up request, which the fake never faults).
fn prompt(n: u64) -> String {
    if n == 0 {
        "warm-up; say hello in twenty words.".into()
    } else {
        format!("soak request {n}; say hello in twenty words.")
    }
}

fn request(kind: Kind, n: u64, run: &str, host: &str) -> Request<Full<Bytes>> {
    let (path, body) = match kind {
        Kind::Chat | Kind::ChatStream => {
            let mut body = json!({
                "model": "soak",
                "messages": [{"role": "user", "content": prompt(n)}],
                "max_tokens": 256,
            });
            if kind == Kind::ChatStream {
                body["stream"] = json!(true);
                body["stream_options"] = json!({"include_usage": true});
            }
            ("/v1/chat/completions", body)
        }
        Kind::Messages => (
            "/v1/messages",
            json!({"model": "soak", "max_tokens": 256, "stream": true, "messages": [{"role": "user", "content": prompt(n)}]}),
        ),
        Kind::Native => (
            "/model/soak/invoke-with-response-stream",
            json!({
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 256,
                "messages": [{"role": "user", "content": [{"type": "text", "text": prompt(n)}]}],
            }),
        ),
    };
    let mut request = Request::new(Full::new(Bytes::from(body.to_string())));
    *request.method_mut() = hyper::Method::POST;
    *request.uri_mut() = path.parse().expect("path");
    let headers = request.headers_mut();
    let mut put = |name: &'static str, value: &str| {
        headers.insert(name, value.parse().expect("header value"));
    };
    put("host", host);
    put("content-type", "application/json");
    put("authorization", &format!("Bearer {API_KEY}"));
    put("x-byollm-actor", "service_account");
    put("x-byollm-principal", "soak-bot");
    put("x-byollm-run-id", run);
    if kind == Kind::Messages {
        put("anthropic-version", "2023-06-01");
    }
    request
}

fn expected_text() -> String {
    answer_words(WORDS).concat()
}

fn verdict(kind: Kind, got: &Got, cut_upstream: bool) -> Verdict {
    if got.status != 200 {
        if let Some(error) = &got.broken {
            return Verdict::Lost(format!("status {} then {error}", got.status));
        }
        return refusal_verdict(kind, got);
    }
    match kind {
        Kind::Chat => match &got.broken {
            Some(error) => Verdict::Lost(format!("non-stream body broke: {error}")),
            None => chat_verdict(&got.body),
        },
        Kind::ChatStream => sse_verdict(&got.body, got.broken.as_deref(), openai_event),
        Kind::Messages => sse_verdict(&got.body, got.broken.as_deref(), anthropic_event),
        Kind::Native => native_verdict(&got.body, got.broken.as_deref(), cut_upstream),
    }
}

/// A non-200 answer: a well-formed error body in the surface's shape, or lost.
fn refusal_verdict(kind: Kind, got: &Got) -> Verdict {
    let Ok(body) = serde_json::from_slice::<Value>(&got.body) else {
        return Verdict::Lost(format!("status {} with a body that is not JSON: {}", got.status, lossy(&got.body)));
    };
    let label = match kind {
        Kind::Chat | Kind::ChatStream => {
            let error = &body["error"];
            match (error["message"].as_str(), error["type"].as_str()) {
                (Some(_), Some(_)) => error["code"].as_str().unwrap_or("-").to_owned(),
                _ => return Verdict::Lost(format!("status {} not in OpenAI's error shape: {body}", got.status)),
            }
        }
        Kind::Messages => {
            match (body["type"].as_str(), body["error"]["type"].as_str(), body["error"]["message"].as_str()) {
                (Some("error"), Some(kind), Some(_)) => kind.to_owned(),
                _ => return Verdict::Lost(format!("status {} not in Anthropic's error shape: {body}", got.status)),
            }
        }
        Kind::Native => {
            let error_type = got.headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok());
            let message = body["message"].as_str().or(body["Message"].as_str());
            match (error_type, message) {
                (Some(kind), Some(_)) => kind.split(':').next().unwrap_or(kind).to_owned(),
                _ => return Verdict::Lost(format!("status {} not in Bedrock's error shape: {body}", got.status)),
            }
        }
    };
    Verdict::Refused(format!("{} {label}", got.status))
}

fn chat_verdict(body: &[u8]) -> Verdict {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Verdict::Lost(format!("200 with a truncated or malformed completion: {}", lossy(body)));
    };
    match value["choices"][0]["message"]["content"].as_str() {
        Some(text) if text == expected_text() => Verdict::Ok,
        _ => Verdict::Lost(format!("200 with a wrong completion: {}", lossy(body))),
    }
}

/// One SSE event's data, judged: text it adds, the end of the stream, or an error event.
enum Event {
    Text(String),
    Nothing,
    Done,
    Error(String),
}

fn openai_event(_name: Option<&str>, data: &str) -> Result<Event, String> {
    if data == "[DONE]" {
        return Ok(Event::Done);
    }
    let chunk: Value = serde_json::from_str(data).map_err(|e| format!("data line not JSON ({e}): {data}"))?;
    if chunk.get("error").is_some() {
        let error = &chunk["error"];
        return match (error["message"].as_str(), error["type"].as_str()) {
            (Some(_), Some(_)) => Ok(Event::Error(error["code"].as_str().unwrap_or("-").to_owned())),
            _ => Err(format!("error event not in OpenAI's shape: {data}")),
        };
    }
    if chunk["object"] != "chat.completion.chunk" {
        return Err(format!("not a chat.completion.chunk: {data}"));
    }
    Ok(chunk["choices"][0]["delta"]["content"].as_str().map_or(Event::Nothing, |text| Event::Text(text.to_owned())))
}

fn anthropic_event(name: Option<&str>, data: &str) -> Result<Event, String> {
    let event: Value = serde_json::from_str(data).map_err(|e| format!("data line not JSON ({e}): {data}"))?;
    let kind = event["type"].as_str().ok_or_else(|| format!("event without a type: {data}"))?;
    if name.is_some_and(|name| name != kind) {
        return Err(format!("event: {name:?} with data of type {kind}"));
    }
    Ok(match kind {
        "message_stop" => Event::Done,
        "error" => match (event["error"]["type"].as_str(), event["error"]["message"].as_str()) {
            (Some(kind), Some(_)) => Event::Error(kind.to_owned()),
            _ => return Err(format!("error event not in Anthropic's shape: {data}")),
        },
        "content_block_delta" => {
            event["delta"]["text"].as_str().map_or(Event::Nothing, |text| Event::Text(text.to_owned()))
        }
        _ => Event::Nothing,
    })
}

/// A server-sent-event stream: every event well formed, ending with the surface's end (the whole
/// text) or its error event, and nothing after either.
fn sse_verdict(body: &[u8], broken: Option<&str>, judge: fn(Option<&str>, &str) -> Result<Event, String>) -> Verdict {
    let Ok(text) = std::str::from_utf8(body) else { return Verdict::Lost("SSE body not UTF-8".into()) };
    let mut content = String::new();
    let mut end: Option<Result<(), String>> = None;
    let mut done_after_error = false;
    // A complete stream ends with a blank line; a partial last event is a cut.
    let (events, partial) = match text.rsplit_once("\n\n") {
        Some((events, rest)) => (events, rest),
        None => ("", text),
    };
    for event in events.split("\n\n") {
        let mut name = None;
        let mut data = None;
        for line in event.lines() {
            if line.starts_with(':') || line.is_empty() {
                continue; // a comment (keep-alive)
            } else if let Some(value) = line.strip_prefix("event:") {
                name = Some(value.trim());
            } else if let Some(value) = line.strip_prefix("data:") {
                data = Some(value.trim_start());
            } else {
                return Verdict::Lost(format!("malformed SSE line {line:?}"));
            }
        }
        let Some(data) = data else { continue };
        match &end {
            // OpenAI's error event is followed by [DONE], once.
            Some(Err(_)) if data == "[DONE]" && !done_after_error => {
                done_after_error = true;
                continue;
            }
            Some(_) => return Verdict::Lost(format!("data after the stream's end: {data}")),
            None => {}
        }
        match judge(name, data) {
            Ok(Event::Text(piece)) => content.push_str(&piece),
            Ok(Event::Nothing) => {}
            Ok(Event::Done) => end = Some(Ok(())),
            Ok(Event::Error(code)) => end = Some(Err(code)),
            Err(problem) => return Verdict::Lost(problem),
        }
    }
    match (end, broken) {
        (Some(Err(code)), _) => {
            if let Some(error) = broken {
                return Verdict::Lost(format!("error event {code}, then the body broke: {error}"));
            }
            Verdict::Refused(format!("200 then stream error {code}"))
        }
        (Some(Ok(())), None) if partial.trim().is_empty() => {
            if content == expected_text() {
                Verdict::Ok
            } else {
                Verdict::Lost(format!("complete stream with the wrong text {content:?}"))
            }
        }
        (_, Some(error)) => Verdict::Lost(format!("stream broke with no error event: {error} (after {content:?})")),
        _ => Verdict::Lost(format!("stream with no terminal event (text {content:?}, tail {partial:?})")),
    }
}

/// Bedrock's event stream relayed: frames ending with `message_stop` (the whole text) or an
/// exception frame; a cut is the gateway relaying the fake's cut only where the fake cut.
fn native_verdict(body: &[u8], broken: Option<&str>, cut_upstream: bool) -> Verdict {
    use aws_smithy_eventstream::frame::read_message_from;
    let mut rest = body;
    let mut content = String::new();
    let mut stopped = false;
    let mut exception = None;
    while !rest.is_empty() {
        let message = match read_message_from(&mut rest) {
            Ok(message) => message,
            Err(_) if broken.is_some() => break, // a partial frame before a cut
            Err(error) => return Verdict::Lost(format!("malformed event-stream frame: {error}")),
        };
        let header = |name: &str| {
            message.headers().iter().find(|h| h.name().as_str() == name).and_then(|h| h.value().as_string().ok())
        };
        if header(":message-type").map(|v| v.as_str()) == Some("exception") {
            exception = header(":exception-type").map(|v| v.as_str().to_owned());
            continue;
        }
        let Ok(payload) = serde_json::from_slice::<Value>(message.payload()) else {
            return Verdict::Lost("frame payload not JSON".into());
        };
        let Some(Ok(bytes)) = payload["bytes"].as_str().map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        else {
            return Verdict::Lost(format!("chunk without base64 bytes: {payload}"));
        };
        let Ok(event) = serde_json::from_slice::<Value>(&bytes) else {
            return Verdict::Lost("chunk bytes not JSON".into());
        };
        match event["type"].as_str() {
            Some("message_stop") => stopped = true,
            Some("content_block_delta") => content.push_str(event["delta"]["text"].as_str().unwrap_or_default()),
            _ => {}
        }
    }
    match (broken, exception, stopped) {
        (None, Some(kind), _) => Verdict::Refused(format!("200 then exception frame {kind}")),
        (None, None, true) if content == expected_text() => Verdict::Ok,
        (None, None, true) => Verdict::Lost(format!("complete event stream with the wrong text {content:?}")),
        (None, None, false) => Verdict::Lost(format!("event stream ended cleanly without message_stop ({content:?})")),
        (Some(_), _, _) if cut_upstream => Verdict::Refused("200 then cut (the fake cut Bedrock's answer)".into()),
        (Some(error), _, _) => Verdict::Lost(format!("event stream broke with no upstream cut: {error}")),
    }
}

/// The end of a body as one printable line (binary frames' bytes shown as `.`).
fn lossy(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = common::tail(&text, 300)
        .chars()
        .map(|c| if c == '\u{fffd}' || (c.is_control() && c != '\n') { '.' } else { c })
        .collect();
    text
}

// ---- the load -------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    /// (kind, verdict label) → count; label "ok", "refused: …" or "lost".
    counts: BTreeMap<(Kind, String), u64>,
    ok: u64,
    refused: u64,
    lost: u64,
    examples: Vec<String>,
    /// The first answer of each kind of refusal (its label → the end of its body).
    refusals: BTreeMap<String, String>,
    ok_ms: Vec<u32>,
}

impl Tally {
    fn add(&mut self, kind: Kind, n: u64, verdict: Verdict, elapsed: Duration, body: Option<String>) {
        let label = match verdict {
            Verdict::Ok => {
                self.ok += 1;
                self.ok_ms.push(elapsed.as_millis().min(u32::MAX as u128) as u32);
                "ok".to_owned()
            }
            Verdict::Refused(how) => {
                self.refused += 1;
                if let Some(body) = body {
                    self.refusals.entry(format!("{} {how}", kind.name())).or_insert(body);
                }
                format!("refused: {how}")
            }
            Verdict::Lost(why) => {
                self.lost += 1;
                if self.examples.len() < EXAMPLES {
                    self.examples.push(format!("#{n} {}: {why}", kind.name()));
                }
                "LOST".to_owned()
            }
        };
        *self.counts.entry((kind, label)).or_default() += 1;
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One request, start to end, bounded by `CLIENT_TIMEOUT`.
async fn exchange(addr: SocketAddr, idle: Arc<Mutex<Vec<Sender>>>, request: Request<Full<Bytes>>) -> Got {
    let work = async {
        let mut sender = ready_connection(addr, &idle, &CONNECTIONS_OPENED, &STALE_CONNECTIONS).await?;
        let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        let (parts, mut body) = response.into_parts();
        let mut got = Got { status: parts.status.as_u16(), headers: parts.headers, body: Vec::new(), broken: None };
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        got.body.extend_from_slice(data);
                    }
                }
                Err(error) => {
                    got.broken = Some(format!("body: {error}"));
                    return Ok(got);
                }
            }
        }
        if let Ok(mut idle) = idle.lock() {
            idle.push(sender);
        }
        Ok::<_, String>(got)
    };
    let failed =
        |error: String| Got { status: 0, headers: hyper::HeaderMap::new(), body: Vec::new(), broken: Some(error) };
    match tokio::time::timeout(CLIENT_TIMEOUT, work).await {
        Ok(Ok(got)) => got,
        Ok(Err(error)) => failed(error),
        Err(_) => failed(format!("no whole answer within {CLIENT_TIMEOUT:?}")),
    }
}

/// Counters the sampler reads while the load runs.
#[derive(Default)]
struct Progress {
    started: AtomicU64,
    finished: AtomicU64,
    lost: AtomicU64,
    done: AtomicBool,
}

fn run_load(
    args: &Args,
    addr: SocketAddr,
    schedule: Arc<Schedule>,
    progress: Arc<Progress>,
    sts_clock: Arc<StsClock>,
) -> Tally {
    let (rate, secs, new_run_secs) = (args.rate.max(1), args.secs, args.new_run_secs.max(1));
    let (stream, messages, native) = (args.stream, args.messages, args.native);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
        runtime.block_on(async move {
            let idle: Arc<Mutex<Vec<Sender>>> = Arc::default();
            let host = addr.to_string();
            let started = tokio::time::Instant::now();
            *sts_clock.load_start.lock().unwrap_or_else(|e| e.into_inner()) = Some(started.into_std());
            let until = started + Duration::from_secs(secs);
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = tokio::task::JoinSet::new();
            let mut tally = Tally::default();
            let record =
                |tally: &mut Tally,
                 done: Result<(Kind, u64, Verdict, Duration, Option<String>), tokio::task::JoinError>| {
                    progress.finished.fetch_add(1, Ordering::Relaxed);
                    match done {
                        Ok((kind, n, verdict, elapsed, body)) => {
                            if matches!(verdict, Verdict::Lost(_)) {
                                progress.lost.fetch_add(1, Ordering::Relaxed);
                            }
                            tally.add(kind, n, verdict, elapsed, body)
                        }
                        Err(error) => tally.add(
                            Kind::Chat,
                            u64::MAX,
                            Verdict::Lost(format!("task: {error}")),
                            Duration::ZERO,
                            None,
                        ),
                    }
                };
            let mut n: u64 = 0;
            loop {
                let scheduled = ticks.tick().await;
                if scheduled >= until {
                    break;
                }
                n += 1;
                let pick = schedule.uniform(n, 1);
                let kind = if pick < native {
                    Kind::Native
                } else if pick < native + messages {
                    Kind::Messages
                } else if schedule.uniform(n, 2) < stream {
                    Kind::ChatStream
                } else {
                    Kind::Chat
                };
                let run = if n.is_multiple_of(2) {
                    format!("soak-long-{}", (n / 2) % LONG_RUNS)
                } else {
                    format!("soak-run-{}", scheduled.duration_since(started).as_secs() / new_run_secs)
                };
                let request = request(kind, n, &run, &host);
                let (idle, schedule) = (idle.clone(), schedule.clone());
                progress.started.fetch_add(1, Ordering::Relaxed);
                tasks.spawn(async move {
                    let sent = Instant::now();
                    let got = exchange(addr, idle, request).await;
                    let cut = |route| matches!(schedule.fault(n, route), Fault::Abort | Fault::EndEarly);
                    let verdict = if got.status == 0 {
                        Verdict::Lost(got.broken.clone().unwrap_or_default())
                    } else {
                        verdict(kind, &got, cut(0) || cut(1))
                    };
                    let body = matches!(verdict, Verdict::Refused(_)).then(|| lossy(&got.body));
                    (kind, n, verdict, sent.elapsed(), body)
                });
                while let Some(done) = tasks.try_join_next() {
                    record(&mut tally, done);
                }
            }
            // Every task ends within CLIENT_TIMEOUT of its start.
            while let Some(done) = tasks.join_next().await {
                record(&mut tally, done);
            }
            progress.done.store(true, Ordering::SeqCst);
            tally
        })
    })
    .join()
    .expect("load thread")
}

/// Long runs get their credentials before the load (so an STS outage finds them cached).
fn warm_up(addr: SocketAddr) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let idle: Arc<Mutex<Vec<Sender>>> = Arc::default();
        for run in 0..LONG_RUNS {
            let request = request(Kind::Chat, 0, &format!("soak-long-{run}"), &addr.to_string());
            let got = exchange(addr, idle.clone(), request).await;
            if got.status != 200 {
                return Err(format!("warm-up of soak-long-{run}: status {} {}", got.status, lossy(&got.body)));
            }
        }
        Ok(())
    })
}

// ---- sampling -------------------------------------------------------------------------------------

struct Reading {
    at: Duration,
    rss_kib: Option<u64>,
    threads: Option<u64>,
    fds: Option<usize>,
    started_per_sec: f64,
    finished_per_sec: f64,
    lost: u64,
}

fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|dir| dir.count())
}

fn sample(pid: u32, every: Duration, progress: Arc<Progress>) -> std::thread::JoinHandle<Vec<Reading>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut readings = Vec::new();
        let (mut last_started, mut last_finished, mut last_at) = (0, 0, Duration::ZERO);
        let mut next = every;
        loop {
            while start.elapsed() < next && !progress.done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let at = start.elapsed();
            let (started, finished) =
                (progress.started.load(Ordering::Relaxed), progress.finished.load(Ordering::Relaxed));
            let span = (at - last_at).as_secs_f64().max(1e-3);
            let reading = Reading {
                at,
                rss_kib: rss_kib(pid),
                threads: threads(pid),
                fds: open_fds(pid),
                started_per_sec: (started - last_started) as f64 / span,
                finished_per_sec: (finished - last_finished) as f64 / span,
                lost: progress.lost.load(Ordering::Relaxed),
            };
            eprintln!(
                "{:>6.0} s  rss {}  threads {}  fds {}  started {:.0}/s  finished {:.0}/s  lost {}",
                at.as_secs_f64(),
                mib(reading.rss_kib),
                opt(reading.threads),
                opt(reading.fds),
                reading.started_per_sec,
                reading.finished_per_sec,
                reading.lost
            );
            readings.push(reading);
            (last_started, last_finished, last_at) = (started, finished, at);
            if progress.done.load(Ordering::SeqCst) {
                return readings;
            }
            next += every;
        }
    })
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or("-".into(), |v| v.to_string())
}

/// What the gateway's audit lines (its standard output) say.
#[derive(Default)]
struct Audit {
    lines: u64,
    /// "route result code" → attempts.
    attempts: BTreeMap<String, u64>,
}

fn audit_tally(log: &std::path::Path) -> Audit {
    use std::io::BufRead;
    let mut audit = Audit::default();
    let Ok(file) = std::fs::File::open(log) else { return audit };
    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        if !line.starts_with("{\"audit\":\"request\"") {
            continue;
        }
        audit.lines += 1;
        let Ok(record) = serde_json::from_str::<Value>(&line) else { continue };
        for attempt in record["attempts"].as_array().into_iter().flatten() {
            let text = |field: &str| attempt[field].as_str().unwrap_or("-").to_owned();
            let key = format!("{} {} {}", text("route"), text("result"), text("code"));
            *audit.attempts.entry(key).or_default() += 1;
        }
    }
    audit
}

// ---- main -----------------------------------------------------------------------------------------

fn main() {
    match soak() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("soak: {error}");
            std::process::exit(2);
        }
    }
}

/// The run; `Ok(false)` when an answer was lost or the gateway died.
fn soak() -> Result<bool, String> {
    let mut args = Args::parse();
    args.secs = args.secs.clamp(1, 3600);
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let schedule = Arc::new(Schedule {
        seed: args.seed,
        throttle: args.throttle,
        server_error: args.server_error,
        cut: args.cut,
        slow: args.slow,
    });
    if args.throttle + args.server_error + args.cut + args.slow > 1000 {
        return Err("--throttle + --server-error + --cut + --slow is over 1000 per mille".into());
    }
    let counters = Arc::new(Counters::default());
    let sts_clock = Arc::new(StsClock { load_start: Mutex::new(None), outage_secs: args.sts_outage_secs.min(45) });
    let fake = start_fake(schedule.clone(), counters.clone())?;
    let sts = start_fake_sts(sts_clock.clone(), counters.clone())?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bin = common::byollm_bin()?;
    let extra = format!(
        "[models.soak]\nid = \"{MODEL_ID}\"\n\
         [routing.default.routes]\nsoak = [{{ bedrock = {{}} }}, {{ bedrock = {{ profile = \"{PROFILE_ID}\" }} }}]\n"
    );
    let server_toml = format!("request_timeout_secs = {REQUEST_TIMEOUT_SECS}\nmax_connections = 8192");
    let cloud =
        Cloud { fake, sts, api_key: API_KEY, role_arn: ROLE_ARN, extra_toml: &extra, server_toml: &server_toml };
    let (mut server, addr) = start_byollm_cloud(&bin, &[], &work.path().join("byollm"), &cloud)?;
    let pid = server.pid();
    warm_up(addr)?;

    println!("# soak: {command_line}");
    println!(
        "byollm {} (pid {pid}) at {addr}; {} req/s for {} s; chat {:.0} % streamed, messages {:.0} %, native {:.0} %; \
         faults per mille of upstream calls: throttle {}, 5xx {}, cut {}, slow {}; STS down {} s a minute; new run every {} s; seed {}",
        bin.display(),
        args.rate,
        args.secs,
        args.stream * 100.0,
        args.messages * 100.0,
        args.native * 100.0,
        args.throttle,
        args.server_error,
        args.cut,
        args.slow,
        sts_clock.outage_secs,
        args.new_run_secs,
        args.seed
    );
    let progress = Arc::new(Progress::default());
    let sampler = sample(pid, Duration::from_secs(args.sample_secs.max(1)), progress.clone());
    let started = Instant::now();
    let tally = run_load(&args, addr, schedule, progress.clone(), sts_clock);
    let took = started.elapsed();
    let readings = sampler.join().map_err(|_| "sampler thread panicked".to_owned())?;
    let alive = matches!(server.child.try_wait(), Ok(None));

    println!();
    println!(
        "## Answers ({} started, {:.0} req/s over {:.0} s)",
        progress.started.load(Ordering::Relaxed),
        progress.started.load(Ordering::Relaxed) as f64 / args.secs as f64,
        took.as_secs_f64()
    );
    println!();
    println!("| request | verdict | count |");
    println!("|---|---|---:|");
    for ((kind, label), count) in &tally.counts {
        println!("| {} | {label} | {count} |", kind.name());
    }
    let total = tally.ok + tally.refused + tally.lost;
    let p = |q: f64| common::quantile_ms(&mut tally.ok_ms.iter().map(|ms| ms * 1000).collect::<Vec<_>>(), q);
    println!();
    println!(
        "ok {} ({:.2} %), refused cleanly {} ({:.2} %), LOST/CORRUPTED {}; ok latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        tally.ok,
        100.0 * tally.ok as f64 / total.max(1) as f64,
        tally.refused,
        100.0 * tally.refused as f64 / total.max(1) as f64,
        tally.lost,
        p(0.5),
        p(0.99),
        p(1.0)
    );
    let c = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "injected: {} Bedrock calls; throttled {}, 5xx {}, aborted {}, ended early {}, exception frame {}, slow {}; \
         unnumbered {}; STS calls {}, refused in outages {}",
        c(&counters.calls),
        c(&counters.throttle),
        c(&counters.server_error),
        c(&counters.abort),
        c(&counters.end_early),
        c(&counters.exception),
        c(&counters.slow),
        c(&counters.unnumbered),
        c(&counters.sts_calls),
        c(&counters.sts_refused)
    );
    println!(
        "client connections opened: {} (kept alive in its pool while idle; a broken answer's is closed); \
         idle ones the gateway had closed (keep-alive timeout), dropped unused: {}",
        CONNECTIONS_OPENED.load(Ordering::Relaxed),
        STALE_CONNECTIONS.load(Ordering::Relaxed)
    );
    for example in &tally.examples {
        println!("lost: {example}");
    }
    println!();
    println!("First answer of each kind of refusal (the end of its body):");
    for (label, body) in &tally.refusals {
        println!("- {label}: {}", body.replace('\n', "\\n"));
    }

    std::thread::sleep(Duration::from_millis(500)); // the audit queue drains
    let audit = audit_tally(&server.log);
    println!();
    println!(
        "gateway audit lines: {} for {} requests (and {LONG_RUNS} warm-up); attempts by route and outcome (code):",
        audit.lines,
        progress.started.load(Ordering::Relaxed)
    );
    for (outcome, count) in &audit.attempts {
        println!("- {outcome}: {count}");
    }

    println!();
    println!("## The gateway every {} s", args.sample_secs.max(1));
    println!();
    println!("| t (s) | RSS | threads | open fds | started req/s | finished req/s | lost so far |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in &readings {
        println!(
            "| {:.0} | {} | {} | {} | {:.0} | {:.0} | {} |",
            r.at.as_secs_f64(),
            mib(r.rss_kib),
            opt(r.threads),
            opt(r.fds),
            r.started_per_sec,
            r.finished_per_sec,
            r.lost
        );
    }
    let baseline_at = if args.secs >= 120 { 60.0 } else { args.secs as f64 / 2.0 };
    let baseline = readings.iter().find(|r| r.at.as_secs_f64() >= baseline_at).and_then(|r| r.rss_kib);
    let end = readings.last().and_then(|r| r.rss_kib);
    println!();
    match (baseline, end) {
        (Some(base), Some(end)) => println!(
            "RSS drift: {:+.1} MiB ({:+.1} %) from {} at {baseline_at:.0} s to {} at the end; max threads {}; max open fds {}",
            (end as f64 - base as f64) / 1024.0,
            100.0 * (end as f64 - base as f64) / base as f64,
            mib(Some(base)),
            mib(Some(end)),
            opt(readings.iter().filter_map(|r| r.threads).max()),
            opt(readings.iter().filter_map(|r| r.fds).max())
        ),
        _ => println!("RSS drift: not enough samples"),
    }
    if !alive {
        println!("byollm exited during the run: {}", common::tail(&server.log_text(), 1500));
    }
    let passed = tally.lost == 0 && alive;
    println!("{}", if passed { "PASS: no answer lost or corrupted" } else { "FAIL" });
    Ok(passed)
}
