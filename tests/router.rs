//! The model surfaces driven in-process: the router `byollm local` serves, called with
//! `tower::ServiceExt::oneshot` (no process, no listener), over the dispatch `app::local` builds
//! with the person's session from a temporary AWS profile, against the fake Bedrock on loopback.
//! Each test checks what a client of that surface sees (status, error shape, headers) and the
//! audit line the request left (read from an in-memory sink).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use byollm::app::{self, Wiring};
use byollm::broker::local::{LocalSession, LocalSource};
use byollm::config::Config;
use byollm::identity::auth::SessionKey;
use byollm::observe::audit::MemorySink;
use byollm::routing::Mode;
use byollm_testkit::support::{FakeBedrock, FakeBedrockOptions, Reply};
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY_ID: &str = "AKIDROUTERTEST001";
const SECRET: &str = "router-test-secret-key-0001";

struct Local {
    router: axum::Router,
    key: Arc<SessionKey>,
    audit: Arc<MemorySink>,
    metrics: Arc<byollm::observe::metrics::Metrics>,
    bedrock: FakeBedrock,
    _aws: tempfile::TempDir,
}

async fn local() -> Local {
    let bedrock = FakeBedrock::start(FakeBedrockOptions {
        default_reply: Reply::text(&["Hello", " from", " the", " fake."]),
        ..Default::default()
    })
    .await;
    bedrock.add_static_key(KEY_ID, SECRET);
    let aws = tempfile::tempdir().unwrap();
    let config_file = aws.path().join("config");
    let credentials_file = aws.path().join("credentials");
    std::fs::write(&config_file, "[profile dev]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        &credentials_file,
        format!("[dev]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let config = Config::from_toml(&format!(
        "dev = true\n[bedrock]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[models]\nhaiku = {{ id = \"global.anthropic.claude-haiku-4-5-20251001-v1:0\" }}\n",
        bedrock.url()
    ))
    .unwrap();
    let source = LocalSource {
        profile: Some("dev".into()),
        config_file: Some(config_file),
        credentials_file: Some(credentials_file),
        refresh_interval: Duration::from_secs(900),
    };
    let session = Arc::new(LocalSession::new(source).await);
    let routing = app::routing_policy(&config, Mode::Local).unwrap();
    let audit = Arc::new(MemorySink::default());
    let mut wiring = Wiring::new(Arc::new(config), routing);
    wiring.sink = audit.clone();
    let metrics = wiring.metrics.clone();
    let dispatch = app::local(wiring, session, "us-east-1".into());
    let key = Arc::new(SessionKey::generate().unwrap());
    let router = byollm::api::local_router(dispatch, true, key.clone());
    Local { router, key, audit, metrics, bedrock, _aws: aws }
}

impl Local {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:8080")
            .header("authorization", format!("Bearer {}", self.key.expose()));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(Body::empty, |value| Body::from(value.to_string()));
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
        (parts.status, parts.headers, bytes)
    }

    fn audit_lines(&self) -> Vec<Value> {
        self.audit.lines.lock().unwrap().iter().map(|line| serde_json::from_str(line).unwrap()).collect()
    }
}

fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn a_chat_completion_is_served_routed_and_audited_once() {
    let local = local().await;
    let (status, headers, body) = local.send("POST", "/v1/chat/completions", Some(chat_body("haiku", false))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-byollm-route"], "bedrock");
    let completion: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "Hello from the fake.");
    let lines = local.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((lines[0]["surface"].as_str(), lines[0]["status"].as_u64()), (Some("chat"), Some(200)));
    assert_eq!(lines[0]["route"], "bedrock");
    assert_eq!(local.bedrock.requests().len(), 1);
}

#[tokio::test]
async fn a_streamed_chat_completion_finishes_its_audit_line_when_the_stream_ends() {
    let local = local().await;
    let (status, headers, body) = local.send("POST", "/v1/chat/completions", Some(chat_body("haiku", true))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let lines = local.audit_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0]["stream"].as_bool(), lines[0]["status"].as_u64()), (Some(true), Some(200)));
    assert!(lines[0]["ttfb_ms"].is_u64(), "{}", lines[0]);
}

#[tokio::test]
async fn each_surface_refuses_in_its_own_shape_before_any_upstream_call() {
    let local = local().await;
    // OpenAI's shape.
    let (status, _, body) = local.send("POST", "/v1/chat/completions", Some(chat_body("nope", false))).await;
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("model_not_found")));
    // Anthropic's shape.
    let messages = json!({"model": "nope", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = local.send("POST", "/v1/messages", Some(messages)).await;
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, error["type"].as_str(), error["error"]["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("error"), Some("not_found_error"))
    );
    // Bedrock's shape.
    let (status, headers, body) =
        local.send("POST", "/model/anthropic.claude-nope-v1%3A0/invoke", Some(json!({}))).await;
    assert_eq!(
        (status, headers["x-amzn-errortype"].to_str().unwrap()),
        (StatusCode::FORBIDDEN, "AccessDeniedException")
    );
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["message"].is_string());
    // Refused before any Bedrock call; each left its line with its status and code.
    assert!(local.bedrock.requests().is_empty());
    let lines = local.audit_lines();
    let summary: Vec<(Option<&str>, Option<u64>)> =
        lines.iter().map(|line| (line["surface"].as_str(), line["status"].as_u64())).collect();
    assert_eq!(summary, [(Some("chat"), Some(404)), (Some("messages"), Some(404)), (Some("native"), Some(403))]);
}

#[tokio::test]
async fn the_session_key_guards_every_model_route() {
    let local = local().await;
    let request = Request::post("/v1/chat/completions")
        .header("host", "127.0.0.1:8080")
        .header("content-type", "application/json")
        .body(Body::from(chat_body("haiku", false).to_string()))
        .unwrap();
    let response = local.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(local.bedrock.requests().is_empty());
    assert!(local.audit_lines().is_empty(), "refused at the edge: no model request started");
}

#[tokio::test]
async fn model_names_a_caller_invents_add_no_metric_series() {
    let local = local().await;
    local.send("POST", "/v1/chat/completions", Some(chat_body("haiku", false))).await;
    let before = local.metrics.render().lines().count();
    for index in 0..300 {
        let junk = format!("junk-model-{index}");
        local.send("POST", "/v1/chat/completions", Some(chat_body(&junk, index % 2 == 0))).await;
        let messages = json!({"model": junk, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        local.send("POST", "/v1/messages", Some(messages)).await;
        local.send("POST", &format!("/model/anthropic.{junk}-v1%3A0/invoke"), Some(json!({}))).await;
    }
    let text = local.metrics.render();
    assert!(!text.contains("junk-model"), "{text}");
    assert!(text.contains("model=\"haiku\""), "{text}");
    assert!(text.contains("model=\"unknown\""), "{text}");
    // The refusals' series exist once per (surface, status) whatever the names: a handful of
    // lines, not 900.
    let after = text.lines().count();
    assert!(after < before + 60, "{before} lines before, {after} after:\n{text}");
}
