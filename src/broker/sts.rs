//! AWS STS `AssumeRoleWithWebIdentity` behind a small trait, and the classification of its
//! failures into what an admin can act on.
//!
//! The SDK's own retries are off: [`classify`] decides what is transient, and the broker retries
//! those with backoff. Tokens and credentials never appear in errors built here.

use std::time::{Duration, SystemTime};

use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use futures_util::future::BoxFuture;

use crate::aws::{AwsCredentials, RoleArn};
use crate::secret::Secret;

/// One `AssumeRoleWithWebIdentity` call.
#[derive(Debug, Clone)]
pub struct AssumeRequest {
    pub role_arn: RoleArn,
    pub session_name: String,
    pub token: Secret,
    pub duration: Duration,
    /// An inline session policy narrowing the role's permissions.
    pub policy: Option<String>,
}

/// What STS (or the way to it) answered instead of credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsFailure {
    /// The AWS error code (`AccessDenied`, `InvalidIdentityToken`, ...), or `Dispatch`/`Timeout`.
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
}

/// Admin-actionable classes of STS failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsErrorClass {
    TrustPolicyMismatch,
    OidcProviderMissing,
    AudienceMismatch,
    IssuerUnreachable,
    TokenExpired,
    InvalidToken,
    InvalidParameters,
    RegionDisabled,
    /// A 4xx with a code we do not know: STS refused the request itself, so trying again will
    /// not help.
    Refused,
    Throttled,
    Unavailable,
}

impl StsErrorClass {
    /// Transient failures are retried with backoff; the rest fail at once.
    pub fn is_transient(self) -> bool {
        matches!(self, StsErrorClass::IssuerUnreachable | StsErrorClass::Throttled | StsErrorClass::Unavailable)
    }

    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            StsErrorClass::TrustPolicyMismatch => "trust_policy_mismatch",
            StsErrorClass::OidcProviderMissing => "oidc_provider_missing",
            StsErrorClass::AudienceMismatch => "oidc_audience_mismatch",
            StsErrorClass::InvalidToken => "invalid_token",
            StsErrorClass::IssuerUnreachable => "issuer_unreachable",
            StsErrorClass::TokenExpired => "token_expired",
            StsErrorClass::InvalidParameters => "invalid_parameters",
            StsErrorClass::RegionDisabled => "region_disabled",
            StsErrorClass::Refused => "refused",
            StsErrorClass::Throttled => "throttled",
            StsErrorClass::Unavailable => "upstream_error",
        }
    }
}

/// Sort an STS failure into a class, from its code and message as AWS documents them.
pub fn classify(failure: &StsFailure) -> StsErrorClass {
    let message = failure.message.to_ascii_lowercase();
    match failure.code.as_str() {
        "AccessDenied" | "AccessDeniedException" | "IDPRejectedClaim" => StsErrorClass::TrustPolicyMismatch,
        "InvalidIdentityToken" => {
            if message.contains("no openidconnect provider") {
                StsErrorClass::OidcProviderMissing
            } else if message.contains("verification key") || message.contains("couldn't retrieve") {
                StsErrorClass::IssuerUnreachable
            } else if message.contains("audience") {
                StsErrorClass::AudienceMismatch
            } else {
                StsErrorClass::InvalidToken
            }
        }
        "IDPCommunicationError" => StsErrorClass::IssuerUnreachable,
        "ExpiredTokenException" | "ExpiredToken" => StsErrorClass::TokenExpired,
        "ValidationError" | "MalformedPolicyDocument" | "PackedPolicyTooLarge" => StsErrorClass::InvalidParameters,
        "RegionDisabledException" => StsErrorClass::RegionDisabled,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException" => {
            StsErrorClass::Throttled
        }
        _ if failure.status.is_some_and(|s| s == 429) => StsErrorClass::Throttled,
        // Unknown codes: a 4xx is STS refusing the request (permanent), anything else (5xx, no
        // answer at all) is STS or the way to it failing (transient).
        _ if failure.status.is_some_and(|s| (400..500).contains(&s)) => StsErrorClass::Refused,
        _ => StsErrorClass::Unavailable,
    }
}

/// The one operation the broker needs from STS.
pub trait StsExchange: Send + Sync {
    fn assume_role_with_web_identity(
        &self,
        request: AssumeRequest,
    ) -> BoxFuture<'_, Result<AwsCredentials, StsFailure>>;
}

/// STS through `aws-sdk-sts`: regional endpoint by default, or the configured endpoint URL.
/// The call is anonymous (the token is the credential), so no AWS credentials are loaded.
pub struct SdkSts {
    client: aws_sdk_sts::Client,
}

impl SdkSts {
    pub fn new(region: &str, endpoint_url: Option<&str>) -> SdkSts {
        let mut builder = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(15))
                    .build(),
            );
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url);
        }
        SdkSts { client: aws_sdk_sts::Client::from_conf(builder.build()) }
    }
}

impl StsExchange for SdkSts {
    fn assume_role_with_web_identity(
        &self,
        request: AssumeRequest,
    ) -> BoxFuture<'_, Result<AwsCredentials, StsFailure>> {
        Box::pin(async move {
            let duration = i32::try_from(request.duration.as_secs()).unwrap_or(3600);
            let result = self
                .client
                .assume_role_with_web_identity()
                .role_arn(request.role_arn.as_str())
                .role_session_name(&request.session_name)
                .web_identity_token(request.token.expose())
                .duration_seconds(duration)
                .set_policy(request.policy)
                .send()
                .await;
            let output = result.map_err(sdk_failure)?;
            let credentials = output.credentials().ok_or_else(|| StsFailure {
                code: "MissingCredentials".into(),
                message: "STS answered without credentials".into(),
                status: None,
            })?;
            let expiration = SystemTime::try_from(*credentials.expiration()).ok();
            Ok(AwsCredentials {
                access_key_id: credentials.access_key_id().to_owned(),
                secret_access_key: Secret::new(credentials.secret_access_key()),
                session_token: Some(Secret::new(credentials.session_token())),
                expiration,
            })
        })
    }
}

fn sdk_failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: aws_sdk_sts::error::SdkError<E, aws_sdk_sts::config::http::HttpResponse>,
) -> StsFailure {
    use aws_sdk_sts::error::SdkError;
    let status = match &error {
        SdkError::ServiceError(context) => Some(context.raw().status().as_u16()),
        _ => None,
    };
    match &error {
        SdkError::ServiceError(context) => StsFailure {
            code: context.err().code().unwrap_or("Unknown").to_owned(),
            message: context.err().message().unwrap_or_default().to_owned(),
            status,
        },
        SdkError::TimeoutError(_) => {
            StsFailure { code: "Timeout".into(), message: "timed out waiting for AWS STS".into(), status: None }
        }
        SdkError::DispatchFailure(_) => {
            StsFailure { code: "Dispatch".into(), message: "could not connect to AWS STS".into(), status: None }
        }
        _ => StsFailure {
            code: error.code().unwrap_or("Unknown").to_owned(),
            message: "unexpected response from AWS STS".into(),
            status,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: &str, message: &str) -> StsFailure {
        StsFailure { code: code.into(), message: message.into(), status: Some(400) }
    }

    #[test]
    fn classifies_the_documented_failures() {
        let cases = [
            (
                failure("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"),
                StsErrorClass::TrustPolicyMismatch,
            ),
            (
                failure("InvalidIdentityToken", "No OpenIDConnect provider found in your account for https://x"),
                StsErrorClass::OidcProviderMissing,
            ),
            (
                failure(
                    "InvalidIdentityToken",
                    "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
                ),
                StsErrorClass::IssuerUnreachable,
            ),
            (failure("InvalidIdentityToken", "Incorrect token audience"), StsErrorClass::AudienceMismatch),
            (failure("InvalidIdentityToken", "the token is not valid"), StsErrorClass::InvalidToken),
            (failure("IDPCommunicationError", "error"), StsErrorClass::IssuerUnreachable),
            (
                failure(
                    "ExpiredTokenException",
                    "Token expired: current date/time 1 must be before the expiration date/time 0",
                ),
                StsErrorClass::TokenExpired,
            ),
            (failure("ValidationError", "1 validation error detected"), StsErrorClass::InvalidParameters),
            (failure("RegionDisabledException", "STS is not activated in this region"), StsErrorClass::RegionDisabled),
            (failure("Throttling", "Rate exceeded"), StsErrorClass::Throttled),
            (
                StsFailure { code: "InternalFailure".into(), message: String::new(), status: Some(500) },
                StsErrorClass::Unavailable,
            ),
            (StsFailure { code: "Dispatch".into(), message: String::new(), status: None }, StsErrorClass::Unavailable),
            (failure("SomethingNew", "a refusal we have never seen"), StsErrorClass::Refused),
            (
                StsFailure { code: "SomethingNew".into(), message: String::new(), status: Some(403) },
                StsErrorClass::Refused,
            ),
            (
                StsFailure { code: "SomethingNew".into(), message: String::new(), status: Some(502) },
                StsErrorClass::Unavailable,
            ),
        ];
        for (failure, class) in cases {
            assert_eq!(classify(&failure), class, "{failure:?}");
        }
        assert!(StsErrorClass::IssuerUnreachable.is_transient());
        assert!(!StsErrorClass::TrustPolicyMismatch.is_transient());
        assert!(!StsErrorClass::Refused.is_transient(), "an unknown 4xx is not retried");
    }
}
