//! The whole cloud path through the real binary: a worker's chat request → our token → fake STS
//! (which verifies it through our discovery document and JWKS) → assumed-role credentials → fake
//! Bedrock (which checks the SigV4 signature made with exactly those credentials).

use byollm_testkit::cloud;
use byollm_testkit::harness::{API_KEY, Harness, OTHER_API_KEY};
use byollm_testkit::support::{FakeBedrockOptions, FakeStsOptions, Reply};
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

#[tokio::test(flavor = "multi_thread")]
async fn a_runs_chat_is_signed_with_its_own_assumed_role() {
    let (sts, bedrock) = cloud::fakes(FakeStsOptions::default(), FakeBedrockOptions::default()).await;
    let config = cloud::config(&sts, &bedrock, "");
    // Trace logging asked for: the SDK's request dumps must stay capped (they hold the token).
    let gateway = BYOLLM.start_with(&config, false, &[("BYOLLM_LOG", "trace")]);
    sts.set_providers(vec![gateway.issuer_host()]);

    let client = reqwest::Client::new();
    let ask = |key: &'static str, principal: &'static str, stream: bool| {
        client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(key)
            .header("x-byollm-actor", "service_account")
            .header("x-byollm-principal", principal)
            .header("x-byollm-team", "acme")
            .header("x-byollm-run-id", "run-7")
            .json(&json!({"model": "claude-haiku-4-5", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };

    let response = ask(API_KEY, "ci-bot", false).await.unwrap();
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "Hello from FakeBedrock.");
    let streamed = ask(API_KEY, "ci-bot", true).await.unwrap().text().await.unwrap();
    assert!(streamed.ends_with("data: [DONE]\n\n"), "{streamed}");

    assert_eq!(sts.calls(), 1, "one STS exchange serves the whole run");
    let issued = sts.issued();
    assert_eq!(issued[0].subject, "scoped_principal:acme/service_account:ci-bot");
    assert!(sts.requests()[0].policy.is_none(), "credentials the gateway keeps need no session policy");
    let requests = bedrock.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.access_key_id == issued[0].access_key_id), "signed with the run's role");

    // Another team's key cannot ride on acme's role.
    bedrock.set_script(vec![Reply::text(&["never"])]);
    let refused = ask(OTHER_API_KEY, "ci-bot", false).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(sts.calls(), 1);
    assert_eq!(bedrock.requests().len(), 2);

    let metrics = client.get(format!("{}/metrics", gateway.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("byollm_chat_requests_total{result=\"ok\"} 2"), "{metrics}");
    assert!(metrics.contains("byollm_chat_requests_total{result=\"forbidden\"} 1"), "{metrics}");
    let logs = gateway.logs();
    assert!(logs.contains("DEBUG") && logs.contains("aws_smithy_runtime"), "verbose logging is on");
    assert!(!logs.contains(" TRACE "), "the AWS SDK's trace output is capped at debug");
    assert!(!logs.contains(&issued[0].secret_access_key) && !logs.contains(&issued[0].session_token));
    assert!(!logs.contains("eyJ") && !logs.contains("WebIdentityToken="), "no web-identity token in the logs");
}
