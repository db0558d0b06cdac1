//! byollm's Bedrock signer signs exactly as the AWS SDK does.
//!
//! `aws-sdk-bedrockruntime`, with a fixed clock and temporary credentials (session token), sends
//! `InvokeModel` and `InvokeModelWithResponseStream` for a model id with `:` to a capture server
//! on 127.0.0.1. Then:
//! 1. byollm's signer, given the SDK's own request (method, path, the headers the SDK signed,
//!    body) and the same time, credentials and region, must produce the same `Authorization`
//!    (hence the same canonical request and string to sign), `x-amz-date` and
//!    `x-amz-security-token`;
//! 2. byollm's client, with the same fixed clock, must send the same request as the SDK (method,
//!    encoded path, body, content headers, date, token, and the same signed headers minus the
//!    SDK's own telemetry headers).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use byollm::aws::AwsCredentials;
use byollm::secret::Secret;
use byollm::upstream::BedrockClient;
use byollm::upstream::signer::Signer;
use byollm_testkit::support;

const REGION: &str = "us-west-2";
const MODEL_ID: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
const KEY_ID: &str = "ASIAEXAMPLESIGNING01";
const SECRET: &str = "signing-equality-secret-key/with+chars0";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE//session+token/with=padding==";
/// 2026-11-30T12:34:56Z.
const SIGNED_AT: u64 = 1_796_042_096;

fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SIGNED_AT)
}

/// Headers the SDK adds for its own telemetry and retry bookkeeping (it signs `x-amz-user-agent`;
/// the others are added after signing); byollm sends none of them.
const SDK_ONLY_HEADERS: [&str; 4] = ["amz-sdk-invocation-id", "amz-sdk-request", "x-amz-user-agent", "user-agent"];

#[derive(Debug, Clone)]
struct Captured {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `SignedHeaders=` of the Authorization header.
    fn signed_headers(&self) -> Vec<String> {
        let authorization = self.header("authorization").expect("signed");
        let list = authorization.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap();
        list.split(';').map(str::to_owned).collect()
    }
}

type Log = Arc<Mutex<Vec<Captured>>>;

async fn capture_server() -> (String, Log, support::ServerTask) {
    let log: Log = Arc::default();
    let handler_log = log.clone();
    let router = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let log = handler_log.clone();
        async move {
            let streaming = uri.path().ends_with("/invoke-with-response-stream");
            log.lock().unwrap().push(Captured { method, uri, headers, body });
            let response: Response = if streaming {
                ([("content-type", "application/vnd.amazon.eventstream")], Bytes::new()).into_response()
            } else {
                ([("content-type", "application/json")], "{}").into_response()
            };
            response
        }
    });
    let (url, task) = support::serve(router).await;
    (url, log, task)
}

fn credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: KEY_ID.into(),
        secret_access_key: Secret::new(SECRET),
        session_token: Some(Secret::new(TOKEN)),
        expiration: Some(fixed_time() + Duration::from_secs(3600)),
    }
}

fn body() -> Vec<u8> {
    br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":[{"type":"text","text":"hi \u00e9 / + = :"}]}]}"#.to_vec()
}

/// What the AWS SDK sends for both operations.
async fn sdk_requests(url: &str, log: &Log, model_id: &str) -> Vec<Captured> {
    use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new(KEY_ID, SECRET, Some(TOKEN.into()), None, "test"))
        .time_source(aws_smithy_async::time::StaticTimeSource::new(fixed_time()))
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .build();
    let client = aws_sdk_bedrockruntime::Client::from_conf(config);
    client
        .invoke_model()
        .model_id(model_id)
        .content_type("application/json")
        .accept("application/json")
        .body(body().into())
        .send()
        .await
        .expect("SDK invoke_model against the capture server");
    client
        .invoke_model_with_response_stream()
        .model_id(model_id)
        .content_type("application/json")
        .accept("application/json")
        .body(body().into())
        .send()
        .await
        .expect("SDK invoke_model_with_response_stream against the capture server");
    std::mem::take(&mut *log.lock().unwrap())
}

#[tokio::test]
async fn byollm_signs_the_sdks_requests_exactly_as_the_sdk_did() {
    let (url, log, _server) = capture_server().await;
    let sdk = sdk_requests(&url, &log, MODEL_ID).await;
    assert_eq!(sdk.len(), 2);
    for captured in &sdk {
        assert!(captured.uri.path().contains("v1%3A0"), "the SDK encodes ':' in the path: {}", captured.uri);
        let mut request = axum::http::Request::new(());
        *request.method_mut() = captured.method.clone();
        *request.uri_mut() = format!("{url}{}", captured.uri).parse().unwrap();
        // The SDK's signed headers, minus what signing itself adds.
        for name in captured.signed_headers() {
            if !["x-amz-date", "x-amz-security-token"].contains(&name.as_str()) {
                let value = captured.headers[name.as_str()].clone();
                request.headers_mut().insert(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
            }
        }
        assert!(request.headers().contains_key("x-amz-user-agent") && request.headers().contains_key("content-length"));
        Signer::new().sign(&mut request, &captured.body, &credentials(), REGION, fixed_time()).unwrap();
        for name in ["authorization", "x-amz-date", "x-amz-security-token"] {
            assert_eq!(
                request.headers().get(name).and_then(|v| v.to_str().ok()),
                captured.header(name),
                "{name} of {}",
                captured.uri
            );
        }
        assert!(captured.header("authorization").unwrap().contains("/20261130/us-west-2/bedrock/aws4_request"));
        assert!(captured.signed_headers().contains(&"x-amz-security-token".to_owned()));
    }
}

#[tokio::test]
async fn byollm_sends_what_the_sdk_sends_minus_its_telemetry_headers() {
    let (url, log, _server) = capture_server().await;
    let sdk = sdk_requests(&url, &log, MODEL_ID).await;
    let client = BedrockClient::with_clock(Some(url.clone()), fixed_time);
    let answer = client.invoke(REGION, MODEL_ID, body().into(), &credentials()).await.unwrap();
    assert_eq!(&answer[..], b"{}");
    let mut stream = client.invoke_stream(REGION, MODEL_ID, body().into(), &credentials()).await.unwrap();
    assert!(stream.next_event().await.unwrap().is_none(), "an empty stream ends cleanly");
    let ours = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(ours.len(), 2);

    for (sdk, ours) in sdk.iter().zip(&ours) {
        assert_eq!(ours.method, sdk.method);
        assert_eq!(ours.uri, sdk.uri, "same path, same encoding");
        assert_eq!(ours.body, sdk.body);
        let expected_signed: Vec<String> =
            sdk.signed_headers().into_iter().filter(|name| !SDK_ONLY_HEADERS.contains(&name.as_str())).collect();
        assert_eq!(ours.signed_headers(), expected_signed, "{}", sdk.uri);
        let values = |captured: &Captured| -> BTreeMap<String, String> {
            expected_signed
                .iter()
                .map(|name| (name.clone(), captured.header(name).unwrap_or("<absent>").to_owned()))
                .collect()
        };
        assert_eq!(values(ours), values(sdk), "every signed header has the SDK's value: {}", sdk.uri);
        // Same signed input minus the SDK's extra headers: re-signing the SDK's request without
        // them gives byollm's Authorization exactly.
        let mut request = axum::http::Request::new(());
        *request.method_mut() = sdk.method.clone();
        *request.uri_mut() = format!("{url}{}", sdk.uri).parse().unwrap();
        for name in &expected_signed {
            if !["authorization", "x-amz-date", "x-amz-security-token"].contains(&name.as_str()) {
                request.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    sdk.headers[name.as_str()].clone(),
                );
            }
        }
        Signer::new().sign(&mut request, &sdk.body, &credentials(), REGION, fixed_time()).unwrap();
        assert_eq!(ours.header("authorization"), request.headers()["authorization"].to_str().ok());
    }
    let streaming = &ours[1];
    assert!(streaming.uri.path().ends_with("/invoke-with-response-stream"));
    assert_eq!(streaming.header("x-amzn-bedrock-accept"), Some("application/json"));
}

/// Model ids with `/` and `:` (inference profile ARNs): the same path, encoding and signature as
/// the SDK's, for both operations.
#[tokio::test]
async fn arns_are_encoded_and_signed_as_the_sdk_does() {
    for model_id in [
        "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/a1b2c3d4e5f6",
        "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-opus-4-6-v1",
        "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0",
    ] {
        let (url, log, _server) = capture_server().await;
        let sdk = sdk_requests(&url, &log, model_id).await;
        let client = BedrockClient::with_clock(Some(url.clone()), fixed_time);
        client.invoke(REGION, model_id, body().into(), &credentials()).await.unwrap();
        let stream = client.invoke_stream(REGION, model_id, body().into(), &credentials()).await.unwrap();
        drop(stream);
        let ours = std::mem::take(&mut *log.lock().unwrap());
        assert_eq!((sdk.len(), ours.len()), (2, 2), "{model_id}");
        for (sdk, ours) in sdk.iter().zip(&ours) {
            assert!(sdk.uri.path().contains("%2F") && sdk.uri.path().contains("%3A"), "{}", sdk.uri);
            assert_eq!(ours.uri, sdk.uri, "same path, same encoding");
            // byollm's signer on the SDK's own request gives the SDK's signature.
            let mut request = axum::http::Request::new(());
            *request.method_mut() = sdk.method.clone();
            *request.uri_mut() = format!("{url}{}", sdk.uri).parse().unwrap();
            for name in sdk.signed_headers() {
                if !["x-amz-date", "x-amz-security-token"].contains(&name.as_str()) {
                    request.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        sdk.headers[name.as_str()].clone(),
                    );
                }
            }
            Signer::new().sign(&mut request, &sdk.body, &credentials(), REGION, fixed_time()).unwrap();
            assert_eq!(request.headers()["authorization"].to_str().ok(), sdk.header("authorization"), "{}", sdk.uri);
            // Re-signing the SDK's request without its telemetry headers gives byollm's signature.
            let mut request = axum::http::Request::new(());
            *request.method_mut() = sdk.method.clone();
            *request.uri_mut() = format!("{url}{}", sdk.uri).parse().unwrap();
            for name in ours.signed_headers() {
                if !["authorization", "x-amz-date", "x-amz-security-token"].contains(&name.as_str()) {
                    request.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        sdk.headers[name.as_str()].clone(),
                    );
                }
            }
            Signer::new().sign(&mut request, &sdk.body, &credentials(), REGION, fixed_time()).unwrap();
            assert_eq!(ours.header("authorization"), request.headers()["authorization"].to_str().ok(), "{}", sdk.uri);
            assert_eq!(ours.body, sdk.body);
        }
    }
}
