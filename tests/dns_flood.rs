//! Name resolution cannot starve the gateway: a flood of requests naming hosts whose DNS never
//! answers (a `per_request` endpoint's `x-byollm-endpoint-url`) from one team leaves byollm's
//! thread count flat, is refused for that team beyond its share of lookups, and does not delay
//! another team's `POST /v1/credentials` (token signing and STS). Everything on 127.0.0.1: a fake
//! DNS server that reads every query and answers none, the fake STS, the real binary.

#[allow(unused_imports)] // only the fake STS is used here
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use byollm_testkit::harness::{API_KEY, Harness, OTHER_API_KEY, callers_toml};
use byollm_testkit::support::{FakeSts, FakeStsOptions, TrustedRole};
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const ACME_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme";
/// Requests in the flood, all at once.
const FLOOD: usize = 600;
/// Team `other`'s share of lookups (and the gateway's), as configured below.
const PER_TEAM: usize = 8;
const GLOBAL: usize = 32;

/// A DNS server that reads every query and never answers; counts what it read.
struct SilentDns {
    port: u16,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SilentDns {
    fn start() -> SilentDns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let port = socket.local_addr().unwrap().port();
        let (queries, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (counted, stopping) = (queries.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 1500];
            while !stopping.load(Ordering::SeqCst) {
                if socket.recv_from(&mut buffer).is_ok() {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        SilentDns { port, queries, stop }
    }
}

impl Drop for SilentDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `Threads:` of `/proc/<pid>/status`.
fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|line| line.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_flood_from_one_team_starves_neither_threads_nor_other_teams() {
    let dns = SilentDns::start();
    let sts = FakeSts::start(FakeStsOptions {
        roles: vec![
            TrustedRole::new(ACME_ROLE).sub_like(&["scoped_principal:acme/*"]).aud_equals(&["sts.amazonaws.com"]),
        ],
        ..Default::default()
    })
    .await;
    let config = format!(
        r#"{callers}
[sts]
endpoint_url = "{sts}"

[[teams]]
uid = "acme"
role_arn = "{ACME_ROLE}"

[egress]
nameservers = ["127.0.0.1:{port}"]
max_lookups = {GLOBAL}
max_lookups_per_team = {PER_TEAM}

[routing.endpoints.byo]
per_request = true
models = ["llama3.1:8b"]

[routing.default]
routes."llama3.1:8b" = [{{ openai = {{ endpoint = "byo" }} }}]
"#,
        callers = callers_toml(),
        sts = sts.url(),
        port = dns.port,
    );
    let gateway = BYOLLM.start_with(&config, false, &[("BYOLLM_LOG", "info")]);
    sts.set_providers(vec![gateway.issuer_host()]);
    let pid = gateway.pid();
    let idle_threads = threads_of(pid);

    // Sample the thread count while the flood runs.
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

    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let chat = |key: &'static str, host: String| {
        client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(key)
            .header("x-byollm-actor", "service_account")
            .header("x-byollm-principal", "ci-bot")
            .header("x-byollm-endpoint-url", format!("https://{host}/v1"))
            .json(&json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}))
            .timeout(Duration::from_secs(20))
            .send()
    };
    let started = Instant::now();
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let request = chat(OTHER_API_KEY, format!("h{i}.never-answers.test"));
            tokio::spawn(async move {
                let response = request.await.unwrap();
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let body: Value = response.json().await.unwrap();
                (status, retry_after, body)
            })
        })
        .collect();
    // Let the flood take its slots.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Team acme, meanwhile: a token signed for a new run, exchanged at STS.
    let asked = Instant::now();
    let response = client
        .post(format!("{}/v1/credentials", gateway.url))
        .bearer_auth(API_KEY)
        .json(&json!({"actor": "user", "principal": "alice", "run_id": "run-during-flood"}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let credentials_latency = asked.elapsed();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["AccessKeyId"].is_string(), "{body}");
    // Its own lookup is not refused for team other's flood.
    let acme_lookup = chat(API_KEY, "acme.never-answers.test".into()).await.unwrap();
    let acme_status = acme_lookup.status().as_u16();
    let acme_body: Value = acme_lookup.json().await.unwrap();

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for request in flood {
        let (status, retry_after, body) = request.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        match status {
            429 => {
                assert_eq!(body["error"]["code"], "lookups_busy", "{body}");
                assert_eq!(retry_after.as_deref(), Some("5"), "{body}");
            }
            403 => assert_eq!(body["error"]["code"], "egress_refused", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let flood_took = started.elapsed();
    sampling.store(false, Ordering::SeqCst);
    let most_threads = sampler.join().unwrap();
    println!(
        "dns flood: {FLOOD} requests in {flood_took:?}, statuses {statuses:?}; byollm threads idle {idle_threads}, at most {most_threads}; POST /v1/credentials for a new run took {credentials_latency:?}; the silent DNS read {} queries",
        dns.queries.load(Ordering::SeqCst)
    );

    assert!(credentials_latency < Duration::from_secs(2), "credentials took {credentials_latency:?} during the flood");
    assert!(most_threads <= idle_threads + 8, "threads grew from {idle_threads} to {most_threads}");
    // Team other got its share of lookups (each timed out: 403) and a fast refusal beyond it.
    assert_eq!(statuses.get(&403).copied().unwrap_or(0), PER_TEAM, "{statuses:?}");
    assert_eq!(statuses.get(&429).copied().unwrap_or(0), FLOOD - PER_TEAM, "{statuses:?}");
    assert_eq!(acme_status, 403, "acme's lookup ran (and timed out) instead of being refused: {acme_body}");
    assert!(acme_body["error"]["message"].as_str().unwrap().contains("timed out"), "{acme_body}");
    assert!(dns.queries.load(Ordering::SeqCst) >= PER_TEAM, "the lookups went to the configured DNS server");
    assert!(flood_took < Duration::from_secs(20));
}
