//! The Bedrock-native routes through the real binary, seen byte by byte: the body reaches Bedrock
//! unchanged and signed with the run's credentials, Bedrock's answer (status, headers, frames)
//! comes back unchanged, byollm's own refusals speak Bedrock's error shape, a model outside the
//! configuration is refused before any STS or Bedrock call, usage is counted from the relayed
//! frames, and `/inference-profiles` is answered from the configuration. Also: TLS on the
//! listeners, with the certificate re-read on SIGHUP.

use std::time::Duration;

use byollm_testkit::cloud;
use byollm_testkit::harness;
use byollm_testkit::harness::{API_KEY, Gateway, Harness, write_tls_pair};
use byollm_testkit::support;
use byollm_testkit::support::{BedrockErrorKind, FakeBedrock, FakeBedrockOptions, FakeSts, FakeStsOptions, Reply};
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

struct Setup {
    sts: FakeSts,
    bedrock: FakeBedrock,
    gateway: Gateway,
}

async fn setup() -> Setup {
    let (sts, bedrock) = cloud::fakes(FakeStsOptions::default(), FakeBedrockOptions::default()).await;
    let models = "[models.\"opus\"]\nid = \"global.anthropic.claude-opus-4-7\"\n\
                  [models.\"haiku\"]\nid = \"us.anthropic.claude-haiku-4-5-20251001-v1:0\"\n";
    let config = cloud::config(&sts, &bedrock, models);
    let gateway = BYOLLM.start(&config);
    sts.set_providers(vec![gateway.issuer_host()]);
    Setup { sts, bedrock, gateway }
}

fn post(gateway: &Gateway, path: &str, body: &'static str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}{path}", gateway.url))
        .bearer_auth(API_KEY)
        .header("x-byollm-actor", "service_account")
        .header("x-byollm-principal", "ci-bot")
        .header("x-byollm-run-id", "run-native")
        .header("anthropic-beta", "claude-code-20250219")
        .header("x-amzn-bedrock-trace", "ENABLED")
        .header("content-type", "application/json")
        .body(body)
}

/// Decoded event-stream frames: (`:event-type`, payload).
fn frames(mut bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 16 {
        let total = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let mut headers = &bytes[12..12 + headers_len];
        let mut event_type = String::new();
        while !headers.is_empty() {
            let name_len = headers[0] as usize;
            let name = std::str::from_utf8(&headers[1..1 + name_len]).unwrap().to_owned();
            let value_len = u16::from_be_bytes(headers[2 + name_len..4 + name_len].try_into().unwrap()) as usize;
            let value = std::str::from_utf8(&headers[4 + name_len..4 + name_len + value_len]).unwrap();
            if name == ":event-type" {
                event_type = value.to_owned();
            }
            headers = &headers[4 + name_len + value_len..];
        }
        out.push((event_type, bytes[12 + headers_len..total - 4].to_vec()));
        bytes = &bytes[total..];
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn native_calls_are_relayed_unchanged_and_signed_with_the_runs_role() {
    let Setup { sts, bedrock, gateway } = setup().await;
    // Odd spacing and key order: byollm forwards bytes, not a re-encoding.
    const BODY: &str = "{ \"max_tokens\" : 50,\"anthropic_version\":\"bedrock-2023-05-31\",\n \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}] }";

    bedrock.set_script(vec![Reply::text(&["Plain."]).usage(17, 2)]);
    let answer = post(&gateway, "/model/us.anthropic.claude-opus-4-7/invoke", BODY).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-amzn-bedrock-input-token-count"], "17");
    assert!(answer.headers().get("x-amzn-requestid").is_some());
    let message: Value = answer.json().await.unwrap();
    assert_eq!(message["content"][0]["text"], "Plain.");
    let seen = &bedrock.requests()[0];
    assert_eq!(seen.model_id, "global.anthropic.claude-opus-4-7", "served by the configured profile");
    assert_eq!(seen.raw_body, BODY.as_bytes(), "the body reached Bedrock byte for byte");
    assert!(seen.header_names.contains(&"x-amzn-bedrock-trace".to_owned()), "{:?}", seen.header_names);
    for private in ["anthropic-beta", "x-byollm-principal", "x-byollm-run-id"] {
        assert!(!seen.header_names.contains(&private.to_owned()), "{private} stays at the gateway");
    }
    assert_eq!(seen.access_key_id, sts.issued()[0].access_key_id);

    // The stream: frames relayed as Bedrock sent them.
    bedrock.set_script(vec![Reply::text(&["One", " two"]).usage(9, 3)]);
    let answer =
        post(&gateway, "/model/us.anthropic.claude-opus-4-7/invoke-with-response-stream", BODY).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/vnd.amazon.eventstream");
    let bytes = answer.bytes().await.unwrap();
    let events: Vec<Value> = frames(&bytes)
        .iter()
        .map(|(kind, payload)| {
            assert_eq!(kind, "chunk");
            let chunk: Value = serde_json::from_slice(payload).unwrap();
            use base64::Engine;
            let event = base64::engine::general_purpose::STANDARD.decode(chunk["bytes"].as_str().unwrap()).unwrap();
            serde_json::from_slice(&event).unwrap()
        })
        .collect();
    assert_eq!(events.first().unwrap()["type"], "message_start");
    assert_eq!(events.last().unwrap()["amazon-bedrock-invocationMetrics"]["outputTokenCount"], 3);

    // Bedrock's own error: status, type and message unchanged.
    bedrock.set_script(vec![Reply::error_with(BedrockErrorKind::Validation, "messages: bad turn order")]);
    let refused = post(&gateway, "/model/us.anthropic.claude-opus-4-7/invoke", BODY).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.headers()["x-amzn-errortype"], "ValidationException");
    assert_eq!(refused.text().await.unwrap(), json!({"message": "messages: bad turn order"}).to_string());

    // byollm's own refusals, in Bedrock's shape, with no STS or Bedrock call.
    let refused = post(&gateway, "/model/us.anthropic.claude-opus-5-5/invoke", BODY).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["x-amzn-errortype"], "AccessDeniedException");
    let message: Value = refused.json().await.unwrap();
    assert!(message["message"].as_str().unwrap().contains("\"us.anthropic.claude-opus-5-5\""), "{message}");
    let calls = bedrock.requests().len();
    let not_json = post(&gateway, "/model/us.anthropic.claude-opus-4-7/invoke", "[1, 2]").send().await.unwrap();
    assert_eq!(
        (not_json.status().as_u16(), not_json.headers()["x-amzn-errortype"].to_str().unwrap()),
        (400, "ValidationException")
    );
    let unknown = post(&gateway, "/model/us.anthropic.claude-opus-4-7/invoke-async", BODY).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let unauthenticated = reqwest::Client::new()
        .post(format!("{}/model/us.anthropic.claude-opus-4-7/invoke", gateway.url))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(unauthenticated.headers()["x-amzn-errortype"], "UnrecognizedClientException");
    let other_team = reqwest::Client::new()
        .post(format!("{}/model/us.anthropic.claude-opus-4-7/invoke", gateway.url))
        .bearer_auth(harness::OTHER_API_KEY)
        .header("x-byollm-actor", "service_account")
        .header("x-byollm-principal", "ci-bot")
        .header("x-byollm-team", "acme")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(other_team.status(), 403);
    assert_eq!(bedrock.requests().len(), calls, "no refused call reached Bedrock");
    assert_eq!(sts.calls(), 1, "nor STS");

    // A client that leaves mid-stream: the upstream stream is dropped with it.
    bedrock.set_script(vec![Reply::text(&["a", "b", "c", "d", "e", "f"]).delay(Duration::from_millis(200))]);
    let mut answer =
        post(&gateway, "/model/us.anthropic.claude-opus-4-7/invoke-with-response-stream", BODY).send().await.unwrap();
    let _first = answer.chunk().await.unwrap();
    drop(answer);
    assert!(bedrock.wait_for_disconnects(1, Duration::from_secs(10)).await, "the upstream stream was cancelled");

    // Profiles: refused without a key (Claude Code sends none), listed from [models] with one.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/inference-profiles?type=SYSTEM_DEFINED", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["x-amzn-errortype"], "UnrecognizedClientException");
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/inference-profiles?type=SYSTEM_DEFINED&maxResults=1", gateway.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // In public-name order: haiku, opus.
    assert_eq!(
        listed["inferenceProfileSummaries"][0]["inferenceProfileId"],
        "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    );
    assert_eq!(listed["nextToken"], "1");
    let next: Value = reqwest::Client::new()
        .get(format!("{}/inference-profiles?maxResults=1&nextToken=1", gateway.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["inferenceProfileSummaries"][0]["inferenceProfileId"], "global.anthropic.claude-opus-4-7");
    assert!(next.get("nextToken").is_none());

    let metrics = reqwest::get(format!("{}/metrics", gateway.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("byollm_native_requests_total{result=\"ok\"} 3"), "{metrics}");
    assert!(metrics.contains("byollm_native_requests_total{result=\"forbidden\"} 2"), "{metrics}");
    // 17 from InvokeModel's headers, 9 from the stream's metrics, 12 from message_start of the
    // stream the client left (its usage is recorded as far as it went).
    assert!(metrics.contains("byollm_model_tokens_total{kind=\"input\"} 38"), "{metrics}");
    assert!(metrics.contains("byollm_model_tokens_total{kind=\"output\"} 6"), "2 + 3 + 1: {metrics}");
    // One audit line per model call (the unknown operation is no model call), the stream the
    // client left recorded as 499 with the usage it had reached.
    let audit_lines = || -> Vec<Value> {
        let logs = gateway.logs();
        logs.lines()
            .filter(|l| l.starts_with("{\"audit\":\"request\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut lines = audit_lines();
    for _ in 0..100 {
        if lines.len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        lines = audit_lines();
    }
    let statuses: Vec<u64> = lines.iter().map(|l| l["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 200, 400, 403, 400, 401, 403, 499], "{lines:#?}");
    assert!(lines.iter().all(|l| l["surface"] == "native"));
    assert_eq!((lines[0]["route"].as_str(), lines[0]["usage"]["input_tokens"].as_u64()), (Some("bedrock"), Some(17)));
    assert_eq!((lines[0]["run"].as_str(), lines[0]["model"].as_str()), (Some("run-native"), Some("opus")));
    assert_eq!(
        (lines[7]["error"].as_str(), lines[7]["usage"]["input_tokens"].as_u64()),
        (Some("client_closed"), Some(12))
    );
    let logs = gateway.logs();
    assert!(!logs.contains(API_KEY) && !logs.contains(&sts.issued()[0].secret_access_key));
}

/// Found by `examples/soak.rs`: a Bedrock stream whose body ended cleanly before `message_stop`
/// was relayed as a clean end, so the client took a partial answer for a whole one.
#[tokio::test(flavor = "multi_thread")]
async fn a_native_stream_that_ends_before_its_last_event_reaches_the_client_as_a_cut() {
    // The fake STS lives as long as the test.
    let Setup { sts: _sts, bedrock, gateway } = setup().await;
    const BODY: &str = "{\"max_tokens\":50,\"anthropic_version\":\"bedrock-2023-05-31\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const PATH: &str = "/model/us.anthropic.claude-opus-4-7/invoke-with-response-stream";
    // Read the whole body: the frames that came, and whether it ended with an error.
    async fn read(answer: reqwest::Response) -> (Vec<(String, Vec<u8>)>, bool) {
        let mut answer = answer;
        let mut bytes = Vec::new();
        loop {
            match answer.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => return (frames(&bytes), false),
                Err(_) => return (frames(&bytes), true),
            }
        }
    }

    // message_start, content_block_start, one delta (50 ms apart, so the answer has started
    // when the body ends); then a clean end of the body.
    bedrock.set_script(vec![Reply::text(&["One", " two", " three"]).end_after(3).delay(Duration::from_millis(50))]);
    let answer = post(&gateway, PATH, BODY).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let (frames_seen, cut) = read(answer).await;
    assert_eq!(frames_seen.len(), 3, "the frames that came are relayed");
    assert!(cut, "a stream without message_stop must not end cleanly");

    // A stream ending with Bedrock's exception frame carries its own error: relayed as it came.
    bedrock.set_script(vec![Reply::text(&["One", " two"]).exception_after(
        2,
        support::StreamExceptionKind::ModelStreamError,
        "broke",
    )]);
    let (frames_seen, cut) = read(post(&gateway, PATH, BODY).send().await.unwrap()).await;
    assert_eq!((frames_seen.len(), cut), (3, false));

    // A whole stream ends cleanly.
    bedrock.set_script(vec![Reply::text(&["One", " two"])]);
    let (frames_seen, cut) = read(post(&gateway, PATH, BODY).send().await.unwrap()).await;
    assert!(!cut);
    assert!(frames_seen.len() > 3);

    let mut errors = Vec::new();
    for _ in 0..100 {
        errors = gateway
            .logs()
            .lines()
            .filter(|l| l.starts_with("{\"audit\":\"request\""))
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["error"].clone())
            .collect();
        if errors.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(errors, [json!("upstream_stream_cut"), Value::Null, Value::Null]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_profile_is_never_served_through_a_wider_geography() {
    let Setup { sts, bedrock, gateway } = setup().await;
    const BODY: &str = "{\"anthropic_version\":\"bedrock-2023-05-31\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    // The run's region is us-east-1: its own geography's profile is served through the configured
    // `global.` one (what Claude Code asks for), another geography's is refused with no STS or
    // Bedrock call (global could run it outside the EU).
    bedrock.set_script(vec![Reply::text(&["Own."])]);
    let own = post(&gateway, "/model/us.anthropic.claude-opus-4-7/invoke", BODY).send().await.unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(bedrock.requests()[0].model_id, "global.anthropic.claude-opus-4-7");
    let sts_calls = sts.calls();
    // An `eu.` profile is not served through the configured `global.` one for a run in
    // us-east-1 (it could run outside the EU); the `us.` profile above was, the run's own geography.
    let wider = post(&gateway, "/model/eu.anthropic.claude-opus-4-7/invoke", BODY).send().await.unwrap();
    assert_eq!(wider.status(), 403);
    assert_eq!(wider.headers()["x-amzn-errortype"], "AccessDeniedException");
    let message: Value = wider.json().await.unwrap();
    assert!(message["message"].as_str().unwrap().contains("\"global.anthropic.claude-opus-4-7\""), "{message}");
    assert_eq!((bedrock.requests().len(), sts.calls()), (1, sts_calls), "refused before any call");
    // A global request may be served through a narrower configured profile.
    bedrock.set_script(vec![Reply::text(&["Narrow."])]);
    let narrower =
        post(&gateway, "/model/global.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke", BODY).send().await.unwrap();
    assert_eq!(narrower.status(), 200);
    assert_eq!(bedrock.requests().last().unwrap().model_id, "us.anthropic.claude-haiku-4-5-20251001-v1:0");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_listeners_serve_https_only_and_pick_up_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pair = write_tls_pair(dir.path());
    let mut gateway = BYOLLM.start_tls("", &[], &pair);
    let (status, _) = support::https_get(&format!("{}/healthz", gateway.url), &pair.pem).await.unwrap();
    assert_eq!(status, 200);
    let plain = gateway.url.replace("https://localhost", "http://127.0.0.1");
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err(), "no plain HTTP on a TLS listener");

    // A renewed certificate replaces the old one on SIGHUP; new connections get it.
    let renewed = write_tls_pair(dir.path());
    gateway.sighup();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if support::https_get(&format!("{}/healthz", gateway.url), &renewed.pem).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the renewed certificate was not picked up:\n{}", gateway.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The line is written just after the swap, so a client can see the new certificate first.
    while !gateway.logs().contains("tls certificate reloaded") {
        assert!(std::time::Instant::now() < deadline, "no reload line:\n{}", gateway.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stale = support::https_get(&format!("{}/healthz", gateway.url), &pair.pem).await;
    assert!(stale.is_err(), "the old certificate is no longer served");
    let (code, _) = gateway.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}
