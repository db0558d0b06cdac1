//! SigV4 for Bedrock Runtime requests, with `aws-sigv4` (the AWS SDK's own signer) and the settings
//! the SDK uses for `bedrock-runtime`: service name `bedrock`, header signature, double-encoded
//! canonical path, no `x-amz-content-sha256` header, the session token signed.
//!
//! `tests/upstream_signing.rs` proves that, for the same request, this produces the same
//! Authorization header as `aws-sdk-bedrockruntime`.
//!
//! The signing key is derived per call: `aws-sigv4`'s request signer takes credentials, not a
//! derived key, so it cannot be cached across calls (four HMACs, about a microsecond).

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http::Request;

use crate::broker::sts::AwsCredentials;

/// The SigV4 service name of Bedrock Runtime.
pub const SIGNING_NAME: &str = "bedrock";

/// Why a request could not be signed. Carries no request data: a header could hold a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignError;

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request could not be signed (a header or credential is not valid ASCII)")
    }
}

impl std::error::Error for SignError {}

/// Signs `request` in place: adds `x-amz-date`, `x-amz-security-token` (temporary credentials) and
/// `authorization`. Every header already on the request is signed (except `user-agent`,
/// `authorization`, `x-amzn-trace-id` and `transfer-encoding`, as in the SDK); `host` is taken
/// from the URI when absent. `body` must be exactly the bytes that will be sent.
pub fn sign_request<B>(
    request: &mut Request<B>,
    body: &[u8],
    credentials: &AwsCredentials,
    region: &str,
    time: SystemTime,
) -> Result<(), SignError> {
    let identity = credentials.to_sdk("byollm").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| SignError)?
        .into();
    let uri = request.uri().to_string();
    let mut headers = Vec::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        headers.push((name.as_str(), value.to_str().map_err(|_| SignError)?));
    }
    let signable = SignableRequest::new(request.method().as_str(), uri, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|_| SignError)?;
    let (instructions, _signature) = sign(signable, &params).map_err(|_| SignError)?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::secret::Secret;

    fn credentials(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
            session_token: token.map(|t| Secret::new(t.to_owned())),
            expiration: None,
        }
    }

    /// The signature checked independently: the canonical request and string to sign written out
    /// by hand for this input, signed with aws-lc-rs HMACs.
    #[test]
    fn signature_matches_a_hand_computed_sigv4() {
        use aws_lc_rs::{digest, hmac};
        let time = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
        let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":1,"messages":[]}"#;
        let mut request = Request::builder()
            .method("POST")
            .uri("https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-x-v1%3A0/invoke")
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(())
            .unwrap();
        sign_request(&mut request, body, &credentials(Some("token/with+chars=")), "us-east-1", time).unwrap();

        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let body_hash = hex(digest::digest(&digest::SHA256, body).as_ref());
        let canonical = format!(
            "POST\n/model/anthropic.claude-x-v1%253A0/invoke\n\naccept:application/json\ncontent-type:application/json\n\
             host:bedrock-runtime.us-east-1.amazonaws.com\nx-amz-date:20260101T000000Z\n\
             x-amz-security-token:token/with+chars=\n\naccept;content-type;host;x-amz-date;x-amz-security-token\n{body_hash}"
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n20260101T000000Z\n20260101/us-east-1/bedrock/aws4_request\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let mac = |key: &[u8], data: &[u8]| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec();
        let mut key = mac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20260101");
        for part in [&b"us-east-1"[..], b"bedrock", b"aws4_request"] {
            key = mac(&key, part);
        }
        let signature = hex(&mac(&key, string_to_sign.as_bytes()));
        let expected = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, \
             SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token, Signature={signature}"
        );
        assert_eq!(request.headers()["authorization"], expected.as_str());
        assert_eq!(request.headers()["x-amz-date"], "20260101T000000Z");
        assert_eq!(request.headers()["x-amz-security-token"], "token/with+chars=");
        assert!(request.headers().get("x-amz-content-sha256").is_none());
    }

    #[test]
    fn long_term_keys_send_no_session_token() {
        let mut request = Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:9/model/m/invoke")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        sign_request(&mut request, b"{}", &credentials(None), "eu-west-1", SystemTime::now()).unwrap();
        assert!(request.headers().get("x-amz-security-token").is_none());
        let authorization = request.headers()["authorization"].to_str().unwrap();
        assert!(authorization.contains("/eu-west-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date,"));
    }
}
