//! The gateway driven by the official OpenAI SDKs: `tests/openai_client.py` (Python `openai`) and,
//! when `tests/node/node_modules/openai` is installed (`npm ci --prefix tests/node`),
//! `tests/openai_client.mjs` (Node `openai`), each against the real binary in local mode and a fake
//! Bedrock on 127.0.0.1.
//!
//! Protocol: the client scripts make their calls in a fixed order; this test queues one fake
//! Bedrock reply per call that reaches Bedrock, in that same order, then runs the script and
//! expects exit status 0. Calls the gateway answers itself (models, 404, 400) consume nothing.
//!
//! Without the SDK installed the test says NOT RUN, unless `CI` is set: then it fails
//! (`byollm_testkit::not_run`).
//! `BYOLLM_TEST_PYTHON` names another Python (say, a venv holding an older `openai`).

use std::path::Path;
use std::time::Duration;

use byollm_testkit::clients;
use byollm_testkit::harness::{Gateway, Harness};
use byollm_testkit::support;
use byollm_testkit::support::{BedrockErrorKind, FakeBedrock, FakeBedrockOptions, Reply, StreamExceptionKind};
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

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
    let (gateway, aws) = BYOLLM.start_local_with_keys(&bedrock.url(), KEY_ID, SECRET);
    Setup { bedrock, gateway, _aws: aws }
}

/// Runs a client script with the gateway's key (`OPENAI_API_KEY`, as the SDKs read it) and these
/// arguments (the gateway URL first), killed after [`SCRIPT_TIMEOUT`]; returns (success, output).
async fn run_client(program: &str, script: &str, key: &str, args: &[&str]) -> (bool, String) {
    let script = clients::tests_dir().join(script);
    let args: Vec<&str> = std::iter::once(script.to_str().unwrap()).chain(args.iter().copied()).collect();
    clients::run(Path::new(program), &args, &clients::tests_dir(), &[("OPENAI_API_KEY", key)], SCRIPT_TIMEOUT).await
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
    let python = clients::python_with("openai");
    if !clients::available("python-openai", "the Python openai SDK", python.is_some(), "python3 -m pip install openai")
    {
        return;
    }
    let python = python.unwrap();
    let setup = setup().await;
    let replies = python_script();
    let expected = replies.len();
    setup.bedrock.set_script(replies);
    let (ok, output) = run_client(&python, "openai_client.py", setup.gateway.local_key(), &[&setup.gateway.url]).await;
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
    let present = clients::tests_dir().join("node/node_modules/openai/package.json").is_file()
        && clients::succeeds("node", &["--version"]);
    if !clients::available("node-openai", "the Node openai SDK", present, "npm ci --prefix tests/node") {
        return;
    }
    let setup = setup().await;
    let replies = node_script();
    let expected = replies.len();
    setup.bedrock.set_script(replies);
    let (ok, output) = run_client("node", "openai_client.mjs", setup.gateway.local_key(), &[&setup.gateway.url]).await;
    println!("{output}");
    assert!(ok, "tests/openai_client.mjs failed:\n{output}\ngateway logs:\n{}", setup.gateway.logs());
    assert_eq!(setup.bedrock.requests().len(), expected, "every scripted reply was used, no call was retried");
}

/// One row of the model matrix: a served model, and what its requests must look like.
struct MatrixRow {
    name: &'static str,
    id: &'static str,
    /// The `thinking` object Bedrock must get for `reasoning_effort: "high"`.
    thinking: Value,
    /// `output_config.effort` for it (budget models have none).
    effort: Option<&'static str>,
    /// `temperature: 0.2` is refused by the gateway (the model takes default sampling only).
    temperature_refused: bool,
    /// Usage reports thinking tokens (the gateway asks for the count).
    reasoning_tokens: bool,
}

fn matrix_rows() -> Vec<MatrixRow> {
    let adaptive_text = || json!({"type": "adaptive", "display": "summarized"});
    let adaptive = || json!({"type": "adaptive"});
    let budget = || json!({"type": "enabled", "budget_tokens": 16384});
    let row = |name, id, thinking, effort, temperature_refused, reasoning_tokens| MatrixRow {
        name,
        id,
        thinking,
        effort,
        temperature_refused,
        reasoning_tokens,
    };
    vec![
        row("claude-opus-5-5", "global.anthropic.claude-opus-5-5", adaptive_text(), Some("high"), true, true),
        row("claude-sonnet-5-5", "global.anthropic.claude-sonnet-5-5", adaptive_text(), Some("high"), true, true),
        row("claude-haiku-5-5", "us.anthropic.claude-haiku-5-5", adaptive_text(), Some("high"), true, true),
        row("claude-fable-5-2", "global.anthropic.claude-fable-5-2", adaptive_text(), Some("high"), true, true),
        row("claude-opus-4-7", "us.anthropic.claude-opus-4-7", adaptive_text(), Some("high"), true, false),
        row("claude-opus-4-6", "global.anthropic.claude-opus-4-6-v1", adaptive(), Some("high"), false, false),
        row("claude-sonnet-4-6", "eu.anthropic.claude-sonnet-4-6", adaptive(), Some("high"), false, false),
        row("claude-haiku-4-5", "global.anthropic.claude-haiku-4-5-20251001-v1:0", budget(), None, false, false),
        row("claude-sonnet-4-5", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", budget(), None, false, false),
    ]
}

/// The "Done when" of issue 8, data-driven: with `[models]` for nine current Claude models, the
/// official Python SDK gets a plain answer, a `reasoning_effort: "high"` answer whose Bedrock body
/// has the thinking shape that model takes, a streamed tool call, and for `temperature: 0.2` an
/// answer or a 400 naming `temperature` and the model. The fake Bedrock enforces each model's rules
/// from its own table, so every request the gateway sends must be one that model accepts.
#[tokio::test(flavor = "multi_thread")]
async fn python_openai_sdk_model_matrix() {
    let python = clients::python_with("openai");
    if !clients::available("python-openai", "the Python openai SDK", python.is_some(), "python3 -m pip install openai")
    {
        return;
    }
    let python = python.unwrap();
    let rows = matrix_rows();
    let bedrock = FakeBedrock::start(FakeBedrockOptions { auto_reply: true, ..Default::default() }).await;
    bedrock.add_static_key(KEY_ID, SECRET);
    let config: String = rows.iter().map(|row| format!("[models.\"{}\"]\nid = \"{}\"\n", row.name, row.id)).collect();
    let (gateway, _aws) = BYOLLM.start_local_configured(&config, &bedrock.url(), KEY_ID, SECRET);
    let names: Vec<&str> = rows.iter().map(|row| row.name).collect();
    let (ok, output) =
        run_client(&python, "openai_client.py", gateway.local_key(), &[&gateway.url, "--matrix", &names.join(",")])
            .await;
    assert!(ok, "the matrix failed:\n{output}\ngateway logs:\n{}", gateway.logs());
    assert!(!gateway.logs().contains("matches no catalog entry"), "every matrix model is in the catalog");

    let seen: Vec<Value> = output
        .lines()
        .filter_map(|line| line.strip_prefix("MATRIX "))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(seen.len(), rows.len(), "{output}");
    let requests = bedrock.requests();
    for (row, seen) in rows.iter().zip(&seen) {
        let name = row.name;
        assert_eq!(seen["model"], name);
        let answer = format!("Answer from {}.", row.id);
        assert_eq!(seen["plain"], answer, "{name}: plain answer");

        // Reasoning: the thinking text comes back (display summarized where it is omitted by
        // default), and the body had the shape this model takes.
        assert_eq!(seen["reasoning"], "Weighing the question.", "{name}: reasoning_content");
        assert_eq!(seen["answer"], answer, "{name}");
        assert_eq!(seen["reasoning_tokens"].is_u64(), row.reasoning_tokens, "{name}: reasoning tokens {seen}");

        // The streamed tool call.
        assert_eq!(
            seen["tool_calls"],
            json!([{"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}]),
            "{name}"
        );
        assert_eq!(seen["tool_finish"], json!(["tool_calls"]), "{name}");

        // Temperature: an answer, or the gateway's 400 naming temperature and the model.
        let temperature = &seen["temperature"];
        if row.temperature_refused {
            assert_eq!(temperature["status"], 400, "{name}: {temperature}");
            assert_eq!(temperature["param"], "temperature", "{name}: {temperature}");
            let message = temperature["message"].as_str().unwrap();
            assert!(message.contains("temperature") && message.contains(name), "{name}: {message}");
        } else {
            assert_eq!(temperature["answer"], answer, "{name}: {temperature}");
        }

        let sent: Vec<&support::BedrockRequest> = requests.iter().filter(|r| r.model_id == row.id).collect();
        assert!(
            sent.iter().all(|r| r.status == 200),
            "{name}: Bedrock refused a request: {:?}",
            sent.iter().map(|r| &r.body).collect::<Vec<_>>()
        );
        let expected_calls = if row.temperature_refused { 3 } else { 4 };
        assert_eq!(sent.len(), expected_calls, "{name}: calls reaching Bedrock");
        let text_of =
            |r: &&support::BedrockRequest| r.body["messages"][0]["content"][0]["text"].as_str().map(str::to_owned);
        let reasoning = sent.iter().find(|r| text_of(r).as_deref() == Some("think")).unwrap();
        assert_eq!(reasoning.body["thinking"], row.thinking, "{name}: {}", reasoning.body);
        assert_eq!(reasoning.body["output_config"]["effort"].as_str(), row.effort, "{name}: {}", reasoning.body);
        if let Some(budget) = row.thinking["budget_tokens"].as_u64() {
            assert!(reasoning.body["max_tokens"].as_u64().unwrap() > budget, "{name}: {}", reasoning.body);
        }
        let tools = sent.iter().find(|r| r.streaming).unwrap();
        assert_eq!(tools.body["tools"][0]["eager_input_streaming"], true, "{name}: fine-grained tool streaming");
        if !row.temperature_refused {
            let plain = sent.iter().filter(|r| text_of(r).as_deref() == Some("hi")).collect::<Vec<_>>();
            assert!(plain.iter().any(|r| r.body["temperature"] == json!(0.2)), "{name}: temperature forwarded");
        }
    }
}
