//! The Bedrock client on its own, against the fake Bedrock (which checks SigV4 independently) and a
//! capture server: typed errors, stream exceptions, the stream idle limit, and the raw call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use byollm::aws::AwsCredentials;
use byollm::secret::Secret;
use byollm::upstream::buffered::AnswerBudget;
use byollm::upstream::{BedrockClient, BedrockFailure, RawRequest, model_path};
use byollm_testkit::support;
use byollm_testkit::support::{BedrockErrorKind, FakeBedrock, FakeBedrockOptions, Reply, StreamExceptionKind};
use http_body_util::BodyExt;
use serde_json::{Value, json};

const KEY_ID: &str = "AKIDUPSTREAMTEST01";
const SECRET: &str = "upstream-test-secret-key-0001";
const MODEL_ID: &str = "global.anthropic.claude-sonnet-4-5-20250929-v1:0";
const REGION: &str = "us-east-1";

fn credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: KEY_ID.into(),
        secret_access_key: Secret::new(SECRET),
        session_token: None,
        expiration: None,
    }
}

async fn fake() -> FakeBedrock {
    let bedrock = FakeBedrock::start(FakeBedrockOptions::default()).await;
    bedrock.add_static_key(KEY_ID, SECRET);
    bedrock
}

fn body() -> Bytes {
    json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
           "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
    .into()
}

/// Every event of a stream (as JSON), and how it ended.
async fn drain(stream: &mut byollm::upstream::EventStream) -> (Vec<Value>, Result<(), BedrockFailure>) {
    let mut events = Vec::new();
    loop {
        match stream.next_event().await {
            Ok(Some(event)) => events.push(serde_json::from_slice(event).unwrap()),
            Ok(None) => return (events, Ok(())),
            Err(failure) => return (events, Err(failure)),
        }
    }
}

#[tokio::test]
async fn answers_and_streams_arrive_decoded() {
    let bedrock = fake().await;
    let client = BedrockClient::new(Some(bedrock.url()));
    bedrock.set_script(vec![Reply::text(&["Hello", " world"]), Reply::text(&["Hello", " world"])]);
    let answer = client.invoke(REGION, MODEL_ID, body(), &credentials()).await.unwrap();
    let message: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(message["content"][0]["text"], "Hello world");

    let mut stream = client.invoke_stream(REGION, MODEL_ID, body(), &credentials()).await.unwrap();
    let (events, end) = drain(&mut stream).await;
    end.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[3]["delta"]["text"], " world");
    assert!(stream.next_event().await.unwrap().is_none(), "an ended stream stays ended");
    let requests = bedrock.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.model_id == MODEL_ID && r.access_key_id == KEY_ID));
}

#[tokio::test]
async fn errors_before_the_body_carry_bedrocks_code_and_message() {
    let bedrock = fake().await;
    let client = BedrockClient::new(Some(bedrock.url()));
    for kind in BedrockErrorKind::ALL_INVOKE {
        let expected = BedrockFailure::new(kind.code(), kind.default_message());
        bedrock.set_script(vec![Reply::error(kind)]);
        assert_eq!(client.invoke(REGION, MODEL_ID, body(), &credentials()).await.unwrap_err(), expected);
        bedrock.set_script(vec![Reply::error(kind)]);
        let stream = client.invoke_stream(REGION, MODEL_ID, body(), &credentials()).await;
        assert_eq!(stream.err().unwrap(), expected);
    }
    let unknown_key = AwsCredentials { access_key_id: "AKIDUNKNOWN".into(), ..credentials() };
    let failure = client.invoke(REGION, MODEL_ID, body(), &unknown_key).await.unwrap_err();
    assert_eq!(failure.code, "UnrecognizedClientException");
    assert!(failure.is_credential_problem());
    let unreachable = BedrockClient::new(Some("http://127.0.0.1:9".into()));
    assert_eq!(unreachable.invoke(REGION, MODEL_ID, body(), &credentials()).await.unwrap_err().code, "Dispatch");
}

#[tokio::test]
async fn stream_exceptions_are_named_as_the_sdk_names_them() {
    let bedrock = fake().await;
    let client = BedrockClient::new(Some(bedrock.url()));
    let names = [
        (StreamExceptionKind::Throttling, "ThrottlingException"),
        (StreamExceptionKind::ModelStreamError, "ModelStreamErrorException"),
        (StreamExceptionKind::InternalServer, "InternalServerException"),
        (StreamExceptionKind::Validation, "ValidationException"),
        (StreamExceptionKind::ServiceUnavailable, "ServiceUnavailableException"),
        (StreamExceptionKind::ModelTimeout, "ModelTimeoutException"),
    ];
    for (kind, name) in names {
        bedrock.set_script(vec![Reply::text(&["a", "b"]).exception_after(2, kind, "it broke")]);
        let mut stream = client.invoke_stream(REGION, MODEL_ID, body(), &credentials()).await.unwrap();
        let (events, end) = drain(&mut stream).await;
        assert_eq!(events.len(), 2, "{name}");
        assert_eq!(end.unwrap_err(), BedrockFailure::new(name, "it broke"));
    }
    bedrock.set_script(vec![Reply::text(&["a", "b"]).cut_after(3)]);
    let mut stream = client.invoke_stream(REGION, MODEL_ID, body(), &credentials()).await.unwrap();
    let (events, end) = drain(&mut stream).await;
    assert_eq!(events.len(), 3);
    assert_eq!(end.unwrap_err().code, "StreamCut");
}

/// A server that answers every request with a 200 whose head promises 1,000 bytes, sends
/// `sent` of them, and closes the connection: an answer broken off mid-body.
async fn breaking_server(sent: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request's head and body (small; one read is enough on loopback, but
                // read until the head's end to be sure).
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = socket.read(&mut buffer).await else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(sent).await;
                let _ = socket.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                // Dropped: the connection closes with 1,000 − `sent` bytes missing.
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn a_non_streamed_answer_broken_off_is_named_as_cut_and_gives_its_budget_back() {
    let answers = AnswerBudget::new(1 << 20);
    let client = BedrockClient::new(Some(breaking_server(br#"{"id":"msg_1","content":[{"type"#).await))
        .with_answer_budget(answers.clone());
    let failure = client.invoke(REGION, MODEL_ID, body(), &credentials()).await.unwrap_err();
    assert_eq!(failure.code, "AnswerCut");
    let error = failure.to_api_error("bedrock:InvokeModel", MODEL_ID);
    assert_eq!((error.status.as_u16(), error.code), (502, "upstream_answer_cut"));
    assert_eq!(answers.available_bytes(), 1 << 20, "the partial answer's share is given back");
}

/// Paused time: the fake's pauses and the client's idle limit run on the virtual clock. The clock
/// jumps to the next timer whenever the runtime waits, even for bytes already on their way through
/// a socket, so a ticker keeps the jumps to 100 ms.
#[tokio::test(start_paused = true)]
async fn a_stream_is_cut_only_after_five_silent_minutes() {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let bedrock = fake().await;
    let client = BedrockClient::new(Some(bedrock.url()));

    // Events 200 s apart, 1,400 s in all: never 5 minutes of silence, never cut.
    bedrock.set_script(vec![Reply::text(&["a", "b", "c"]).delay(Duration::from_secs(200))]);
    let started = tokio::time::Instant::now();
    let mut stream = client.invoke_stream(REGION, MODEL_ID, body(), &credentials()).await.unwrap();
    let (events, end) = drain(&mut stream).await;
    end.unwrap();
    assert_eq!(events.len(), 8);
    assert!(started.elapsed() >= Duration::from_secs(1400), "{:?}", started.elapsed());

    // 330 s of silence after the first event: cut at 300 s.
    bedrock.set_script(vec![Reply::text(&["a"]).delay(Duration::from_secs(330))]);
    let mut stream = client.invoke_stream(REGION, MODEL_ID, body(), &credentials()).await.unwrap();
    assert!(stream.next_event().await.unwrap().is_some());
    let silent_from = tokio::time::Instant::now();
    let failure = stream.next_event().await.unwrap_err();
    assert_eq!(failure.code, "IdleTimeout");
    let silent = silent_from.elapsed();
    assert!(silent >= Duration::from_secs(300) && silent < Duration::from_secs(301), "{silent:?}");
    assert_eq!(failure.to_api_error("bedrock:InvokeModelWithResponseStream", MODEL_ID).code, "upstream_idle_timeout");
}

/// A request as the capture server saw it.
type SeenRequest = (Method, Uri, HeaderMap, Bytes);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<SeenRequest>>>);

#[tokio::test]
async fn the_raw_call_signs_extra_headers_and_relays_the_answer_unchanged() {
    let seen = Seen::default();
    let record = seen.clone();
    let router = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let record = record.clone();
        async move {
            record.0.lock().unwrap().push((method, uri, headers, body));
            (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("content-type", "application/json"),
                    ("x-amzn-errortype", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
                    ("x-amzn-requestid", "11111111-2222-3333-4444-555555555555"),
                    ("retry-after", "3"),
                ],
                r#"{"message":"Too many requests, please wait before trying again."}"#,
            )
                .into_response()
        }
    });
    let (url, _task) = support::serve(router).await;
    let client = BedrockClient::new(Some(format!("{url}/prefix")));
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-amzn-bedrock-trace", HeaderValue::from_static("ENABLED"));
    headers.insert("authorization", HeaderValue::from_static("Bearer the-callers-api-key"));
    headers.insert("x-amz-date", HeaderValue::from_static("19990101T000000Z"));
    headers.insert("connection", HeaderValue::from_static("close"));
    let path = model_path("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc", "converse");
    let request = RawRequest {
        region: "eu-west-1",
        method: Method::POST,
        path_and_query: &path,
        headers,
        body: Bytes::from_static(br#"{"messages":[]}"#),
    };
    let response = client.send(request, &credentials()).await.unwrap();
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers["retry-after"], "3");
    assert_eq!(response.headers["x-amzn-requestid"], "11111111-2222-3333-4444-555555555555");
    let answer = response.body.collect().await.unwrap().to_bytes();
    assert_eq!(&answer[..], br#"{"message":"Too many requests, please wait before trying again."}"#);

    let seen = seen.0.lock().unwrap();
    let (method, uri, headers, body) = &seen[0];
    assert_eq!(method, Method::POST);
    assert_eq!(
        uri.path(),
        "/prefix/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc/converse"
    );
    assert_eq!(&body[..], br#"{"messages":[]}"#);
    let authorization = headers["authorization"].to_str().unwrap();
    assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDUPSTREAMTEST01/"), "{authorization}");
    assert!(authorization.contains("/eu-west-1/bedrock/aws4_request"), "{authorization}");
    assert!(
        authorization.contains("SignedHeaders=content-length;content-type;host;x-amz-date;x-amzn-bedrock-trace,"),
        "{authorization}"
    );
    assert_ne!(headers["x-amz-date"], "19990101T000000Z", "the signer's own date");
    assert_eq!(headers["x-amzn-bedrock-trace"], "ENABLED");
    assert_ne!(headers.get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]), "hop-by-hop headers dropped");
}

#[tokio::test]
async fn invoke_answers_are_charged_to_the_answer_budget() {
    let bedrock = fake().await;
    let answers = AnswerBudget::new(1 << 20);
    let client = BedrockClient::new(Some(bedrock.url())).with_answer_budget(answers.clone());
    bedrock.set_script(vec![Reply::text(&["Hello"]), Reply::text(&["again"])]);
    let answer = client.invoke(REGION, MODEL_ID, body(), &credentials()).await.unwrap();
    assert_eq!(answers.available_bytes(), (1 << 20) - answer.len().div_ceil(1024) * 1024);
    drop(answer);
    assert_eq!(answers.available_bytes(), 1 << 20);

    // No room: the call is not made, and the failure is a 503 the client may retry.
    let mut elsewhere = answers.start(1 << 20).unwrap();
    elsewhere.push(&vec![0; (1 << 20) - 1]).unwrap();
    let failure = client.invoke(REGION, MODEL_ID, body(), &credentials()).await.unwrap_err();
    assert_eq!(failure, BedrockFailure::server_busy());
    let error = failure.to_api_error("bedrock:InvokeModel", MODEL_ID);
    assert_eq!((error.status.as_u16(), error.code, error.retry_after), (503, "server_busy", Some(1)));
    assert_eq!(bedrock.requests().len(), 1, "no call without room for its answer");
    drop(elsewhere);
    let answer = client.invoke(REGION, MODEL_ID, body(), &credentials()).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("again"));
}
