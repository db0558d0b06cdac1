//! boto3's `bedrock-runtime` client, with a Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`) over
//! HTTPS, driving the real binary: `tests/boto3_client.py` makes InvokeModel, the response stream,
//! Converse, ConverseStream and CountTokens calls, and checks the refusals (a model outside the
//! configuration, Bedrock's own throttle, a SigV4 signature).
//!
//! Cloud path: fake STS (which fetches our JWKS over HTTPS, trusting the test's certificate) and a
//! fake Bedrock that checks every SigV4 signature against the run's assumed-role credentials.
//! Local path: `byollm local` signing with a profile's keys. Without boto3 the tests say NOT
//! RUN, or fail under `CI` (`byollm_testkit::not_run`).

use std::time::Duration;

use byollm_testkit::clients;
use byollm_testkit::cloud;
use byollm_testkit::harness::{API_KEY, Gateway, Harness, tls_lines, write_tls_pair};
use byollm_testkit::support::{BedrockErrorKind, FakeBedrock, FakeBedrockOptions, FakeStsOptions, Reply};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const MODELS: &str = "[models.\"haiku\"]\nid = \"global.anthropic.claude-haiku-4-5-20251001-v1:0\"\n";
/// What the client asks for: another profile of the configured model.
const ASKED: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const KEY_ID: &str = "AKIDLOCALBOTO0001";
const SECRET: &str = "local-boto-secret-0001";

/// One fake reply per call of `boto3_client.py` that reaches Bedrock, in order.
fn script() -> Vec<Reply> {
    vec![
        Reply::text(&["Hello from boto3."]).usage(21, 4),
        Reply::text(&["Streamed", " by", " boto3."]),
        Reply::text(&["Conversed."]).usage(7, 2),
        Reply::text(&["Conversed", " in", " pieces."]).usage(5, 3),
        Reply::error(BedrockErrorKind::Throttling),
    ]
}

/// What the fake Bedrock saw: (operation, model id), in order.
fn expected_calls() -> Vec<(String, String)> {
    let profile = "global.anthropic.claude-haiku-4-5-20251001-v1:0";
    [
        ("invoke", profile),
        ("invoke-with-response-stream", profile),
        ("converse", profile),
        ("converse-stream", profile),
        ("count-tokens", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("invoke", profile),
    ]
    .iter()
    .map(|(op, id)| (op.to_string(), id.to_string()))
    .collect()
}

async fn run_boto3(
    python: &str,
    gateway: &Gateway,
    key: &str,
    cert: &str,
    identity: &[(&str, &str)],
) -> (bool, String) {
    let mut env = vec![
        ("AWS_BEARER_TOKEN_BEDROCK", key),
        ("AWS_CA_BUNDLE", cert),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    env.extend_from_slice(identity);
    let script = clients::tests_dir().join("boto3_client.py");
    clients::run(
        std::path::Path::new(python),
        &[script.to_str().unwrap(), &gateway.url, ASKED],
        &clients::tests_dir(),
        &env,
        Duration::from_secs(120),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_with_a_bearer_key_through_the_cloud_path_over_https() {
    let python = clients::python_with("boto3");
    if !clients::available(
        "boto3",
        "boto3",
        python.is_some(),
        "python3 -m pip install boto3==1.43.11 botocore==1.43.11",
    ) {
        return;
    }
    let python = python.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pair = write_tls_pair(dir.path());
    let sts = FakeStsOptions { tls_root_pem: Some(pair.pem.clone()), ..Default::default() };
    let (sts, bedrock) = cloud::fakes(sts, FakeBedrockOptions::default()).await;
    let config = cloud::config(&sts, &bedrock, MODELS);
    let gateway = BYOLLM.start_tls(&config, &[], &pair);
    sts.set_providers(vec![gateway.issuer_host()]);
    let cert = &pair.cert;
    bedrock.set_script(script());

    let identity = [
        ("BYOLLM_HEADER_ACTOR", "service_account"),
        ("BYOLLM_HEADER_PRINCIPAL", "ci-bot"),
        ("BYOLLM_HEADER_RUN_ID", "run-boto"),
    ];
    let (ok, output) = run_boto3(&python, &gateway, API_KEY, cert.to_str().unwrap(), &identity).await;
    let seen =
        |bedrock: &FakeBedrock| bedrock.requests().iter().map(|r| (r.operation.clone(), r.status)).collect::<Vec<_>>();
    assert!(
        ok,
        "tests/boto3_client.py failed:\n{output}\nBedrock saw {:?}\ngateway logs:\n{}",
        seen(&bedrock),
        gateway.logs()
    );
    assert!(output.contains("all ok"), "{output}");

    let requests = bedrock.requests();
    let calls: Vec<(String, String)> = requests.iter().map(|r| (r.operation.clone(), r.model_id.clone())).collect();
    assert_eq!(calls, expected_calls(), "the unconfigured model and the SigV4 call never reached Bedrock");
    let issued = sts.issued();
    assert_eq!(issued.len(), 1, "one STS exchange for the run");
    assert_eq!(issued[0].subject, "scoped_principal:acme/service_account:ci-bot");
    assert!(requests.iter().all(|r| r.access_key_id == issued[0].access_key_id), "signed with the run's role");
    for request in &requests {
        assert!(
            !request.header_names.iter().any(|h| h.starts_with("x-byollm") || h == "x-api-key"),
            "{:?}",
            request.header_names
        );
    }
    let logs = gateway.logs();
    assert!(!logs.contains(API_KEY) && !logs.contains(&issued[0].secret_access_key), "no secret in the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_with_a_bearer_key_through_byollm_local_over_https() {
    let python = clients::python_with("boto3");
    if !clients::available(
        "boto3",
        "boto3",
        python.is_some(),
        "python3 -m pip install boto3==1.43.11 botocore==1.43.11",
    ) {
        return;
    }
    let python = python.unwrap();
    let bedrock = FakeBedrock::start(FakeBedrockOptions::default()).await;
    bedrock.add_static_key(KEY_ID, SECRET);
    let aws = tempfile::tempdir().unwrap();
    let pair = write_tls_pair(aws.path());
    let config_file = aws.path().join("config");
    let credentials_file = aws.path().join("credentials");
    std::fs::write(&config_file, "[profile dev]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        &credentials_file,
        format!("[dev]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let env = [
        ("AWS_CONFIG_FILE", config_file.to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials_file.to_str().unwrap()),
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &bedrock.url()),
    ];
    let config = format!("[server]\n{}{MODELS}", tls_lines(&pair));
    let mut gateway = BYOLLM.start_local(&config, &["--profile", "dev"], &env);
    gateway.url = gateway.url.replace("http://127.0.0.1", "https://localhost");
    bedrock.set_script(script());

    let key = gateway.local_key().to_owned();
    let (ok, output) = run_boto3(&python, &gateway, &key, pair.cert.to_str().unwrap(), &[]).await;
    assert!(ok, "tests/boto3_client.py failed:\n{output}\ngateway logs:\n{}", gateway.logs());

    let requests = bedrock.requests();
    let calls: Vec<(String, String)> = requests.iter().map(|r| (r.operation.clone(), r.model_id.clone())).collect();
    assert_eq!(calls, expected_calls());
    assert!(requests.iter().all(|r| r.access_key_id == KEY_ID), "signed with the person's session");
}
