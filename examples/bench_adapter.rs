//! Adapter benchmark: the same chat, three ways, against one fake Bedrock in this process:
//!
//! * `floor`   client → fake Bedrock (the Anthropic body straight to `InvokeModel[WithResponseStream]`)
//! * `byollm`  client → `byollm local` (release binary, static keys in a temporary AWS profile) → fake
//! * `litellm` client → LiteLLM proxy (`bedrock/invoke/...`, static keys) → fake, when it is installed
//!
//! ```text
//! cargo build --release && LITELLM_BIN=/path/to/litellm \
//!     cargo run --release --example bench_adapter -- --secs 2 --repeats 3 --concurrency 1,16,64
//! ```
//!
//! `--compare-bin PATH` adds a second byollm binary (e.g. a build with a proposed fix) to the same
//! run; `--modes json` or `--modes stream` runs one mode; `--litellm off` skips LiteLLM. Besides
//! requests/s and latency it prints the gateway's CPU time per request (from `/proc/<pid>/stat`)
//! and its peak RSS (`VmHWM`, summed over the LiteLLM process tree).
//!
//! The fake accepts any SigV4 (it checks nothing: it is the floor), answers `invoke` with a fixed
//! Anthropic message and `invoke-with-response-stream` with real `application/vnd.amazon.eventstream`
//! frames (message_start, content_block_start, 20 text deltas, content_block_stop, message_delta,
//! message_stop), each written as its own body chunk with no delay. The client, the fake and the
//! gateway share the machine's cores, so the figures are lower bounds for the gateway alone.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use base64::Engine;
use bytes::Bytes;
use clap::Parser;
use serde_json::json;

use common::{
    Server, Spec, clean_command, fmt_added, fmt_ms, free_addr, median, peak_rss_kib, quantile_ms, run_load,
    tree_peak_rss_kib,
};

const MODEL_ID: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const KEY_ID: &str = "AKIDBENCHMARK0000001";
const SECRET: &str = "bench-secret-access-key-not-checked-0001";
const WORDS: usize = 20;

#[derive(Parser)]
struct Args {
    /// Seconds recorded per phase (after --warmup-ms); at most 15.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    #[arg(long, default_value_t = 300)]
    warmup_ms: u64,
    /// Repeats of every phase (paths interleaved); medians are printed.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Open keep-alive connections per phase.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// The LiteLLM CLI (`litellm` on PATH by default); `off` to skip.
    #[arg(long, env = "LITELLM_BIN", default_value = "litellm")]
    litellm: String,
    /// Modes to run: json (non-streamed) and/or stream.
    #[arg(long, value_delimiter = ',', default_value = "json,stream")]
    modes: Vec<String>,
    /// A second byollm binary to measure side by side (e.g. a build with a proposed fix).
    #[arg(long)]
    compare_bin: Option<PathBuf>,
    /// Cap on requests recorded per phase.
    #[arg(long, default_value_t = 500_000)]
    max_requests: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Json,
    Stream,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Json => "non-stream",
            Mode::Stream => "stream",
        }
    }
}

struct Path {
    name: &'static str,
    addr: SocketAddr,
    /// The gateway process, for CPU per request (none for the floor: the fake runs in here).
    pid: Option<u32>,
    json: Arc<Spec>,
    stream: Arc<Spec>,
}

#[derive(Default)]
struct Cell {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    ttfb50: Vec<f64>,
    ttfb99: Vec<f64>,
    cpu_us: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let secs = args.secs.clamp(0.2, 15.0);
    let repeats = args.repeats.max(1);
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;

    let fake = start_fake()?;
    let mut paths = vec![Path {
        name: "floor (direct to fake)",
        addr: fake.addr,
        pid: None,
        json: Arc::new(
            Spec::post_json(&format!("/model/{}/invoke", encoded_model()), anthropic_body()).validate(check_message),
        ),
        stream: Arc::new(
            Spec::post_json(&format!("/model/{}/invoke-with-response-stream", encoded_model()), anthropic_body())
                .header("accept", "application/vnd.amazon.eventstream")
                .validate(check_event_stream),
        ),
    }];

    let byollm_bin = common::byollm_bin()?;
    let mut byollm = start_byollm(&byollm_bin, &work.path().join("byollm"), fake.addr, true)?;
    paths.push(Path {
        name: "byollm local",
        addr: byollm.1,
        pid: Some(byollm.0.pid()),
        json: Arc::new(openai_spec(false, &byollm.2)),
        stream: Arc::new(openai_spec(true, &byollm.2)),
    });
    // An older build to compare with may predate the session key (--key-file).
    let compare = match &args.compare_bin {
        Some(bin) => Some(start_byollm(bin, &work.path().join("compare"), fake.addr, false)?),
        None => None,
    };
    if let Some((_, addr, key)) = &compare {
        paths.push(Path {
            name: "byollm (--compare-bin)",
            addr: *addr,
            pid: compare.as_ref().map(|(server, _, _)| server.pid()),
            json: Arc::new(openai_spec(false, key)),
            stream: Arc::new(openai_spec(true, key)),
        });
    }

    let master_key = master_key();
    let mut litellm = match start_litellm(&args.litellm, work.path(), fake.addr, &master_key) {
        Ok(server) => Some(server),
        Err(reason) => {
            println!("litellm: not available ({reason})");
            None
        }
    };
    if let Some((server, addr)) = &litellm {
        paths.push(Path {
            name: "litellm proxy",
            addr: *addr,
            pid: Some(server.pid()),
            json: Arc::new(openai_spec(false, &master_key)),
            stream: Arc::new(openai_spec(true, &master_key)),
        });
    }

    let mut modes = Vec::new();
    for mode in &args.modes {
        match mode.as_str() {
            "json" => modes.push(Mode::Json),
            "stream" => modes.push(Mode::Stream),
            other => return Err(format!("--modes: unknown mode {other:?} (json, stream)")),
        }
    }
    let mut cells: Vec<Cell> =
        (0..paths.len() * modes.len() * args.concurrency.len()).map(|_| Cell::default()).collect();
    let index = |p: usize, m: usize, c: usize| (p * modes.len() + m) * args.concurrency.len() + c;
    let warmup = Duration::from_millis(args.warmup_ms.min(2000));
    let measure = Duration::from_secs_f64(secs);
    let hits_before = fake.hits.snapshot();
    for repeat in 0..repeats {
        eprintln!("repeat {}/{repeats}", repeat + 1);
        for (m, mode) in modes.iter().enumerate() {
            for (c, &concurrency) in args.concurrency.iter().enumerate() {
                for (p, path) in paths.iter().enumerate() {
                    let spec = if *mode == Mode::Json { path.json.clone() } else { path.stream.clone() };
                    let cpu_before = path.pid.map(common::tree_cpu_secs);
                    let mut sample = run_load(path.addr, spec, concurrency, warmup, measure, args.max_requests);
                    let cell = &mut cells[index(p, m, c)];
                    if let (Some(pid), Some(before)) = (path.pid, cpu_before) {
                        let used = common::tree_cpu_secs(pid) - before;
                        cell.cpu_us.push(used * 1e6 / sample.answered.max(1) as f64);
                    }
                    cell.rps.push(sample.rps());
                    cell.p50.push(quantile_ms(&mut sample.total_us, 0.50));
                    cell.p99.push(quantile_ms(&mut sample.total_us, 0.99));
                    cell.ttfb50.push(quantile_ms(&mut sample.first_byte_us, 0.50));
                    cell.ttfb99.push(quantile_ms(&mut sample.first_byte_us, 0.99));
                    cell.errors += sample.errors;
                    if cell.first_error.is_none() {
                        cell.first_error = sample.first_error.take();
                    }
                }
            }
        }
    }
    let hits = fake.hits.snapshot();

    let byollm_rss = peak_rss_kib(byollm.0.pid()).unwrap_or(0);
    let compare_rss =
        compare.as_ref().and_then(|(server, _, _)| Some((peak_rss_kib(server.pid())?, common::rss_kib(server.pid())?)));
    let litellm_rss = litellm.as_ref().map(|(server, _)| tree_peak_rss_kib(server.pid()));
    let byollm_log = byollm.0.log_text();
    let byollm_alive = byollm.0.child.try_wait().ok().flatten().is_none();

    println!();
    println!(
        "# bench_adapter: {} s per phase after {} ms warm-up, {repeats} repeat(s) interleaved, medians; {} core(s) shared by client, fake and gateway",
        secs,
        warmup.as_millis(),
        cores()
    );
    println!();
    println!(
        "| path | mode | conc | req/s | p50 ms | p99 ms | first byte p50 ms | first byte p99 ms | added p50 ms | added p99 ms | gateway CPU µs/req | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (m, mode) in modes.iter().enumerate() {
        for (c, &concurrency) in args.concurrency.iter().enumerate() {
            let floor = &cells[index(0, m, c)];
            let (floor50, floor99) = (median(floor.p50.clone()), median(floor.p99.clone()));
            for (p, path) in paths.iter().enumerate() {
                let cell = &cells[index(p, m, c)];
                let (p50, p99) = (median(cell.p50.clone()), median(cell.p99.clone()));
                let (added50, added99) = if p == 0 { (f64::NAN, f64::NAN) } else { (p50 - floor50, p99 - floor99) };
                let (ttfb50, ttfb99) = match mode {
                    Mode::Stream => (median(cell.ttfb50.clone()), median(cell.ttfb99.clone())),
                    Mode::Json => (f64::NAN, f64::NAN),
                };
                let cpu = median(cell.cpu_us.clone());
                let cpu = if cpu.is_finite() { format!("{cpu:.0}") } else { "-".into() };
                println!(
                    "| {} | {} | {concurrency} | {:.0} | {} | {} | {} | {} | {} | {} | {cpu} | {} |",
                    path.name,
                    mode.name(),
                    median(cell.rps.clone()),
                    fmt_ms(p50),
                    fmt_ms(p99),
                    fmt_ms(ttfb50),
                    fmt_ms(ttfb99),
                    fmt_added(added50),
                    fmt_added(added99),
                    cell.errors
                );
            }
        }
    }
    println!();
    println!(
        "peak RSS (VmHWM): byollm {:.1} MiB, {:.1} MiB resident at the end ({})",
        byollm_rss as f64 / 1024.0,
        common::rss_kib(byollm.0.pid()).unwrap_or(0) as f64 / 1024.0,
        byollm_bin.display()
    );
    if let (Some((peak, now)), Some(bin)) = (compare_rss, &args.compare_bin) {
        println!(
            "peak RSS (VmHWM): byollm (--compare-bin) {:.1} MiB, {:.1} MiB resident at the end ({})",
            peak as f64 / 1024.0,
            now as f64 / 1024.0,
            bin.display()
        );
    }
    match litellm_rss {
        Some((kib, processes)) => {
            println!("peak RSS (VmHWM): litellm {:.1} MiB (sum over {processes} process(es))", kib as f64 / 1024.0)
        }
        None => println!("peak RSS (VmHWM): litellm not run"),
    }
    println!(
        "fake Bedrock requests during the phases: invoke {}, invoke-with-response-stream {}, converse {}, converse-stream {}, other {}",
        hits.invoke - hits_before.invoke,
        hits.stream - hits_before.stream,
        hits.converse - hits_before.converse,
        hits.converse_stream - hits_before.converse_stream,
        hits.other - hits_before.other,
    );
    if litellm.is_some() {
        println!(
            "litellm route: model bedrock/invoke/{MODEL_ID} (InvokeModel / InvokeModelWithResponseStream, as byollm)"
        );
    }
    for (p, path) in paths.iter().enumerate() {
        for (m, mode) in modes.iter().enumerate() {
            for (c, concurrency) in args.concurrency.iter().enumerate() {
                if let Some(error) = &cells[index(p, m, c)].first_error {
                    println!("first error, {} {} c={concurrency}: {error}", path.name, mode.name());
                }
            }
        }
    }
    if !byollm_alive {
        println!("byollm exited during the run: {}", common::tail(&byollm_log, 1500));
    }
    println!(
        "notes: added = path p50/p99 minus floor p50/p99 at the same concurrency (c=1 is the per-request overhead; \
         at higher concurrency it includes queueing); first byte = first event-stream frame (floor) or first SSE \
         event (gateways); gateway CPU = user+system time of the gateway process tree per answered request \
         (10 ms tick resolution); the load client is 1 thread and the fake 1 thread, both competing with the gateway for {} core(s).",
        cores()
    );
    let concurrency: Vec<String> = args.concurrency.iter().map(usize::to_string).collect();
    let compare_arg = args.compare_bin.as_ref().map(|b| format!(" --compare-bin {}", b.display())).unwrap_or_default();
    println!(
        "reproduce: cargo build --release && LITELLM_BIN={} cargo run --release --example bench_adapter -- --secs {secs} --warmup-ms {} --repeats {repeats} --concurrency {} --modes {}{compare_arg}",
        args.litellm,
        warmup.as_millis(),
        concurrency.join(","),
        args.modes.join(",")
    );
    if let Some((server, _)) = litellm.as_mut() {
        let _ = server.child.kill();
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn encoded_model() -> String {
    MODEL_ID.replace(':', "%3A")
}

fn anthropic_body() -> String {
    json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello in twenty words."}]}],
    })
    .to_string()
}

/// A fresh LiteLLM master key (`sk-` and 64 hex digits), as its docs generate one.
fn master_key() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    format!("sk-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn openai_spec(stream: bool, bearer: &str) -> Spec {
    let mut body = json!({
        "model": "bench",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Say hello in twenty words."}],
        "max_tokens": 256,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let spec =
        Spec::post_json("/v1/chat/completions", body.to_string()).header("authorization", &format!("Bearer {bearer}"));
    if stream { spec.validate(check_sse) } else { spec.validate(check_completion) }
}

fn answer_words() -> Vec<String> {
    (0..WORDS).map(|i| if i == 0 { "Hello".to_owned() } else { format!(" word{i}") }).collect()
}

fn check_message(body: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    (value["type"] == "message").then_some(()).ok_or_else(|| "not an Anthropic message".into())
}

fn check_event_stream(body: &[u8]) -> Result<(), String> {
    (body.len() > 16 * (WORDS + 6)).then_some(()).ok_or_else(|| format!("short event stream ({} bytes)", body.len()))
}

fn check_completion(body: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let text = value["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    (text == answer_words().concat()).then_some(()).ok_or_else(|| format!("unexpected content {text:?}"))
}

fn check_sse(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let mut content = String::new();
    for event in text.split("\n\n").filter_map(|e| e.trim().strip_prefix("data:")).map(str::trim) {
        if event == "[DONE]" {
            let expected = answer_words().concat();
            return (content == expected).then_some(()).ok_or_else(|| format!("streamed {content:?}"));
        }
        let chunk: serde_json::Value = serde_json::from_str(event).map_err(|e| format!("{e} in {event}"))?;
        if let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str() {
            content.push_str(delta);
        }
    }
    Err("no [DONE]".into())
}

// ---- byollm and LiteLLM as child processes -------------------------------------------------------

/// `byollm local` on a free loopback port; returns the server, its address and the API key to send
/// (the session key it wrote, with `session_key`).
fn start_byollm(
    bin: &std::path::Path,
    work: &std::path::Path,
    fake: SocketAddr,
    session_key: bool,
) -> Result<(Server, SocketAddr, String), String> {
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let aws_config = work.join("aws-config");
    let aws_credentials = work.join("aws-credentials");
    let config = work.join("byollm.toml");
    std::fs::write(&aws_config, "[profile bench]\nregion = us-east-1\n").map_err(|e| e.to_string())?;
    std::fs::write(
        &aws_credentials,
        format!("[bench]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(&config, format!("[models.bench]\nid = \"{MODEL_ID}\"\n")).map_err(|e| e.to_string())?;
    let addr = free_addr();
    let mut command = clean_command(bin);
    command
        .arg("local")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--profile")
        .arg("bench")
        .env("AWS_CONFIG_FILE", &aws_config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &aws_credentials)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", format!("http://{fake}"));
    let key_file = work.join("local.key");
    if session_key {
        command.arg("--key-file").arg(&key_file);
    }
    let mut server = Server::spawn(command, work.join("byollm.log")).map_err(|e| e.to_string())?;
    server.wait_ready(addr, Some("byollm ready"), Duration::from_secs(20)).map_err(|e| format!("byollm: {e}"))?;
    let key = match session_key {
        true => std::fs::read_to_string(&key_file).map_err(|e| format!("session key: {e}"))?.trim().to_owned(),
        false => "sk-bench".to_owned(),
    };
    Ok((server, addr, key))
}

fn start_litellm(
    program: &str,
    work: &std::path::Path,
    fake: SocketAddr,
    master_key: &str,
) -> Result<(Server, SocketAddr), String> {
    if program == "off" {
        return Err("--litellm off".into());
    }
    let found = which(program).ok_or_else(|| {
        format!("{program:?} not found; pip install 'litellm[proxy]' and pass --litellm /path/to/litellm")
    })?;
    let addr = free_addr();
    let config = work.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: bench\n    litellm_params:\n      model: bedrock/invoke/{MODEL_ID}\n      \
             aws_access_key_id: {KEY_ID}\n      aws_secret_access_key: {SECRET}\n      aws_region_name: us-east-1\n      \
             aws_bedrock_runtime_endpoint: http://{fake}\nlitellm_settings:\n  telemetry: false\n  \
             turn_off_message_logging: true\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut command = clean_command(&found);
    command
        .arg("--config")
        .arg(&config)
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(addr.port().to_string())
        .env("LITELLM_MASTER_KEY", master_key)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    let mut server = Server::spawn(command, work.join("litellm.log")).map_err(|e| e.to_string())?;
    server.wait_ready(addr, None, Duration::from_secs(120)).map_err(|e| format!("litellm did not start: {e}"))?;
    Ok((server, addr))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = PathBuf::from(program);
    if path.components().count() > 1 {
        return path.is_file().then_some(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file()))
}

// ---- the fake Bedrock -----------------------------------------------------------------------------

#[derive(Default)]
struct Hits {
    invoke: AtomicU64,
    stream: AtomicU64,
    converse: AtomicU64,
    converse_stream: AtomicU64,
    other: AtomicU64,
}

#[derive(Clone, Copy)]
struct HitCounts {
    invoke: u64,
    stream: u64,
    converse: u64,
    converse_stream: u64,
    other: u64,
}

impl Hits {
    fn snapshot(&self) -> HitCounts {
        HitCounts {
            invoke: self.invoke.load(Ordering::Relaxed),
            stream: self.stream.load(Ordering::Relaxed),
            converse: self.converse.load(Ordering::Relaxed),
            converse_stream: self.converse_stream.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
    }
}

struct FakeState {
    message: Bytes,
    frames: Vec<Bytes>,
    hits: Arc<Hits>,
}

struct Fake {
    addr: SocketAddr,
    hits: Arc<Hits>,
}

/// The fake Bedrock on its own current-thread runtime in its own OS thread, for the whole run.
fn start_fake() -> Result<Fake, String> {
    let hits = Arc::new(Hits::default());
    let state = Arc::new(FakeState { message: anthropic_message(), frames: event_frames(), hits: hits.clone() });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("fake runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("fake listener").tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let app = Router::new()
                .route("/model/{id}/invoke", post(invoke))
                .route("/model/{id}/invoke-with-response-stream", post(invoke_stream))
                .fallback(other)
                .with_state(state);
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(Fake { addr, hits })
}

async fn invoke(State(state): State<Arc<FakeState>>, _body: Bytes) -> Response {
    state.hits.invoke.fetch_add(1, Ordering::Relaxed);
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("x-amzn-requestid"), "00000000-0000-0000-0000-000000000000"),
            (header::HeaderName::from_static("x-amzn-bedrock-input-token-count"), "12"),
            (header::HeaderName::from_static("x-amzn-bedrock-output-token-count"), "20"),
        ],
        state.message.clone(),
    )
        .into_response()
}

async fn invoke_stream(State(state): State<Arc<FakeState>>, _body: Bytes) -> Response {
    state.hits.stream.fetch_add(1, Ordering::Relaxed);
    let frames = state.frames.clone();
    let body = Body::from_stream(futures_util::stream::iter(frames.into_iter().map(Ok::<Bytes, std::io::Error>)));
    (
        [
            (header::CONTENT_TYPE, "application/vnd.amazon.eventstream"),
            (header::HeaderName::from_static("x-amzn-requestid"), "00000000-0000-0000-0000-000000000000"),
            (header::HeaderName::from_static("x-amzn-bedrock-content-type"), "application/json"),
        ],
        body,
    )
        .into_response()
}

async fn other(State(state): State<Arc<FakeState>>, uri: Uri) -> Response {
    let path = uri.path();
    let counter = if path.ends_with("/converse-stream") {
        &state.hits.converse_stream
    } else if path.ends_with("/converse") {
        &state.hits.converse
    } else {
        &state.hits.other
    };
    counter.fetch_add(1, Ordering::Relaxed);
    (StatusCode::NOT_FOUND, [(header::HeaderName::from_static("x-amzn-errortype"), "UnknownOperationException")], "{}")
        .into_response()
}

fn anthropic_message() -> Bytes {
    json!({
        "id": "msg_bench_0001",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [{"type": "text", "text": answer_words().concat()}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": WORDS},
    })
    .to_string()
    .into()
}

fn event_frames() -> Vec<Bytes> {
    let mut events = vec![
        json!({"type": "message_start", "message": {
            "id": "msg_bench_0001", "type": "message", "role": "assistant", "model": "claude-3-5-sonnet-20240620",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ];
    for word in answer_words() {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
        "usage": {"output_tokens": WORDS}}));
    events.push(json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": 12, "outputTokenCount": WORDS, "invocationLatency": 100, "firstByteLatency": 10}}));
    events.iter().map(chunk_frame).collect()
}

fn chunk_frame(event: &serde_json::Value) -> Bytes {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let payload = json!({"bytes": base64::engine::general_purpose::STANDARD.encode(event.to_string())}).to_string();
    let message = Message::new(payload.into_bytes())
        .add_header(Header::new(":event-type", HeaderValue::String("chunk".into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())))
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())));
    let mut buf = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut buf).expect("event-stream frame");
    buf.into()
}
