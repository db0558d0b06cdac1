//! Tests of the fakes themselves, driven by the real AWS SDK clients.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::ResponseStream;
use aws_sdk_bedrockruntime::types::error::ResponseStreamError;
use aws_sdk_sts::operation::assume_role_with_web_identity::{
    AssumeRoleWithWebIdentityError, AssumeRoleWithWebIdentityOutput,
};
use axum::Json;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use byollm_testkit::support;
use byollm_testkit::support::*;
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::123456789012:role/byollm-users";
const MODEL: &str = "global.anthropic.claude-sonnet-4-5-20250929-v1:0";

/// A tiny OIDC issuer: discovery + JWKS for one freshly generated RSA key.
struct TestIssuer {
    url: String,
    key: RsaKeyPair,
    kid: String,
    _task: ServerTask,
}

impl TestIssuer {
    async fn start() -> TestIssuer {
        let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let kid = "key-1".to_string();
        let n = URL_SAFE_NO_PAD.encode(key.public_key().modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(key.public_key().exponent().big_endian_without_leading_zero());
        let (listener, url) = support::bind().await;
        let discovery = json!({
            "issuer": url, "jwks_uri": format!("{url}/jwks"),
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let jwks = json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}]});
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(move || async move { Json(discovery) }))
            .route("/jwks", get(move || async move { Json(jwks) }));
        TestIssuer { url, key, kid, _task: support::serve_on(listener, router) }
    }

    fn provider(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    fn claims(&self, sub: &str) -> Value {
        let now = now();
        json!({"iss": self.url, "sub": sub, "aud": "sts.amazonaws.com", "iat": now, "exp": now + 300})
    }

    fn sign_with(&self, key: &RsaKeyPair, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut sig).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.key, &self.kid, claims)
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn sts_fixture(tweak: impl FnOnce(&mut FakeStsOptions)) -> (TestIssuer, FakeSts) {
    let issuer = TestIssuer::start().await;
    let mut options = FakeStsOptions {
        providers: vec![issuer.provider()],
        roles: vec![TrustedRole::new(ROLE).sub_like(&["scoped_principal:abc/*"]).aud_equals(&["sts.amazonaws.com"])],
        ..Default::default()
    };
    tweak(&mut options);
    let sts = FakeSts::start(options).await;
    (issuer, sts)
}

fn sts_client(url: &str) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

async fn assume(
    sts: &FakeSts,
    token: &str,
    duration: Option<i32>,
) -> Result<AssumeRoleWithWebIdentityOutput, AssumeRoleWithWebIdentityError> {
    let result = sts_client(&sts.url())
        .assume_role_with_web_identity()
        .role_arn(ROLE)
        .role_session_name("byollm-session")
        .web_identity_token(token)
        .set_duration_seconds(duration)
        .send()
        .await;
    result.map_err(|e| e.into_service_error())
}

#[tokio::test]
async fn sts_accepts_a_valid_token_and_the_sdk_parses_the_xml() {
    let (issuer, sts) = sts_fixture(|_| {}).await;
    let token = issuer.sign(&issuer.claims("scoped_principal:abc/user:alice"));
    let out = assume(&sts, &token, Some(900)).await.expect("assume role");

    let creds = out.credentials().unwrap();
    assert!(creds.access_key_id().starts_with("ASIA") && creds.access_key_id().len() == 20);
    assert_eq!(creds.secret_access_key().len(), 40);
    let expires = creds.expiration().secs();
    assert!((expires - (now() + 900)).abs() <= 5, "expiration {expires}");
    assert_eq!(out.subject_from_web_identity_token(), Some("scoped_principal:abc/user:alice"));
    assert_eq!(out.audience(), Some("sts.amazonaws.com"));
    let user = out.assumed_role_user().unwrap();
    assert_eq!(user.arn(), "arn:aws:sts::123456789012:assumed-role/byollm-users/byollm-session");
    assert!(user.assumed_role_id().starts_with("AROA") && user.assumed_role_id().ends_with(":byollm-session"));
    assert_eq!(out.provider(), Some(format!("arn:aws:iam::123456789012:oidc-provider/{}", issuer.provider()).as_str()));

    let requests = sts.requests();
    assert_eq!(sts.calls(), 1);
    assert_eq!(requests[0].action.as_deref(), Some("AssumeRoleWithWebIdentity"));
    assert_eq!(requests[0].version.as_deref(), Some("2011-06-15"));
    assert_eq!(requests[0].role_arn.as_deref(), Some(ROLE));
    assert_eq!(requests[0].duration_seconds.as_deref(), Some("900"));
    assert_eq!(requests[0].web_identity_token.as_deref(), Some(token.as_str()));
    let stored = sts.credentials().get(creds.access_key_id()).expect("issued credentials are stored");
    assert_eq!(stored.session_token.as_deref(), Some(creds.session_token()));

    // JWKS is cached: a second call does not refetch discovery + JWKS.
    assume(&sts, &token, None).await.expect("second assume");
    assert_eq!(sts.idp_fetches(), 2);
}

#[tokio::test]
async fn sts_rejects_bad_tokens_like_aws() {
    let (issuer, sts) = sts_fixture(|_| {}).await;
    let sub = "scoped_principal:abc/user:alice";

    let mut claims = issuer.claims(sub);
    claims["aud"] = json!("someone-else");
    match assume(&sts, &issuer.sign(&claims), None).await {
        Err(AssumeRoleWithWebIdentityError::InvalidIdentityTokenException(e)) => {
            assert_eq!(e.message(), Some("Incorrect token audience"))
        }
        other => panic!("wrong aud: {other:?}"),
    }

    let mut claims = issuer.claims(sub);
    claims["exp"] = json!(now() - 10);
    match assume(&sts, &issuer.sign(&claims), None).await {
        Err(AssumeRoleWithWebIdentityError::ExpiredTokenException(e)) => assert_eq!(e.message(), Some("Token expired")),
        other => panic!("expired: {other:?}"),
    }

    let token = issuer.sign_with(&issuer.key, "unknown-kid", &issuer.claims(sub));
    match assume(&sts, &token, None).await {
        Err(AssumeRoleWithWebIdentityError::InvalidIdentityTokenException(e)) => {
            assert!(e.message().unwrap().starts_with("Couldn't retrieve verification key from your identity provider"))
        }
        other => panic!("unknown kid: {other:?}"),
    }

    let other_key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let token = issuer.sign_with(&other_key, &issuer.kid, &issuer.claims(sub));
    assert!(matches!(
        assume(&sts, &token, None).await,
        Err(AssumeRoleWithWebIdentityError::InvalidIdentityTokenException(_))
    ));

    // IAM `*` matches `/` as well: this is why our uids forbid `/`.
    assume(&sts, &issuer.sign(&issuer.claims("scoped_principal:abc/evil/user:x")), None).await.expect("IAM * spans /");
    let err = assume(&sts, &issuer.sign(&issuer.claims("scoped_principal:xyz/user:x")), None).await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    assert_eq!(err.message(), Some("Not authorized to perform sts:AssumeRoleWithWebIdentity"));

    let token = issuer.sign(&issuer.claims(sub));
    let err = assume(&sts, &token, Some(100)).await.unwrap_err();
    assert_eq!(err.code(), Some("ValidationError"));
    assert!(err.message().unwrap().contains("'durationSeconds' failed to satisfy constraint"), "{err:?}");
    let err = assume(&sts, &token, Some(7200)).await.unwrap_err();
    assert_eq!(err.code(), Some("ValidationError"));
    assert_eq!(err.message(), Some("The requested DurationSeconds exceeds the MaxSessionDuration set for this role."));
    assert_eq!(sts.issued().len(), 1);
}

#[tokio::test]
async fn sts_requires_a_registered_provider_and_https_outside_dev_mode() {
    let (issuer, sts) = sts_fixture(|o| o.providers = vec!["issuer.example.com".into()]).await;
    let token = issuer.sign(&issuer.claims("scoped_principal:abc/user:alice"));
    match assume(&sts, &token, None).await {
        Err(AssumeRoleWithWebIdentityError::InvalidIdentityTokenException(e)) => assert_eq!(
            e.message().unwrap(),
            format!("No OpenIDConnect provider found in your account for {}", issuer.url)
        ),
        other => panic!("unregistered provider: {other:?}"),
    }

    // A registered provider that cannot be reached: AWS says it could not retrieve the key.
    let (issuer, sts) = sts_fixture(|_| {}).await;
    let token = issuer.sign(&issuer.claims("scoped_principal:abc/user:alice"));
    drop(issuer._task);
    match assume(&sts, &token, None).await {
        Err(AssumeRoleWithWebIdentityError::InvalidIdentityTokenException(e)) => {
            assert!(e.message().unwrap().starts_with("Couldn't retrieve verification key"))
        }
        other => panic!("unreachable provider: {other:?}"),
    }

    let (issuer, sts) = sts_fixture(|o| o.allow_http_loopback = false).await;
    let token = issuer.sign(&issuer.claims("scoped_principal:abc/user:alice"));
    assert!(matches!(
        assume(&sts, &token, None).await,
        Err(AssumeRoleWithWebIdentityError::InvalidIdentityTokenException(_))
    ));
}

#[tokio::test]
async fn sts_script_injects_typed_failures() {
    let (issuer, sts) = sts_fixture(|_| {}).await;
    let token = issuer.sign(&issuer.claims("scoped_principal:abc/user:alice"));
    sts.set_script(vec![
        StsStep::Fail(StsErrorCode::IdpCommunicationError),
        StsStep::Fail(StsErrorCode::IdpRejectedClaim),
        StsStep::Fail(StsErrorCode::RegionDisabled),
        StsStep::Fail(StsErrorCode::Throttling),
        StsStep::FailWith(StsErrorCode::MalformedPolicyDocument, "bad policy".into()),
        StsStep::Fail(StsErrorCode::PackedPolicyTooLarge),
        StsStep::Normal,
    ]);
    let e = assume(&sts, &token, None).await.unwrap_err();
    assert!(matches!(e, AssumeRoleWithWebIdentityError::IdpCommunicationErrorException(_)), "{e:?}");
    let e = assume(&sts, &token, None).await.unwrap_err();
    assert!(matches!(e, AssumeRoleWithWebIdentityError::IdpRejectedClaimException(_)), "{e:?}");
    let e = assume(&sts, &token, None).await.unwrap_err();
    assert!(matches!(e, AssumeRoleWithWebIdentityError::RegionDisabledException(_)), "{e:?}");
    let e = assume(&sts, &token, None).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Some("Throttling"), Some("Rate exceeded")));
    let e = assume(&sts, &token, None).await.unwrap_err();
    assert!(matches!(e, AssumeRoleWithWebIdentityError::MalformedPolicyDocumentException(_)), "{e:?}");
    assert_eq!(e.message(), Some("bad policy"));
    let e = assume(&sts, &token, None).await.unwrap_err();
    assert!(matches!(e, AssumeRoleWithWebIdentityError::PackedPolicyTooLargeException(_)), "{e:?}");
    assume(&sts, &token, None).await.expect("normal after the script");
    assume(&sts, &token, None).await.expect("normal once the script is empty");
    let codes: Vec<_> = sts.requests().iter().map(|r| r.error_code.clone()).collect();
    assert_eq!(codes[3].as_deref(), Some("Throttling"));
    assert_eq!(codes[7], None);
}

#[test]
fn iam_wildcards() {
    assert!(iam_string_like("scoped_principal:abc/*", "scoped_principal:abc/evil/user:x"));
    assert!(iam_string_like("a?c", "abc"));
    assert!(!iam_string_like("a?c", "ac"));
    assert!(iam_string_like("*", ""));
    assert!(!iam_string_like("scoped_principal:abc/*", "scoped_principal:abd/x"));
    assert!(!iam_string_like("ABC", "abc"));
}

// ---------------------------------------------------------------------------------------------
// Bedrock

fn bedrock_client(url: &str, akid: &str, secret: &str, token: Option<&str>) -> aws_sdk_bedrockruntime::Client {
    use aws_sdk_bedrockruntime::config;
    let config = config::Config::builder()
        .behavior_version(config::BehaviorVersion::latest())
        .region(config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(config::Credentials::new(akid, secret, token.map(String::from), None, "test"))
        .retry_config(config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

fn request_body() -> Value {
    json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    })
}

async fn bedrock() -> (FakeBedrock, aws_sdk_bedrockruntime::Client) {
    let fake = FakeBedrock::start(FakeBedrockOptions::default()).await;
    fake.add_static_key("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    let client = bedrock_client(&fake.url(), "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None);
    (fake, client)
}

async fn invoke(client: &aws_sdk_bedrockruntime::Client, body: &Value) -> Result<Value, SdkError<InvokeModelError>> {
    let out = client
        .invoke_model()
        .model_id(MODEL)
        .content_type("application/json")
        .body(Blob::new(body.to_string()))
        .send()
        .await?;
    Ok(serde_json::from_slice(out.body().as_ref()).unwrap())
}

/// Stream and collect the Anthropic events; `Err` carries the stream error.
async fn stream(
    client: &aws_sdk_bedrockruntime::Client,
) -> (Vec<Value>, Option<SdkError<ResponseStreamError, aws_smithy_types::event_stream::RawMessage>>) {
    let mut out = client
        .invoke_model_with_response_stream()
        .model_id(MODEL)
        .content_type("application/json")
        .body(Blob::new(request_body().to_string()))
        .send()
        .await
        .expect("stream starts");
    let mut events = vec![];
    loop {
        match out.body.recv().await {
            Ok(Some(ResponseStream::Chunk(part))) => {
                events.push(serde_json::from_slice(part.bytes().unwrap().as_ref()).unwrap())
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

#[tokio::test]
async fn bedrock_invoke_model_round_trip() {
    let (fake, client) = bedrock().await;
    fake.set_script(vec![Reply::text(&["Hel", "lo"]).with_tool_call(
        "toolu_1",
        "get_weather",
        &["{\"city\":", "\"Paris\"}"],
    )]);
    let message = invoke(&client, &request_body()).await.expect("invoke");
    assert_eq!(message["content"][0], json!({"type": "text", "text": "Hello"}));
    assert_eq!(message["content"][1]["input"], json!({"city": "Paris"}));
    assert_eq!(message["stop_reason"], "tool_use");
    let requests = fake.requests();
    assert_eq!(requests[0].model_id, MODEL);
    assert!(!requests[0].streaming);
    assert_eq!(requests[0].access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(requests[0].body, request_body());

    // Bedrock's validation of Anthropic bodies.
    let mut body = request_body();
    body["messages"] = json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]);
    let err = invoke(&client, &body).await.unwrap_err().into_service_error();
    let InvokeModelError::ValidationException(v) = &err else { panic!("{err:?}") };
    assert!(v.message().unwrap().starts_with("messages: roles must alternate between \"user\" and \"assistant\""));
    let mut body = request_body();
    body["stream"] = json!(true);
    assert!(invoke(&client, &body).await.unwrap_err().into_service_error().is_validation_exception());
    let mut body = request_body();
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 512});
    assert!(invoke(&client, &body).await.unwrap_err().into_service_error().is_validation_exception());
    // Whitespace-only text is refused like empty text, inside a tool_result too.
    let mut body = request_body();
    body["messages"] = json!([
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "\n"}]}]},
    ]);
    let err = invoke(&client, &body).await.unwrap_err().into_service_error();
    let InvokeModelError::ValidationException(v) = &err else { panic!("{err:?}") };
    assert_eq!(v.message(), Some("messages: text content blocks must contain non-whitespace text"));
    body["messages"][2]["content"][0]["content"][0]["text"] = json!("ok");
    invoke(&client, &body).await.expect("a tool_result with text");
}

#[tokio::test]
async fn bedrock_checks_sigv4() {
    let (fake, _) = bedrock().await;
    let wrong = bedrock_client(&fake.url(), "AKIAIOSFODNN7EXAMPLE", "not-the-secret", None);
    let err = invoke(&wrong, &request_body()).await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    let unknown = bedrock_client(&fake.url(), "AKIAUNKNOWN000000000", "x", None);
    let err = invoke(&unknown, &request_body()).await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    assert_eq!(err.message(), Some("The security token included in the request is invalid."));
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn sts_issued_credentials_work_at_bedrock_until_expired() {
    let (issuer, sts) = sts_fixture(|_| {}).await;
    let fake = FakeBedrock::start(FakeBedrockOptions { credentials: sts.credentials(), ..Default::default() }).await;
    let out = assume(&sts, &issuer.sign(&issuer.claims("scoped_principal:abc/user:alice")), None).await.unwrap();
    let c = out.credentials().unwrap();
    let client = bedrock_client(&fake.url(), c.access_key_id(), c.secret_access_key(), Some(c.session_token()));
    invoke(&client, &request_body()).await.expect("session credentials accepted");
    let no_token = bedrock_client(&fake.url(), c.access_key_id(), c.secret_access_key(), None);
    let err = invoke(&no_token, &request_body()).await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    fake.credentials().expire(c.access_key_id());
    let err = invoke(&client, &request_body()).await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("ExpiredTokenException"));
    assert_eq!(err.message(), Some("The security token included in the request is expired"));

    // `credential_lifetime` makes issued credentials expire quickly, in the XML and at Bedrock.
    let (issuer, sts) = sts_fixture(|o| o.credential_lifetime = Some(Duration::from_secs(1))).await;
    let fake = FakeBedrock::start(FakeBedrockOptions { credentials: sts.credentials(), ..Default::default() }).await;
    let out = assume(&sts, &issuer.sign(&issuer.claims("scoped_principal:abc/user:bob")), None).await.unwrap();
    let c = out.credentials().unwrap();
    assert!(c.expiration().secs() <= now() + 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let client = bedrock_client(&fake.url(), c.access_key_id(), c.secret_access_key(), Some(c.session_token()));
    let err = invoke(&client, &request_body()).await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("ExpiredTokenException"));
}

fn invoke_variant(e: &InvokeModelError) -> &'static str {
    match e {
        InvokeModelError::AccessDeniedException(_) => "AccessDeniedException",
        InvokeModelError::InternalServerException(_) => "InternalServerException",
        InvokeModelError::ModelErrorException(_) => "ModelErrorException",
        InvokeModelError::ModelNotReadyException(_) => "ModelNotReadyException",
        InvokeModelError::ModelTimeoutException(_) => "ModelTimeoutException",
        InvokeModelError::ResourceNotFoundException(_) => "ResourceNotFoundException",
        InvokeModelError::ServiceQuotaExceededException(_) => "ServiceQuotaExceededException",
        InvokeModelError::ServiceUnavailableException(_) => "ServiceUnavailableException",
        InvokeModelError::ThrottlingException(_) => "ThrottlingException",
        InvokeModelError::ValidationException(_) => "ValidationException",
        _ => "unhandled",
    }
}

#[tokio::test]
async fn bedrock_scripted_errors_arrive_typed() {
    let (fake, client) = bedrock().await;
    fake.set_script(BedrockErrorKind::ALL_INVOKE.iter().map(|k| Reply::error(*k)).collect());
    for kind in BedrockErrorKind::ALL_INVOKE {
        let SdkError::ServiceError(e) = invoke(&client, &request_body()).await.unwrap_err() else { panic!() };
        assert_eq!(e.raw().status().as_u16(), kind.status(), "{kind:?}");
        assert_eq!(invoke_variant(e.err()), kind.code());
        assert_eq!(e.err().message(), Some(kind.default_message()));
    }
}

#[tokio::test]
async fn bedrock_streams_real_event_stream_frames() {
    let (fake, client) = bedrock().await;
    fake.set_script(vec![
        Reply::default()
            .with_thinking(&["Let me ", "think."], "sig-abc")
            .with_text(&["The ", "weather"])
            .with_tool_call("toolu_1", "get_weather", &["{\"ci", "ty\": \"Pa", "ris\"}"])
            .with_tool_call("toolu_2", "get_time", &["{}"])
            .usage(30, 17)
            .cache(100, 5),
    ]);
    let (events, err) = stream(&client).await;
    assert!(err.is_none(), "{err:?}");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(types.last(), Some(&"message_stop"));
    assert_eq!(events[0]["message"]["usage"]["cache_read_input_tokens"], 100);
    let deltas = |index: u64, field: &str| -> String {
        events
            .iter()
            .filter(|e| e["type"] == "content_block_delta" && e["index"] == index)
            .filter_map(|e| e["delta"][field].as_str())
            .collect()
    };
    assert_eq!(deltas(0, "thinking"), "Let me think.");
    assert_eq!(deltas(0, "signature"), "sig-abc");
    assert_eq!(deltas(1, "text"), "The weather");
    assert_eq!(serde_json::from_str::<Value>(&deltas(2, "partial_json")).unwrap(), json!({"city": "Paris"}));
    let delta = events.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert_eq!(
        (delta["delta"]["stop_reason"].as_str(), delta["usage"]["output_tokens"].as_u64()),
        (Some("tool_use"), Some(17))
    );
    let metrics = &events.last().unwrap()["amazon-bedrock-invocationMetrics"];
    assert_eq!((metrics["inputTokenCount"].as_u64(), metrics["outputTokenCount"].as_u64()), (Some(30), Some(17)));
    assert!(fake.requests()[0].streaming);
    assert_eq!(fake.streams_completed(), 1);
}

#[tokio::test]
async fn bedrock_stream_exceptions_arrive_typed() {
    let (fake, client) = bedrock().await;
    fake.set_script(
        StreamExceptionKind::ALL.iter().map(|k| Reply::text(&["a", "b"]).exception_after(3, *k, "boom")).collect(),
    );
    for kind in StreamExceptionKind::ALL {
        let (events, err) = stream(&client).await;
        assert_eq!(events.len(), 3);
        let Some(SdkError::ServiceError(e)) = err else { panic!("{kind:?}: {err:?}") };
        let variant = match e.err() {
            ResponseStreamError::ThrottlingException(_) => "throttlingException",
            ResponseStreamError::ModelStreamErrorException(_) => "modelStreamErrorException",
            ResponseStreamError::InternalServerException(_) => "internalServerException",
            ResponseStreamError::ValidationException(_) => "validationException",
            ResponseStreamError::ServiceUnavailableException(_) => "serviceUnavailableException",
            ResponseStreamError::ModelTimeoutException(_) => "modelTimeoutException",
            _ => "unhandled",
        };
        assert_eq!(variant, kind.exception_type());
        assert_eq!(e.err().message(), Some("boom"));
    }
}

#[tokio::test]
async fn bedrock_stream_cut_and_client_disconnect() {
    let (fake, client) = bedrock().await;
    fake.set_script(vec![Reply::text(&["a", "b", "c"]).cut_after(4)]);
    let (events, err) = stream(&client).await;
    assert_eq!(events.len(), 4);
    assert!(err.is_some(), "a cut stream must surface an error");

    let pieces: Vec<String> = (0..50).map(|i| format!("p{i} ")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    fake.set_script(vec![Reply::text(&pieces).delay(Duration::from_millis(50))]);
    let mut out = client
        .invoke_model_with_response_stream()
        .model_id(MODEL)
        .body(Blob::new(request_body().to_string()))
        .send()
        .await
        .unwrap();
    let first = out.body.recv().await.unwrap().unwrap();
    let ResponseStream::Chunk(part) = first else { panic!() };
    let event: Value = serde_json::from_slice(part.bytes().unwrap().as_ref()).unwrap();
    assert_eq!(event["type"], "message_start");
    drop(out);
    drop(client);
    assert!(fake.wait_for_disconnects(1, Duration::from_secs(10)).await, "disconnect not seen");
    assert_eq!(fake.streams_completed(), 1, "only the cut stream ran to its scripted end");
}

#[tokio::test]
async fn bedrock_prompt_cache_accounts_reads_and_writes_and_refuses_a_fifth_breakpoint() {
    let fake = FakeBedrock::start(FakeBedrockOptions { cache_usage: true, ..Default::default() }).await;
    fake.add_static_key("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    let client = bedrock_client(&fake.url(), "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None);
    let system: String = (0..1500).map(|i| format!("word{i} ")).collect();
    let mut body = request_body();
    body["system"] = json!([{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]);
    let first = invoke(&client, &body).await.expect("first");
    let second = invoke(&client, &body).await.expect("second");
    let accounts: Vec<CacheAccount> = fake.requests().into_iter().map(|r| r.cache.unwrap()).collect();
    assert!(accounts[0].write >= 1500 && accounts[0].read == 0, "{:?}", accounts[0]);
    assert_eq!(first["usage"]["cache_creation_input_tokens"], accounts[0].write);
    assert_eq!(first["usage"]["input_tokens"], accounts[0].input);
    assert_eq!(second["usage"]["cache_read_input_tokens"], accounts[0].write, "the second reads what the first wrote");
    assert_eq!(second["usage"]["cache_creation_input_tokens"], 0);
    // Five minutes later without a use, the entry is gone.
    fake.prompt_cache().advance(Duration::from_secs(301));
    let third = invoke(&client, &body).await.expect("third");
    assert_eq!(third["usage"]["cache_read_input_tokens"], 0);

    body["messages"] = json!([
        {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "text", "text": "c", "cache_control": {"type": "ephemeral"}},
                                     {"type": "text", "text": "d", "cache_control": {"type": "ephemeral"}}]},
    ]);
    let err = invoke(&client, &body).await.unwrap_err().into_service_error();
    let InvokeModelError::ValidationException(v) = &err else { panic!("{err:?}") };
    assert_eq!(v.message(), Some("A maximum of 4 blocks with cache_control may be provided. Found 5."));
}
