//! Streamed answers, relayed as the client reads: the one place a stream finishes its request's
//! audit record (with the usage seen, when the stream ends, breaks, or the client leaves) and
//! sends keep-alives in its silences.
//!
//! Three kinds of stream: Anthropic events turned into a surface's own events by its
//! [`EventConverter`] ([`events`]), an OpenAI-compatible endpoint's events passed on ([`passthrough`]),
//! and Bedrock's own bytes relayed unchanged with their usage read from copies ([`raw`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http::StatusCode;
use http_body_util::BodyExt;

use super::events::Events;
use super::exchange::Exchange;
use super::reply::BodyStream;
use crate::error::{ApiError, ErrorKind};
use crate::upstream::RawResponse;
use crate::upstream::bedrock::STREAM_IDLE_TIMEOUT;
use crate::upstream::openai_compat::OpenAiStream;
use crate::wire::bedrock::{Operation, UsageMeter};
use crate::wire::usage::Usage;

/// Longest silence in a streamed answer before a keep-alive goes out.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// What a surface makes of Anthropic stream events.
pub trait EventConverter: Send + 'static {
    /// One upstream event, written for the client into `out`. `Err`: the answer breaks off here.
    fn push(&mut self, event: &[u8], out: &mut BytesMut) -> Result<(), ApiError>;
    /// The upstream sent `message_stop`: a stream that ends now is complete.
    fn completed(&self) -> bool;
    /// The stream ended complete: the surface's closing bytes.
    fn finish(&mut self, out: &mut BytesMut);
    /// The answer breaks off with `error`: the surface's error event.
    fn error(&mut self, error: &ApiError, out: &mut BytesMut);
    /// The usage reported so far.
    fn usage(&self) -> Usage;
}

/// An error written into a stream in the surface's shape.
pub type ErrorWriter = fn(&ApiError, &mut BytesMut);

/// One step of a stream.
enum Step {
    /// Bytes for the client; more to come.
    Data(Bytes),
    /// The last bytes (maybe none); `error`: the code of how the answer broke off, if it did.
    Last { data: Bytes, error: Option<&'static str> },
    /// The answer broke off where nothing can be written into it: the body ends with an error.
    Cut(&'static str),
}

/// Where a relayed stream's bytes come from.
trait Source: Send + 'static {
    fn next(&mut self) -> impl Future<Output = Step> + Send;
    fn usage(&mut self) -> Usage;
}

/// A source with its request: finishes the audit record at the end, keeps the usage on drop.
struct Relay<S: Source> {
    source: S,
    exchange: Exchange,
    done: bool,
}

impl<S: Source> Relay<S> {
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        match self.source.next().await {
            Step::Data(bytes) => {
                self.exchange.first_byte();
                Some(Ok(bytes))
            }
            Step::Last { data, error } => {
                if !data.is_empty() {
                    self.exchange.first_byte();
                }
                self.end(error);
                (!data.is_empty()).then_some(Ok(data))
            }
            Step::Cut(code) => {
                self.end(Some(code));
                Some(Err(std::io::Error::other(code)))
            }
        }
    }

    fn end(&mut self, error: Option<&'static str>) {
        self.done = true;
        let usage = self.source.usage();
        self.exchange.set_usage(usage);
        self.exchange.finish(StatusCode::OK.as_u16(), error);
    }
}

impl<S: Source> Drop for Relay<S> {
    /// The client went away mid-stream: the audit line still carries the usage seen so far.
    fn drop(&mut self) {
        if self.exchange.record().is_some() {
            let usage = self.source.usage();
            self.exchange.set_usage(usage);
        }
    }
}

fn body<S: Source>(source: S, exchange: Exchange, keep_alive: Option<&'static [u8]>) -> BodyStream {
    let relay = Relay { source, exchange, done: false };
    let stream =
        futures_util::stream::unfold(relay, |mut relay| async move { relay.next().await.map(|item| (item, relay)) });
    match keep_alive {
        Some(bytes) => Box::pin(KeepAlive::new(stream, bytes)),
        None => Box::pin(stream),
    }
}

/// Anthropic events (Bedrock or the Anthropic API) converted by `converter`, with `keep_alive`
/// in silences.
pub fn events(
    events: Events,
    converter: impl EventConverter,
    exchange: Exchange,
    keep_alive: &'static [u8],
) -> BodyStream {
    let source = Converted { events, output: Output { converter, out: BytesMut::with_capacity(1024), ended: None } };
    body(source, exchange, Some(keep_alive))
}

struct Converted<C> {
    events: Events,
    output: Output<C>,
}

/// What a converted stream has written for the client and not yet sent.
struct Output<C> {
    converter: C,
    out: BytesMut,
    /// Set once the stream has ended: how (an error code, or none).
    ended: Option<Option<&'static str>>,
}

impl<C: EventConverter> Output<C> {
    fn end_with(&mut self, error: &ApiError) {
        self.converter.error(error, &mut self.out);
        self.ended = Some(Some(error.code));
    }

    /// Convert what `upstream` said next (an event, its end, or its failure).
    fn take(&mut self, next: Result<Option<&[u8]>, ApiError>, upstream: &str) {
        match next {
            Ok(Some(event)) => {
                if let Err(error) = self.converter.push(event, &mut self.out) {
                    self.end_with(&error);
                }
            }
            Ok(None) if self.converter.completed() => {
                self.converter.finish(&mut self.out);
                self.ended = Some(None);
            }
            Ok(None) => {
                let error = stream_cut(format!("{upstream} ended before the model finished; the answer is incomplete"));
                self.end_with(&error);
            }
            Err(error) => self.end_with(&error),
        }
    }
}

/// Bytes gathered from events that arrived together before they go out as one piece.
const GATHER_BYTES: usize = 32 * 1024;

/// Turns given to the upstream connection's task for the next event before the piece goes out.
const GATHER_TURNS: u32 = 3;

impl<C: EventConverter> Source for Converted<C> {
    /// The events that arrive together leave together: after an event, the upstream connection's
    /// task gets one turn (`yield_now`) to hand over the next, and what it handed over is added
    /// to the same piece; a turn that brings nothing sends the piece. So a burst of events costs
    /// one write to the client, not one per event, and no event waits for a later one.
    async fn next(&mut self) -> Step {
        let Converted { events, output } = self;
        let upstream = events.upstream_name();
        while output.ended.is_none() {
            output.take(events.next().await, upstream);
            let mut turns = 0;
            while output.ended.is_none() && !output.out.is_empty() && output.out.len() < GATHER_BYTES {
                // `Events::next` is cancel-safe: a poll that finds nothing consumes nothing.
                match futures_util::FutureExt::now_or_never(events.next()) {
                    Some(next) => {
                        output.take(next, upstream);
                        turns = 0;
                    }
                    None if turns == GATHER_TURNS => break,
                    None => {
                        tokio::task::yield_now().await;
                        turns += 1;
                    }
                }
            }
            if output.ended.is_none() && !output.out.is_empty() {
                return Step::Data(output.out.split().freeze());
            }
        }
        Step::Last { data: output.out.split().freeze(), error: output.ended.flatten() }
    }

    fn usage(&mut self) -> Usage {
        self.output.converter.usage()
    }
}

fn stream_cut(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, "upstream_stream_cut", message)
}

/// An OpenAI-compatible endpoint's events passed on as they come (keep-alives in silences); a
/// failure or a stream that ends before `[DONE]` ends with an error written by `error`.
pub fn passthrough(
    stream: OpenAiStream,
    exchange: Exchange,
    error: ErrorWriter,
    keep_alive: &'static [u8],
) -> BodyStream {
    body(Passthrough { stream, error }, exchange, Some(keep_alive))
}

struct Passthrough {
    stream: OpenAiStream,
    error: ErrorWriter,
}

impl Passthrough {
    fn fail(&self, error: ApiError) -> Step {
        let mut out = BytesMut::new();
        (self.error)(&error, &mut out);
        Step::Last { data: out.freeze(), error: Some(error.code) }
    }
}

impl Source for Passthrough {
    async fn next(&mut self) -> Step {
        match self.stream.next().await {
            Ok(Some(bytes)) => Step::Data(bytes),
            Ok(None) if self.stream.finished() => Step::Last { data: Bytes::new(), error: None },
            Ok(None) => {
                self.fail(stream_cut("the endpoint's stream ended before [DONE]; the answer may be incomplete".into()))
            }
            Err(failure) => self.fail(failure.to_api_error("the endpoint")),
        }
    }

    fn usage(&mut self) -> Usage {
        self.stream.usage().map(Usage::from).unwrap_or_default()
    }
}

/// Bedrock's body, passed on as the client reads: nothing read ahead, nothing changed; usage read
/// from copies of the frames. A silence longer than [`STREAM_IDLE_TIMEOUT`] (no shorter than
/// Bedrock's own), a broken upstream, or a stream that ends without its last event
/// ([`UsageMeter::complete`]) ends the body with an error, so the client sees a cut, never a clean
/// end.
pub fn raw(answer: RawResponse, operation: Operation, exchange: Exchange) -> BodyStream {
    let meter = UsageMeter::new(operation, &answer.headers);
    let last_data = tokio::time::Instant::now();
    let idle = Box::pin(tokio::time::sleep_until(last_data + STREAM_IDLE_TIMEOUT));
    let raw = Raw { body: answer.body, meter: Some(meter), usage: Usage::default(), idle, last_data, held: None };
    body(raw, exchange, None)
}

/// What `body.frame()` gave.
type Polled = Option<Result<http_body::Frame<Bytes>, hyper::Error>>;

struct Raw {
    body: hyper::body::Incoming,
    meter: Option<UsageMeter>,
    usage: Usage,
    /// Re-armed only when it fires (to `last_data + STREAM_IDLE_TIMEOUT`), so a frame costs a
    /// clock read, not a timer insert and removal.
    idle: Pin<Box<tokio::time::Sleep>>,
    last_data: tokio::time::Instant,
    /// What the body gave after the data gathered into the last piece (its end, an error, a
    /// trailer): handled next.
    held: Option<Polled>,
}

impl Raw {
    /// Data that arrived together with `first`, gathered into one piece as in
    /// [`Converted::next`]: the upstream connection's task gets a few turns to hand it over.
    async fn gather(&mut self, first: Bytes) -> Bytes {
        let mut turns = 0;
        let mut piece: Option<bytes::BytesMut> = None;
        let mut len = first.len();
        while len < GATHER_BYTES {
            match futures_util::FutureExt::now_or_never(self.body.frame()) {
                Some(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if let Some(meter) = self.meter.as_mut() {
                        meter.observe(&data);
                    }
                    len += data.len();
                    piece.get_or_insert_with(|| bytes::BytesMut::from(&first[..])).extend_from_slice(&data);
                    turns = 0;
                }
                Some(other) => {
                    self.held = Some(other);
                    break;
                }
                None if turns == GATHER_TURNS => break,
                None => {
                    tokio::task::yield_now().await;
                    turns += 1;
                }
            }
        }
        piece.map_or(first, bytes::BytesMut::freeze)
    }
}

impl Source for Raw {
    async fn next(&mut self) -> Step {
        loop {
            let frame = if let Some(held) = self.held.take() {
                // The piece before it was just handed over; a cut or an end right behind it
                // would reach the server while that piece is still in its write buffer, and a
                // cut drops the connection without writing it. One turn lets it be written.
                tokio::task::yield_now().await;
                held
            } else {
                tokio::select! {
                biased;
                frame = self.body.frame() => frame,
                () = &mut self.idle => {
                    let deadline = self.last_data + STREAM_IDLE_TIMEOUT;
                    if tokio::time::Instant::now() < deadline {
                        self.idle.as_mut().reset(deadline);
                        continue;
                    }
                    tracing::warn!("bedrock sent nothing for 5 minutes; the relayed answer is cut");
                    return Step::Cut("upstream_idle_timeout");
                }
                }
            };
            match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    self.last_data = tokio::time::Instant::now();
                    if let Some(meter) = self.meter.as_mut() {
                        meter.observe(&data);
                    }
                    return Step::Data(self.gather(data).await);
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "bedrock answer broke mid-way");
                    return Step::Cut("upstream_stream_cut");
                }
                None if self.meter.as_ref().and_then(UsageMeter::complete) == Some(false) => {
                    // Bedrock ends a stream with message_stop or an exception frame: one that
                    // ends without either was cut short (a proxy, a load balancer); relayed as a
                    // clean end, the client would take a partial answer for a whole one.
                    tracing::warn!("bedrock's stream ended without its last event; the relayed answer is cut");
                    return Step::Cut("upstream_stream_cut");
                }
                None => return Step::Last { data: Bytes::new(), error: None },
            }
        }
    }

    fn usage(&mut self) -> Usage {
        if let Some(meter) = self.meter.take() {
            self.usage = meter.finish();
        }
        self.usage
    }
}

/// A stream with keep-alives in its silences. The inner stream is only ever polled, never
/// dropped mid-read, so a keep-alive cannot lose part of an event; and it is polled only when the
/// client reads, so a slow reader still pulls the upstream at its own pace.
struct KeepAlive<S> {
    inner: Pin<Box<S>>,
    bytes: &'static [u8],
    ended: bool,
    /// When bytes last went out (at first: when the response started).
    last_sent: tokio::time::Instant,
    /// Fires no later than the next keep-alive is due. Moved on only when it fires, so an event
    /// costs a clock read, not a timer insert and removal.
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<S> KeepAlive<S> {
    fn new(inner: S, bytes: &'static [u8]) -> KeepAlive<S> {
        let now = tokio::time::Instant::now();
        KeepAlive {
            inner: Box::pin(inner),
            bytes,
            ended: false,
            last_sent: now,
            timer: Box::pin(tokio::time::sleep_until(now + KEEP_ALIVE_INTERVAL)),
        }
    }
}

impl<S: Stream<Item = Result<Bytes, std::io::Error>>> Stream for KeepAlive<S> {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = this.inner.as_mut().poll_next(cx) {
            match &item {
                Some(_) => this.last_sent = tokio::time::Instant::now(),
                None => this.ended = true,
            }
            return Poll::Ready(item);
        }
        loop {
            ready!(this.timer.as_mut().poll(cx));
            let due = this.last_sent + KEEP_ALIVE_INTERVAL;
            let now = tokio::time::Instant::now();
            if now >= due {
                this.last_sent = now;
                this.timer.as_mut().reset(now + KEEP_ALIVE_INTERVAL);
                return Poll::Ready(Some(Ok(Bytes::from_static(this.bytes))));
            }
            this.timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tokio::time::{Instant, sleep};

    use super::*;

    const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

    /// The pieces with the whole seconds (of the paused clock) at which each came out.
    async fn pieces(stream: impl Stream<Item = Result<Bytes, std::io::Error>>) -> Vec<(u64, String)> {
        let start = Instant::now();
        let mut stream = Box::pin(stream);
        let mut pieces = Vec::new();
        while let Some(piece) = stream.next().await {
            pieces.push((start.elapsed().as_secs(), String::from_utf8(piece.unwrap().to_vec()).unwrap()));
        }
        pieces
    }

    #[tokio::test(start_paused = true)]
    async fn silences_of_15_s_get_a_keep_alive() {
        // Silent for 40 s (a long thinking phase), two chunks at once, 20 s of silence, a last one.
        let upstream = futures_util::stream::unfold(0, |step| async move {
            let (wait, text) = match step {
                0 => (40, "data: a\n\n"),
                1 => (0, "data: b\n\n"),
                2 => (20, "data: [DONE]\n\n"),
                _ => return None,
            };
            sleep(Duration::from_secs(wait)).await;
            Some((Ok(Bytes::from_static(text.as_bytes())), step + 1))
        });
        let keep_alive = ": keep-alive\n\n".to_owned();
        let expected = [
            (15, keep_alive.clone()),
            (30, keep_alive.clone()),
            (40, "data: a\n\n".to_owned()),
            (40, "data: b\n\n".to_owned()),
            // 15 s after the last chunk, not after the last keep-alive.
            (55, keep_alive),
            (60, "data: [DONE]\n\n".to_owned()),
        ];
        assert_eq!(pieces(KeepAlive::new(upstream, KEEP_ALIVE)).await, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_keeps_talking_gets_no_keep_alive() {
        let upstream = futures_util::stream::unfold(0, |step| async move {
            if step == 10 {
                return None;
            }
            sleep(Duration::from_secs(14)).await;
            Some((Ok(Bytes::from_static(b"data: x\n\n")), step + 1))
        });
        let pieces = pieces(KeepAlive::new(upstream, KEEP_ALIVE)).await;
        assert_eq!(pieces.len(), 10);
        assert!(pieces.iter().all(|(_, text)| text == "data: x\n\n"), "{pieces:?}");
        assert_eq!(pieces.last().map(|(at, _)| *at), Some(140));
    }
}
