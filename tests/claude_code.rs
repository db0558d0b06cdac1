//! Claude Code itself (`@anthropic-ai/claude-code`, pinned in `tests/claude_code/package.json`)
//! in Bedrock mode, `-p` (print) mode, through the real binary:
//!
//! - cloud worker: `ANTHROPIC_BEDROCK_BASE_URL` = `byollm serve`, `CLAUDE_CODE_SKIP_BEDROCK_AUTH=1`,
//!   the byollm API key as `ANTHROPIC_AUTH_TOKEN`, the run's identity in `ANTHROPIC_CUSTOM_HEADERS`;
//!   fake STS + fake Bedrock, which checks every call's SigV4 against the run's assumed-role
//!   credentials;
//! - laptop: the same against `byollm local` and its session key.
//!
//! Claude Code 2.1.332 asks `GET /inference-profiles` without credentials at start (refused, it
//! carries on), then tries Opus models newest first; the ones the configuration does not list are
//! refused by byollm without a Bedrock call, and it settles on the configured one.
//!
//! Install: `npm ci --prefix tests/claude_code` (its postinstall is not run by npm 11: the test
//! calls the platform package's binary directly). Missing: NOT RUN, or a failure under `CI`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use byollm_testkit::clients;
use byollm_testkit::cloud;
use byollm_testkit::harness::{API_KEY, Harness};
use byollm_testkit::support::{FakeBedrock, FakeBedrockOptions, FakeStsOptions, Reply};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const MODELS: &str = "[models.\"opus\"]\nid = \"global.anthropic.claude-opus-4-7\"\n";
const ANSWER: &str = "Hello from byollm.";

/// The platform package's `claude` binary, if installed.
fn claude_binary() -> Option<PathBuf> {
    let platform = match std::env::consts::ARCH {
        "x86_64" => "linux-x64",
        "aarch64" => "linux-arm64",
        _ => return None,
    };
    let path = clients::tests_dir()
        .join("claude_code/node_modules/@anthropic-ai")
        .join(format!("claude-code-{platform}"))
        .join("claude");
    path.is_file().then_some(path)
}

fn claude() -> Option<PathBuf> {
    let binary = claude_binary();
    clients::available(
        "claude-code",
        "Claude Code",
        binary.is_some(),
        "npm ci --prefix tests/claude_code --no-audit --no-fund",
    )
    .then(|| binary.unwrap())
}

/// Runs `claude -p <prompt>` in Bedrock mode against `url` with `key` and `headers`.
async fn run_claude(binary: &Path, url: &str, key: &str, headers: &str) -> (bool, String) {
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_str().unwrap().to_owned();
    let env = [
        ("HOME", home_path.as_str()),
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_TELEMETRY", "1"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("CLAUDE_CODE_USE_BEDROCK", "1"),
        ("ANTHROPIC_BEDROCK_BASE_URL", url),
        ("CLAUDE_CODE_SKIP_BEDROCK_AUTH", "1"),
        ("ANTHROPIC_AUTH_TOKEN", key),
        ("ANTHROPIC_CUSTOM_HEADERS", headers),
        ("AWS_REGION", "us-east-1"),
    ];
    clients::run(binary, &["-p", "Say hello."], home.path(), &env, Duration::from_secs(180)).await
}

/// What every run must show: the answer printed, only the configured model called, the refused
/// probes never reaching Bedrock.
fn check_run(ok: bool, output: &str, bedrock: &FakeBedrock, logs: &str) {
    assert!(ok, "claude -p failed:\n{output}\ngateway logs:\n{logs}");
    assert!(output.contains(ANSWER), "{output}");
    let requests = bedrock.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(request.model_id, "global.anthropic.claude-opus-4-7", "only the configured model reached Bedrock");
        assert!(request.operation.starts_with("invoke"), "{}", request.operation);
    }
    // The turn itself streams (Claude Code reads application/vnd.amazon.eventstream).
    let turn = requests.iter().find(|r| r.operation == "invoke-with-response-stream").expect("a streamed turn");
    assert_eq!(turn.body["thinking"]["type"], "adaptive", "{}", turn.body);
    assert!(logs.contains("us.anthropic.claude-opus-5-5"), "the newest Opus was asked for and refused:\n{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_completes_a_prompt_through_byollm_serve() {
    let Some(binary) = claude() else { return };
    let bedrock =
        FakeBedrockOptions { default_reply: Reply::text(&["Hello", " from", " byollm."]), ..Default::default() };
    let (sts, bedrock) = cloud::fakes(FakeStsOptions::default(), bedrock).await;
    let config = cloud::config(&sts, &bedrock, MODELS);
    let gateway = BYOLLM.start(&config);
    sts.set_providers(vec![gateway.issuer_host()]);

    let headers = "x-byollm-actor: service_account\nx-byollm-principal: ci-bot\nx-byollm-run-id: run-claude-code";
    let (ok, output) = run_claude(&binary, &gateway.url, API_KEY, headers).await;
    let logs = gateway.logs();
    check_run(ok, &output, &bedrock, &logs);
    let issued = sts.issued();
    assert_eq!(issued.len(), 1, "one STS exchange for the run");
    assert_eq!(issued[0].subject, "scoped_principal:acme/service_account:ci-bot");
    assert!(
        bedrock.requests().iter().all(|r| r.access_key_id == issued[0].access_key_id),
        "signed with the run's role"
    );
    assert!(!logs.contains(API_KEY) && !logs.contains(&issued[0].secret_access_key), "no secret in the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_completes_a_prompt_through_byollm_local() {
    let Some(binary) = claude() else { return };
    const KEY_ID: &str = "AKIDLOCALCLAUDE01";
    let bedrock = FakeBedrock::start(FakeBedrockOptions {
        default_reply: Reply::text(&["Hello", " from", " byollm."]),
        ..Default::default()
    })
    .await;
    bedrock.add_static_key(KEY_ID, "local-claude-secret-01");
    let aws = tempfile::tempdir().unwrap();
    let config_file = aws.path().join("config");
    let credentials_file = aws.path().join("credentials");
    std::fs::write(&config_file, "[profile dev]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        &credentials_file,
        format!("[dev]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = local-claude-secret-01\n"),
    )
    .unwrap();
    let env = [
        ("AWS_CONFIG_FILE", config_file.to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials_file.to_str().unwrap()),
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &bedrock.url()),
    ];
    let gateway = BYOLLM.start_local(MODELS, &["--profile", "dev"], &env);

    let (ok, output) = run_claude(&binary, &gateway.url, gateway.local_key(), "").await;
    check_run(ok, &output, &bedrock, &gateway.logs());
    assert!(bedrock.requests().iter().all(|r| r.access_key_id == KEY_ID), "signed with the person's session");
}
