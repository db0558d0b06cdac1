//! Issuer benchmark: RS256 tokens minted per second on one core (`Issuer::mint` in a loop), and the
//! real `byollm serve` binary's JWKS (200 and 304) and `POST /v1/tokens` under a keep-alive
//! HTTP/1.1 load at fixed concurrency.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench_issuer -- --secs 3 --repeats 3
//! ```
//!
//! Everything runs on 127.0.0.1. The load client (one thread) shares the machine's cores with
//! the server, so on a 2-core machine the HTTP figures are a lower bound for the server alone.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use byollm::config::Config;
use byollm::issuer::{Issuer, RunClaims, unix_now};
use byollm::principal::{ActorType, ScopedPrincipal, Uid};
use common::{Server, Spec, clean_command, fmt_ms, free_addr, median, peak_rss_kib, quantile_ms, run_load};

/// Per phase: requests/s, p50 and p99 of each repeat, and the error count.
type PhaseResults = (Vec<f64>, Vec<f64>, Vec<f64>, u64);

const API_KEY: &str = "byollm_bench_key_0123456789abcdef";

#[derive(Parser)]
struct Args {
    /// Seconds recorded per HTTP phase (after a short warm-up); at most 15.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Repeats of every measurement; the medians are printed.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Open connections of the HTTP load.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Tokens signed per mint repeat (bounded by --secs too).
    #[arg(long, default_value_t = 5000)]
    tokens: u64,
    /// RSA key size for the key set.
    #[arg(long, default_value_t = 2048)]
    bits: u32,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let secs = args.secs.clamp(0.2, 15.0);
    let repeats = args.repeats.max(1);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let key_dir = dir.path().join("jwks");
    println!("# bench_issuer: {} repeat(s), medians; RSA-{}; {} core(s)", repeats, args.bits, cores());

    // 1. Minting on one core: this thread only.
    let config = Config::from_toml(&format!(
        "dev = true\n[keys]\ndir = {:?}\nrsa_bits = {}\n",
        key_dir.display().to_string(),
        args.bits
    ))
    .map_err(|e| e.to_string())?;
    let issuer = Issuer::open(&config).map_err(|e| e.to_string())?;
    let principal = ScopedPrincipal::new(
        Uid::parse("acme").map_err(|e| e.to_string())?,
        ActorType::ServiceAccount,
        Uid::parse("svc-1").map_err(|e| e.to_string())?,
    );
    let run = RunClaims { agent: Some("reviewer".into()), run_id: Some("run-42".into()), session_tags: true };
    let mut mint_rates = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        let mut minted = 0u64;
        while minted < args.tokens && Instant::now() < deadline {
            let token = issuer.mint(&principal, None, &run, unix_now()).map_err(|e| e.to_string())?;
            std::hint::black_box(token);
            minted += 1;
        }
        mint_rates.push(minted as f64 / started.elapsed().as_secs_f64());
    }
    let mint_rate = median(mint_rates.clone());

    // 2. The real binary over HTTP.
    let bin = common::byollm_bin()?;
    let addr = free_addr();
    let config_path = dir.path().join("byollm.toml");
    std::fs::write(
        &config_path,
        format!(
            "dev = true\n[server]\nlisten = \"{addr}\"\n[issuer]\nurl = \"http://{addr}\"\n[keys]\ndir = {:?}\n\n\
             [[callers]]\nname = \"bench\"\nkey_sha256 = \"{}\"\nteam = \"acme\"\nmint_tokens = true\n",
            key_dir.display().to_string(),
            sha256_hex(API_KEY)
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut command = clean_command(&bin);
    command.arg("serve").arg("--config").arg(&config_path);
    let mut server = Server::spawn(command, dir.path().join("serve.log")).map_err(|e| e.to_string())?;
    server.wait_ready(addr, Some("byollm ready"), Duration::from_secs(20))?;

    let etag = jwks_etag(addr)?;
    let phases: Vec<(&str, Arc<Spec>)> = vec![
        ("GET /.well-known/jwks.json (200)", Arc::new(Spec::get("/.well-known/jwks.json").validate(check_jwks))),
        (
            "GET /.well-known/jwks.json (304)",
            Arc::new(Spec::get("/.well-known/jwks.json").header("if-none-match", &etag).status(304)),
        ),
        (
            "POST /v1/tokens",
            Arc::new(
                Spec::post_json("/v1/tokens", r#"{"actor":"service_account","principal":"svc-1","run_id":"run-42"}"#)
                    .header("authorization", &format!("Bearer {API_KEY}"))
                    .validate(check_token),
            ),
        ),
    ];
    let warmup = Duration::from_millis(300);
    let measure = Duration::from_secs_f64(secs);
    let mut results: Vec<PhaseResults> = vec![Default::default(); phases.len()];
    let mut first_error = None;
    for _ in 0..repeats {
        for (index, (_, spec)) in phases.iter().enumerate() {
            let mut sample = run_load(addr, spec.clone(), args.concurrency, warmup, measure, 2_000_000);
            let entry = &mut results[index];
            entry.0.push(sample.rps());
            entry.1.push(quantile_ms(&mut sample.total_us, 0.50));
            entry.2.push(quantile_ms(&mut sample.total_us, 0.99));
            entry.3 += sample.errors;
            if first_error.is_none() {
                first_error = sample.first_error.take();
            }
        }
    }
    let rss = peak_rss_kib(server.pid()).unwrap_or(0);
    drop(server);

    println!();
    println!("| what | concurrency | per second | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| Issuer::mint, in process, 1 thread (RSA-{}) | 1 | {:.0} | {} | - | 0 |",
        args.bits,
        mint_rate,
        fmt_ms(1000.0 / mint_rate)
    );
    for ((name, _), (rps, p50, p99, errors)) in phases.iter().zip(results) {
        println!(
            "| byollm serve: {name} | {} | {:.0} | {} | {} | {errors} |",
            args.concurrency,
            median(rps),
            fmt_ms(median(p50)),
            fmt_ms(median(p99))
        );
    }
    println!();
    println!(
        "mint repeats (tokens/s): {}",
        mint_rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
    );
    println!("byollm serve peak RSS (VmHWM): {:.1} MiB", rss as f64 / 1024.0);
    if let Some(error) = first_error {
        println!("first error: {error}");
    }
    println!(
        "note: the HTTP client (1 thread) runs on the same {} core(s) as the server; the mint row uses 1 thread.",
        cores()
    );
    println!(
        "reproduce: cargo build --release && cargo run --release --example bench_issuer -- --secs {secs} --repeats {repeats} --concurrency {} --bits {}",
        args.concurrency, args.bits
    );
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn sha256_hex(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn check_jwks(body: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    match value["keys"].as_array() {
        Some(keys) if !keys.is_empty() => Ok(()),
        _ => Err("no keys in the JWKS".into()),
    }
}

fn check_token(body: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    match value["token"].as_str() {
        Some(token) if token.split('.').count() == 3 => Ok(()),
        _ => Err("no token in the answer".into()),
    }
}

/// The JWKS `ETag`, fetched once for the 304 phase.
fn jwks_etag(addr: std::net::SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(stream, "GET /.well-known/jwks.json HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|line| line.strip_prefix("etag: ").or_else(|| line.strip_prefix("ETag: ")))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| format!("no etag in {}", common::tail(&text, 300)))
}
