//! `byollm doctor --model` through the binary: one minimal real call to a model (against a fake
//! Bedrock that enforces each model's rules) and the usual first-use failures explained.

use byollm_testkit::harness::Harness;

use byollm_testkit::support::{BedrockErrorKind, FakeBedrock, FakeBedrockOptions, Reply};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));
const KEY_ID: &str = "AKIADOCTORMODEL0001";
const SECRET: &str = "doctor-model-secret-0001";

/// Runs `byollm doctor --profile dev --model <model>` with `config`; returns (exit code, output).
async fn doctor(bedrock: &FakeBedrock, config: &str, model: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config"), "[profile dev]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        dir.path().join("credentials"),
        format!("[dev]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("byollm.toml"), format!("dev = true\n{config}")).unwrap();
    let mut command = BYOLLM.command();
    command.args(["doctor", "--profile", "dev", "--model", model, "--config"]).arg(dir.path().join("byollm.toml"));
    command
        .env("AWS_CONFIG_FILE", dir.path().join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("credentials"))
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock.url())
        .env("HOME", dir.path());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_calls_the_model_and_explains_first_use_failures() {
    let bedrock = FakeBedrock::start(FakeBedrockOptions::default()).await;
    bedrock.add_static_key(KEY_ID, SECRET);
    let models = "[models.\"opus\"]\nid = \"global.anthropic.claude-opus-5-5\"\n[models.\"tokyo-sonnet\"]\nid = \"jp.anthropic.claude-sonnet-5-5\"\n";

    let (code, text) = doctor(&bedrock, models, "opus").await;
    assert_eq!(code, 0, "{text}");
    let passed = text.lines().any(|line| line.trim_start().starts_with("result:") && line.trim_end().ends_with("OK"));
    assert!(text.contains("model call:") && text.contains("answered") && passed, "{text}");
    let call = bedrock.requests().pop().unwrap();
    assert_eq!(call.model_id, "global.anthropic.claude-opus-5-5");
    assert_eq!(call.body["max_tokens"], 1, "a minimal call");
    assert!(!text.contains(SECRET) && !text.contains(KEY_ID), "no secret in the report");

    let marketplace = "Model access is denied due to IAM user or service role is not authorized to perform the required AWS Marketplace actions (aws-marketplace:ViewSubscriptions, aws-marketplace:Subscribe) to enable access to this model. Refer to the Amazon Bedrock documentation for further details.";
    bedrock.set_script(vec![Reply::error_with(BedrockErrorKind::AccessDenied, marketplace)]);
    let (code, text) = doctor(&bedrock, models, "opus").await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("marketplace_subscription_missing") && text.contains("fix:"), "{text}");
    assert!(text.contains("the credentials work, the model call did not"), "{text}");

    bedrock.set_script(vec![Reply::error(BedrockErrorKind::AccessDenied)]);
    let (_, text) = doctor(&bedrock, models, "opus").await;
    assert!(text.contains("model_access_not_enabled") && text.contains("Bedrock console"), "{text}");

    // The fake has no jp. profile of Sonnet 5.5: Bedrock's "model identifier is invalid".
    let (code, text) = doctor(&bedrock, models, "tokyo-sonnet").await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("profile_not_in_region") && text.contains("us-east-1"), "{text}");

    let (code, text) = doctor(&bedrock, models, "gpt-4o").await;
    assert_eq!(code, 1);
    assert!(text.contains("\"gpt-4o\" is not served"), "{text}");
}
