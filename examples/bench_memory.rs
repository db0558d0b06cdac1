//! Peak memory of the real binary under maximum-size bodies (issue 9): `--concurrency`
//! concurrent bodies of `--body-mib` MiB (default 4 × 20 MiB, the default `server.max_body_bytes`)
//! whose bulk is small JSON values in one field (`--field`, default `"metadata": [0,0,0,…]`), sent
//! to the chat API or, with `--api messages`, the Messages API of `byollm local` (release build)
//! in front of a fake Bedrock, all on 127.0.0.1.
//!
//! With `--answer-mib N` it measures the other direction (issue 18): small chat requests routed to
//! an OpenAI-compatible endpoint (a fake on 127.0.0.1 in this process) that answers every one
//! with a non-streamed completion of N MiB, which byollm reads whole before relaying it; the
//! answers are charged to `server.max_answer_bytes_in_flight` (`--answer-budget-mib`, default
//! 128 MiB), the endpoint's `max_response_bytes` is set to fit them; `--chunked` sends them
//! without a `Content-Length`. The client reads each answer as a stream and keeps only its size.
//!
//! Prints resident memory at rest, the peak (`VmHWM`) over all rounds, what each request got
//! (200, or 503 `server_busy` when `server.max_body_bytes_in_flight` or, for answers,
//! `server.max_answer_bytes_in_flight` is spent), and whether the process survived. A benchmark,
//! not a test: it prints figures and asserts nothing.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example bench_memory -- --body-mib 20 --concurrency 4 --rounds 3
//! # the same without the budget (every body admitted at once):
//! cargo run --release --example bench_memory -- --budget-mib 4096
//! # a field the Messages API's model rules read:
//! cargo run --release --example bench_memory -- --api messages --field temperature
//! # 32 concurrent 60 MiB answers from an OpenAI-compatible endpoint (default answer budget):
//! cargo run --release --example bench_memory -- --answer-mib 60 --concurrency 32 --rounds 2
//! # the same with no effective answer budget:
//! cargo run --release --example bench_memory -- --answer-mib 60 --concurrency 32 --rounds 2 --answer-budget-mib 4096
//! ```

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use bytes::Bytes;
use common::{Server, clean_command, free_addr, peak_rss_kib, rss_kib};

const MODEL_ID: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const KEY_ID: &str = "AKIDBENCHMEMORY00001";
const SECRET: &str = "bench-memory-secret-key-0000000000000000";

struct Args {
    body_mib: usize,
    concurrency: usize,
    rounds: usize,
    field: String,
    budget_mib: Option<usize>,
    /// `chat` (`/v1/chat/completions`) or `messages` (`/v1/messages`).
    api: String,
    /// Answers of this many MiB from an OpenAI-compatible endpoint instead of large bodies.
    answer_mib: Option<usize>,
    answer_budget_mib: Option<usize>,
    /// Answers without `Content-Length` (chunked).
    chunked: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        body_mib: 20,
        concurrency: 4,
        rounds: 3,
        field: "metadata".into(),
        budget_mib: None,
        api: "chat".into(),
        answer_mib: None,
        answer_budget_mib: None,
        chunked: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--chunked" {
            args.chunked = true;
            continue;
        }
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--body-mib" => args.body_mib = value()?.parse().map_err(|e| format!("--body-mib: {e}"))?,
            "--concurrency" => args.concurrency = value()?.parse().map_err(|e| format!("--concurrency: {e}"))?,
            "--rounds" => args.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--field" => args.field = value()?,
            "--api" => args.api = value()?,
            "--budget-mib" => args.budget_mib = Some(value()?.parse().map_err(|e| format!("--budget-mib: {e}"))?),
            "--answer-mib" => args.answer_mib = Some(value()?.parse().map_err(|e| format!("--answer-mib: {e}"))?),
            "--answer-budget-mib" => {
                args.answer_budget_mib = Some(value()?.parse().map_err(|e| format!("--answer-budget-mib: {e}"))?)
            }
            other => return Err(format!("unknown argument {other}; see the header of examples/bench_memory.rs")),
        }
    }
    if args.api != "chat" && args.api != "messages" {
        return Err("--api must be chat or messages".into());
    }
    if args.body_mib == 0 || args.body_mib > 100 {
        return Err("--body-mib must be 1..=100 (server.max_body_bytes allows at most 100 MiB)".into());
    }
    if args.answer_mib.is_some_and(|mib| mib == 0 || mib > 1000) {
        return Err("--answer-mib must be 1..=1000 (max_response_bytes allows at most 1 GiB)".into());
    }
    if args.answer_mib.is_some() && args.api != "chat" {
        return Err("--answer-mib routes to an OpenAI-compatible endpoint: the chat API only".into());
    }
    Ok(args)
}

fn main() {
    if let Err(error) = run() {
        eprintln!("bench_memory: {error}");
        std::process::exit(1);
    }
}

/// `{"model":"bench","messages":[…],"<field>":[0,0,0,…]}`, exactly `size` bytes (with
/// `max_tokens` for the Messages API unless that is the padded field).
fn request_body(size: usize, field: &str, api: &str) -> Bytes {
    let max_tokens = if api == "messages" && field != "max_tokens" { r#""max_tokens":16,"# } else { "" };
    let head = format!(r#"{{"model":"bench",{max_tokens}"messages":[{{"role":"user","content":"hi"}}],"{field}":[0"#);
    let tail = "]}";
    let mut body = String::with_capacity(size);
    body.push_str(&head);
    while body.len() + 2 + tail.len() <= size {
        body.push_str(",0");
    }
    while body.len() + tail.len() < size {
        body.push(' ');
    }
    body.push_str(tail);
    Bytes::from(body)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let answer_bytes = args.answer_mib.map(|mib| mib << 20);
    let fake = start_fake(answer_bytes, args.chunked)?;
    let bin = common::byollm_bin()?;
    let body_bytes = args.body_mib << 20;

    // byollm local with static keys, pointed at the fake.
    let aws_config = work.path().join("aws-config");
    let aws_credentials = work.path().join("aws-credentials");
    std::fs::write(&aws_config, "[profile bench]\nregion = us-east-1\n").map_err(|e| e.to_string())?;
    std::fs::write(
        &aws_credentials,
        format!("[bench]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .map_err(|e| e.to_string())?;
    let budget = args.budget_mib.map(|mib| format!("max_body_bytes_in_flight = {}\n", mib << 20)).unwrap_or_default();
    let answer_budget_bytes = args.answer_budget_mib.map_or(128 << 20, |mib| mib << 20);
    let answers = match answer_bytes {
        None => String::new(),
        Some(bytes) => format!(
            "max_answer_bytes_in_flight = {answer_budget_bytes}\n[routing.endpoints.bench]\nbase_url = \"http://{}/v1\"\nmodels = [\"bench-endpoint\"]\nmax_response_bytes = {}\n",
            fake.addr,
            (bytes + (1 << 20)).min(answer_budget_bytes)
        ),
    };
    let config = work.path().join("byollm.toml");
    std::fs::write(
        &config,
        format!(
            "[models.bench]\nid = \"{MODEL_ID}\"\n[server]\nmax_body_bytes = {}\n{budget}{answers}",
            body_bytes.max(20 << 20)
        ),
    )
    .map_err(|e| e.to_string())?;
    let addr = free_addr();
    let key_file = work.path().join("local.key");
    let mut command = clean_command(&bin);
    command
        .arg("local")
        .arg("--config")
        .arg(&config)
        .arg("--port")
        .arg(addr.port().to_string())
        .arg("--profile")
        .arg("bench")
        .arg("--key-file")
        .arg(&key_file)
        .env("AWS_CONFIG_FILE", &aws_config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &aws_credentials)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", format!("http://{}", fake.addr));
    let mut server = Server::spawn(command, work.path().join("byollm.log")).map_err(|e| e.to_string())?;
    server.wait_ready(addr, Some("byollm ready"), Duration::from_secs(20)).map_err(|e| format!("byollm: {e}"))?;
    let key = std::fs::read_to_string(&key_file).map_err(|e| format!("session key: {e}"))?.trim().to_owned();
    let pid = server.pid();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().map_err(|e| e.to_string())?;
    let url = match args.api.as_str() {
        "messages" => format!("http://{addr}/v1/messages"),
        _ => format!("http://{addr}/v1/chat/completions"),
    };
    let send = |body: Bytes| {
        let request = client
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .body(body);
        async move {
            let started = Instant::now();
            match request.send().await {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    // Read as it comes; keep the size and the first 64 KiB (an error's JSON).
                    let (mut size, mut head) = (0usize, Vec::new());
                    while let Ok(Some(chunk)) = response.chunk().await {
                        size += chunk.len();
                        head.extend_from_slice(&chunk[..chunk.len().min((64 << 10) - head.len().min(64 << 10))]);
                    }
                    let code = serde_json::from_slice::<serde_json::Value>(&head)
                        .ok()
                        .and_then(|v| {
                            // OpenAI's error shape names a code, Anthropic's a type.
                            let error = &v["error"];
                            error["code"].as_str().or(error["type"].as_str()).map(str::to_owned)
                        })
                        .unwrap_or_default();
                    let size = if size >= 1 << 20 { format!(" {} MiB", size >> 20) } else { String::new() };
                    (format!("{status} {code}{size}").trim().to_owned(), started.elapsed())
                }
                Err(error) => (format!("transport error: {error}"), started.elapsed()),
            }
        }
    };

    // At rest, after one small request (to Bedrock: the endpoint's answers are all large).
    let (warm, _) = runtime.block_on(send(request_body(1024, "metadata", &args.api)));
    std::thread::sleep(Duration::from_millis(300));
    let rest = rss_kib(pid).unwrap_or(0);
    println!("byollm local (pid {pid}); warm-up answered {warm}");
    println!("resident at rest: {:.1} MiB", rest as f64 / 1024.0);

    let body = match answer_bytes {
        None => request_body(body_bytes, &args.field, &args.api),
        Some(_) => Bytes::from(r#"{"model":"bench-endpoint","messages":[{"role":"user","content":"hi"}]}"#),
    };
    let sampled_peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, on) = (sampled_peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while on.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    for round in 1..=args.rounds {
        let answers =
            runtime.block_on(futures_util::future::join_all((0..args.concurrency).map(|_| send(body.clone()))));
        let summary: Vec<String> =
            answers.iter().map(|(answer, elapsed)| format!("{answer} ({} ms)", elapsed.as_millis())).collect();
        let mut tally = std::collections::BTreeMap::<String, usize>::new();
        for (answer, _) in &answers {
            *tally.entry(answer.clone()).or_default() += 1;
        }
        let tally: Vec<String> = tally.iter().map(|(answer, n)| format!("{n} × {answer}")).collect();
        match args.answer_mib {
            None => println!(
                "round {round}: {} × {} MiB `{}` bodies to the {} API -> {}",
                args.concurrency,
                args.body_mib,
                args.field,
                args.api,
                summary.join(", ")
            ),
            Some(mib) => println!(
                "round {round}: {} requests answered with {mib} MiB each by the endpoint -> {}",
                args.concurrency,
                tally.join(", ")
            ),
        }
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let alive = server.child.try_wait().ok().flatten().is_none();
    let peak = peak_rss_kib(pid).unwrap_or(0);
    let end = rss_kib(pid).unwrap_or(0);
    println!(
        "peak resident (VmHWM): {:.1} MiB (sampled every 5 ms: {:.1} MiB); {:.1} MiB at the end; bedrock calls: {}; endpoint calls: {}; process {}",
        peak as f64 / 1024.0,
        sampled_peak.load(Ordering::Relaxed) as f64 / 1024.0,
        end as f64 / 1024.0,
        fake.calls.load(Ordering::Relaxed),
        fake.endpoint_calls.load(Ordering::Relaxed),
        if alive { "alive" } else { "DEAD" }
    );
    let budget = args.budget_mib.map(|m| format!("{m} MiB")).unwrap_or_else(|| "default (64 MiB)".into());
    println!("budget of body bytes in flight: {budget}");
    if args.answer_mib.is_some() {
        let budget = args.answer_budget_mib.map(|m| format!("{m} MiB")).unwrap_or_else(|| "default (128 MiB)".into());
        println!("budget of answer bytes in flight: {budget}");
    }
    let answers = match args.answer_mib {
        None => String::new(),
        Some(mib) => format!(
            " --answer-mib {mib}{}{}",
            args.answer_budget_mib.map(|m| format!(" --answer-budget-mib {m}")).unwrap_or_default(),
            if args.chunked { " --chunked" } else { "" }
        ),
    };
    println!(
        "reproduce: cargo build --release && cargo run --release --example bench_memory -- --body-mib {} --concurrency {} --rounds {} --api {} --field {}{}{answers}",
        args.body_mib,
        args.concurrency,
        args.rounds,
        args.api,
        args.field,
        args.budget_mib.map(|m| format!(" --budget-mib {m}")).unwrap_or_default()
    );
    Ok(())
}

struct Fake {
    addr: SocketAddr,
    calls: Arc<AtomicU64>,
    endpoint_calls: Arc<AtomicU64>,
}

/// A `chat.completion` of at least `size` bytes (its content padded).
fn large_completion(size: usize) -> Bytes {
    let head = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"bench-endpoint","choices":[{"index":0,"message":{"role":"assistant","content":""#;
    let tail = r#""},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let mut body = Vec::with_capacity(size + head.len() + tail.len());
    body.extend_from_slice(head.as_bytes());
    body.resize(size.max(body.len()) - tail.len().min(size), b'x');
    body.extend_from_slice(tail.as_bytes());
    Bytes::from(body)
}

/// A fake Bedrock answering every `InvokeModel` with one short message, and (with
/// `answer_bytes`) a fake OpenAI-compatible endpoint answering every chat completion with one of
/// that size, on its own thread.
fn start_fake(answer_bytes: Option<usize>, chunked: bool) -> Result<Fake, String> {
    let calls = Arc::new(AtomicU64::new(0));
    let endpoint_calls = Arc::new(AtomicU64::new(0));
    let endpoint_counter = endpoint_calls.clone();
    let completion = large_completion(answer_bytes.unwrap_or(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let counter = calls.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("fake runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("fake listener");
            let message = serde_json::json!({
                "id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL_ID,
                "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 3, "output_tokens": 1},
            })
            .to_string();
            let app = Router::new()
                .route(
                    "/model/{id}/invoke",
                    post(move |_body: Bytes| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let message = message.clone();
                        async move { ([(header::CONTENT_TYPE, "application/json")], message).into_response() }
                    }),
                )
                .route(
                    "/v1/chat/completions",
                    post(move |_body: Bytes| {
                        endpoint_counter.fetch_add(1, Ordering::Relaxed);
                        // A clone shares the one copy: the fake's memory is not byollm's anyway.
                        let completion = completion.clone();
                        async move {
                            if !chunked {
                                return ([(header::CONTENT_TYPE, "application/json")], completion).into_response();
                            }
                            // 64 KiB slices of the one copy, with no length announced.
                            let slices = (0..completion.len())
                                .step_by(64 << 10)
                                .map(move |at| {
                                    Ok::<_, std::io::Error>(
                                        completion.slice(at..(at + (64 << 10)).min(completion.len())),
                                    )
                                })
                                .collect::<Vec<_>>();
                            let body = axum::body::Body::from_stream(futures_util::stream::iter(slices));
                            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
                        }
                    }),
                );
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(Fake { addr, calls, endpoint_calls })
}
