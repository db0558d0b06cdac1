//! OpenTelemetry traces (feature `otel`) through the real binary: a fake OTLP/HTTP collector on
//! 127.0.0.1 receives one span per model request, with the audit line's attributes and each
//! attempt as an event, and never a prompt or a key; shutdown flushes what is queued.
//!
//! The collector decodes the protobuf `ExportTraceServiceRequest` with its own small wire-format
//! reader and the field numbers of the OTLP specification
//! (opentelemetry-proto: `collector/trace/v1/trace_service.proto`, `trace/v1/trace.proto`,
//! `common/v1/common.proto`), independent of the exporter byollm uses.
//!
//! Run with `cargo test --features otel --test otel`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use byollm_testkit::cloud;
use byollm_testkit::harness::{API_KEY, Harness};
use byollm_testkit::support::*;
use serde_json::json;

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const PROMPT: &str = "PROMPT-TEXT-THAT-MUST-NOT-BE-EXPORTED";

/// One protobuf field: its number and value.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn varint(buf: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = buf[0];
        *buf = &buf[1..];
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

/// The fields of one message, in order.
fn fields(mut buf: &[u8]) -> Vec<(u64, Wire<'_>)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf);
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut buf)),
            1 => {
                let (bytes, rest) = buf.split_at(8);
                buf = rest;
                Wire::Fixed64(u64::from_le_bytes(bytes.try_into().unwrap()))
            }
            2 => {
                let len = varint(&mut buf) as usize;
                let (bytes, rest) = buf.split_at(len);
                buf = rest;
                Wire::Bytes(bytes)
            }
            5 => {
                let (bytes, rest) = buf.split_at(4);
                buf = rest;
                Wire::Fixed32(u32::from_le_bytes(bytes.try_into().unwrap()))
            }
            other => panic!("wire type {other} is not one OTLP uses"),
        };
        out.push((key >> 3, value));
    }
    out
}

fn messages(buf: &[u8], number: u64) -> Vec<&[u8]> {
    fields(buf)
        .into_iter()
        .filter_map(|(n, v)| match (n == number, v) {
            (true, Wire::Bytes(bytes)) => Some(bytes),
            _ => None,
        })
        .collect()
}

fn text(buf: &[u8], number: u64) -> Option<String> {
    messages(buf, number).first().map(|b| String::from_utf8(b.to_vec()).unwrap())
}

fn number(buf: &[u8], field: u64) -> Option<u64> {
    fields(buf).into_iter().find_map(|(n, v)| match (n == field, v) {
        (true, Wire::Varint(x) | Wire::Fixed64(x)) => Some(x),
        (true, Wire::Fixed32(x)) => Some(u64::from(x)),
        _ => None,
    })
}

/// `AnyValue`: string 1, bool 2, int 3, double 4.
#[derive(Debug, Clone, PartialEq)]
enum Any {
    Str(String),
    Bool(bool),
    Int(i64),
    Other,
}

/// `repeated KeyValue` (key 1, value 2) at `field`.
fn attributes(buf: &[u8], field: u64) -> BTreeMap<String, Any> {
    messages(buf, field)
        .into_iter()
        .map(|kv| {
            let key = text(kv, 1).unwrap();
            let value = messages(kv, 2).first().map_or(Any::Other, |any| match fields(any).first() {
                Some((1, Wire::Bytes(b))) => Any::Str(String::from_utf8(b.to_vec()).unwrap()),
                Some((2, Wire::Varint(v))) => Any::Bool(*v != 0),
                Some((3, Wire::Varint(v))) => Any::Int(*v as i64),
                _ => Any::Other,
            });
            (key, value)
        })
        .collect()
}

#[derive(Debug, Clone)]
struct SeenSpan {
    service: Option<Any>,
    name: String,
    kind: u64,
    start_ns: u64,
    end_ns: u64,
    attributes: BTreeMap<String, Any>,
    events: Vec<(String, BTreeMap<String, Any>)>,
    /// `Status.code`: 0 unset, 1 ok, 2 error.
    status: u64,
}

/// `ExportTraceServiceRequest`: resource_spans 1 → (resource 1 → attributes 1; scope_spans 2 →
/// spans 2). Span: name 5, kind 6, start 7, end 8, attributes 9, events 11 (name 2, attributes
/// 3), status 15 (code 3).
fn decode(body: &[u8]) -> Vec<SeenSpan> {
    let mut out = Vec::new();
    for resource_spans in messages(body, 1) {
        let resource = messages(resource_spans, 1).first().map(|r| attributes(r, 1)).unwrap_or_default();
        for scope_spans in messages(resource_spans, 2) {
            for span in messages(scope_spans, 2) {
                out.push(SeenSpan {
                    service: resource.get("service.name").cloned(),
                    name: text(span, 5).unwrap_or_default(),
                    kind: number(span, 6).unwrap_or(0),
                    start_ns: number(span, 7).unwrap_or(0),
                    end_ns: number(span, 8).unwrap_or(0),
                    attributes: attributes(span, 9),
                    events: messages(span, 11).into_iter().map(|e| (text(e, 2).unwrap(), attributes(e, 3))).collect(),
                    status: messages(span, 15).first().and_then(|s| number(s, 3)).unwrap_or(0),
                });
            }
        }
    }
    out
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<SeenSpan>>>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

async fn collector() -> (String, Collector, ServerTask) {
    let seen = Collector::default();
    let state = seen.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
                    return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Bytes::new());
                }
                state.spans.lock().unwrap().extend(decode(&body));
                state.bodies.lock().unwrap().push(body);
                // An empty ExportTraceServiceResponse: everything accepted.
                (StatusCode::OK, Bytes::new())
            }
        }),
    );
    let (url, task) = serve(router).await;
    (url, seen, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_spans_carry_the_audit_lines_attributes_and_no_secrets() {
    let (collector_url, seen, _collector) = collector().await;
    let (sts, bedrock) = cloud::fakes(FakeStsOptions::default(), FakeBedrockOptions::default()).await;
    let extra = format!(
        "[models.haiku]\nid = \"global.anthropic.claude-haiku-4-5-20251001-v1:0\"\n\
         [telemetry]\notlp_endpoint = \"{collector_url}\"\nservice_name = \"byollm-otel-test\"\n"
    );
    let config = cloud::config(&sts, &bedrock, &extra);
    let mut gateway = BYOLLM.start_with(&config, false, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    sts.set_providers(vec![gateway.issuer_host()]);
    bedrock.set_script(vec![Reply::text(&["Hello"]).usage(21, 3), Reply::error(BedrockErrorKind::ServiceUnavailable)]);

    let client = reqwest::Client::new();
    let ask = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", gateway.url))
            .bearer_auth(API_KEY)
            .header("x-byollm-actor", "service_account")
            .header("x-byollm-principal", "ci-bot")
            .header("x-byollm-run-id", "run-otel")
            .json(&body)
            .send()
    };
    let chat = json!({"model": "haiku", "messages": [{"role": "user", "content": PROMPT}]});
    assert_eq!(ask("/v1/chat/completions", chat).await.unwrap().status(), 200);
    let messages = json!({"model": "haiku", "max_tokens": 16, "messages": [{"role": "user", "content": PROMPT}]});
    assert_eq!(ask("/v1/messages", messages).await.unwrap().status(), 503);

    let mut spans = Vec::new();
    for _ in 0..200 {
        spans = seen.spans.lock().unwrap().clone();
        if spans.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spans.len(), 2, "one span per request:\n{}", gateway.logs());
    spans.sort_by_key(|s| s.start_ns);
    let (ok, failed) = (&spans[0], &spans[1]);
    let s = |v: &str| Any::Str(v.to_owned());

    assert_eq!(ok.name, "chat_completions haiku");
    assert_eq!(ok.kind, 2, "a server span");
    assert_eq!(ok.service, Some(s("byollm-otel-test")));
    assert!(ok.end_ns >= ok.start_ns && ok.start_ns > 1_600_000_000_000_000_000, "{ok:?}");
    for (key, value) in [
        ("byollm.surface", s("chat")),
        ("byollm.caller", s("acme-worker")),
        ("byollm.team", s("acme")),
        ("byollm.principal", s("ci-bot")),
        ("byollm.run", s("run-otel")),
        ("gen_ai.request.model", s("haiku")),
        ("byollm.route", s("bedrock")),
        ("byollm.upstream_model", s("global.anthropic.claude-haiku-4-5-20251001-v1:0")),
        ("gen_ai.usage.input_tokens", Any::Int(21)),
        ("gen_ai.usage.output_tokens", Any::Int(3)),
        ("http.response.status_code", Any::Int(200)),
        ("byollm.stream", Any::Bool(false)),
    ] {
        assert_eq!(ok.attributes.get(key), Some(&value), "{key} in {:?}", ok.attributes);
    }
    assert_eq!(ok.events.len(), 1);
    assert_eq!(ok.events[0].0, "attempt");
    assert_eq!(ok.events[0].1.get("byollm.result"), Some(&s("served")));
    assert_eq!(ok.status, 0, "unset on success");

    assert_eq!(failed.name, "messages haiku");
    assert_eq!(failed.attributes.get("http.response.status_code"), Some(&Any::Int(503)));
    assert_eq!(failed.attributes.get("error.type"), Some(&s("bedrock_unavailable")));
    assert_eq!(failed.events[0].1.get("byollm.result"), Some(&s("upstream")));
    assert_eq!(failed.status, 2, "an error status for a 5xx");

    let exported: Vec<u8> = seen.bodies.lock().unwrap().iter().flat_map(|b| b.to_vec()).collect();
    let exported = String::from_utf8_lossy(&exported);
    assert!(!exported.contains(PROMPT), "no prompt text in spans");
    assert!(!exported.contains(API_KEY), "no key in spans");
    assert!(!exported.contains(&sts.issued()[0].access_key_id), "no credentials in spans");

    // Shutdown flushes and ends cleanly.
    let (code, _) = gateway.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}
