//! The gateway driven by the official OpenAI SDKs: `tests/openai_client.py` (Python `openai`) and,
//! when `tests/node/node_modules/openai` is installed (`npm ci --prefix tests/node`),
//! `tests/openai_client.mjs` (Node `openai`), each against the real binary in local mode and a fake
//! Bedrock on 127.0.0.1.
//!
//! Protocol: the client scripts make their calls in a fixed order; this test queues one fake
//! Bedrock reply per call that reaches Bedrock, in that same order, then runs the script and
//! expects exit status 0. Calls the gateway answers itself (models, 404, 400) consume nothing.
//!
//! Without the SDK installed the test is skipped, unless `CI` is set: then it fails.
//! `BYOLLM_TEST_PYTHON` names another Python (say, a venv holding an older `openai`).

mod harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::Gateway;
use serde_json::{Value, json};
use support::{BedrockErrorKind, FakeBedrock, FakeBedrockOptions, Reply, StreamExceptionKind};

const KEY_ID: &str = "AKIDLOCALTEST0001";
const SECRET: &str = "local-test-secret-key-0001";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

struct Setup {
    bedrock: FakeBedrock,
    gateway: Gateway,
    _aws: tempfile::TempDir,
}

async fn setup() -> Setup {
    let bedrock = FakeBedrock::start(FakeBedrockOptions::default()).await;
    bedrock.add_static_key(KEY_ID, SECRET);
    let (gateway, aws) = Gateway::start_local_with_keys(&bedrock.url(), KEY_ID, SECRET);
    Setup { bedrock, gateway, _aws: aws }
}

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Whether `program args` exits 0 (quietly).
fn succeeds(program: &str, args: &[&str], dir: &Path) -> bool {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips (returns false) when an SDK is missing, except under CI where that is a failure.
fn available(what: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed but CI is set; install it with `{install}`");
    }
    eprintln!("SKIPPED: {what} is not installed (`{install}`); set CI=1 to make this a failure");
    false
}

/// Runs a client script to completion (killed after [`SCRIPT_TIMEOUT`]); returns (success, output).
async fn run_client(program: &str, script: &Path, url: &str) -> (bool, String) {
    let mut command = Command::new(program);
    command.arg(script).arg(url).current_dir(tests_dir()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Never let a developer's own OpenAI settings redirect or authenticate the SDK.
    for name in ["OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_LOG"] {
        command.env_remove(name);
    }
    command.env("NO_PROXY", "127.0.0.1").env("no_proxy", "127.0.0.1");
    let mut child = command.spawn().unwrap_or_else(|e| panic!("could not start {program}: {e}"));
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + SCRIPT_TIMEOUT;
        let timed_out = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                break true;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            if timed_out { "\nTIMED OUT\n" } else { "" }
        );
        (output.status.success() && !timed_out, text)
    })
    .await
    .unwrap()
}

/// The fake Bedrock's replies for `tests/openai_client.py`, one per step that reaches Bedrock.
fn python_script() -> Vec<Reply> {
    vec![
        // non_stream_text
        Reply::text(&["Hello", " there"]).usage(20, 5),
        // stream_text
        Reply::text(&["One", " two", " three"]).usage(9, 3),
        // stream_text_without_usage
        Reply::text(&["a", " b"]),
        // tools_non_stream
        Reply::text(&["Let me check."]).with_tool_call("toolu_1", "get_weather", &["{\"city\": \"Paris\"}"]),
        // tools_stream
        Reply::default().with_tool_call("toolu_2", "get_weather", &["{\"ci", "ty\": \"Pa", "ris\"}"]).with_tool_call(
            "toolu_3",
            "get_time",
            &["{\"tz\"", ": \"CET\"}"],
        ),
        // tool_results_non_stream
        Reply::text(&["It is sunny."]),
        // tool_results_stream
        Reply::text(&["Sunny", " at two."]),
        // json_schema_non_stream (native structured output: the answer is the JSON text)
        Reply::text(&["{\"city\": \"Paris\", \"temp_c\": 21}"]),
        // json_schema_stream
        Reply::text(&["{\"city\": ", "\"Oslo\", ", "\"temp_c\": 3}"]),
        // parse_helper
        Reply::text(&["{\"city\": \"Rome\", \"temp_c\": 25}"]),
        // parse_helper_tools
        Reply::default().with_tool_call("toolu_8", "GetWeather", &["{\"city\": \"Bern\"}"]),
        Reply::text(&["Snow in Bern."]),
        // stream_helper
        Reply::text(&["{\"city\": \"Li", "ma\", \"temp_c\": 18}"]),
        // reasoning_non_stream
        Reply::default().with_thinking(&["Consider", " this."], "sig-1").with_text(&["42"]),
        // reasoning_stream
        Reply::default().with_thinking(&["Hmm,", " yes."], "sig-2").with_text(&["7"]),
        // reasoning_stream_helper: two thinking blocks in one answer.
        Reply::default().with_thinking(&["One."], "sig-3").with_thinking(&[" Two."], "sig-4").with_text(&["8"]),
        // reasoning_round_trip
        Reply::default().with_thinking(&["Ok."], "sig-5").with_text(&["9"]),
        // raw_response
        Reply::text(&["raw"]),
        // rate_limited, rate_limited_stream
        Reply::error(BedrockErrorKind::Throttling),
        Reply::error(BedrockErrorKind::Throttling),
        // error_mid_stream: message_start, block start, "a", "b", then the exception.
        Reply::text(&["a", "b", "c"]).exception_after(4, StreamExceptionKind::ModelStreamError, "boom"),
        // cut_stream
        Reply::text(&["a", "b", "c"]).cut_after(3),
        // async_stream
        Reply::text(&["async", " stream"]),
        Reply::text(&["async"]),
    ]
}

/// The message blocks Bedrock received, flattened to `(role, block type)`.
fn block_types(body: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for message in body["messages"].as_array().unwrap() {
        let role = message["role"].as_str().unwrap().to_owned();
        match &message["content"] {
            Value::String(_) => out.push((role, "text".to_owned())),
            Value::Array(blocks) => {
                out.extend(blocks.iter().map(|b| (role.clone(), b["type"].as_str().unwrap().to_owned())));
            }
            other => panic!("content {other}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn python_openai_sdk() {
    // BYOLLM_TEST_PYTHON picks another interpreter, e.g. a venv with an older SDK.
    let python = std::env::var("BYOLLM_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let present = succeeds(&python, &["-c", "import openai"], &tests_dir());
    if !available("the Python openai SDK", present, "python3 -m pip install openai") {
        return;
    }
    let setup = setup().await;
    let replies = python_script();
    let expected = replies.len();
    setup.bedrock.set_script(replies);
    let (ok, output) = run_client(&python, &tests_dir().join("openai_client.py"), &setup.gateway.url).await;
    println!("{output}");
    assert!(ok, "tests/openai_client.py failed:\n{output}\ngateway logs:\n{}", setup.gateway.logs());

    let requests = setup.bedrock.requests();
    assert_eq!(requests.len(), expected, "every scripted reply was used, no call was retried");
    // tool_results_non_stream: the SDK's own message object went back as an assistant turn.
    let turn = &requests[5].body;
    let kinds = block_types(turn);
    assert!(kinds.contains(&("assistant".into(), "tool_use".into())), "{turn}");
    assert!(kinds.contains(&("user".into(), "tool_result".into())), "{turn}");
    assert_eq!(turn["messages"][2]["content"][0]["tool_use_id"], "toolu_1");
    // tool_results_stream: two results, then the user's text, in one user turn.
    let turn = &requests[6].body;
    let last = turn["messages"].as_array().unwrap().last().unwrap();
    let last_types: Vec<&str> =
        last["content"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(last_types, ["tool_result", "tool_result", "text"], "{turn}");
    // response_format became native structured output (the model has it).
    assert_eq!(requests[7].body["output_config"]["format"]["type"], "json_schema", "{}", requests[7].body);
    assert_eq!(requests[7].body["output_config"]["format"]["schema"]["required"], json!(["city", "temp_c"]));
    assert!(requests[9].body["output_config"]["format"]["schema"]["properties"]["temp_c"].is_object());
    assert!(requests[9].body.get("tool_choice").is_none());
    // parse_helper_tools: strict pydantic tools, then the parsed message went back.
    assert_eq!(requests[10].body["tools"][0]["name"], "GetWeather");
    assert_eq!(requests[11].body["messages"][1]["content"][0]["type"], "tool_use");
    // reasoning_effort became thinking.
    assert_eq!(requests[13].body["thinking"]["type"], "enabled");
    assert_eq!(requests[14].body["thinking"]["type"], "enabled");
    // reasoning_round_trip: the streamed thinking blocks went back first, unchanged.
    let turn = &requests[16].body;
    assert_eq!(
        turn["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "One.", "signature": "sig-3"},
            {"type": "thinking", "thinking": " Two.", "signature": "sig-4"},
            {"type": "text", "text": "8"}
        ]),
        "{turn}"
    );
}

/// The fake Bedrock's replies for `tests/openai_client.mjs`.
fn node_script() -> Vec<Reply> {
    vec![
        // text
        Reply::text(&["Hello", " there"]).usage(20, 5),
        // stream
        Reply::text(&["One", " two", " three"]).usage(9, 3),
        // tools (non-stream, stream)
        Reply::text(&["Let me check."]).with_tool_call("toolu_1", "get_weather", &["{\"city\": \"Paris\"}"]),
        Reply::default().with_tool_call("toolu_2", "get_weather", &["{\"ci", "ty\": \"Pa", "ris\"}"]).with_tool_call(
            "toolu_3",
            "get_time",
            &["{\"tz\"", ": \"CET\"}"],
        ),
        // tool results
        Reply::text(&["It is sunny."]),
        // run_tools
        Reply::default().with_tool_call("toolu_9", "get_weather", &["{\"city\": \"Paris\"}"]),
        Reply::text(&["Sunny in Paris."]),
        // json_schema (native structured output)
        Reply::text(&["{\"city\": \"Paris\", \"temp_c\": 21}"]),
        // rate limited
        Reply::error(BedrockErrorKind::Throttling),
        // error mid stream
        Reply::text(&["a", "b", "c"]).exception_after(4, StreamExceptionKind::ModelStreamError, "boom"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn node_openai_sdk() {
    let node_dir = tests_dir().join("node");
    let present =
        node_dir.join("node_modules/openai/package.json").is_file() && succeeds("node", &["--version"], &node_dir);
    if !available("the Node openai SDK", present, "npm ci --prefix tests/node") {
        return;
    }
    let setup = setup().await;
    let replies = node_script();
    let expected = replies.len();
    setup.bedrock.set_script(replies);
    let (ok, output) = run_client("node", &tests_dir().join("openai_client.mjs"), &setup.gateway.url).await;
    println!("{output}");
    assert!(ok, "tests/openai_client.mjs failed:\n{output}\ngateway logs:\n{}", setup.gateway.logs());
    assert_eq!(setup.bedrock.requests().len(), expected, "every scripted reply was used, no call was retried");
}
