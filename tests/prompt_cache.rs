//! Issue 20, prompt caching for chat-completions clients, through the real binary. byollm places
//! `cache_control` breakpoints by policy; the fake Bedrock's and the fake Anthropic API's own
//! prompt caches (`crates/testkit/src/support/prompt_cache.rs`, written from Anthropic's and AWS's
//! documentation: prefix hashes, 20-position lookback, minimum size, TTL, at most 4 breakpoints)
//! judge where they land and report the usage.

use std::path::Path;
use std::time::Duration;

use byollm_testkit::harness::{API_KEY, Gateway, Harness, OTHER_API_KEY};
use byollm_testkit::support::*;
use byollm_testkit::{clients, cloud};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const KEY_ID: &str = "AKIDCACHETEST0001";
const SECRET: &str = "cache-test-secret-key-0001";
const MODEL: &str = "claude-sonnet-4-5";
const MODELS: &str = r#"
[models.claude-sonnet-4-5]
id = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
"#;

struct Local {
    bedrock: FakeBedrock,
    gateway: Gateway,
    _aws: tempfile::TempDir,
}

/// `byollm local` with `routing` (after the models), against a fake Bedrock reporting its cache.
async fn local(routing: &str) -> Local {
    let bedrock = FakeBedrock::start(FakeBedrockOptions { cache_usage: true, ..Default::default() }).await;
    bedrock.add_static_key(KEY_ID, SECRET);
    let config = format!("{MODELS}{routing}");
    let (gateway, aws) = BYOLLM.start_local_configured(&config, &bedrock.url(), KEY_ID, SECRET);
    Local { bedrock, gateway, _aws: aws }
}

/// A system prompt of about 2,000 words: well above Sonnet 4.5's 1,024-token minimum.
fn system_prompt() -> String {
    let mut text = String::from("You are the records agent. Follow these rules.\n");
    for rule in 0..200 {
        text.push_str(&format!("Rule {rule}: check the ledger entry {rule} against the archive before you answer.\n"));
    }
    text
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "lookup", "description": "Look a record up by its key",
            "parameters": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}}},
        {"type": "function", "function": {"name": "search", "description": "Search the archive",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
    ])
}

async fn chat(gateway: &Gateway, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(gateway.local_key())
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The usage of an answer: the JSON's, or the last chunk's of a stream.
async fn usage_of(response: reqwest::Response, stream: bool) -> Value {
    assert_eq!(response.status(), 200);
    if !stream {
        return response.json::<Value>().await.unwrap()["usage"].clone();
    }
    let text = response.text().await.unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<Value>(data).unwrap())
        .rfind(|chunk| chunk["usage"].is_object())
        .map(|chunk| chunk["usage"].clone())
        .unwrap_or_else(|| panic!("no usage chunk in {text}"))
}

/// The fields of a Bedrock body as sent, each as its raw JSON text with every `cache_control`
/// marker taken out.
fn unmarked_fields(raw: &[u8]) -> Map<String, Value> {
    let marker = regex::Regex::new(r#","cache_control":\{"type":"ephemeral"(,"ttl":"(5m|1h)")?\}"#).unwrap();
    let fields: std::collections::BTreeMap<String, Box<RawValue>> = serde_json::from_slice(raw).unwrap();
    fields
        .into_iter()
        .map(|(key, value)| (key, Value::String(marker.replace_all(value.get(), "").into_owned())))
        .collect()
}

/// `later` is `earlier` with turns appended, byte for byte apart from the markers.
fn assert_extends(earlier: &[u8], later: &[u8], turn: usize) {
    let (old, new) = (unmarked_fields(earlier), unmarked_fields(later));
    for field in ["tools", "system"] {
        assert_eq!(old.get(field), new.get(field), "turn {turn}: {field} changed");
    }
    let (old, new) = (old["messages"].as_str().unwrap(), new["messages"].as_str().unwrap());
    let kept = old.strip_suffix(']').unwrap();
    assert!(new.starts_with(kept) && new[kept.len()..].starts_with(','), "turn {turn}: history changed");
}

/// The audit lines the gateway wrote so far, waiting briefly for `count` of them.
async fn audit_lines(gateway: &Gateway, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let lines: Vec<Value> = gateway
            .logs()
            .lines()
            .filter(|line| line.starts_with("{\"audit\":\"request\""))
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} audit lines in:\n{}", gateway.logs());
}

/// How many `cache_control` markers a body carries (a marker inside a block counts too).
fn breakpoints(body: &Value) -> usize {
    body.to_string().matches("\"cache_control\"").count()
}

/// The value of one series in a `/metrics` text.
fn metric(text: &str, series: &str) -> f64 {
    let line = text.lines().find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '));
    let line = line.unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

/// The hit ratio the gateway shows for `team`, after checking its token counters against `accounts`
/// (the fake's own).
fn assert_hit_ratio(text: &str, team: &str, accounts: &[&CacheAccount]) -> f64 {
    let read: u64 = accounts.iter().map(|a| a.read).sum();
    let write: u64 = accounts.iter().map(|a| a.write).sum();
    let total: u64 = accounts.iter().map(|a| a.total()).sum();
    let series =
        |kind: &str| format!("byollm_prompt_cache_tokens_total{{team=\"{team}\",model=\"{MODEL}\",kind=\"{kind}\"}}");
    assert_eq!(metric(text, &series("cache_read")), read as f64);
    assert_eq!(metric(text, &series("cache_write")), write as f64);
    assert_eq!(metric(text, &series("uncached")), (total - read - write) as f64);
    let ratio = metric(text, &format!("byollm_prompt_cache_hit_ratio{{team=\"{team}\",model=\"{MODEL}\"}}"));
    assert!((ratio - read as f64 / total as f64).abs() < 1e-9, "{team}: {ratio} for {read} of {total}");
    ratio
}

/// Runs an agent conversation of `turns` tool-using turns (streamed every other turn), the fake
/// answering each with a tool call; returns the usage each answer reported.
async fn agent_conversation(local: &Local, turns: usize) -> Vec<Value> {
    local.bedrock.set_script(
        (0..turns)
            .map(|turn| Reply::default().with_tool_call(&format!("toolu_{turn}"), "lookup", &["{\"key\": \"k\"}"]))
            .collect(),
    );
    let mut messages = vec![
        json!({"role": "system", "content": system_prompt()}),
        json!({"role": "user", "content": "Reconcile the ledger for March."}),
    ];
    let mut usages = Vec::new();
    for turn in 0..turns {
        let stream = turn % 2 == 1;
        let body = json!({"model": MODEL, "messages": messages, "tools": tools(), "stream": stream,
            "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null }});
        usages.push(usage_of(chat(&local.gateway, &body).await, stream).await);
        let id = format!("toolu_{turn}");
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": "lookup", "arguments": "{\"key\": \"k\"}"}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": format!("entry {turn}: balanced")}));
    }
    usages
}

#[tokio::test(flavor = "multi_thread")]
async fn each_turn_reads_the_previous_one_from_the_cache_and_extends_it_byte_for_byte() {
    let local = local("").await;
    let usages = agent_conversation(&local, 6).await;
    let requests = local.bedrock.requests();
    assert_eq!(requests.len(), 6);
    let audit = audit_lines(&local.gateway, 6).await;
    for (turn, request) in requests.iter().enumerate() {
        let account = request.cache.as_ref().expect("the fake accounted for the request");
        assert!((1..=4).contains(&breakpoints(&request.body)), "turn {turn}: {}", breakpoints(&request.body));
        assert_eq!(account.breakpoints, breakpoints(&request.body));
        assert_eq!(usages[turn]["prompt_tokens_details"]["cached_tokens"], account.read, "turn {turn}");
        assert_eq!(usages[turn]["prompt_tokens_details"]["cache_write_tokens"], account.write, "turn {turn}");
        assert_eq!(usages[turn]["prompt_tokens"], account.total(), "turn {turn}");
        let audit = &audit[turn]["usage"];
        assert_eq!(
            (&audit["cache_read_input_tokens"], &audit["cache_creation_input_tokens"]),
            (&json!(account.read), &json!(account.write))
        );
        if turn == 0 {
            assert_eq!(account.read, 0);
            assert!(account.write > 1024, "the first turn writes: {account:?}");
            continue;
        }
        let previous = &requests[turn - 1];
        assert_extends(&previous.raw_body, &request.raw_body, turn);
        let repeated = account.repeated_from(previous.cache.as_ref().unwrap());
        assert_eq!(repeated, previous.cache.as_ref().unwrap().total(), "turn {turn}: the whole earlier prompt repeats");
        assert!(account.read * 10 >= repeated * 9, "turn {turn}: read {} of {repeated}", account.read);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_prompt_gets_no_breakpoint_and_a_clients_own_are_kept_and_counted() {
    let local = local("").await;
    let short = json!({"model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there."}], "tools": tools()});
    assert_eq!(chat(&local.gateway, &short).await.status(), 200);
    let request = &local.bedrock.requests()[0];
    assert_eq!(breakpoints(&request.body), 0, "{}", request.body);
    let account = request.cache.as_ref().unwrap();
    assert!(account.total() < 1024, "below the minimum by the fake's own count: {account:?}");

    // The client's own marker (on its first tool) stays, and leaves room for three of byollm's.
    let mut body = json!({"model": MODEL, "messages": [{"role": "system", "content": system_prompt()},
        {"role": "user", "content": "Reconcile."},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "balanced"}], "tools": tools()});
    body["tools"][0]["cache_control"] = json!({"type": "ephemeral"});
    assert_eq!(chat(&local.gateway, &body).await.status(), 200);
    let sent = &local.bedrock.requests()[1].body;
    assert_eq!(sent["tools"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert!(sent["tools"][1].get("cache_control").is_none(), "the tools already end in a breakpoint's room");
    assert_eq!(breakpoints(sent), 4);
    assert_eq!(sent["system"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(sent["messages"][2]["content"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(sent["messages"][0]["content"][0]["cache_control"], json!({"type": "ephemeral"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_turns_it_off_per_model_sets_the_ttl_and_reloads() {
    let local = local("[routing.default.per_model.\"claude-sonnet-4-5\"]\nprompt_cache = \"off\"\n").await;
    let body = json!({"model": MODEL, "messages": [{"role": "system", "content": system_prompt()},
        {"role": "user", "content": "Reconcile."}]});
    assert_eq!(chat(&local.gateway, &body).await.status(), 200);
    assert_eq!(breakpoints(&local.bedrock.requests()[0].body), 0);

    std::fs::write(local.gateway.config_path(), format!("{MODELS}[routing.default]\nprompt_cache_ttl = \"1h\"\n"))
        .unwrap();
    let mut marked = None;
    for _ in 0..100 {
        assert_eq!(chat(&local.gateway, &body).await.status(), 200);
        let sent = local.bedrock.requests().last().unwrap().body.clone();
        if breakpoints(&sent) > 0 {
            marked = Some(sent);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = marked.unwrap_or_else(|| panic!("the reloaded policy placed no breakpoint:\n{}", local.gateway.logs()));
    // Sonnet 4.5 takes 1h: the system prompt and the question, both an hour.
    let hour = json!({"type": "ephemeral", "ttl": "1h"});
    assert_eq!(
        (&sent["system"][0]["cache_control"], &sent["messages"][0]["content"][0]["cache_control"]),
        (&hour, &hour)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_anthropic_route_gets_the_same_breakpoints_and_reads_the_cache() {
    const ANTHROPIC_KEY: &str = "sk-ant-api03-test-key";
    let anthropic = FakeAnthropic::start(FakeAnthropicOptions { cache_usage: true, ..Default::default() }).await;
    let config = format!(
        r#"{MODELS}
[routing.anthropic]
base_url = "{url}"
api_key_env = "TEST_ANTHROPIC_KEY"
[routing.default.routes]
"claude-sonnet-4-5" = [{{ anthropic = {{ model = "claude-sonnet-4-5" }} }}]
"#,
        url = anthropic.url()
    );
    let aws = tempfile::tempdir().unwrap();
    std::fs::write(aws.path().join("config"), "[profile dev]\nregion = us-east-1\n").unwrap();
    std::fs::write(aws.path().join("credentials"), "[dev]\naws_access_key_id = AKID\naws_secret_access_key = s\n")
        .unwrap();
    let (config_file, credentials_file) = (aws.path().join("config"), aws.path().join("credentials"));
    let env = [
        ("AWS_CONFIG_FILE", config_file.to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials_file.to_str().unwrap()),
        ("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY),
    ];
    let gateway = BYOLLM.start_local(&config, &["--profile", "dev"], &env);
    let mut messages = vec![
        json!({"role": "system", "content": system_prompt()}),
        json!({"role": "user", "content": "Reconcile the ledger for March."}),
    ];
    let first = usage_of(chat(&gateway, &json!({"model": MODEL, "messages": messages})).await, false).await;
    messages.push(json!({"role": "assistant", "content": "Hello from FakeAnthropic."}));
    messages.push(json!({"role": "user", "content": "And April?"}));
    let second = usage_of(chat(&gateway, &json!({"model": MODEL, "messages": messages})).await, false).await;
    let requests = anthropic.requests();
    assert_eq!(requests.len(), 2);
    let (one, two) = (requests[0].cache.as_ref().unwrap(), requests[1].cache.as_ref().unwrap());
    assert!(requests.iter().all(|r| (1..=4).contains(&breakpoints(&r.body))));
    assert_eq!((one.read, first["prompt_tokens_details"]["cached_tokens"].as_u64()), (0, Some(0)));
    assert_eq!(two.read, one.total(), "the second request reads the whole first one");
    assert_eq!(second["prompt_tokens_details"]["cached_tokens"], two.read);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_team_turns_it_off_for_itself_only() {
    let (sts, bedrock) = cloud::fakes_with_other(
        FakeStsOptions::default(),
        FakeBedrockOptions { cache_usage: true, ..Default::default() },
    )
    .await;
    let config =
        cloud::config_with_other(&sts, &bedrock, &format!("{MODELS}\n[routing.teams.other]\nprompt_cache = \"off\"\n"));
    let gateway = BYOLLM.start(&config);
    sts.set_providers(vec![gateway.issuer_host()]);
    let body = json!({"model": MODEL, "messages": [{"role": "system", "content": system_prompt()},
        {"role": "user", "content": "Reconcile."}]});
    for (key, team) in [(API_KEY, "acme"), (OTHER_API_KEY, "other"), (API_KEY, "acme")] {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(key)
            .header("x-byollm-actor", "service_account")
            .header("x-byollm-principal", "ci-bot")
            .header("x-byollm-team", team)
            .header("x-byollm-run-id", "run-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{team}: {}", response.text().await.unwrap());
    }
    let requests = bedrock.requests();
    assert_eq!(breakpoints(&requests[0].body), 2, "acme: the system prompt and the question");
    assert_eq!(breakpoints(&requests[1].body), 0, "other: off");
    assert_eq!(breakpoints(&requests[2].body), 2, "acme again");

    // The metrics: each team's own hit ratio, from the fake's accounting (acme's second request
    // read its first; the other team wrote nothing and read nothing).
    let accounts: Vec<&CacheAccount> = requests.iter().map(|r| r.cache.as_ref().unwrap()).collect();
    assert!(accounts[2].read > 1024 && accounts[1].read + accounts[1].write == 0, "{accounts:?}");
    let text = reqwest::get(format!("{}/metrics", gateway.url)).await.unwrap().text().await.unwrap();
    let acme = assert_hit_ratio(&text, "acme", &[accounts[0], accounts[2]]);
    assert!(acme > 0.45, "acme read about half its prompts: {acme}");
    assert_eq!(assert_hit_ratio(&text, "other", &[accounts[1]]), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_messages_api_keeps_the_clients_markers_adds_none_and_reports_anthropics_fields() {
    let local = local("").await;
    let body = |stream: bool| {
        json!({"model": MODEL, "max_tokens": 100, "stream": stream,
            "system": [{"type": "text", "text": system_prompt(), "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Reconcile the ledger for March."}]})
    };
    let send = |body: Value| {
        reqwest::Client::new()
            .post(format!("{}/v1/messages", local.gateway.url))
            .header("x-api-key", local.gateway.local_key())
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let first: Value = send(body(false)).await.unwrap().json().await.unwrap();
    let streamed = send(body(true)).await.unwrap().text().await.unwrap();
    let requests = local.bedrock.requests();
    assert_eq!(breakpoints(&requests[0].body), 1, "the client's own marker only");
    let (one, two) = (requests[0].cache.as_ref().unwrap(), requests[1].cache.as_ref().unwrap());
    assert_eq!(first["usage"]["cache_creation_input_tokens"], one.write);
    assert_eq!(first["usage"]["cache_read_input_tokens"], 0);
    assert!(two.read > 1024 && two.read == one.write, "{two:?}");
    let start = streamed
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str::<Value>(data).unwrap())
        .find(|event| event["type"] == "message_start")
        .unwrap();
    assert_eq!(start["message"]["usage"]["cache_read_input_tokens"], two.read);
    let audit = audit_lines(&local.gateway, 2).await;
    assert_eq!(audit[1]["usage"]["cache_read_input_tokens"], two.read);
}

/// The issue's "Done when", through the official OpenAI Python SDK (`tests/openai_client.py
/// --agent`): ten tool-using turns of an agent loop (streamed every other turn, one turn of twelve
/// parallel tool calls: 24 new blocks, past the 20-block lookback) read from the fake Bedrock's
/// cache on every turn after the first at least 90 % of the prefix they repeat, by the fake's own
/// accounting; no request carries more than 4 breakpoints; each body extends the previous one byte
/// for byte apart from the markers; the SDK parses `cached_tokens` and `cache_write_tokens` equal
/// to the fake's reads and writes. Prints each turn's figures. NOT RUN without the SDK.
#[tokio::test(flavor = "multi_thread")]
async fn python_openai_sdk_agent_reads_the_cache_on_every_turn_after_the_first() {
    const TURNS: usize = 10;
    const PARALLEL_TURN: usize = 5;
    let python = clients::python_with("openai");
    if !clients::available("python-openai", "the Python openai SDK", python.is_some(), "python3 -m pip install openai")
    {
        return;
    }
    let local = local("").await;
    local.bedrock.set_script(
        (0..TURNS)
            .map(|turn| {
                let calls = if turn == PARALLEL_TURN { 12 } else { 1 };
                (0..calls).fold(Reply::default(), |reply, call| {
                    let (name, arguments) = if call % 2 == 0 {
                        ("get_weather", "{\"city\": \"Oslo\"}")
                    } else {
                        ("get_time", "{\"tz\": \"CET\"}")
                    };
                    reply.with_tool_call(&format!("toolu_{turn}_{call}"), name, &[arguments])
                })
            })
            .collect(),
    );
    let script = clients::tests_dir().join("openai_client.py");
    let turns = TURNS.to_string();
    let args = [script.to_str().unwrap(), local.gateway.url.as_str(), "--agent", MODEL, &turns];
    let (ok, output) = clients::run(
        Path::new(&python.unwrap()),
        &args,
        &clients::tests_dir(),
        &[("OPENAI_API_KEY", local.gateway.local_key())],
        Duration::from_secs(120),
    )
    .await;
    assert!(ok, "tests/openai_client.py --agent failed:\n{output}\ngateway logs:\n{}", local.gateway.logs());
    let seen: Vec<Value> = output
        .lines()
        .filter_map(|line| line.strip_prefix("AGENT "))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(seen.len(), TURNS, "{output}");
    let requests = local.bedrock.requests();
    assert_eq!(requests.len(), TURNS, "one request per turn, none retried");
    assert_eq!(seen[PARALLEL_TURN]["tool_calls"], 12);
    for (turn, (request, seen)) in requests.iter().zip(&seen).enumerate() {
        assert_eq!(request.status, 200, "turn {turn}: {}", request.body);
        let account = request.cache.as_ref().expect("the fake accounted for the request");
        let marks = breakpoints(&request.body);
        assert!((1..=4).contains(&marks), "turn {turn}: {marks} breakpoints");
        assert_eq!(account.breakpoints, marks);
        assert_eq!(seen["stream"], turn % 2 == 1);
        assert_eq!(seen["cached_tokens"], account.read, "turn {turn}");
        assert_eq!(seen["cache_write_tokens"], account.write, "turn {turn}");
        assert_eq!(seen["prompt_tokens"], account.total(), "turn {turn}");
        if turn == 0 {
            assert_eq!(account.read, 0);
            println!("turn 0: {} prompt tokens, {} written, {marks} breakpoints", account.total(), account.write);
            continue;
        }
        let previous = &requests[turn - 1];
        assert_extends(&previous.raw_body, &request.raw_body, turn);
        let repeated = account.repeated_from(previous.cache.as_ref().unwrap());
        println!(
            "turn {turn}: {} prompt tokens, {repeated} repeated, {} read ({:.1} %), {} written, {marks} breakpoints",
            account.total(),
            account.read,
            100.0 * account.read as f64 / repeated as f64,
            account.write
        );
        assert!(repeated > 1024, "turn {turn}: the earlier prompt repeats");
        assert!(account.read * 10 >= repeated * 9, "turn {turn}: read {} of {repeated}", account.read);
    }
    // The metrics show the conversation's hit ratio (local mode: no team).
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", local.gateway.url))
        .bearer_auth(local.gateway.local_key())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let accounts: Vec<&CacheAccount> = requests.iter().map(|r| r.cache.as_ref().unwrap()).collect();
    let ratio = assert_hit_ratio(&text, "(none)", &accounts);
    println!("hit ratio over {TURNS} turns: {ratio:.3}");
}
