//! DNS flood figures: the real `byollm serve` binary receives a flood of chat requests whose
//! `x-byollm-endpoint-url` (a `per_request` endpoint) names hosts a DNS server never answers, from
//! one team, while another team has tokens signed (`POST /v1/tokens`, the signing every new run's
//! credentials need). Prints byollm's thread count (idle and the most seen) and the token latency
//! (idle and during the flood).
//!
//! ```text
//! cargo build --release && cargo run --release --example bench_dns_flood -- --requests 1400
//! # a build without [egress] (getaddrinfo): its DNS is redirected in a private mount namespace
//! # (root, unshare(1)); the silent server then listens on 127.0.0.77:53
//! BYOLLM_BIN=/path/to/old/byollm cargo run --release --example bench_dns_flood -- --legacy-dns
//! ```
//!
//! Everything runs on 127.0.0.1 (and 127.0.0.77); nothing reaches a real DNS server.

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Server, byollm_bin, clean_command, free_addr, median};

const ACME_KEY: &str = "byollm_bench_key_acme_0123456789abcdef";
const OTHER_KEY: &str = "byollm_bench_key_other_0123456789abcdef";

#[derive(Parser)]
struct Args {
    /// Requests in the flood, all sent at once (at most 5000).
    #[arg(long, default_value_t = 1400)]
    requests: usize,
    /// The binary resolves with getaddrinfo (no `[egress]` section): redirect its
    /// /etc/resolv.conf to the silent server in a private mount namespace.
    #[arg(long)]
    legacy_dns: bool,
}

fn sha256_hex(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|line| line.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let requests = args.requests.clamp(1, 5000);
    let bin = byollm_bin()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;

    // The DNS server that reads every query and answers none.
    let bind = if args.legacy_dns { "127.0.0.77:53" } else { "127.0.0.1:0" };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("cannot bind the silent DNS on {bind}: {e}"))?;
    socket.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
    let dns_port = socket.local_addr().map_err(|e| e.to_string())?.port();
    let queries = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (queries, stop) = (queries.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                if socket.recv_from(&mut buffer).is_ok() {
                    queries.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }

    let addr = free_addr();
    let egress =
        if args.legacy_dns { String::new() } else { format!("[egress]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n") };
    let config = format!(
        r#"dev = true
[server]
listen = "{addr}"
[issuer]
url = "http://{addr}"
[keys]
dir = {keys:?}

[[callers]]
name = "acme-worker"
key_sha256 = "{acme}"
team = "acme"
mint_tokens = true

[[callers]]
name = "other-worker"
key_sha256 = "{other}"
team = "other"

{egress}
[routing.endpoints.byo]
per_request = true
models = ["llama3.1:8b"]

[routing.default]
routes."llama3.1:8b" = [{{ openai = {{ endpoint = "byo" }} }}]
"#,
        keys = dir.path().join("jwks").display().to_string(),
        acme = sha256_hex(ACME_KEY),
        other = sha256_hex(OTHER_KEY),
    );
    let config_path = dir.path().join("byollm.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut command = if args.legacy_dns {
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.77\n").map_err(|e| e.to_string())?;
        let mut command = clean_command(std::path::Path::new("unshare"));
        command.args(["-m", "sh", "-c", "mount --bind \"$0\" /etc/resolv.conf && exec \"$1\" serve --config \"$2\""]);
        command.arg(&resolv).arg(&bin).arg(&config_path);
        command
    } else {
        let mut command = clean_command(&bin);
        command.arg("serve").arg("--config").arg(&config_path);
        command
    };
    command.env("BYOLLM_LOG", "warn,byollm=info");
    let mut server = Server::spawn(command, dir.path().join("byollm.log")).map_err(|e| e.to_string())?;
    server.wait_ready(addr, Some("byollm ready"), Duration::from_secs(30))?;
    let pid = server.pid();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = runtime.block_on(async move {
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().map_err(|e| e.to_string())?;
        let base = format!("http://{addr}");
        let run = AtomicUsize::new(0);
        let token = || {
            let run_id = format!("run-{}", run.fetch_add(1, Ordering::SeqCst));
            let request = client
                .post(format!("{base}/v1/tokens"))
                .bearer_auth(ACME_KEY)
                .json(&serde_json::json!({"actor": "service_account", "principal": "svc-1", "run_id": run_id}))
                .timeout(Duration::from_secs(60));
            async move {
                let started = Instant::now();
                let status = request.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                (status, started.elapsed().as_secs_f64() * 1000.0)
            }
        };
        let mut idle = Vec::new();
        for _ in 0..3 {
            let (status, ms) = token().await;
            if status != 200 {
                return Err(format!("POST /v1/tokens answered {status} before the flood"));
            }
            idle.push(ms);
        }
        let idle_threads = threads_of(pid);

        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            std::thread::spawn(move || {
                let mut most = 0;
                while sampling.load(Ordering::SeqCst) {
                    most = most.max(threads_of(pid));
                    std::thread::sleep(Duration::from_millis(20));
                }
                most
            })
        };
        let started = Instant::now();
        let flood: Vec<_> = (0..requests)
            .map(|i| {
                let request = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(OTHER_KEY)
                    .header("x-byollm-actor", "service_account")
                    .header("x-byollm-principal", "ci-bot")
                    .header("x-byollm-endpoint-url", format!("https://h{i}.never-answers.test/v1"))
                    .json(&serde_json::json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}))
                    .timeout(Duration::from_secs(60));
                tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()).unwrap_or(0) })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut during = Vec::new();
        for _ in 0..3 {
            let (status, ms) = token().await;
            if status != 200 {
                return Err(format!("POST /v1/tokens answered {status} during the flood"));
            }
            during.push(ms);
        }
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for request in flood {
            *statuses.entry(request.await.unwrap_or(0)).or_default() += 1;
        }
        let flood_secs = started.elapsed().as_secs_f64();
        sampling.store(false, Ordering::SeqCst);
        let most_threads = sampler.join().unwrap_or(0);
        Ok((idle, during, idle_threads, most_threads, statuses, flood_secs))
    });
    stop.store(true, Ordering::SeqCst);
    let (idle, during, idle_threads, most_threads, statuses, flood_secs) = result?;
    println!(
        "# bench_dns_flood: {} ({}), {requests} requests",
        bin.display(),
        if args.legacy_dns { "getaddrinfo, resolv.conf redirected" } else { "[egress] nameservers" }
    );
    println!("threads: idle {idle_threads}, most during the flood {most_threads}");
    println!(
        "POST /v1/tokens (new run) ms: idle median {:.1}, during the flood median {:.1} (each {:?})",
        median(idle),
        median(during.clone()),
        during.iter().map(|ms| format!("{ms:.1}")).collect::<Vec<_>>()
    );
    println!(
        "flood answered in {flood_secs:.1} s, statuses {statuses:?} (0: no answer); the silent DNS read {} queries",
        queries.load(Ordering::SeqCst)
    );
    Ok(())
}
