//! The official Anthropic Python SDK (`anthropic`, pinned in `.ci/run`) through the real binary on
//! the cloud path (fake STS, fake Bedrock checking SigV4 against the run's role):
//! `tests/anthropic_client.py` uses `Anthropic(base_url=…)` on the Messages API (create, stream,
//! count_tokens, models, errors before and inside a stream) and `AnthropicBedrock` with the byollm
//! key as a Bedrock API key on the native routes (create, stream). Without the SDK the test says NOT
//! RUN, or fails under `CI` (`byollm_testkit::not_run`).

use std::time::Duration;

use byollm_testkit::clients;
use byollm_testkit::cloud;
use byollm_testkit::harness::{API_KEY, Harness};
use byollm_testkit::support::{BedrockErrorKind, FakeBedrockOptions, FakeStsOptions, Reply, StreamExceptionKind};
use serde_json::json;

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_and_anthropic_bedrock_clients_through_byollm() {
    let python = clients::python_with("anthropic");
    if !clients::available(
        "python-anthropic",
        "the Python anthropic SDK",
        python.is_some(),
        "python3 -m pip install anthropic==2.14.0",
    ) {
        return;
    }
    let python = python.unwrap();
    let (sts, bedrock) = cloud::fakes(FakeStsOptions::default(), FakeBedrockOptions::default()).await;
    let models = "[models.\"haiku\"]\nid = \"global.anthropic.claude-haiku-4-5-20251001-v1:0\"\n\
                  [models.\"opus\"]\nid = \"global.anthropic.claude-opus-4-7\"\n";
    let config = cloud::config(&sts, &bedrock, models);
    let gateway = BYOLLM.start(&config);
    sts.set_providers(vec![gateway.issuer_host()]);
    bedrock.set_script(vec![
        Reply::text(&["Hello from the SDK."]).usage(13, 5),
        Reply::text(&["One", " two", " three"]),
        Reply::error(BedrockErrorKind::Throttling),
        Reply::text(&["a", "b"]).exception_after(3, StreamExceptionKind::ModelStreamError, "boom"),
        Reply::text(&["Bedrock client."]),
        Reply::text(&["Bedrock", " stream"]),
    ]);

    let script = clients::tests_dir().join("anthropic_client.py");
    let (ok, output) = clients::run(
        std::path::Path::new(&python),
        &[script.to_str().unwrap(), &gateway.url],
        &clients::tests_dir(),
        &[("BYOLLM_KEY", API_KEY)],
        Duration::from_secs(120),
    )
    .await;
    let seen: Vec<(String, u16)> = bedrock.requests().iter().map(|r| (r.operation.clone(), r.status)).collect();
    assert!(ok, "tests/anthropic_client.py failed:\n{output}\nBedrock saw {seen:?}\ngateway logs:\n{}", gateway.logs());
    assert!(output.contains("all ok"), "{output}");

    let requests = bedrock.requests();
    let operations: Vec<&str> = requests.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(
        operations,
        [
            "invoke",
            "invoke-with-response-stream",
            "count-tokens",
            "invoke",
            "invoke-with-response-stream",
            "invoke",
            "invoke-with-response-stream"
        ]
    );
    // The Messages request became an InvokeModel body: Bedrock's version, Bedrock's betas only.
    let streamed = &requests[1].body;
    assert_eq!(streamed["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(streamed["anthropic_beta"], json!(["interleaved-thinking-2025-05-14"]), "{streamed}");
    assert!(streamed.get("model").is_none() && streamed.get("stream").is_none());
    assert_eq!(requests[2].model_id, "anthropic.claude-haiku-4-5-20251001-v1:0", "counted on the foundation model");
    assert!(requests[..5].iter().all(|r| r.model_id.contains("claude-haiku-4-5")));
    // AnthropicBedrock on the native routes: its body reaches Bedrock as the SDK wrote it (this
    // SDK sends its own API version, which only the newer models take).
    assert_eq!(requests[5].model_id, "global.anthropic.claude-opus-4-7");
    assert_eq!(requests[5].body["anthropic_version"], "2026-10-21", "{}", requests[5].body);
    let issued = sts.issued();
    assert_eq!(issued.len(), 1);
    assert!(requests.iter().all(|r| r.access_key_id == issued[0].access_key_id), "signed with the run's role");
    let metrics = reqwest::get(format!("{}/metrics", gateway.url)).await.unwrap().text().await.unwrap();
    // create, stream, count_tokens, and the stream that failed mid-way (it started with 200).
    assert!(metrics.contains("byollm_messages_requests_total{result=\"ok\"} 4"), "{metrics}");
    assert!(metrics.contains("byollm_messages_requests_total{result=\"throttled\"} 1"), "{metrics}");
}
