//! Adapter benchmark: the same chat, several ways, against one fake Bedrock in this process:
//!
//! * `floor`         client → fake Bedrock (the Anthropic body straight to `InvokeModel[WithResponseStream]`)
//! * `byollm cloud`  client → `byollm serve` (API key, run identity headers, the run's STS
//!   credentials cached after the first call to a fake STS in this process) → fake
//! * `byollm local`  client → `byollm local` (static keys in a temporary AWS profile) → fake
//! * `litellm`       client → LiteLLM proxy (`bedrock/invoke/...`, static keys) → fake, when installed
//!
//! ```text
//! cargo build --release && LITELLM_BIN=/path/to/litellm \
//!     cargo run --release --example bench_adapter -- --secs 2 --repeats 3
//! ```
//!
//! One run reports, for both modes (`json`: non-streamed, `stream`: SSE):
//! 1. throughput at each `--concurrency` (closed loop, keep-alive), as a fraction of the floor;
//! 2. latency at a fixed open-loop rate (`--rate`, 1,000 req/s by default: requests start on a
//!    schedule whatever the answers do), and the gateway's added p50/p99 over the floor's;
//! 3. the gateway's CPU time per request (from `/proc/<pid>/task/*/schedstat`, nanoseconds; else
//!    `/proc/<pid>/stat` ticks), at saturation and at the fixed rate;
//! 4. memory: resident set at start (idle), and with `--slow-streams` (1,000) streams open at once
//!    (each a 4-second answer, one event every 100 ms), as bytes per open stream.
//!
//! `--limits local,redis` (the default) adds `byollm cloud` with `[limits]` on (every kind of limit
//! set for the team, its caller and each principal, none ever reached): with the in-process store,
//! and with a `redis-server` started on loopback (when installed; `redis_url`); the "Limits" table
//! gives the CPU per request each adds over the plain cloud gateway at c=16, and the added p50
//! (closed loop at c=16, and at the fixed rate). Redis's own CPU is not in the gateway's figure.
//! `--limits off` skips them.
//!
//! `--surface chat|messages|native|count-tokens` picks the API byollm is driven through (the floor
//! is the client talking to the fake's InvokeModel directly, or its CountTokens for
//! `count-tokens`, which byollm serves as the Messages API's `/v1/messages/count_tokens`; JSON
//! only).
//!
//! `--compare-bin PATH[,PATH…]` adds more byollm binaries (e.g. builds before a change) to the
//! same run; `--gateways cloud` or `--gateways local` measures one mode; `--modes json|stream` one mode;
//! `--litellm off` skips LiteLLM (which takes no part in the open-loop and memory phases: it could
//! not keep up).
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
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use clap::Parser;
use serde_json::json;

use common::{
    Cloud, Server, Spec, answer_words, anthropic_message, byollm_command, clean_command, event_frames, fmt_added,
    fmt_ms, free_addr, median, peak_rss_kib, quantile_ms, rss_kib, run_load, run_open_loop, run_slow_streams,
    serve_in_thread, start_byollm_cloud, start_timeout, sts_credentials_xml, tree_peak_rss_kib,
};

const MODEL_ID: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// The fake answers this model's streams slowly (the memory phase).
const SLOW_MODEL_ID: &str = "anthropic.claude-slow-bench-v1:0";
const KEY_ID: &str = "AKIDBENCHMARK0000001";
const SECRET: &str = "bench-secret-access-key-not-checked-0001";
/// The cloud gateway's caller key.
const API_KEY: &str = "byollm_bench_key_adapter_0123456789abcdef";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/byollm-bench";
const WORDS: usize = 20;
/// Slow streams: this many text deltas, one every `SLOW_GAP`.
const SLOW_WORDS: usize = 40;
const SLOW_GAP: Duration = Duration::from_millis(100);

#[derive(Parser)]
struct Args {
    /// Seconds recorded per closed-loop phase (after --warmup-ms); at most 15.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    #[arg(long, default_value_t = 300)]
    warmup_ms: u64,
    /// Repeats of every closed-loop and open-loop phase (paths interleaved); medians are printed.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Open keep-alive connections per closed-loop phase.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// The LiteLLM CLI (`litellm` on PATH by default); `off` to skip.
    #[arg(long, env = "LITELLM_BIN", default_value = "litellm")]
    litellm: String,
    /// Modes to run: json (non-streamed) and/or stream.
    #[arg(long, value_delimiter = ',', default_value = "json,stream")]
    modes: Vec<String>,
    /// The surface byollm is driven through: chat (OpenAI chat completions), messages (the
    /// Anthropic Messages API), native (Bedrock's InvokeModel[WithResponseStream], relayed) or
    /// count-tokens (`/v1/messages/count_tokens`, Bedrock's CountTokens; --modes json only).
    #[arg(long, default_value = "chat")]
    surface: String,
    /// byollm modes to measure: cloud (`byollm serve`) and/or local (`byollm local`).
    #[arg(long, value_delimiter = ',', default_value = "cloud,local")]
    gateways: Vec<String>,
    /// More byollm binaries to measure side by side (e.g. builds before a change), comma-separated,
    /// each run as the first of --gateways.
    #[arg(long, value_delimiter = ',')]
    compare_bin: Vec<PathBuf>,
    /// byollm cloud with `[limits]` on, side by side: `local` (in-process store), `redis`
    /// (redis-server on loopback), or `off`.
    #[arg(long, value_delimiter = ',', default_value = "local,redis")]
    limits: Vec<String>,
    /// Cap on requests recorded per closed-loop phase.
    #[arg(long, default_value_t = 500_000)]
    max_requests: u64,
    /// Requests per second of the open-loop phase (0 skips it).
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds recorded per open-loop phase (after --warmup-ms); at most 15.
    #[arg(long, default_value_t = 3.0)]
    rate_secs: f64,
    /// Streams held open at once in the memory phase (0 skips it).
    #[arg(long, default_value_t = 1000)]
    slow_streams: usize,
    /// Count mode, for instruction-level profiles: exactly this many requests per mode, one at a
    /// time, through each byollm (no floor, no LiteLLM, no timed phases); then every byollm is
    /// stopped with SIGTERM so a profiler wrapped around it (--wrap) can write its output.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// A command prefix for starting byollm, e.g. "valgrind --tool=callgrind --callgrind-out-file=cg.%p".
    #[arg(long, allow_hyphen_values = true)]
    wrap: Option<String>,
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Surface {
    Chat,
    Messages,
    Native,
    CountTokens,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gateway {
    Cloud,
    Local,
}

struct Path {
    name: String,
    addr: SocketAddr,
    /// The gateway process, for CPU and memory (none for the floor: the fake runs in here).
    pid: Option<u32>,
    /// byollm (open-loop and memory phases) rather than LiteLLM.
    byollm: bool,
    json: Arc<Spec>,
    stream: Arc<Spec>,
    slow: Arc<Spec>,
    /// VmRSS right after start, before any request (KiB).
    idle_rss: Option<u64>,
}

#[derive(Default)]
struct Cell {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    ttfb50: Vec<f64>,
    ttfb99: Vec<f64>,
    cpu_us: Vec<f64>,
    /// The CPU reading of each repeat, in order (`None`: not read), to pair repeats of two paths.
    cpu_by_repeat: Vec<Option<f64>>,
    errors: u64,
    first_error: Option<String>,
}

impl Cell {
    fn record(&mut self, mut sample: common::Sample, cpu_us: Option<f64>) {
        self.rps.push(sample.rps());
        self.p50.push(quantile_ms(&mut sample.total_us, 0.50));
        self.p99.push(quantile_ms(&mut sample.total_us, 0.99));
        self.ttfb50.push(quantile_ms(&mut sample.first_byte_us, 0.50));
        self.ttfb99.push(quantile_ms(&mut sample.first_byte_us, 0.99));
        self.cpu_us.extend(cpu_us);
        self.cpu_by_repeat.push(cpu_us);
        self.errors += sample.errors;
        if self.first_error.is_none() {
            self.first_error = sample.first_error.take();
        }
    }
}

/// Memory phase results of one gateway.
struct Memory {
    before_kib: u64,
    peak_kib: Option<u64>,
    samples: usize,
    completed: usize,
    errors: usize,
    first_error: Option<String>,
}

/// Runs `phase` and returns its sample with the gateway's CPU µs per answered request.
fn measured(path: &Path, phase: impl FnOnce() -> common::Sample) -> (common::Sample, Option<f64>) {
    let before = path.pid.map(common::tree_cpu_secs);
    let sample = phase();
    let cpu = path
        .pid
        .zip(before)
        .map(|(pid, before)| (common::tree_cpu_secs(pid) - before) * 1e6 / sample.answered.max(1) as f64);
    (sample, cpu)
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let secs = args.secs.clamp(0.2, 15.0);
    let rate_secs = args.rate_secs.clamp(0.5, 15.0);
    let repeats = args.repeats.max(1);
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;

    let mut modes = Vec::new();
    for mode in &args.modes {
        match mode.as_str() {
            "json" => modes.push(Mode::Json),
            "stream" => modes.push(Mode::Stream),
            other => return Err(format!("--modes: unknown mode {other:?} (json, stream)")),
        }
    }
    let mut gateways = Vec::new();
    for gateway in &args.gateways {
        match gateway.as_str() {
            "cloud" => gateways.push(Gateway::Cloud),
            "local" => gateways.push(Gateway::Local),
            other => return Err(format!("--gateways: unknown gateway {other:?} (cloud, local)")),
        }
    }

    let surface = match args.surface.as_str() {
        "chat" => Surface::Chat,
        "messages" => Surface::Messages,
        "native" => Surface::Native,
        "count-tokens" => Surface::CountTokens,
        other => {
            return Err(format!("--surface: unknown surface {other:?} (chat, messages, native, count-tokens)"));
        }
    };
    if surface == Surface::CountTokens && modes.contains(&Mode::Stream) {
        return Err("--surface count-tokens: token counts are not streamed; use --modes json".into());
    }
    println!("surface: {surface:?}");

    let wrap: Vec<String> = args.wrap.as_deref().unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    let fake = start_fake()?;
    let sts = start_fake_sts()?;
    let mut paths = vec![Path {
        name: "floor (direct to fake)".into(),
        addr: fake.addr,
        pid: None,
        byollm: false,
        json: Arc::new(match surface {
            Surface::CountTokens => {
                Spec::post_json(&format!("/model/{}/count-tokens", encoded(MODEL_ID)), bedrock_count_body())
                    .validate(check_bedrock_count)
            }
            _ => Spec::post_json(&format!("/model/{}/invoke", encoded(MODEL_ID)), anthropic_body())
                .validate(check_message),
        }),
        stream: Arc::new(
            Spec::post_json(&format!("/model/{}/invoke-with-response-stream", encoded(MODEL_ID)), anthropic_body())
                .header("accept", "application/vnd.amazon.eventstream")
                .validate(check_event_stream),
        ),
        slow: Arc::new(Spec::get("/")),
        idle_rss: None,
    }];

    let byollm_bin = common::byollm_bin()?;
    let mut servers = Vec::new();
    let mut runs: Vec<(Gateway, PathBuf)> = gateways.iter().map(|g| (*g, byollm_bin.clone())).collect();
    let own_runs = runs.len();
    if let Some(first) = gateways.first() {
        for bin in &args.compare_bin {
            runs.push((*first, bin.clone()));
        }
    }
    // byollm cloud with [limits] on: (label, the [limits] section), after the other runs.
    let mut redis = None;
    let mut limit_runs: Vec<(&str, String)> = Vec::new();
    for store in args.limits.iter().filter(|_| gateways.contains(&Gateway::Cloud)) {
        match store.as_str() {
            "off" => {}
            "local" => limit_runs.push(("limits", limits_toml(None))),
            "redis" => match byollm_testkit::redis::RedisServer::start() {
                Some(server) => {
                    limit_runs.push(("limits, redis", limits_toml(Some(&server.url()))));
                    redis = Some(server);
                }
                None => println!("limits with redis: not run (redis-server is not installed)"),
            },
            other => return Err(format!("--limits: unknown store {other:?} (local, redis, off)")),
        }
    }
    let limits_from = runs.len();
    for _ in &limit_runs {
        runs.push((Gateway::Cloud, byollm_bin.clone()));
    }
    for (index, (gateway, bin)) in runs.iter().enumerate() {
        let dir = work.path().join(format!("byollm-{index}"));
        let limits = index.checked_sub(limits_from).map(|n| limit_runs[n].clone());
        let (server, addr, key) = match gateway {
            Gateway::Cloud => {
                let section = limits.as_ref().map_or("", |(_, section)| section.as_str());
                let extra = format!("{}{section}", models_toml());
                let cloud = Cloud {
                    fake: fake.addr,
                    sts: sts.addr,
                    api_key: API_KEY,
                    role_arn: ROLE_ARN,
                    extra_toml: &extra,
                    server_toml: "",
                };
                let (server, addr) = start_byollm_cloud(bin, &wrap, &dir, &cloud)?;
                (server, addr, API_KEY.to_owned())
            }
            Gateway::Local => start_byollm_local(bin, &wrap, &dir, fake.addr)?,
        };
        let kind = if *gateway == Gateway::Cloud { "cloud" } else { "local" };
        let name = if let Some((label, _)) = &limits {
            format!("byollm {kind} ({label})")
        } else if index < own_runs {
            format!("byollm {kind}")
        } else {
            format!("byollm {kind} ({})", bin.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
        };
        paths.push(Path {
            name,
            addr,
            pid: Some(server.pid()),
            byollm: true,
            json: Arc::new(byollm_spec(*gateway, surface, &key, "bench", false)),
            stream: Arc::new(byollm_spec(*gateway, surface, &key, "bench", true)),
            slow: Arc::new(byollm_spec(*gateway, Surface::Chat, &key, "slow", true).validate(check_slow_sse)),
            idle_rss: rss_kib(server.pid()),
        });
        servers.push(server);
    }

    if args.count > 0 {
        return count_requests(&args, &modes, &paths[1..], servers);
    }

    let master_key = master_key();
    let litellm = if surface == Surface::CountTokens {
        Err("the count-tokens surface is measured against the floor only".to_owned())
    } else {
        start_litellm(&args.litellm, work.path(), fake.addr, &master_key)
    };
    let mut litellm = match litellm {
        Ok(server) => Some(server),
        Err(reason) => {
            println!("litellm: not available ({reason})");
            None
        }
    };
    if let Some((server, addr)) = &litellm {
        paths.push(Path {
            name: "litellm proxy".into(),
            addr: *addr,
            pid: Some(server.pid()),
            byollm: false,
            json: Arc::new(openai_spec(false, &master_key)),
            stream: Arc::new(openai_spec(true, &master_key)),
            slow: Arc::new(Spec::get("/")),
            idle_rss: None,
        });
    }

    let warmup = Duration::from_millis(args.warmup_ms.min(2000));
    let measure = Duration::from_secs_f64(secs);

    // 1. Memory, first (nothing allocated by the other phases to hide behind): one request of
    //    each kind, then `--slow-streams` slow streams at once.
    let mut memory: Vec<Option<Memory>> = paths.iter().map(|_| None).collect();
    if args.slow_streams > 0 {
        for (p, path) in paths.iter().enumerate().filter(|(_, path)| path.byollm) {
            let pid = path.pid.unwrap_or_default();
            eprintln!("memory: {} slow streams through {}", args.slow_streams, path.name);
            for spec in [&path.json, &path.stream] {
                let _ = run_load(path.addr, spec.clone(), 1, Duration::ZERO, Duration::from_millis(100), 20);
            }
            std::thread::sleep(Duration::from_millis(200));
            let before_kib = rss_kib(pid).unwrap_or(0);
            let slow = run_slow_streams(path.addr, path.slow.clone(), args.slow_streams, || rss_kib(pid));
            memory[p] = Some(Memory {
                before_kib,
                peak_kib: slow.peak_all_open,
                samples: slow.samples_all_open,
                completed: slow.completed,
                errors: slow.errors,
                first_error: slow.first_error,
            });
        }
    }

    // 2. Throughput, closed loop.
    let mut cells: Vec<Cell> =
        (0..paths.len() * modes.len() * args.concurrency.len()).map(|_| Cell::default()).collect();
    let index = |p: usize, m: usize, c: usize| (p * modes.len() + m) * args.concurrency.len() + c;
    // 3. Latency at a fixed rate, open loop.
    let mut fixed: Vec<Cell> = (0..paths.len() * modes.len()).map(|_| Cell::default()).collect();
    let hits_before = fake.hits.snapshot();
    for repeat in 0..repeats {
        eprintln!("repeat {}/{repeats}", repeat + 1);
        for (m, mode) in modes.iter().enumerate() {
            for (c, &concurrency) in args.concurrency.iter().enumerate() {
                for p in run_order(paths.len(), repeat) {
                    let path = &paths[p];
                    let spec = if *mode == Mode::Json { path.json.clone() } else { path.stream.clone() };
                    let (sample, cpu) =
                        measured(path, || run_load(path.addr, spec, concurrency, warmup, measure, args.max_requests));
                    cells[index(p, m, c)].record(sample, cpu);
                }
            }
            if args.rate == 0 {
                continue;
            }
            for p in run_order(paths.len(), repeat).filter(|&p| p == 0 || paths[p].byollm) {
                let path = &paths[p];
                let spec = if *mode == Mode::Json { path.json.clone() } else { path.stream.clone() };
                let (sample, cpu) = measured(path, || {
                    run_open_loop(path.addr, spec, args.rate, warmup, Duration::from_secs_f64(rate_secs))
                });
                fixed[p * modes.len() + m].record(sample, cpu);
            }
        }
    }
    let hits = fake.hits.snapshot();

    let peaks: Vec<Option<u64>> = paths.iter().map(|path| path.pid.and_then(peak_rss_kib)).collect();
    let ends: Vec<Option<u64>> = paths.iter().map(|path| path.pid.and_then(rss_kib)).collect();
    let litellm_rss = litellm.as_ref().map(|(server, _)| tree_peak_rss_kib(server.pid()));
    let logs: Vec<(String, bool)> = servers
        .iter_mut()
        .map(|server| (server.log_text(), server.child.try_wait().ok().flatten().is_none()))
        .collect();

    println!();
    println!(
        "# bench_adapter: {secs} s per closed-loop phase and {rate_secs} s per open-loop phase after {} ms warm-up, \
         {repeats} repeat(s) interleaved, medians; {} core(s) shared by client, fake and gateways; load average {}",
        warmup.as_millis(),
        cores(),
        load_average()
    );

    println!();
    println!("## Throughput (closed loop, keep-alive), as a fraction of the floor");
    println!();
    let others: Vec<usize> = (1..paths.len()).collect();
    let mut header = String::from("| mode | conc | floor req/s |");
    let mut rule = String::from("|---|---:|---:|");
    for &p in &others {
        header.push_str(&format!(" {} req/s | ÷ floor |", paths[p].name));
        rule.push_str("---:|---:|");
    }
    let litellm_index = litellm.as_ref().map(|_| paths.len() - 1);
    if litellm_index.is_some() {
        header.push_str(" byollm ÷ LiteLLM |");
        rule.push_str("---:|");
    }
    println!("{header}");
    println!("{rule}");
    for (m, mode) in modes.iter().enumerate() {
        for (c, &concurrency) in args.concurrency.iter().enumerate() {
            let floor = median(cells[index(0, m, c)].rps.clone());
            let mut row = format!("| {} | {concurrency} | {floor:.0} |", mode.name());
            for &p in &others {
                let rps = median(cells[index(p, m, c)].rps.clone());
                row.push_str(&format!(" {rps:.0} | {:.0} % |", 100.0 * rps / floor));
            }
            if let Some(l) = litellm_index {
                let byollm = median(cells[index(1, m, c)].rps.clone());
                row.push_str(&format!(" {:.0}× |", byollm / median(cells[index(l, m, c)].rps.clone())));
            }
            println!("{row}");
        }
    }

    if args.rate > 0 {
        println!();
        println!(
            "## Latency at a fixed {} req/s (open loop), request start → last byte; added = gateway − floor",
            args.rate
        );
        println!();
        println!(
            "| mode | path | achieved req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | gateway CPU µs/req | errors |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for (m, mode) in modes.iter().enumerate() {
            let floor = &fixed[m];
            let (floor50, floor99) = (median(floor.p50.clone()), median(floor.p99.clone()));
            for (p, path) in paths.iter().enumerate().filter(|(p, path)| *p == 0 || path.byollm) {
                let cell = &fixed[p * modes.len() + m];
                let (p50, p99) = (median(cell.p50.clone()), median(cell.p99.clone()));
                let (added50, added99) = if p == 0 { (f64::NAN, f64::NAN) } else { (p50 - floor50, p99 - floor99) };
                println!(
                    "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                    mode.name(),
                    path.name,
                    median(cell.rps.clone()),
                    fmt_ms(p50),
                    fmt_ms(p99),
                    fmt_added(added50),
                    fmt_added(added99),
                    fmt_cpu(median(cell.cpu_us.clone())),
                    cell.errors
                );
            }
        }
    }

    // The limits side by side: the same gateway with and without them.
    let plain = paths.iter().position(|path| path.name == "byollm cloud");
    if let (Some(plain), false) = (plain, limit_runs.is_empty()) {
        let c = args.concurrency.iter().position(|&c| c == 16).unwrap_or(0);
        println!();
        println!(
            "## Limits: byollm cloud with [limits] on, minus byollm cloud (closed loop at c={}; fixed rate {} req/s)",
            args.concurrency[c], args.rate
        );
        println!();
        println!(
            "| mode | path | CPU µs/req | added CPU µs/req | added CPU, repeat by repeat: median (range) | p50 ms | added p50 ms | fixed-rate p50 ms | added fixed-rate p50 ms | added CPU at the fixed rate, repeat by repeat |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (m, mode) in modes.iter().enumerate() {
            let base = &cells[index(plain, m, c)];
            let (base_cpu, base50) = (median(base.cpu_us.clone()), median(base.p50.clone()));
            let base_fixed = fixed.get(plain * modes.len() + m).map_or(f64::NAN, |cell| median(cell.p50.clone()));
            for p in std::iter::once(plain).chain(limits_from + 1..limits_from + 1 + limit_runs.len()) {
                let cell = &cells[index(p, m, c)];
                let (cpu, p50) = (median(cell.cpu_us.clone()), median(cell.p50.clone()));
                let fixed50 = fixed.get(p * modes.len() + m).map_or(f64::NAN, |cell| median(cell.p50.clone()));
                let added = |value: f64, base: f64| if p == plain { f64::NAN } else { value - base };
                let paired = if p == plain { "-".to_owned() } else { added_by_repeat(cell, base) };
                let fixed_paired = match (fixed.get(p * modes.len() + m), fixed.get(plain * modes.len() + m)) {
                    (Some(with), Some(without)) if p != plain => added_by_repeat(with, without),
                    _ => "-".to_owned(),
                };
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    mode.name(),
                    paths[p].name,
                    fmt_cpu(cpu),
                    fmt_added_cpu(added(cpu, base_cpu)),
                    paired,
                    fmt_ms(p50),
                    fmt_added(added(p50, base50)),
                    fmt_ms(fixed50),
                    fmt_added(added(fixed50, base_fixed)),
                    fixed_paired,
                );
            }
        }
        println!();
        println!(
            "limits: every kind set for the team, its caller and each principal, none reached (requests and tokens \
             per minute, concurrent requests and streams, token and USD budgets per day and month); redis-server's own \
             CPU is not counted"
        );
    }

    println!();
    println!("## Memory");
    println!();
    println!(
        "| path | idle RSS at start | RSS before the slow streams | RSS with {} streams open | per open stream | peak RSS (VmHWM) | RSS at the end | streams completed / errors |",
        args.slow_streams
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (p, path) in paths.iter().enumerate().filter(|(_, path)| path.byollm) {
        let (before, open, per_stream, streams) = match &memory[p] {
            Some(m) => (
                fmt_mib(Some(m.before_kib)),
                fmt_mib(m.peak_kib),
                m.peak_kib.map_or("-".into(), |peak| {
                    format!("{:.1} KiB", (peak.saturating_sub(m.before_kib)) as f64 / args.slow_streams as f64)
                }),
                format!("{} / {} ({} samples with all open)", m.completed, m.errors, m.samples),
            ),
            None => ("-".into(), "-".into(), "-".into(), "not run".into()),
        };
        println!(
            "| {} | {} | {before} | {open} | {per_stream} | {} | {} | {streams} |",
            path.name,
            fmt_mib(path.idle_rss),
            fmt_mib(peaks[p]),
            fmt_mib(ends[p])
        );
    }
    match litellm_rss {
        Some((kib, processes)) => {
            println!();
            println!("litellm peak RSS (VmHWM): {:.1} MiB (sum over {processes} process(es))", kib as f64 / 1024.0)
        }
        None => println!("\nlitellm: not run"),
    }

    println!();
    println!("## Details (closed loop)");
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
                println!(
                    "| {} | {} | {concurrency} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    path.name,
                    mode.name(),
                    median(cell.rps.clone()),
                    fmt_ms(p50),
                    fmt_ms(p99),
                    fmt_ms(ttfb50),
                    fmt_ms(ttfb99),
                    fmt_added(added50),
                    fmt_added(added99),
                    fmt_cpu(median(cell.cpu_us.clone())),
                    cell.errors
                );
            }
        }
    }
    println!();
    println!(
        "fake Bedrock requests during the load phases: invoke {}, invoke-with-response-stream {}, count-tokens {}, converse {}, converse-stream {}, other {}; fake STS calls {}",
        hits.invoke - hits_before.invoke,
        hits.stream - hits_before.stream,
        hits.count_tokens - hits_before.count_tokens,
        hits.converse - hits_before.converse,
        hits.converse_stream - hits_before.converse_stream,
        hits.other - hits_before.other,
        sts.calls.load(Ordering::Relaxed),
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
            if let Some(error) = fixed.get(p * modes.len() + m).and_then(|cell| cell.first_error.as_ref()) {
                println!("first error, {} {} at {} req/s: {error}", path.name, mode.name(), args.rate);
            }
        }
        if let Some(Some(Memory { first_error: Some(error), .. })) = memory.get(p) {
            println!("first error, {} slow streams: {error}", path.name);
        }
    }
    for (log, alive) in &logs {
        if !alive {
            println!("a byollm exited during the run: {}", common::tail(log, 1500));
        }
    }
    println!(
        "notes: added = path p50/p99 minus floor p50/p99 in the same phase (c=1 is the per-request overhead; at \
         higher concurrency it includes queueing); first byte = first event-stream frame (floor) or first SSE event \
         (gateways); gateway CPU = CPU time of the gateway process tree per answered request (schedstat); per open stream = (RSS with all streams open − RSS before) ÷ streams; the load client is 1 \
         thread and the fake 1 thread, both competing with the gateways for {} core(s).",
        cores()
    );
    let concurrency: Vec<String> = args.concurrency.iter().map(usize::to_string).collect();
    let compare_arg = if args.compare_bin.is_empty() {
        String::new()
    } else {
        let bins: Vec<String> = args.compare_bin.iter().map(|b| b.display().to_string()).collect();
        format!(" --compare-bin {}", bins.join(","))
    };
    println!(
        "reproduce: cargo build --release && LITELLM_BIN={} cargo run --release --example bench_adapter -- --secs {secs} \
         --warmup-ms {} --repeats {repeats} --concurrency {} --modes {} --gateways {} --rate {} --rate-secs {rate_secs} \
         --slow-streams {} --limits {}{compare_arg}",
        args.litellm,
        warmup.as_millis(),
        concurrency.join(","),
        args.modes.join(","),
        args.gateways.join(","),
        args.rate,
        args.slow_streams,
        args.limits.join(","),
    );
    if let Some((server, _)) = litellm.as_mut() {
        let _ = server.child.kill();
    }
    drop(redis);
    Ok(())
}

/// Count mode: `--count` requests per mode through each byollm, one at a time, then SIGTERM.
fn count_requests(args: &Args, modes: &[Mode], paths: &[Path], mut servers: Vec<Server>) -> Result<(), String> {
    for path in paths {
        for mode in modes {
            let spec = if *mode == Mode::Json { path.json.clone() } else { path.stream.clone() };
            let sample = run_load(path.addr, spec, 1, Duration::ZERO, Duration::from_secs(3600), args.count);
            println!(
                "{} {}: {} answered, {} errors{}",
                path.name,
                mode.name(),
                sample.answered,
                sample.errors,
                sample.first_error.map(|e| format!(" (first: {e})")).unwrap_or_default()
            );
        }
    }
    for server in &mut servers {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(server.pid().to_string()).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while std::time::Instant::now() < deadline && matches!(server.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("byollm {} stopped: {:?}", server.pid(), server.child.try_wait());
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn fmt_added_cpu(value: f64) -> String {
    if value.is_finite() { format!("{value:+.1}") } else { "-".into() }
}

fn fmt_cpu(value: f64) -> String {
    if value.is_finite() { format!("{value:.0}") } else { "-".into() }
}

fn fmt_mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
}

/// The model id as it goes into a Bedrock URL path.
fn encoded(model_id: &str) -> String {
    model_id.replace(':', "%3A")
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

fn chat_body(model: &str, stream: bool) -> String {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Say hello in twenty words."}],
        "max_tokens": 256,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body.to_string()
}

fn openai_spec(stream: bool, bearer: &str) -> Spec {
    let spec = Spec::post_json("/v1/chat/completions", chat_body("bench", stream))
        .header("authorization", &format!("Bearer {bearer}"));
    if stream { spec.validate(check_sse) } else { spec.validate(check_completion) }
}

/// A request to a byollm gateway through `surface`: `key` is the cloud caller's API key or local
/// mode's session key; a worker's request to the cloud gateway also carries the run's identity.
fn byollm_spec(gateway: Gateway, surface: Surface, key: &str, model: &str, stream: bool) -> Spec {
    let spec = match (surface, stream) {
        (Surface::Chat, _) => Spec::post_json("/v1/chat/completions", chat_body(model, stream)),
        (Surface::Messages, _) => Spec::post_json("/v1/messages", messages_body(model, stream)),
        (Surface::Native, false) => Spec::post_json(&format!("/model/{model}/invoke"), anthropic_body()),
        (Surface::Native, true) => {
            Spec::post_json(&format!("/model/{model}/invoke-with-response-stream"), anthropic_body())
                .header("accept", "application/vnd.amazon.eventstream")
        }
        (Surface::CountTokens, _) => Spec::post_json("/v1/messages/count_tokens", count_tokens_body(model)),
    };
    let spec = spec.header("authorization", &format!("Bearer {key}"));
    let spec = match gateway {
        Gateway::Local => spec,
        Gateway::Cloud => spec
            .header("x-byollm-actor", "service_account")
            .header("x-byollm-principal", "bench-bot")
            .header("x-byollm-run-id", "bench-run-1"),
    };
    match (surface, stream) {
        (Surface::Chat, false) => spec.validate(check_completion),
        (Surface::Chat, true) => spec.validate(check_sse),
        (Surface::Messages | Surface::Native, false) => spec.validate(check_message),
        (Surface::Messages, true) => spec.validate(check_messages_sse),
        (Surface::Native, true) => spec.validate(check_event_stream),
        (Surface::CountTokens, _) => spec.validate(check_count),
    }
}

/// The order in which the paths run in `repeat`: the floor (path 0) first, then the others in
/// order in even repeats and in reverse in odd ones, so that a drift over a repeat (the fake's
/// and the client's state, the machine's other work) favours neither of two paths compared.
fn run_order(paths: usize, repeat: usize) -> impl Iterator<Item = usize> {
    let rest: Vec<usize> = if repeat.is_multiple_of(2) { (1..paths).collect() } else { (1..paths).rev().collect() };
    std::iter::once(0).chain(rest)
}

/// `with`'s CPU per request minus `without`'s, repeat by repeat: the median and the range. Each
/// repeat runs the paths one after the other (in alternating order, [`run_order`]), so a repeat's
/// difference is measured under the same load, and its median is steadier than a difference of
/// medians.
fn added_by_repeat(with: &Cell, without: &Cell) -> String {
    let paired: Vec<f64> = (with.cpu_by_repeat.iter().zip(&without.cpu_by_repeat))
        .filter_map(|(with, without)| Some((*with)? - (*without)?))
        .collect();
    if paired.is_empty() {
        return "-".to_owned();
    }
    let (low, high) = paired.iter().fold((f64::MAX, f64::MIN), |(l, h), d| (l.min(*d), h.max(*d)));
    format!("{} ({low:+.1} … {high:+.1})", fmt_added_cpu(median(paired)))
}

/// A Messages API `count_tokens` request (no `max_tokens`, no `stream`).
fn count_tokens_body(model: &str) -> String {
    json!({
        "model": model,
        "system": "be brief",
        "messages": [{"role": "user", "content": "Say hello in twenty words."}],
    })
    .to_string()
}

/// Bedrock's `CountTokens` request: the `InvokeModel` body, base64-encoded.
fn bedrock_count_body() -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(anthropic_body());
    json!({"input": {"invokeModel": {"body": body}}}).to_string()
}

fn check_count(body: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    (value["input_tokens"] == COUNTED_TOKENS).then_some(()).ok_or_else(|| format!("unexpected count {value}"))
}

fn check_bedrock_count(body: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    (value["inputTokens"] == COUNTED_TOKENS).then_some(()).ok_or_else(|| format!("unexpected count {value}"))
}

fn messages_body(model: &str, stream: bool) -> String {
    json!({
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "system": "be brief",
        "messages": [{"role": "user", "content": "Say hello in twenty words."}],
    })
    .to_string()
}

/// A Messages API stream: every text delta, ending with `message_stop`.
fn check_messages_sse(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let mut content = String::new();
    let mut stopped = false;
    for data in text.split("\n\n").filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data:"))).map(str::trim) {
        let event: serde_json::Value = serde_json::from_str(data).map_err(|e| format!("{e} in {data}"))?;
        if let Some(delta) = event["delta"]["text"].as_str() {
            content.push_str(delta);
        }
        stopped |= event["type"] == "message_stop";
    }
    if !stopped {
        return Err("no message_stop".into());
    }
    (content == answer_words(WORDS).concat()).then_some(()).ok_or_else(|| format!("streamed {content:?}"))
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
    (text == answer_words(WORDS).concat()).then_some(()).ok_or_else(|| format!("unexpected content {text:?}"))
}

fn streamed_text(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let mut content = String::new();
    for event in text.split("\n\n").filter_map(|e| e.trim().strip_prefix("data:")).map(str::trim) {
        if event == "[DONE]" {
            return Ok(content);
        }
        let chunk: serde_json::Value = serde_json::from_str(event).map_err(|e| format!("{e} in {event}"))?;
        if let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str() {
            content.push_str(delta);
        }
    }
    Err("no [DONE]".into())
}

fn check_sse(body: &[u8]) -> Result<(), String> {
    let content = streamed_text(body)?;
    (content == answer_words(WORDS).concat()).then_some(()).ok_or_else(|| format!("streamed {content:?}"))
}

fn check_slow_sse(body: &[u8]) -> Result<(), String> {
    let content = streamed_text(body)?;
    (content == answer_words(SLOW_WORDS).concat()).then_some(()).ok_or_else(|| format!("streamed {content:?}"))
}

// ---- byollm and LiteLLM as child processes -------------------------------------------------------

/// A `[limits]` section setting every kind of limit for the bench's team, caller and each
/// principal, none of which the bench reaches; shared through Redis at `redis_url` if given.
fn limits_toml(redis_url: Option<&str>) -> String {
    let store = redis_url.map(|url| format!("redis_url = \"{url}\"\n")).unwrap_or_default();
    let price = "input = 3.0\noutput = 15.0\ncache_write_5m = 3.75\ncache_write_1h = 6.0\ncache_read = 0.3\n";
    let rates = "requests_per_minute = 60000000\ninput_tokens_per_minute = 60000000\n\
                 output_tokens_per_minute = 60000000\nconcurrent_requests = 1000000\nconcurrent_streams = 1000000\n";
    let budgets = "tokens_per_day = 1000000000000\ntokens_per_month = 1000000000000\n\
                   usd_per_day = 1000000\nusd_per_month = 1000000\n";
    format!(
        "[limits]\n{store}[limits.prices.bench]\n{price}[limits.prices.slow]\n{price}\
         [limits.teams.bench]\n{rates}{budgets}[limits.teams.bench.each_principal]\n{rates}\
         [limits.callers.bench]\n{rates}"
    )
}

fn models_toml() -> String {
    format!("[models.bench]\nid = \"{MODEL_ID}\"\n[models.slow]\nid = \"{SLOW_MODEL_ID}\"\n")
}

/// `byollm local` with static keys in a temporary AWS profile; returns its session key (a build
/// from before the session key, given with --compare-bin, writes none and takes any key).
fn start_byollm_local(
    bin: &std::path::Path,
    wrap: &[String],
    work: &std::path::Path,
    fake: SocketAddr,
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
    std::fs::write(&config, models_toml()).map_err(|e| e.to_string())?;
    let addr = free_addr();
    let mut command = byollm_command(bin, wrap);
    command
        .arg("local")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--profile")
        .arg("bench")
        .arg("--key-file")
        .arg(work.join("local.key"))
        .env("AWS_CONFIG_FILE", &aws_config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &aws_credentials)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", format!("http://{fake}"));
    let mut server = Server::spawn(command, work.join("byollm.log")).map_err(|e| e.to_string())?;
    server.wait_ready(addr, Some("byollm ready"), start_timeout(wrap)).map_err(|e| format!("byollm: {e}"))?;
    let key =
        std::fs::read_to_string(work.join("local.key")).map_or_else(|_| "sk-bench".to_owned(), |k| k.trim().to_owned());
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
    count_tokens: AtomicU64,
    invoke: AtomicU64,
    stream: AtomicU64,
    converse: AtomicU64,
    converse_stream: AtomicU64,
    other: AtomicU64,
}

#[derive(Clone, Copy)]
struct HitCounts {
    count_tokens: u64,
    invoke: u64,
    stream: u64,
    converse: u64,
    converse_stream: u64,
    other: u64,
}

impl Hits {
    fn snapshot(&self) -> HitCounts {
        HitCounts {
            count_tokens: self.count_tokens.load(Ordering::Relaxed),
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
    slow_frames: Vec<Bytes>,
    hits: Arc<Hits>,
}

struct Fake {
    addr: SocketAddr,
    hits: Arc<Hits>,
}

/// The fake Bedrock.
fn start_fake() -> Result<Fake, String> {
    let hits = Arc::new(Hits::default());
    let state = Arc::new(FakeState {
        message: anthropic_message(WORDS),
        frames: event_frames(WORDS),
        slow_frames: event_frames(SLOW_WORDS),
        hits: hits.clone(),
    });
    let app = Router::new()
        .route("/model/{id}/invoke", post(invoke))
        .route("/model/{id}/invoke-with-response-stream", post(invoke_stream))
        .route("/model/{id}/count-tokens", post(count_tokens))
        .fallback(other)
        .with_state(state);
    Ok(Fake { addr: serve_in_thread(app)?, hits })
}

struct FakeSts {
    addr: SocketAddr,
    calls: Arc<AtomicU64>,
}

/// A fake STS that answers every `AssumeRoleWithWebIdentity` with the same one-hour credentials
/// (it verifies nothing: the broker's cache makes it one call per run anyway).
fn start_fake_sts() -> Result<FakeSts, String> {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let app = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            ([(header::CONTENT_TYPE, "text/xml")], sts_credentials_xml(SECRET))
        }
    });
    Ok(FakeSts { addr: serve_in_thread(app)?, calls })
}

/// The `inputTokens` the fake counts for any request.
const COUNTED_TOKENS: u64 = 17;

/// Bedrock's `CountTokens`: `{"inputTokens": n}`.
async fn count_tokens(State(state): State<Arc<FakeState>>, _body: Bytes) -> Response {
    state.hits.count_tokens.fetch_add(1, Ordering::Relaxed);
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("x-amzn-requestid"), "00000000-0000-0000-0000-000000000000"),
        ],
        format!(r#"{{"inputTokens":{COUNTED_TOKENS}}}"#),
    )
        .into_response()
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

async fn invoke_stream(State(state): State<Arc<FakeState>>, UrlPath(id): UrlPath<String>, _body: Bytes) -> Response {
    state.hits.stream.fetch_add(1, Ordering::Relaxed);
    let body = if id == SLOW_MODEL_ID {
        // One frame every SLOW_GAP, as a model that takes its time.
        let frames = state.slow_frames.clone();
        Body::from_stream(futures_util::stream::unfold(frames.into_iter(), |mut frames| async move {
            let frame = frames.next()?;
            tokio::time::sleep(SLOW_GAP).await;
            Some((Ok::<Bytes, std::io::Error>(frame), frames))
        }))
    } else {
        let frames = state.frames.clone();
        Body::from_stream(futures_util::stream::iter(frames.into_iter().map(Ok::<Bytes, std::io::Error>)))
    };
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
