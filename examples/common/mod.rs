//! Shared by the benchmark examples: HTTP/1.1 load drivers on one current-thread runtime in its
//! own OS thread (closed loop: one keep-alive hyper connection per simulated client; open loop:
//! requests started at a fixed rate on a pool of keep-alive connections, whatever the answers do;
//! many slow streams held open at once), latency statistics, child processes that die with the
//! benchmark, and CPU / RSS readings from `/proc`.
//!
//! Also the pieces of the in-process fakes (Bedrock's event-stream frames, Anthropic messages, an
//! STS answer) and of a `byollm serve` started against them.
//!
//! Every load phase is bounded by a deadline and a request cap and stops by itself.
#![allow(dead_code)]

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::serve::ListenerExt;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::json;

/// One kind of request, repeated by every connection of a phase.
pub struct Spec {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Checks the first whole response body of each connection.
    pub validate: fn(&[u8]) -> Result<(), String>,
    /// The status every answer must have (any 2xx when `None`).
    pub status: Option<u16>,
}

impl Spec {
    pub fn get(path: &str) -> Spec {
        Spec {
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            validate: |_| Ok(()),
            status: None,
        }
    }

    pub fn post_json(path: &str, body: impl Into<Bytes>) -> Spec {
        Spec {
            method: Method::POST,
            path: path.into(),
            headers: vec![(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: body.into(),
            validate: |_| Ok(()),
            status: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Spec {
        self.headers.push((HeaderName::from_static(name), HeaderValue::from_str(value).expect("header value")));
        self
    }

    pub fn status(mut self, status: u16) -> Spec {
        self.status = Some(status);
        self
    }

    pub fn validate(mut self, check: fn(&[u8]) -> Result<(), String>) -> Spec {
        self.validate = check;
        self
    }

    fn request(&self, host: &HeaderValue) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.parse().expect("request path");
        let headers = request.headers_mut();
        headers.insert(hyper::header::HOST, host.clone());
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        request
    }
}

/// Latencies of one phase, in microseconds.
#[derive(Debug, Default)]
pub struct Sample {
    pub ok: u64,
    /// Successful answers including the warm-up, for per-request CPU figures.
    pub answered: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
    /// Request sent → last body byte.
    pub total_us: Vec<u32>,
    /// Request sent → first body byte (first event-stream frame or SSE event for streams).
    pub first_byte_us: Vec<u32>,
    /// When the last recorded answer finished.
    last_done: Option<Instant>,
}

impl Sample {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: Sample) {
        self.ok += other.ok;
        self.answered += other.answered;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.last_done = self.last_done.max(other.last_done);
        self.total_us.extend(other.total_us);
        self.first_byte_us.extend(other.first_byte_us);
    }
}

/// The `q` quantile (0..=1) of `values` in milliseconds; sorts in place.
pub fn quantile_ms(values: &mut [u32], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index] as f64 / 1000.0
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

/// Drive `spec` at `addr` from `concurrency` keep-alive connections for `warmup` (not recorded)
/// then `measure`, or until `max_requests` were recorded. Requests started in the window are
/// recorded when they finish (so slow answers are not dropped), but none may run past
/// [`GRACE`] after the window: those count as errors. Runs on a fresh current-thread runtime
/// in its own OS thread, so the client costs one core at most.
pub const GRACE: Duration = Duration::from_secs(10);

pub fn run_load(
    addr: SocketAddr,
    spec: Arc<Spec>,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
    max_requests: u64,
) -> Sample {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
        runtime.block_on(async move {
            let started = Instant::now();
            let from = started + warmup;
            let until = from + measure;
            let recorded = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                let spec = spec.clone();
                let recorded = recorded.clone();
                tasks.push(tokio::spawn(connection(addr, spec, from, until, max_requests, recorded)));
            }
            let mut sample = Sample::default();
            for task in tasks {
                match task.await {
                    Ok(part) => sample.merge(part),
                    Err(error) => {
                        sample.errors += 1;
                        sample.first_error.get_or_insert(error.to_string());
                    }
                }
            }
            sample.window = sample.last_done.map_or(until, |done| done.max(until)).saturating_duration_since(from);
            if sample.window.is_zero() {
                sample.window = Duration::from_millis(1);
            }
            sample
        })
    })
    .join()
    .expect("load thread")
}

async fn connection(
    addr: SocketAddr,
    spec: Arc<Spec>,
    from: Instant,
    until: Instant,
    max_requests: u64,
    recorded: Arc<AtomicU64>,
) -> Sample {
    let mut sample = Sample::default();
    let host = HeaderValue::from_str(&addr.to_string()).expect("host");
    let mut validated = false;
    'reconnect: while Instant::now() < until {
        let stream = match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => stream,
            Err(error) => {
                fail(&mut sample, format!("connect: {error}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(error) => {
                fail(&mut sample, format!("handshake: {error}"));
                continue;
            }
        };
        tokio::spawn(conn);
        loop {
            let now = Instant::now();
            if now >= until || recorded.load(Ordering::Relaxed) >= max_requests {
                break 'reconnect;
            }
            if sender.ready().await.is_err() {
                continue 'reconnect;
            }
            let counts = now >= from;
            let sent = Instant::now();
            let hard_stop = tokio::time::Instant::from_std(until + GRACE);
            let response = match tokio::time::timeout_at(hard_stop, sender.send_request(spec.request(&host))).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => {
                    if counts {
                        fail(&mut sample, format!("request: {error}"));
                    }
                    continue 'reconnect;
                }
                Err(_) => {
                    fail(&mut sample, format!("no answer within {GRACE:?} after the window"));
                    break 'reconnect;
                }
            };
            let status = response.status();
            let mut body = response.into_body();
            let mut first_byte = None;
            let mut whole = (!validated).then(Vec::new);
            let mut broken = None;
            loop {
                let frame = match tokio::time::timeout_at(hard_stop, body.frame()).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(_) => {
                        broken = Some(format!("body not finished within {GRACE:?} after the window"));
                        break;
                    }
                };
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            first_byte.get_or_insert_with(|| sent.elapsed());
                            if let Some(whole) = whole.as_mut() {
                                whole.extend_from_slice(data);
                            }
                        }
                    }
                    Err(error) => {
                        broken = Some(format!("body: {error}"));
                        break;
                    }
                }
            }
            let total = sent.elapsed();
            if broken.is_none() {
                sample.answered += 1;
            }
            if !counts {
                if broken.is_some() {
                    continue 'reconnect;
                }
                continue;
            }
            let outcome = match (broken, whole) {
                (Some(error), _) => Err(error),
                _ if spec.status.map_or(!status.is_success(), |s| s != status.as_u16()) => {
                    Err(format!("status {status}"))
                }
                (None, Some(whole)) => {
                    validated = true;
                    (spec.validate)(&whole).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&whole)))
                }
                (None, None) => Ok(()),
            };
            match outcome {
                Ok(()) => {
                    sample.ok += 1;
                    sample.last_done = Some(Instant::now());
                    recorded.fetch_add(1, Ordering::Relaxed);
                    sample.total_us.push(micros(total));
                    sample.first_byte_us.push(micros(first_byte.unwrap_or(total)));
                }
                Err(error) => fail(&mut sample, error),
            }
        }
    }
    sample
}

/// Open loop: start a request every `1 / rate` seconds for `warmup` (not recorded) then
/// `measure`, each on an idle keep-alive connection of a pool (a new connection when none is
/// idle), whatever earlier answers are doing. Latency runs from the moment the request is handed
/// to its connection to the last body byte. Answers still running [`GRACE`] after the window are
/// errors.
pub fn run_open_loop(addr: SocketAddr, spec: Arc<Spec>, rate: u32, warmup: Duration, measure: Duration) -> Sample {
    type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
        runtime.block_on(async move {
            let idle: Arc<std::sync::Mutex<Vec<Sender>>> = Arc::default();
            let host = HeaderValue::from_str(&addr.to_string()).expect("host");
            let started = tokio::time::Instant::now();
            let from = started + warmup;
            let until = from + measure;
            let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let mut ticks = tokio::time::interval_at(started, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = tokio::task::JoinSet::new();
            let validated = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut sample = Sample::default();
            loop {
                let scheduled = ticks.tick().await;
                if scheduled >= until {
                    break;
                }
                let (idle, host, spec, validated) = (idle.clone(), host.clone(), spec.clone(), validated.clone());
                tasks.spawn(async move {
                    let counts = scheduled >= from;
                    let (opened, stale) = (AtomicU64::new(0), AtomicU64::new(0));
                    let mut sender = ready_connection(addr, &idle, &opened, &stale).await?;
                    let sent = Instant::now();
                    let response =
                        sender.send_request(spec.request(&host)).await.map_err(|e| format!("request: {e}"))?;
                    let status = response.status();
                    let mut body = response.into_body();
                    let mut first_byte = None;
                    let check = !validated.swap(true, Ordering::Relaxed);
                    let mut whole = Vec::new();
                    while let Some(frame) = body.frame().await {
                        let frame = frame.map_err(|e| format!("body: {e}"))?;
                        if let Some(data) = frame.data_ref() {
                            first_byte.get_or_insert_with(|| sent.elapsed());
                            if check {
                                whole.extend_from_slice(data);
                            }
                        }
                    }
                    let total = sent.elapsed();
                    if let Ok(mut idle) = idle.lock() {
                        idle.push(sender);
                    }
                    if spec.status.map_or(!status.is_success(), |s| s != status.as_u16()) {
                        return Err(format!("status {status}"));
                    }
                    if check {
                        (spec.validate)(&whole).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&whole)))?;
                    }
                    Ok::<_, String>((counts, total, first_byte.unwrap_or(total)))
                });
                while let Some(done) = tasks.try_join_next() {
                    record_open_loop(&mut sample, done);
                }
            }
            let hard_stop = until + GRACE;
            loop {
                match tokio::time::timeout_at(hard_stop, tasks.join_next()).await {
                    Ok(Some(done)) => record_open_loop(&mut sample, done),
                    Ok(None) => break,
                    Err(_) => {
                        let left = tasks.len() as u64;
                        tasks.abort_all();
                        sample.errors += left;
                        sample
                            .first_error
                            .get_or_insert(format!("{left} answer(s) not finished {GRACE:?} after the window"));
                        break;
                    }
                }
            }
            sample.window = measure;
            sample
        })
    })
    .join()
    .expect("open-loop thread")
}

type OpenLoopResult = Result<Result<(bool, Duration, Duration), String>, tokio::task::JoinError>;

fn record_open_loop(sample: &mut Sample, done: OpenLoopResult) {
    match done {
        Ok(Ok((counts, total, first_byte))) => {
            sample.answered += 1;
            if counts {
                sample.ok += 1;
                sample.total_us.push(micros(total));
                sample.first_byte_us.push(micros(first_byte));
            }
        }
        Ok(Err(error)) => fail(sample, error),
        Err(error) => fail(sample, error.to_string()),
    }
}

/// A keep-alive connection ready for a request: an idle one from `idle`, else a new one (`opened`
/// is then counted). An idle connection the server has closed meanwhile (its idle timeout; the
/// request was never sent on it) is dropped and counted in `stale`, as an HTTP client's pool
/// does; only a new connection that is not ready is an error.
pub async fn ready_connection(
    addr: SocketAddr,
    idle: &std::sync::Mutex<Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
    opened: &AtomicU64,
    stale: &AtomicU64,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    loop {
        let pooled = idle.lock().ok().and_then(|mut idle| idle.pop());
        let Some(mut sender) = pooled else { break };
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
        stale.fetch_add(1, Ordering::Relaxed);
    }
    opened.fetch_add(1, Ordering::Relaxed);
    let mut sender = open_connection(addr).await?;
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    Ok(sender)
}

pub async fn open_connection(addr: SocketAddr) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// What [`run_slow_streams`] saw.
#[derive(Debug, Default)]
pub struct SlowStreams {
    /// Streams that ended with a 2xx status and a body that validated.
    pub completed: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    /// Highest reading of `sample` taken while every stream was open at once, if that happened.
    pub peak_all_open: Option<u64>,
    /// How many samples were taken with all streams open.
    pub samples_all_open: usize,
}

/// Opens `count` connections at once, each sending `spec` (a slow streamed answer) and reading
/// its body as it comes; calls `sample` every 20 ms and keeps the highest value seen while all
/// `count` streams were open (first body byte received, end not yet).
pub fn run_slow_streams(
    addr: SocketAddr,
    spec: Arc<Spec>,
    count: usize,
    sample: impl Fn() -> Option<u64>,
) -> SlowStreams {
    let open = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (client_open, client_finished) = (open.clone(), finished.clone());
    let client = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
        let result = runtime.block_on(async move {
            let host = HeaderValue::from_str(&addr.to_string()).expect("host");
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..count {
                let (spec, host, open) = (spec.clone(), host.clone(), client_open.clone());
                tasks.spawn(async move {
                    let mut sender = open_connection(addr).await?;
                    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
                    let response =
                        sender.send_request(spec.request(&host)).await.map_err(|e| format!("request: {e}"))?;
                    if !response.status().is_success() {
                        return Err(format!("status {}", response.status()));
                    }
                    let mut body = response.into_body();
                    let mut whole = Vec::new();
                    let mut counted = false;
                    let outcome = loop {
                        match body.frame().await {
                            Some(Ok(frame)) => {
                                if let Some(data) = frame.data_ref() {
                                    if !counted {
                                        counted = true;
                                        open.fetch_add(1, Ordering::SeqCst);
                                    }
                                    whole.extend_from_slice(data);
                                }
                            }
                            Some(Err(error)) => break Err(format!("body: {error}")),
                            None => break Ok(()),
                        }
                    };
                    if counted {
                        open.fetch_sub(1, Ordering::SeqCst);
                    }
                    outcome?;
                    (spec.validate)(&whole)
                });
            }
            let mut result = SlowStreams::default();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while let Ok(Some(done)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
                match done {
                    Ok(Ok(())) => result.completed += 1,
                    Ok(Err(error)) => {
                        result.errors += 1;
                        result.first_error.get_or_insert(error);
                    }
                    Err(error) => {
                        result.errors += 1;
                        result.first_error.get_or_insert(error.to_string());
                    }
                }
            }
            result.errors += tasks.len();
            result
        });
        client_finished.store(true, Ordering::SeqCst);
        result
    });
    let mut peak = None;
    let mut samples = 0;
    while !finished.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        if open.load(Ordering::SeqCst) as usize == count
            && let Some(value) = sample()
        {
            samples += 1;
            peak = Some(peak.unwrap_or(0).max(value));
        }
    }
    let mut result = client.join().expect("slow-stream thread");
    result.peak_all_open = peak;
    result.samples_all_open = samples;
    result
}

fn fail(sample: &mut Sample, error: String) {
    sample.errors += 1;
    if sample.first_error.is_none() {
        let mut error = error;
        error.truncate(300);
        sample.first_error = Some(error);
    }
}

fn micros(duration: Duration) -> u32 {
    duration.as_micros().min(u32::MAX as u128) as u32
}

/// A child process killed (and reaped) on drop; its stderr and stdout go to `log`.
pub struct Server {
    pub child: Child,
    pub log: PathBuf,
}

impl Server {
    pub fn spawn(mut command: Command, log: PathBuf) -> std::io::Result<Server> {
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = command.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Server { child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log contains `needle` (if given) and `addr` accepts connections.
    pub fn wait_ready(&mut self, addr: SocketAddr, needle: Option<&str>, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", tail(&self.log_text(), 1500)));
            }
            let logged = needle.is_none_or(|n| self.log_text().contains(n));
            if logged && std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not ready within {timeout:?}: {}", tail(&self.log_text(), 1500)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    &text[start..]
}

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

/// `VmHWM` (peak resident set) of one process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// CPU time (user + system) of a process and its descendants, in seconds: the nanosecond
/// `schedstat` of every live thread (threads that ended no longer count, so a phase must not see
/// threads come and go), else the 10 ms `stat` ticks.
pub fn tree_cpu_secs(pid: u32) -> f64 {
    tree_pids(pid)
        .into_iter()
        .map(|pid| {
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
            let precise: Option<u64> = threads
                .map(|task| {
                    let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
                    stat.split_whitespace().next()?.parse::<u64>().ok()
                })
                .sum();
            precise.map(|ns| ns as f64 / 1e9).or_else(|| stat_cpu_secs(pid)).unwrap_or(0.0)
        })
        .sum()
}

/// User + system time from `/proc/<pid>/stat` (10 ms ticks).
fn stat_cpu_secs(pid: u32) -> Option<f64> {
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec)
}

/// A process and all its descendants.
pub fn tree_pids(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut pending = vec![pid];
    while let Some(pid) = pending.pop() {
        out.push(pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pending.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    out
}

/// `VmRSS` (current resident set) of one process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Sum of `VmHWM` over a process and all its descendants, in KiB, with the process count.
pub fn tree_peak_rss_kib(pid: u32) -> (u64, usize) {
    let pids = tree_pids(pid);
    (pids.iter().map(|&pid| peak_rss_kib(pid).unwrap_or(0)).sum(), pids.len())
}

/// The `byollm` binary built next to this example (`target/<profile>/byollm`), or `BYOLLM_BIN`.
pub fn byollm_bin() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("BYOLLM_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe.parent().and_then(Path::parent).ok_or("no target directory")?;
    let bin = profile_dir.join("byollm");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} not found: run `cargo build --release` first (or set BYOLLM_BIN)", bin.display()))
    }
}

/// A `Command` with no inherited `AWS_*` or `BYOLLM_*` variables.
pub fn clean_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("AWS_") || text.starts_with("BYOLLM_") {
            command.env_remove(&name);
        }
    }
    command
}

pub fn fmt_ms(value: f64) -> String {
    if value.is_finite() { format!("{value:.2}") } else { "-".into() }
}

pub fn fmt_added(value: f64) -> String {
    if value.is_finite() { format!("{value:+.2}") } else { "-".into() }
}

// ---- fakes and the cloud gateway, shared by the examples ----------------------------------------

/// Lower-case hex SHA-256 (what `[[callers]] key_sha256` holds).
pub fn sha256_hex(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The answer's text, word by word: "Hello", " word1", " word2", ...
pub fn answer_words(count: usize) -> Vec<String> {
    (0..count).map(|i| if i == 0 { "Hello".to_owned() } else { format!(" word{i}") }).collect()
}

/// `bin`, or `bin` under the `--wrap` command prefix.
pub fn byollm_command(bin: &Path, wrap: &[String]) -> Command {
    match wrap.split_first() {
        Some((program, prefix)) => {
            let mut command = clean_command(std::path::Path::new(program));
            command.args(prefix).arg(bin);
            command
        }
        None => clean_command(bin),
    }
}

/// How long a byollm may take to start (much longer under a profiler).
pub fn start_timeout(wrap: &[String]) -> Duration {
    Duration::from_secs(if wrap.is_empty() { 20 } else { 300 })
}

/// A key set generated before start, so that start-up does the same work on every run.
pub fn generate_keys(bin: &Path, dir: &Path) -> Result<(), String> {
    let status = clean_command(bin)
        .arg("keys")
        .arg("generate")
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or_else(|| format!("byollm keys generate failed: {status}"))
}

/// What a cloud gateway ([`start_byollm_cloud`]) is given.
pub struct Cloud<'a> {
    pub fake: SocketAddr,
    pub sts: SocketAddr,
    /// The one caller's API key (team `bench`).
    pub api_key: &'a str,
    /// The team's role, "assumed" by the fake STS.
    pub role_arn: &'a str,
    /// More TOML after the `[[teams]]` entry: `[models]`, `[routing]`, ...
    pub extra_toml: &'a str,
    /// More `[server]` fields, one per line.
    pub server_toml: &'a str,
}

/// `byollm serve` (dev issuer on loopback) with one caller, one team whose role the fake STS
/// "assumes", and the fake Bedrock.
pub fn start_byollm_cloud(
    bin: &Path,
    wrap: &[String],
    work: &Path,
    cloud: &Cloud<'_>,
) -> Result<(Server, SocketAddr), String> {
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    generate_keys(bin, &work.join("jwks"))?;
    let config = work.join("byollm.toml");
    let addr = free_addr();
    std::fs::write(
        &config,
        format!(
            "dev = true\n[server]\nlisten = \"{addr}\"\n{}\n[issuer]\nurl = \"http://{addr}\"\n[keys]\ndir = {:?}\n\
             [sts]\nendpoint_url = \"http://{}\"\n[bedrock]\nendpoint_url = \"http://{}\"\n\
             [[callers]]\nname = \"bench\"\nkey_sha256 = \"{}\"\nteam = \"bench\"\n\
             [[teams]]\nuid = \"bench\"\nrole_arn = \"{}\"\n{}",
            cloud.server_toml,
            work.join("jwks").display().to_string(),
            cloud.sts,
            cloud.fake,
            sha256_hex(cloud.api_key),
            cloud.role_arn,
            cloud.extra_toml
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut command = byollm_command(bin, wrap);
    command.arg("serve").arg("--config").arg(&config).env("AWS_EC2_METADATA_DISABLED", "true");
    let mut server = Server::spawn(command, work.join("byollm.log")).map_err(|e| e.to_string())?;
    server.wait_ready(addr, Some("byollm ready"), start_timeout(wrap)).map_err(|e| format!("byollm: {e}"))?;
    Ok((server, addr))
}

/// `router` on its own current-thread runtime in its own OS thread, for the whole run.
pub fn serve_in_thread(router: Router) -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("fake runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("fake listener").tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, router).await;
        });
    });
    Ok(addr)
}

/// A whole (non-streamed) Anthropic message of `words` words, as `InvokeModel` answers.
pub fn anthropic_message(words: usize) -> Bytes {
    json!({
        "id": "msg_bench_0001",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [{"type": "text", "text": answer_words(words).concat()}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": words},
    })
    .to_string()
    .into()
}

/// The events of a streamed answer, written as Bedrock writes them: compact, keys in the Anthropic
/// API's order (`type` first), not sorted as `serde_json::Value` would write them.
pub fn event_frames(words: usize) -> Vec<Bytes> {
    let mut events = vec![
        r#"{"type":"message_start","message":{"id":"msg_bench_0001","type":"message","role":"assistant","model":"claude-3-5-sonnet-20240620","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#.to_owned(),
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.to_owned(),
    ];
    for word in answer_words(words) {
        events.push(format!(
            r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{}}}}}"#,
            json!(word)
        ));
    }
    events.push(r#"{"type":"content_block_stop","index":0}"#.to_owned());
    events.push(format!(
        r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{words}}}}}"#
    ));
    events.push(format!(
        r#"{{"type":"message_stop","amazon-bedrock-invocationMetrics":{{"inputTokenCount":12,"outputTokenCount":{words},"invocationLatency":100,"firstByteLatency":10}}}}"#
    ));
    events.iter().map(|event| chunk_frame(event)).collect()
}

pub fn chunk_frame(event: &str) -> Bytes {
    let payload = json!({"bytes": base64::engine::general_purpose::STANDARD.encode(event)}).to_string();
    event_stream_frame(
        &[(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")],
        payload,
    )
}

/// One `application/vnd.amazon.eventstream` frame with string headers.
pub fn event_stream_frame(headers: &[(&str, &str)], payload: impl Into<Vec<u8>>) -> Bytes {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let mut message = Message::new(payload.into());
    for (name, value) in headers {
        message = message.add_header(Header::new(name.to_string(), HeaderValue::String(value.to_string().into())));
    }
    let mut buf = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut buf).expect("event-stream frame");
    buf.into()
}

/// A fake STS's `AssumeRoleWithWebIdentity` answer: one-hour credentials with `secret`.
pub fn sts_credentials_xml(secret: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let expiration = aws_smithy_types::DateTime::from_secs(now.as_secs() as i64 + 3600)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIABENCHMARK0000001</AccessKeyId>\
         <SecretAccessKey>{secret}</SecretAccessKey><SessionToken>bench-session-token</SessionToken>\
         <Expiration>{expiration}</Expiration></Credentials>\
         <SubjectFromWebIdentityToken>scoped_principal:bench/service_account:bench-bot</SubjectFromWebIdentityToken>\
         <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/byollm-bench/bench</Arn>\
         <AssumedRoleId>AROABENCHMARK:bench</AssumedRoleId></AssumedRoleUser>\
         <Provider>127.0.0.1</Provider><Audience>sts.amazonaws.com</Audience>\
         </AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId>\
         </ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
    )
}
