//! The Bedrock Runtime client: `InvokeModel` and `InvokeModelWithResponseStream` signed with the
//! credentials of the call (a run's assumed role, or the person's own session), and the mapping of
//! Bedrock's exceptions to the one error body.
//!
//! One SDK client per region is kept; credentials are set per call. SDK retries are off so that
//! throttling reaches the client as a 429 it can act on, never as a silent delay.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use aws_sdk_bedrockruntime::config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use axum::http::StatusCode;
use bytes::Bytes;

use crate::broker::sts::AwsCredentials;
use crate::error::ApiError;

pub type EventStream = aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<
    aws_sdk_bedrockruntime::types::ResponseStream,
    aws_sdk_bedrockruntime::types::error::ResponseStreamError,
>;

/// What went wrong talking to Bedrock, already sorted by who can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockFailure {
    /// The exception name without its namespace, e.g. `ThrottlingException`.
    pub code: String,
    pub message: String,
}

impl BedrockFailure {
    fn normalized(&self) -> String {
        self.code.to_ascii_lowercase()
    }

    /// Bedrock rejected the credentials themselves (expired or unknown).
    pub fn is_credential_problem(&self) -> bool {
        matches!(
            self.normalized().as_str(),
            "expiredtokenexception"
                | "unrecognizedclientexception"
                | "invalidsignatureexception"
                | "incompletesignatureexception"
                | "missingauthenticationtokenexception"
        )
    }

    /// The error for the client. `action` is the IAM action the call needed; `model_id` what it
    /// called.
    pub fn to_api_error(&self, action: &str, model_id: &str) -> ApiError {
        let said = if self.message.is_empty() { self.code.clone() } else { self.message.clone() };
        match self.normalized().as_str() {
            "throttlingexception" => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "bedrock_throttled",
                format!("Bedrock is throttling requests to {model_id}; retry after a short wait ({said})"),
            )
            .with_retry_after(2),
            "servicequotaexceededexception" => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "bedrock_quota_exceeded",
                format!(
                    "the account's Bedrock quota for {model_id} is exhausted; retry later or raise the quota ({said})"
                ),
            )
            .with_retry_after(10),
            "validationexception" => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "bedrock_validation_error",
                format!("Bedrock rejected the request: {said}"),
            ),
            "accessdeniedexception" => ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                "bedrock_access_denied",
                format!(
                    "the AWS identity may not call {action} on {model_id}: grant {action} on the model's foundation-model and inference-profile ARNs (and enable model access in the Bedrock console) ({said})"
                ),
            ),
            "resourcenotfoundexception" => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "model_not_enabled",
                format!(
                    "model {model_id} is not available in this region or account: enable it in Bedrock or pick another inference profile ({said})"
                ),
            ),
            "modeltimeoutexception" => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                "bedrock_model_timeout",
                format!("the model took too long to answer ({said})"),
            ),
            "serviceunavailableexception" => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_error",
                "bedrock_unavailable",
                format!("Bedrock is unavailable; retry shortly ({said})"),
            )
            .with_retry_after(2),
            "modelnotreadyexception" => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_error",
                "bedrock_model_not_ready",
                format!("the model is not ready to serve yet; retry shortly ({said})"),
            )
            .with_retry_after(5),
            "timeout" => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                "bedrock_timeout",
                "timed out waiting for Bedrock",
            ),
            "streamcut" => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream_stream_cut",
                "the Bedrock stream broke before the model finished; the answer is incomplete",
            ),
            "dispatch" => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "bedrock_unreachable",
                "could not connect to Bedrock Runtime",
            ),
            _ if self.is_credential_problem() => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "bedrock_credentials_rejected",
                format!("Bedrock rejected the credentials the gateway used ({})", self.code),
            ),
            _ => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "bedrock_error",
                format!("Bedrock failed: {}: {said}", self.code),
            ),
        }
    }
}

pub fn failure_from_sdk<E: ProvideErrorMetadata + std::error::Error, R>(error: &SdkError<E, R>) -> BedrockFailure {
    match error {
        SdkError::ServiceError(context) => BedrockFailure {
            code: context.err().code().unwrap_or("UnknownError").to_owned(),
            message: context.err().message().unwrap_or_default().to_owned(),
        },
        SdkError::TimeoutError(_) => BedrockFailure { code: "Timeout".into(), message: String::new() },
        SdkError::DispatchFailure(_) => BedrockFailure { code: "Dispatch".into(), message: String::new() },
        other => BedrockFailure {
            code: other.code().unwrap_or("ResponseError").to_owned(),
            message: "unexpected response from Bedrock".into(),
        },
    }
}

/// A failure inside a stream (an `exception` frame). The SDK's stream error carries the exception
/// as its variant, not as an error code, so it is read from there.
pub fn failure_from_stream<R>(
    error: &SdkError<aws_sdk_bedrockruntime::types::error::ResponseStreamError, R>,
) -> BedrockFailure {
    use aws_sdk_bedrockruntime::types::error::ResponseStreamError as E;
    let SdkError::ServiceError(context) = error else {
        // Not an exception frame: the connection broke or the framing was bad mid-way.
        return BedrockFailure { code: "StreamCut".into(), message: String::new() };
    };
    let (code, message) = match context.err() {
        E::InternalServerException(e) => ("InternalServerException", e.message()),
        E::ModelStreamErrorException(e) => ("ModelStreamErrorException", e.message()),
        E::ValidationException(e) => ("ValidationException", e.message()),
        E::ThrottlingException(e) => ("ThrottlingException", e.message()),
        E::ModelTimeoutException(e) => ("ModelTimeoutException", e.message()),
        E::ServiceUnavailableException(e) => ("ServiceUnavailableException", e.message()),
        other => (other.code().unwrap_or("UnknownStreamError"), other.message()),
    };
    BedrockFailure { code: code.to_owned(), message: message.unwrap_or_default().to_owned() }
}

/// Bedrock Runtime clients, one per region.
pub struct BedrockClient {
    endpoint_url: Option<String>,
    clients: RwLock<HashMap<String, aws_sdk_bedrockruntime::Client>>,
}

impl BedrockClient {
    pub fn new(endpoint_url: Option<String>) -> BedrockClient {
        BedrockClient { endpoint_url, clients: RwLock::new(HashMap::new()) }
    }

    fn client(&self, region: &str) -> aws_sdk_bedrockruntime::Client {
        if let Ok(clients) = self.clients.read()
            && let Some(client) = clients.get(region)
        {
            return client.clone();
        }
        let mut builder = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .retry_config(RetryConfig::disabled())
            // Credentials change per call; the SDK's identity cache would keep a partition per
            // provider forever (and the secrets in it).
            .identity_cache(aws_sdk_bedrockruntime::config::IdentityCache::no_cache())
            .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).build());
        if let Some(url) = &self.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        let client = aws_sdk_bedrockruntime::Client::from_conf(builder.build());
        if let Ok(mut clients) = self.clients.write() {
            clients.insert(region.to_owned(), client.clone());
        }
        client
    }

    fn override_config(credentials: &AwsCredentials) -> aws_sdk_bedrockruntime::config::Builder {
        aws_sdk_bedrockruntime::Config::builder().credentials_provider(credentials.to_sdk("byollm"))
    }

    /// `InvokeModel`: the whole answer at once.
    pub async fn invoke(
        &self,
        region: &str,
        model_id: &str,
        body: Vec<u8>,
        credentials: &AwsCredentials,
    ) -> Result<Bytes, BedrockFailure> {
        let output = self
            .client(region)
            .invoke_model()
            .model_id(model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .customize()
            .config_override(Self::override_config(credentials))
            .send()
            .await
            .map_err(|e| failure_from_sdk(&e))?;
        Ok(Bytes::from(output.body.into_inner()))
    }

    /// `InvokeModelWithResponseStream`: returns once Bedrock accepted the request.
    pub async fn invoke_stream(
        &self,
        region: &str,
        model_id: &str,
        body: Vec<u8>,
        credentials: &AwsCredentials,
    ) -> Result<EventStream, BedrockFailure> {
        let output = self
            .client(region)
            .invoke_model_with_response_stream()
            .model_id(model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .customize()
            .config_override(Self::override_config(credentials))
            .send()
            .await
            .map_err(|e| failure_from_sdk(&e))?;
        Ok(output.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: &str) -> BedrockFailure {
        BedrockFailure { code: code.into(), message: "details".into() }
    }

    #[test]
    fn maps_every_documented_exception() {
        let cases = [
            ("ThrottlingException", 429, "bedrock_throttled"),
            ("throttlingException", 429, "bedrock_throttled"),
            ("ServiceQuotaExceededException", 429, "bedrock_quota_exceeded"),
            ("ValidationException", 400, "bedrock_validation_error"),
            ("AccessDeniedException", 403, "bedrock_access_denied"),
            ("ResourceNotFoundException", 404, "model_not_enabled"),
            ("ModelTimeoutException", 504, "bedrock_model_timeout"),
            ("ServiceUnavailableException", 503, "bedrock_unavailable"),
            ("ModelNotReadyException", 503, "bedrock_model_not_ready"),
            ("InternalServerException", 502, "bedrock_error"),
            ("modelStreamErrorException", 502, "bedrock_error"),
            ("ExpiredTokenException", 502, "bedrock_credentials_rejected"),
        ];
        for (code, status, expected) in cases {
            let error = failure(code).to_api_error("bedrock:InvokeModel", "m");
            assert_eq!((error.status.as_u16(), error.code), (status, expected), "{code}");
        }
        let throttled = failure("ThrottlingException").to_api_error("bedrock:InvokeModel", "m");
        assert_eq!(throttled.retry_after, Some(2));
        let denied = failure("AccessDeniedException").to_api_error("bedrock:InvokeModelWithResponseStream", "m");
        assert!(denied.message.contains("bedrock:InvokeModelWithResponseStream"));
        assert!(failure("UnrecognizedClientException").is_credential_problem());
    }
}
