//! One tenant cannot lock the others' request bodies (issue 18), against the real binary with its
//! default limits: team `other` opens four connections whose heads declare 20 + 20 + 20 + 4 MiB
//! (what once reserved the whole 64 MiB budget before a byte arrived), sends part of each body and
//! then nothing. Team `acme` is served meanwhile; `other` gets 429 in each surface's shape until
//! its stalled bodies are cut with 408 for falling below the minimum rate.

use std::time::{Duration, Instant};

use byollm_testkit::harness::{API_KEY, Gateway, Harness, OTHER_API_KEY};
use byollm_testkit::support::{CredentialStore, FakeBedrock, FakeBedrockOptions, FakeSts, FakeStsOptions, TrustedRole};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const OTHER_ROLE: &str = "arn:aws:iam::222222222222:role/byollm-other";
const MIB: usize = 1 << 20;

/// A fake STS trusting both teams' roles, a fake Bedrock accepting what it issues, and the gateway.
async fn start() -> (FakeSts, FakeBedrock, Gateway) {
    let trusting = |arn: &str, team: &str| {
        TrustedRole::new(arn).sub_like(&[&format!("scoped_principal:{team}/*")]).aud_equals(&["sts.amazonaws.com"])
    };
    let credentials = CredentialStore::new();
    let sts = FakeSts::start(FakeStsOptions {
        roles: vec![trusting(byollm_testkit::cloud::ROLE, "acme"), trusting(OTHER_ROLE, "other")],
        credentials: credentials.clone(),
        ..Default::default()
    })
    .await;
    let bedrock = FakeBedrock::start(FakeBedrockOptions { credentials, ..Default::default() }).await;
    let extra = format!("[[teams]]\nuid = \"other\"\nrole_arn = \"{OTHER_ROLE}\"\n");
    let gateway = BYOLLM.start(&byollm_testkit::cloud::config(&sts, &bedrock, &extra));
    sts.set_providers(vec![gateway.issuer_host()]);
    (sts, bedrock, gateway)
}

/// A chat request whose `metadata` (ignored by the adapter) pads it to about `padding` bytes.
fn chat_body(padding: usize) -> String {
    let mut body =
        String::from(r#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}],"metadata":{"pad":""#);
    body.extend(std::iter::repeat_n('x', padding));
    body.push_str("\"}}");
    body
}

/// Opens a connection for team `other`, sends a head declaring `declared` bytes and the first
/// `sent` of them, and leaves the rest unsent.
async fn stalled(url: &str, declared: usize, sent: usize) -> TcpStream {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {OTHER_API_KEY}\r\n\
         x-byollm-team: other\r\nx-byollm-actor: service_account\r\nx-byollm-principal: mallory\r\n\
         content-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&chat_body(declared).as_bytes()[..sent]).await.unwrap();
    stream
}

/// The answer on a stalled connection, within `wait`.
async fn answer(stream: &mut TcpStream, wait: Duration) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("no answer within {wait:?}: {:?}", String::from_utf8_lossy(&answer)),
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_team_stalling_bodies_leaves_the_others_served_and_gets_429_itself() {
    let (_sts, bedrock, gateway) = start().await;
    let http = reqwest::Client::new();
    let url = gateway.url.clone();
    let chat = |key: &'static str, team: &'static str, body: String| {
        http.post(format!("{url}/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-byollm-team", team)
            .header("x-byollm-actor", "service_account")
            .header("x-byollm-principal", "ci-bot")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let credentials = |key: &'static str| {
        http.post(format!("{url}/v1/credentials"))
            .bearer_auth(key)
            .json(&json!({"actor": "service_account", "principal": "ci-bot"}))
            .send()
    };

    // Before: team acme's chat (the run's credentials are then cached).
    let started = Instant::now();
    assert_eq!(chat(API_KEY, "acme", chat_body(100)).await.unwrap().status(), 200);
    println!("acme chat before the attack: {:?}", started.elapsed());

    // Four heads declaring 20 + 20 + 20 + 4 MiB; 6 + 6 + 6 + 2 MiB sent: the caller key's whole
    // share (20 MiB by default), then nothing.
    let mut attack = Vec::new();
    for (declared, sent) in [(20 * MIB, 6 * MIB), (20 * MIB, 6 * MIB), (20 * MIB, 6 * MIB), (4 * MIB, 2 * MIB)] {
        attack.push(stalled(&gateway.url, declared, sent).await);
    }
    let attack_started = Instant::now();
    // Let the gateway read what is already on the wire.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Team acme is served normally: a chat request (a 5 MiB one too) and its credentials.
    let started = Instant::now();
    let response = chat(API_KEY, "acme", chat_body(100)).await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    println!("acme chat during the attack: {:?}", started.elapsed());
    let started = Instant::now();
    let response = chat(API_KEY, "acme", chat_body(5 * MIB)).await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    println!("acme 5 MiB chat during the attack: {:?}", started.elapsed());
    let started = Instant::now();
    let response = credentials(API_KEY).await.unwrap();
    assert_eq!(response.status(), 200);
    let issued: Value = response.json().await.unwrap();
    assert!(issued["AccessKeyId"].is_string(), "{issued}");
    println!("acme /v1/credentials during the attack: {:?}", started.elapsed());

    // Team other's further requests: 429 with Retry-After, each in its surface's shape.
    let messages = http
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", OTHER_API_KEY)
        .header("x-byollm-team", "other")
        .header("x-byollm-actor", "service_account")
        .header("x-byollm-principal", "ci-bot")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send();
    let (chat_refused, credentials_refused, messages_refused) =
        tokio::join!(chat(OTHER_API_KEY, "other", chat_body(MIB)), credentials(OTHER_API_KEY), messages);
    for (surface, response) in [("chat", chat_refused), ("credentials", credentials_refused)] {
        let response = response.unwrap();
        assert_eq!(response.status(), 429, "{surface}");
        assert_eq!(response.headers()["retry-after"], "1", "{surface}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "body_share_exhausted", "{surface}: {body}");
        assert_eq!(body["error"]["type"], "rate_limit_error", "{surface}: {body}");
    }
    let response = messages_refused.unwrap();
    assert_eq!((response.status().as_u16(), response.headers()["retry-after"].to_str().unwrap()), (429, "1"));
    let body: Value = response.json().await.unwrap();
    assert_eq!((&body["type"], &body["error"]["type"]), (&json!("error"), &json!("rate_limit_error")), "{body}");
    let during = attack_started.elapsed();

    // The stalled bodies fall below the minimum rate (64 KiB/s over 5 s windows) in their second
    // window and are cut with 408; their share goes back.
    for stream in &mut attack {
        let answer = answer(stream, Duration::from_secs(30)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout") && answer.contains("min_body_bytes_per_sec"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    }
    println!("stalled bodies cut after {:?} (the checks above took {during:?})", attack_started.elapsed());
    let response = credentials(OTHER_API_KEY).await.unwrap();
    assert_eq!(response.status(), 200, "team other is served again once its bodies are cut");
    assert_eq!(bedrock.requests().len(), 3, "only acme's chats reached Bedrock");
}
